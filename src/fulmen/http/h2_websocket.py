"""WebSockets over HTTP/2 (RFC 8441): an extended CONNECT stream served by the same WebSocket session
as an HTTP/1.1 upgrade.

The session (``--ws``'s protocol class) expects a transport and an HTTP/1.1 handshake. A stream gets
:class:`StreamTransport`, a transport whose bytes are the stream's DATA frames: the session writes
WebSocket frames into it and is fed the client's from the stream, with flow control both ways (the
client's data is acknowledged only while the session reads; the session is paused while the stream's
window holds its frames back). The handshake is translated at the edges: the session checks the
request as the HTTP/1.1 handshake it stands for (:func:`handshake_headers`), and its answer, written
as HTTP/1.1 bytes, becomes the stream's HEADERS (101 becomes 200, RFC 8441 section 5).
"""

from __future__ import annotations

import asyncio
from typing import Any, Protocol

from fulmen.http.h2_connection import H2Connection
from fulmen.http.h2_frames import ErrorCode
from fulmen.http.h2_hpack import CONNECTION_HEADERS
from fulmen.protocols.flow_control import HIGH_WATER_LIMIT

#: The fields of an HTTP/1.1 upgrade that an extended CONNECT does not carry, for the session's check:
#: the key only makes the session compute an accept value, which the translation drops.
_UPGRADE_FIELDS = [
    (b"upgrade", b"websocket"),
    (b"connection", b"Upgrade"),
    (b"sec-websocket-key", b"AAAAAAAAAAAAAAAAAAAAAA=="),
]
#: Fields of the session's HTTP/1.1 answer with no meaning in HTTP/2.
_DROPPED = CONNECTION_HEADERS | {b"sec-websocket-accept"}


def handshake_headers(headers: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    """The request's fields as the HTTP/1.1 handshake the session checks."""
    names = {name for name, _ in headers}
    extra = [field for field in _UPGRADE_FIELDS if field[0] not in names]
    if b"sec-websocket-version" not in names:
        extra.append((b"sec-websocket-version", b"13"))
    return headers + extra


class TunnelOwner(Protocol):
    """What a stream transport uses of its connection (an ``H2Protocol``)."""

    h2: H2Connection
    transport: asyncio.Transport
    loop: asyncio.AbstractEventLoop
    tunnels: dict[int, StreamTransport]

    def acknowledge(self, stream_id: int, length: int) -> None: ...
    def reset(self, stream_id: int, code: ErrorCode) -> None: ...
    def queued(self, size: int) -> None: ...
    def schedule_flush(self) -> None: ...
    def on_tunnel_done(self) -> None: ...


class StreamTransport(asyncio.Transport):
    """One extended CONNECT stream as the WebSocket session's transport."""

    def __init__(self, conn: TunnelOwner, stream_id: int) -> None:
        super().__init__()
        self.conn = conn
        self.stream_id = stream_id
        self.protocol: Any = None
        self.head = b""  # the session's HTTP/1.1 answer, until its end
        self.head_sent = False
        self.pending = bytearray()  # DATA the stream's window holds back
        self.closing = False  # close() called: END_STREAM once ``pending`` is sent
        self.lost = False  # connection_lost given to the session
        self.reading = True
        self.unacked = 0  # received while reading is paused: acknowledged when it resumes
        self.write_paused = False

    # -- asyncio.Transport, as the session uses it

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self.conn.transport.get_extra_info(name, default)

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        self.protocol = protocol

    def get_protocol(self) -> asyncio.BaseProtocol:
        return self.protocol  # type: ignore[no-any-return]

    def is_closing(self) -> bool:
        return self.closing or self.lost

    def is_reading(self) -> bool:
        return self.reading

    def pause_reading(self) -> None:
        self.reading = False

    def resume_reading(self) -> None:
        if not self.reading:
            self.reading = True
            if self.unacked:
                self.conn.acknowledge(self.stream_id, self.unacked)
                self.unacked = 0

    def get_write_buffer_size(self) -> int:
        return len(self.pending)

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if self.is_closing():
            return
        if not self.head_sent:
            self.head += data
            end = self.head.find(b"\r\n\r\n")
            if end < 0:
                return
            head, data = self.head[:end], self.head[end + 4 :]
            self.head = b""
            self.head_sent = True
            self.send_head(head)
        if data:
            self.pending += data
            self.pump()

    def close(self) -> None:
        if not self.is_closing():
            self.closing = True
            self.pump()

    def abort(self) -> None:
        if not self.lost:
            self.conn.reset(self.stream_id, ErrorCode.CANCEL)
            self.connection_lost()

    # -- the stream

    def send_head(self, head: bytes) -> None:
        """The session's HTTP/1.1 status line and fields as the stream's HEADERS."""
        lines = head.split(b"\r\n")
        status = int(lines[0].split(b" ", 2)[1])
        headers = [(b":status", b"200" if status == 101 else b"%d" % status)]
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            if name not in _DROPPED:
                headers.append((name, value.strip()))
        self.conn.h2.send_headers(self.stream_id, headers)
        self.conn.schedule_flush()

    def pump(self) -> None:
        """Send what the windows allow; END_STREAM once closing and all is sent."""
        if self.lost:
            return
        h2 = self.conn.h2
        pending = self.pending
        if pending:
            sent = h2.send_data(self.stream_id, bytes(pending), False)
            if sent < 0:
                self.connection_lost()
                return
            del pending[:sent]
            self.conn.queued(sent)
        if self.closing and not pending:
            h2.send_data(self.stream_id, b"", True)
            self.conn.schedule_flush()
            self.connection_lost()
            return
        protocol = self.protocol
        if len(pending) > HIGH_WATER_LIMIT and not self.write_paused:
            self.write_paused = True
            protocol.pause_writing()
        elif self.write_paused and len(pending) <= HIGH_WATER_LIMIT // 2:
            self.write_paused = False
            protocol.resume_writing()

    def data_received(self, data: bytes) -> None:
        if self.reading:
            self.conn.acknowledge(self.stream_id, len(data))
        else:
            self.unacked += len(data)
        if not self.lost:
            self.protocol.data_received(data)

    def connection_lost(self) -> None:
        """The stream is over (ended, reset, or the connection gone): the session hears it once, on
        the next loop turn, as it would from a socket's transport."""
        if not self.lost:
            self.lost = True
            self.conn.tunnels.pop(self.stream_id, None)
            if self.unacked:
                self.conn.acknowledge(self.stream_id, self.unacked)
                self.unacked = 0
            self.conn.loop.call_soon(self.protocol.connection_lost, None)
            self.conn.on_tunnel_done()
