"""The ``websockets`` engine: its sans-I/O ``ServerProtocol`` checks the handshake and parses the
control frames. Everything else is the shared :class:`WebSocketSession`.

The library answers pings and close frames by itself; those bytes are dropped (``data_to_send``)
because the session writes its own answers, the same way for both engines.
"""

from __future__ import annotations

from typing import Any, cast

from websockets.datastructures import Headers
from websockets.frames import Frame, Opcode
from websockets.http11 import Request, Response
from websockets.protocol import State
from websockets.server import ServerProtocol

from fulmen.websockets.session import HandshakeError, WebSocketSession

_PING = Opcode.PING
_PONG = Opcode.PONG
_CLOSE = Opcode.CLOSE


class WebSocketProtocol(WebSocketSession):
    engine: ServerProtocol
    response: Response | None

    def start_engine(self, scope: dict[str, Any]) -> None:
        # Created OPEN: the HTTP connection already parsed the request, so the parser starts at frames.
        # No extensions: the session negotiates permessage-deflate itself.
        engine = self.engine = ServerProtocol(max_size=self.max_size, state=State.OPEN)
        headers = Headers(
            [(name.decode("latin-1"), value.decode("latin-1")) for name, value in scope["headers"]]
        )
        # Only path and headers: the session checks the HTTP version, and Request has no method or
        # version fields before websockets 14.
        request = Request(scope["raw_path"].decode("latin-1"), headers)
        response = engine.accept(request)
        if response.status_code != 101:
            raise HandshakeError(str(engine.handshake_exc or response.reason_phrase))
        if "Date" in response.headers:
            del response.headers["Date"]  # the session adds the server's default headers
        self.response = response

    def accept_response(self, headers: list[tuple[bytes, bytes]]) -> bytes:
        response = self.response
        assert response is not None
        self.response = None
        for name, value in headers:
            response.headers[name.decode("latin-1")] = value.decode("latin-1")
        return response.serialize()

    def feed(self, data: bytes) -> None:
        engine = self.engine
        engine.receive_data(data)
        for frame in cast("list[Frame]", engine.events_received()):  # server side: frames only
            opcode = frame.opcode
            if opcode is _PING:
                self.on_ping(bytes(frame.data))
            elif opcode is _PONG:
                self.on_pong(bytes(frame.data))
            elif opcode is _CLOSE:
                close = engine.close_rcvd
                assert close is not None
                self.on_close(close.code, close.reason)
        engine.data_to_send()
        if engine.parser_exc is not None and self.reading:
            sent = engine.close_sent
            if sent is None:
                self.fail(1002, "")
            else:
                self.fail(sent.code, sent.reason)
