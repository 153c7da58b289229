"""The ``websockets`` engine: its sans-I/O ``ServerProtocol`` checks the handshake and parses frames,
``websockets.frames`` builds them. Everything else is the shared :class:`WebSocketSession`.

The library answers pings and close frames by itself; those bytes are dropped (``data_to_send``)
because the session writes its own answers, the same way for both engines.
"""

from __future__ import annotations

import codecs
from typing import Any, cast

from websockets.datastructures import Headers
from websockets.extensions.permessage_deflate import ServerPerMessageDeflateFactory
from websockets.frames import Close, Frame, Opcode
from websockets.http11 import Request, Response
from websockets.protocol import State
from websockets.server import ServerProtocol

from fulmen.websockets.session import HandshakeError, WebSocketSession

_TEXT = Opcode.TEXT
_BINARY = Opcode.BINARY
_CONT = Opcode.CONT
_PING = Opcode.PING
_PONG = Opcode.PONG
_CLOSE = Opcode.CLOSE
_Utf8Decoder = codecs.getincrementaldecoder("utf-8")


class WebSocketProtocol(WebSocketSession):
    engine: ServerProtocol
    extensions: list[Any]
    response: Response | None
    decoder: codecs.IncrementalDecoder | None  # set while a fragmented text message arrives

    def start_engine(self, scope: dict[str, Any]) -> None:
        factories = [ServerPerMessageDeflateFactory()] if self.per_message_deflate else None
        # Created OPEN: the HTTP connection already parsed the request, so the parser starts at frames.
        engine = self.engine = ServerProtocol(extensions=factories, max_size=self.max_size, state=State.OPEN)
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
        self.extensions = engine.extensions
        self.decoder = None

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
            if opcode is _TEXT:
                if frame.fin:
                    try:
                        text = str(frame.data, "utf-8")
                    except UnicodeDecodeError:
                        self.fail(1007, "Invalid UTF-8 in text message")
                        return
                    self.on_data(text, True)
                else:
                    self.decoder = _Utf8Decoder()
                    self.on_text_fragment(frame.data, False)
            elif opcode is _BINARY:
                self.on_data(bytes(frame.data), frame.fin)
            elif opcode is _CONT:
                if self.decoder is not None:
                    self.on_text_fragment(frame.data, frame.fin)
                else:
                    self.on_data(bytes(frame.data), frame.fin)
            elif opcode is _PING:
                self.on_ping(bytes(frame.data))
            elif opcode is _PONG:
                self.on_pong(bytes(frame.data))
            elif opcode is _CLOSE:
                close = engine.close_rcvd
                assert close is not None
                self.on_close(close.code, close.reason)
            if not self.reading:
                return
        engine.data_to_send()
        if engine.parser_exc is not None and self.reading:
            received = engine.close_rcvd
            if received is not None:
                # A close frame inside a fragmented message: the library fails it, but RFC 6455 allows
                # control frames between fragments, so it is a normal close from the peer.
                self.on_close(received.code, received.reason)
                return
            sent = engine.close_sent
            if sent is None:
                self.fail(1002, "")
            else:
                self.fail(sent.code, sent.reason)

    def on_text_fragment(self, data: Any, fin: bool) -> None:
        """Fragments of a text message are checked as they come: bad UTF-8 fails at once (1007)."""
        assert self.decoder is not None
        try:
            text = self.decoder.decode(data, fin)
        except UnicodeDecodeError:
            self.fail(1007, "Invalid UTF-8 in text message")
            return
        if fin:
            self.decoder = None
        self.on_data(text, fin)

    def frame_text(self, text: str) -> bytes:
        return Frame(_TEXT, text.encode()).serialize(mask=False, extensions=self.extensions)

    def frame_bytes(self, data: bytes) -> bytes:
        return Frame(_BINARY, data).serialize(mask=False, extensions=self.extensions)

    def frame_ping(self, payload: bytes) -> bytes:
        return Frame(_PING, payload).serialize(mask=False)

    def frame_pong(self, payload: bytes) -> bytes:
        return Frame(_PONG, payload).serialize(mask=False)

    def frame_close(self, code: int | None, reason: str) -> bytes:
        payload = b"" if code is None else Close(code, reason).serialize()
        return Frame(_CLOSE, payload).serialize(mask=False)
