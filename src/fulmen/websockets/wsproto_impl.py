"""The ``wsproto`` engine: ``WSConnection`` checks the handshake and answers it, its ``Connection``
parses the control frames. Everything else is the shared :class:`WebSocketSession`.

wsproto only reads a handshake from bytes, so it is given the already parsed head re-serialized
(request line and headers; a few hundred bytes once per connection, never on the message path).
"""

from __future__ import annotations

from typing import Any

from wsproto import ConnectionType, WSConnection
from wsproto.connection import Connection, ConnectionState
from wsproto.events import AcceptConnection, CloseConnection, Ping, Pong, Request
from wsproto.utilities import RemoteProtocolError

from fulmen.websockets.session import HandshakeError, WebSocketSession

#: wsproto states in which a received close event was the peer's close frame (else a parse failure).
_PEER_CLOSED = (ConnectionState.REMOTE_CLOSING, ConnectionState.CLOSED)


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
        # No extensions: the session negotiates permessage-deflate itself.
        data = self.handshake.send(AcceptConnection(extra_headers=headers))
        connection = self.handshake.connection
        assert connection is not None
        self.conn = connection
        return data

    def feed(self, data: bytes) -> None:
        conn = self.conn
        conn.receive_data(data)
        for event in conn.events():
            kind = type(event)
            if kind is Ping:
                self.on_ping(bytes(event.payload))  # type: ignore[attr-defined]
            elif kind is Pong:
                self.on_pong(bytes(event.payload))  # type: ignore[attr-defined]
            elif kind is CloseConnection:
                assert isinstance(event, CloseConnection)
                if conn.state in _PEER_CLOSED:
                    self.on_close(int(event.code), event.reason or "")
                else:  # wsproto reports a protocol violation as a close event with the code to send
                    self.fail(int(event.code), event.reason or "")
