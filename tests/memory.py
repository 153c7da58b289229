"""fulmen's protocols without sockets: bytes in, the bytes they write out, on a fresh event loop.

:class:`RecordingTransport` stands in for a socket's transport (the one thing an in-memory test cannot
have): it records every write and the close, and passes ``set_protocol`` hand-overs on (HTTP/2,
WebSocket). :class:`MemoryConnection` builds a connection the way the server does, from a
:class:`~fulmen.Config`, feeds it bytes and runs its event loop until it has nothing left to do.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

from fulmen import Config
from fulmen.server import ServerState

#: How many loop iterations :meth:`MemoryConnection.settle` runs at most: more than any exchange here
#: needs (a request's task, the end-of-turn writes, a hand-over), and a bound on a test that hangs.
SETTLE_ROUNDS = 50


class RecordingTransport(asyncio.Transport):
    """Records what the protocol writes, in order, and whether it closed or paused reading."""

    def __init__(self, loop: asyncio.AbstractEventLoop, peer: tuple[str, int] = ("127.0.0.1", 50000)) -> None:
        super().__init__()
        self.loop = loop
        self.writes: list[bytes] = []
        self.closed = False
        self.aborted = False
        self.reading = True
        self.protocol: asyncio.BaseProtocol | None = None
        self.extra = {"sockname": ("127.0.0.1", 8000), "peername": peer}

    # -- what tests read

    @property
    def data(self) -> bytes:
        return b"".join(self.writes)

    def take(self) -> bytes:
        """The bytes written since the last call."""
        data = self.data
        self.writes.clear()
        return data

    # -- asyncio.Transport

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self.extra.get(name, default)

    def write(self, data: bytes | bytearray | memoryview) -> None:
        assert not self.closed, "written after close"
        self.writes.append(bytes(data))

    def close(self) -> None:
        """As a socket's transport: closed now, and the protocol hears of it on the next loop turn."""
        if not self.closed:
            self.closed = True
            self.loop.call_soon(self.connection_lost)

    def abort(self) -> None:
        self.aborted = True
        self.close()

    def connection_lost(self) -> None:
        if self.protocol is not None:
            self.protocol.connection_lost(None)

    def is_closing(self) -> bool:
        return self.closed

    def pause_reading(self) -> None:
        self.reading = False

    def resume_reading(self) -> None:
        self.reading = True

    def is_reading(self) -> bool:
        return self.reading

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        self.protocol = protocol

    def get_protocol(self) -> asyncio.BaseProtocol:
        assert self.protocol is not None
        return self.protocol

    def get_write_buffer_size(self) -> int:
        return 0


class MemoryConnection:
    """One connection of a server serving ``app`` with ``options`` (as ``Config`` takes them)."""

    def __init__(self, app: Any, *, shared_loop: MemoryConnection | None = None, **options: Any) -> None:
        """``shared_loop``: another connection whose loop and server state this one shares."""
        options.setdefault("log_config", None)
        options.setdefault("lifespan", "off")
        self.config = Config(app, **options)
        self.config.load()
        self.owns_loop = shared_loop is None
        self.loop = asyncio.new_event_loop() if shared_loop is None else shared_loop.loop
        self.state = ServerState() if shared_loop is None else shared_loop.state
        self.transport = RecordingTransport(self.loop)
        protocol = self.config.http_protocol_class(  # type: ignore[call-arg]
            config=self.config, server_state=self.state, app_state={}, _loop=self.loop
        )
        self.transport.set_protocol(protocol)
        protocol.connection_made(self.transport)

    @property
    def protocol(self) -> Any:
        """The protocol serving the connection now (after a hand-over, the new one)."""
        return self.transport.get_protocol()

    def feed(self, *chunks: bytes) -> bytes:
        """Each chunk as one ``data_received``, the loop run until idle; what was written meanwhile."""
        for chunk in chunks:
            self.protocol.data_received(chunk)
            self.settle()
        return self.transport.take()

    def run_once(self) -> None:
        """One iteration of the loop: the callbacks ready now (not those they schedule)."""
        self.loop.call_soon(self.loop.stop)
        self.loop.run_forever()

    def settle(self) -> None:
        """Run the loop until no callback is ready (bounded by ``SETTLE_ROUNDS`` iterations)."""
        for _ in range(SETTLE_ROUNDS):
            self.loop.run_until_complete(asyncio.sleep(0))
            if not self.loop._ready:  # type: ignore[attr-defined]  # asyncio's own loop: its ready queue
                return

    def lose(self) -> None:
        """The peer goes away: the transport closes and the protocol hears of it."""
        self.transport.close()
        self.settle()

    def close(self) -> None:
        self.lose()
        if not self.owns_loop:
            return
        tasks = [task for task in asyncio.all_tasks(self.loop) if not task.done()]
        for task in tasks:
            task.cancel()
        if tasks:
            self.loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
        self.loop.close()


def memory_connection(app: Any, **options: Any) -> Iterator[MemoryConnection]:
    """A :class:`MemoryConnection` for the length of a test (use in a fixture or ``with``-less)."""
    connection = MemoryConnection(app, **options)
    try:
        yield connection
    finally:
        connection.close()


def split_response(data: bytes) -> tuple[int, dict[bytes, bytes], bytes]:
    """Status, headers (lower-case names; repeated ones joined by ", ") and body of one response."""
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = int(lines[0].split(b" ")[1])
    headers: dict[bytes, bytes] = {}
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        name, value = name.strip().lower(), value.strip()
        headers[name] = headers[name] + b", " + value if name in headers else value
    return status, headers, body
