"""The ``wsproto`` engine: ``WSConnection`` checks the handshake and answers it, its ``Connection``
parses and builds frames. Everything else is the shared :class:`WebSocketSession`.

wsproto only reads a handshake from bytes, so it is given the already parsed head re-serialized
(request line and headers; a few hundred bytes once per connection, never on the message path).
"""

from __future__ import annotations

import zlib
from typing import Any

from wsproto import ConnectionType, WSConnection
from wsproto.connection import Connection, ConnectionState
from wsproto.events import (
    AcceptConnection,
    BytesMessage,
    CloseConnection,
    Ping,
    Pong,
    Request,
    TextMessage,
)
from wsproto.extensions import Extension, PerMessageDeflate
from wsproto.frame_protocol import CloseReason
from wsproto.utilities import RemoteProtocolError

from fulmen.websockets.session import HandshakeError, WebSocketSession

#: wsproto states in which a received close event was the peer's close frame (else a parse failure).
_PEER_CLOSED = (ConnectionState.REMOTE_CLOSING, ConnectionState.CLOSED)


class BoundedDeflate(PerMessageDeflate):
    """permessage-deflate that stops inflating a message past ``--ws-max-size``.

    wsproto inflates each received frame whole, so a small compressed frame could take hundreds of
    MiB before the session's size check saw it; here inflation is capped and the peer gets 1009.
    """

    def __init__(self, max_size: int) -> None:
        super().__init__()
        self.max_size = max_size
        self.inflated = 0  # bytes of the current message inflated so far

    def frame_inbound_payload_data(self, proto: Any, data: bytes) -> bytes | CloseReason:
        if not self._inbound_compressed or not self._inbound_is_compressible:
            return data
        decompressor = self._decompressor
        assert decompressor is not None
        try:
            inflated = decompressor.decompress(bytes(data), self.max_size - self.inflated + 1)
        except zlib.error:
            return CloseReason.INVALID_FRAME_PAYLOAD_DATA
        self.inflated += len(inflated)
        if decompressor.unconsumed_tail or self.inflated > self.max_size:
            return CloseReason.MESSAGE_TOO_BIG
        return inflated

    def frame_inbound_complete(self, proto: Any, fin: bool) -> bytes | CloseReason | None:
        if fin:
            self.inflated = 0
        return super().frame_inbound_complete(proto, fin)


class WSProtocol(WebSocketSession):
    handshake: WSConnection
    conn: Connection

    def start_engine(self, scope: dict[str, Any]) -> None:
        handshake = self.handshake = WSConnection(ConnectionType.SERVER)
        lines = [b"GET / HTTP/1.1\r\n"]
        lines += [b"%s: %s\r\n" % header for header in scope["headers"]]
        lines.append(b"\r\n")
        try:
            handshake.receive_data(b"".join(lines))
            request = next(handshake.events(), None)
        except RemoteProtocolError as exc:
            raise HandshakeError(str(exc)) from None
        if not isinstance(request, Request):
            raise HandshakeError("Incomplete WebSocket handshake")

    def accept_response(self, headers: list[tuple[bytes, bytes]]) -> bytes:
        extensions: list[Extension] = [BoundedDeflate(self.max_size)] if self.per_message_deflate else []
        data = self.handshake.send(AcceptConnection(extensions=extensions, extra_headers=headers))
        connection = self.handshake.connection
        assert connection is not None
        self.conn = connection
        return data

    def feed(self, data: bytes) -> None:
        conn = self.conn
        conn.receive_data(data)
        for event in conn.events():
            kind = type(event)
            if kind is TextMessage:
                self.on_data(event.data, event.message_finished)  # type: ignore[attr-defined]
            elif kind is BytesMessage:
                self.on_data(bytes(event.data), event.message_finished)  # type: ignore[attr-defined]
            elif kind is Ping:
                self.on_ping(bytes(event.payload))  # type: ignore[attr-defined]
            elif kind is Pong:
                self.on_pong(bytes(event.payload))  # type: ignore[attr-defined]
            elif kind is CloseConnection:
                assert isinstance(event, CloseConnection)
                if conn.state in _PEER_CLOSED:
                    self.on_close(int(event.code), event.reason or "")
                else:  # wsproto reports a protocol violation as a close event with the code to send
                    self.fail(int(event.code), event.reason or "")
            if not self.reading:
                return

    def frame_text(self, text: str) -> bytes:
        return self.conn.send(TextMessage(data=text))

    def frame_bytes(self, data: bytes) -> bytes:
        return self.conn.send(BytesMessage(data=data))

    def frame_ping(self, payload: bytes) -> bytes:
        return self.conn.send(Ping(payload=payload))

    def frame_pong(self, payload: bytes) -> bytes:
        return self.conn.send(Pong(payload=payload))

    def frame_close(self, code: int | None, reason: str) -> bytes:
        if code is None:
            return self.conn.send(CloseConnection(code=CloseReason.NO_STATUS_RCVD))
        return self.conn.send(CloseConnection(code=code, reason=reason))
