"""Back-pressure in both directions for one connection.

Reading pauses while a request body waits for the application; writing waits (``drain``) while
the transport's buffer is above its high-water mark.
"""

from __future__ import annotations

import asyncio

#: Buffered request body, in bytes, above which the connection stops reading from the socket.
HIGH_WATER_LIMIT = 65536


class FlowControl:
    __slots__ = ("_transport", "read_paused", "write_paused", "_writable")

    def __init__(self, transport: asyncio.Transport) -> None:
        self._transport = transport
        self.read_paused = False
        self.write_paused = False
        self._writable: asyncio.Event | None = None  # made the first time writing pauses

    async def drain(self) -> None:
        """Return once the transport accepts more data."""
        if self.write_paused:
            assert self._writable is not None
            await self._writable.wait()

    def pause_reading(self) -> None:
        if not self.read_paused:
            self.read_paused = True
            self._transport.pause_reading()

    def resume_reading(self) -> None:
        if self.read_paused:
            self.read_paused = False
            self._transport.resume_reading()

    def pause_writing(self) -> None:
        if not self.write_paused:
            self.write_paused = True
            if self._writable is None:
                self._writable = asyncio.Event()
            self._writable.clear()

    def resume_writing(self) -> None:
        if self.write_paused:
            self.write_paused = False
            assert self._writable is not None
            self._writable.set()
