"""The ASGI WebSocket session, shared by both engines (``websockets`` and ``wsproto``).

The HTTP connection hands over an already parsed handshake (:meth:`WebSocketSession.accept_upgrade`).
From then on this class owns everything that is not framing: the ASGI events, the HTTP answers to a
refused handshake, the close handshake, keepalive pings, the size and queue limits, back-pressure in
both directions, graceful shutdown and the access log. An engine subclass only turns bytes into calls
of :meth:`on_data`, :meth:`on_ping`, :meth:`on_pong`, :meth:`on_close` and :meth:`fail`, and outgoing
messages into bytes; so the two libraries behave the same and the per-message path stays short.
"""

from __future__ import annotations

import abc
import asyncio
import http
import logging
import os
import struct
import time
from collections import deque
from collections.abc import Iterable
from typing import Any

from fulmen.access_log import client_text, log_access, quoted_full_path
from fulmen.http.wire import STATUS_LINES, simple_response
from fulmen.metrics.recorder import WEBSOCKET
from fulmen.protocols.flow_control import HIGH_WATER_LIMIT
from fulmen.protocols.response_rules import ERROR_BODIES, check_status, checked_headers
from fulmen.protocols.server_protocol import ServerProtocol
from fulmen.websockets.deflate import Codec, negotiate
from fulmen.websockets.frames import BINARY, CLOSE, COMPRESSED, PING, PONG, TEXT, MessageReader, encode_frame

logger = logging.getLogger("fulmen.error")
_TRACE = 5

#: Seconds to wait for the peer's close frame, or for a closing transport to flush, before aborting.
CLOSE_TIMEOUT = 5.0
#: Longest close reason that fits a control frame, in bytes (125 minus the 2-byte code).
MAX_CLOSE_REASON = 123

# Session states.
CONNECTING = 0  # handshake not answered yet
OPEN = 1  # accepted: messages flow both ways
RESPONSE = 2  # the app is sending its own HTTP response (websocket.http.response extension)
CLOSING = 3  # we sent a close frame and wait for the peer's
CLOSED = 4  # nothing more is sent

_CLOSE_CODE = struct.Struct("!H")
#: Compressed size of a message that is never sent compressed (the peer asked for a window zlib lacks).
_NEVER = 1 << 62

_REFUSED = {403: b"Forbidden", 400: b"Invalid WebSocket handshake", 503: ERROR_BODIES[503]}


class HandshakeError(Exception):
    """The upgrade request is not a valid WebSocket handshake: answered with 400, the app never runs."""


class ClientDisconnected(OSError):
    """Raised by ``send`` once the connection is closed (the ASGI spec asks for an IOError subclass)."""


def _subprotocols(headers: Iterable[tuple[bytes, bytes]]) -> list[str]:
    offered: list[str] = []
    for name, value in headers:
        if name == b"sec-websocket-protocol":
            offered.extend(token.strip() for token in value.decode("latin-1").split(",") if token.strip())
    return offered


def _phrase(status: int) -> str:
    try:
        return http.HTTPStatus(status).phrase
    except ValueError:
        return ""


def _truncate_reason(reason: str) -> str:
    """A close reason cut to what fits a close frame, without splitting a character."""
    if len(reason) * 4 <= MAX_CLOSE_REASON:
        return reason
    return reason.encode()[:MAX_CLOSE_REASON].decode(errors="ignore")


class WebSocketSession(ServerProtocol):
    """One upgraded connection. Engine subclasses implement the hooks in the last section."""

    is_websocket = True

    def setup(self) -> None:
        super().setup()
        self.max_size: int = self.config.ws_max_size
        self.max_queue: int = max(1, self.config.ws_max_queue)
        self.ping_interval: float | None = self.config.ws_ping_interval or None
        self.ping_timeout: float | None = self.config.ws_ping_timeout or None
        self.per_message_deflate = bool(self.config.ws_per_message_deflate)
        self.compress_min_size: int = self.config.ws_compress_min_size

        self.scope: dict[str, Any] = {}
        self.state = CONNECTING
        self.reading = False  # frames are parsed: from accept until the peer's close or a failure
        self.pending = bytearray()  # bytes received before the app accepted
        self.queue: deque[dict[str, Any]] = deque([{"type": "websocket.connect"}])
        self.waiter: asyncio.Future[None] | None = None
        self.disconnect: dict[str, Any] | None = None  # the websocket.disconnect the app gets, once over
        self.frames = MessageReader(self.max_size, self.on_message, self.feed, self.on_protocol_error)
        self.codec: Codec | None = None  # permessage-deflate, when negotiated
        self.failure: tuple[int, str] | None = None  # a violation waiting for the app to take its messages
        self.failure_timer: asyncio.TimerHandle | None = None
        self.close_code: int | None = None  # the code of the close frame we sent
        self.ping_timer: asyncio.TimerHandle | None = None
        self.pong_timer: asyncio.TimerHandle | None = None
        self.close_timer: asyncio.TimerHandle | None = None
        self.status = 0
        self.bytes_sent = 0
        self.started_at = 0.0

    # -- the hand-over from the HTTP connection

    def accept_upgrade(self, transport: asyncio.Transport, scope: dict[str, Any], trailing: bytes) -> None:
        """Take over ``transport`` with the parsed handshake, then check limits and start the app."""
        self.attach(transport)
        state = self.server_state
        if self.access_log:
            self.started_at = time.monotonic()
        if not transport.is_reading():
            transport.resume_reading()  # the HTTP parser may have paused it at the upgrade
        scope["subprotocols"] = _subprotocols(scope["headers"])
        scope["extensions"] = {"websocket.http.response": {}}
        self.scope = scope
        if logger.isEnabledFor(_TRACE):
            logger.log(_TRACE, "%s - WebSocket connection made", self.client_text)
        if trailing:
            self.pending += trailing

        if self.limit_concurrency is not None and len(state.tasks) >= self.limit_concurrency:
            self.refuse(503)
            return
        try:
            if scope["http_version"] != "1.1":
                raise HandshakeError("WebSocket needs HTTP/1.1")  # RFC 6455, 4.1
            self.start_engine(scope)
        except HandshakeError as exc:
            logger.warning("Invalid WebSocket handshake received: %s", exc)
            self.refuse(400)
            return
        state.count_request()
        self.new_task(self.run_asgi()).add_done_callback(state.tasks.discard)

    # -- asyncio.Protocol

    def data_received(self, data: bytes) -> None:
        if self.metrics is not None:
            self.metrics.received_bytes += len(data)
        if self.reading:
            try:
                self.frames.feed(data, self.is_reading)
            except Exception as exc:  # a bug in an engine must not leave the connection hanging
                logger.error("Error while reading WebSocket frames", exc_info=exc)
                self.fail(1011, "")
        elif self.state == CONNECTING:
            self.pending += data
            if len(self.pending) > HIGH_WATER_LIMIT:
                self.flow.pause_reading()

    def connection_lost(self, exc: Exception | None) -> None:
        if logger.isEnabledFor(_TRACE):
            logger.log(_TRACE, "%s - WebSocket connection lost", self.client_text)
        if self.status == 101:
            logger.info("connection closed")
        self.reading = False
        self.state = CLOSED
        self.cancel_timers()
        if self.close_timer is not None:
            self.close_timer.cancel()
            self.close_timer = None
        if self.disconnect is None:
            self.set_disconnect(self.close_code if self.close_code is not None else 1006, "")
        super().connection_lost(exc)  # a send() waiting for the transport returns (and raises)

    def is_reading(self) -> bool:
        return self.reading

    # -- events from the frame reader and the engine

    def on_message(self, data: Any) -> None:
        """A whole message read by :class:`~fulmen.websockets.frames.MessageReader`: ``str`` or ``bytes``."""
        if type(data) is str:
            message = {"type": "websocket.receive", "text": data}
        else:
            message = {"type": "websocket.receive", "bytes": data}
        queue = self.queue
        queue.append(message)
        if len(queue) >= self.max_queue:
            self.flow.pause_reading()
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def on_ping(self, payload: bytes) -> None:
        if self.state == OPEN:
            self.transport.write(self.frame_pong(payload))

    def on_pong(self, payload: bytes) -> None:
        # Any pong proves the peer alive: RFC 6455 allows unsolicited pongs as heartbeats.
        if self.pong_timer is not None:
            self.pong_timer.cancel()
            self.pong_timer = None

    def on_close(self, code: int, reason: str) -> None:
        """The peer's close frame: echo it (unless ours went first) and close the TCP connection."""
        self.reading = False
        if self.state == OPEN:
            self.transport.write(self.frame_close(None if code == 1005 else code, reason))
        self.finish(code, reason)

    def on_protocol_error(self, code: int, reason: str) -> None:
        """The peer broke the protocol or a limit. The messages it sent before are still the app's:
        the connection fails once the app has taken them (or after ``CLOSE_TIMEOUT`` if it does not)."""
        self.reading = False
        if self.state != OPEN or not self.queue:
            self.fail(code, reason)
            return
        self.failure = (code, reason)
        self.failure_timer = self.loop.call_later(CLOSE_TIMEOUT, self.fail_pending)

    def fail_pending(self) -> None:
        """Carry out the failure waiting in :attr:`failure`."""
        failure = self.failure
        if failure is not None:
            self.failure = None
            self.fail(*failure)

    def fail(self, code: int, reason: str) -> None:
        """A protocol violation or a limit: close with ``code`` at once, without waiting for the peer."""
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug("%s - WebSocket closed with %d: %s", self.client_text, code, reason)
        self.reading = False
        if self.state == OPEN:
            self.transport.write(self.frame_close(code, reason))
        self.finish(code, reason)

    # -- the ASGI application

    async def run_asgi(self) -> None:
        try:
            result = await self.app(self.scope, self.receive, self.send)
        except ClientDisconnected:
            self.close_transport()
        except asyncio.CancelledError:
            self.transport.abort()
            raise
        except BaseException as exc:
            logger.error("Exception in ASGI application\n", exc_info=exc)
            if self.state == CONNECTING:
                self.refuse(403)
            elif self.state == OPEN:
                self.start_close(1011, "")
            elif self.state == RESPONSE:
                self.close_transport()
        else:
            if result is not None:
                logger.error("ASGI callable should return None, but returned '%s'.", result)
            if self.state == CONNECTING:
                logger.error("ASGI callable returned without sending handshake.")
                self.refuse(403)
            elif self.state == OPEN:
                self.start_close(1000, "")
            elif self.state == RESPONSE:
                logger.error("ASGI callable returned without completing response.")
                self.close_transport()

    async def receive(self) -> dict[str, Any]:
        queue = self.queue
        while not queue:
            if self.failure is not None:
                self.fail_pending()
            if self.disconnect is not None:
                return self.disconnect
            waiter = self.waiter = self.loop.create_future()
            try:
                await waiter
            finally:
                self.waiter = None
        message = queue.popleft()
        if self.flow.read_paused and self.reading and len(queue) < self.max_queue:
            self.flow.resume_reading()
        return message

    async def send(self, message: dict[str, Any]) -> None:
        if self.flow.write_paused and self.state != CLOSED:
            await self.flow.drain()
        message_type = message["type"]
        state = self.state
        if state == OPEN:
            if message_type == "websocket.send":
                text = message.get("text")
                if text is not None:
                    payload = text.encode()
                    opcode = TEXT
                else:
                    payload = message.get("bytes")
                    if payload is None:
                        raise RuntimeError("Expected 'text' or 'bytes' in ASGI message 'websocket.send'.")
                    opcode = BINARY
                codec = self.codec
                if codec is not None and len(payload) >= self.compress_min_size:
                    self.transport.write(encode_frame(opcode | COMPRESSED, codec.compress(payload)))
                else:
                    self.transport.write(encode_frame(opcode, payload))
            elif message_type == "websocket.close":
                self.start_close(message.get("code") or 1000, _truncate_reason(message.get("reason") or ""))
            else:
                raise RuntimeError(
                    f"Expected ASGI message 'websocket.send' or 'websocket.close', but got '{message_type}'."
                )
        elif state == CONNECTING:
            if message_type == "websocket.accept":
                self.accept(message)
            elif message_type == "websocket.close":
                self.refuse(403)
            elif message_type == "websocket.http.response.start":
                self.start_response(message)
            else:
                raise RuntimeError(
                    "Expected ASGI message 'websocket.accept', 'websocket.close' or "
                    f"'websocket.http.response.start', but got '{message_type}'."
                )
        elif state == RESPONSE:
            if message_type != "websocket.http.response.body":
                raise RuntimeError(
                    f"Expected ASGI message 'websocket.http.response.body', but got '{message_type}'."
                )
            body = message.get("body", b"")
            if body:
                self.bytes_sent += len(body)
                self.transport.write(body)
            if not message.get("more_body", False):
                self.log_access(self.status)
                self.state = CLOSED
                self.set_disconnect(1006, "")
                self.close_transport()
        elif message_type != "websocket.close":  # closing twice is harmless; anything else is not
            raise ClientDisconnected("The WebSocket connection is closed.")

    # -- the handshake answer

    def accept(self, message: dict[str, Any]) -> None:
        headers: list[tuple[bytes, bytes]] = []
        subprotocol = message.get("subprotocol")
        if subprotocol is not None:
            headers.append((b"sec-websocket-protocol", subprotocol.encode("latin-1")))
        headers += self.response_headers(message.get("headers") or ())
        if self.per_message_deflate:
            negotiated = negotiate(self.scope["headers"])
            if negotiated is not None:
                extension, codec = negotiated
                headers.append((b"sec-websocket-extensions", extension.encode()))
                self.codec = self.frames.codec = codec
                if not codec.can_compress:
                    self.compress_min_size = _NEVER
        self.transport.write(self.accept_response(headers))
        self.state = OPEN
        self.reading = True
        self.log_access(101)
        if self.ping_interval is not None:
            self.ping_timer = self.loop.call_later(self.ping_interval, self.send_ping)
        if self.pending:
            pending, self.pending = self.pending, bytearray()
            self.data_received(bytes(pending))
        if self.reading and len(self.queue) < self.max_queue:
            self.flow.resume_reading()

    def start_response(self, message: dict[str, Any]) -> None:
        """The app's own HTTP answer to the handshake; its body ends when the connection closes."""
        status = check_status(message["status"])
        head = [STATUS_LINES[status]]
        for name, value in self.response_headers(message.get("headers") or ()):
            if name != b"connection":
                head.append(b"%s: %s\r\n" % (name, value))
        head.append(b"connection: close\r\n\r\n")
        self.transport.write(b"".join(head))
        self.status = status
        self.state = RESPONSE

    def response_headers(self, headers: Iterable[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
        """The app's headers, checked, followed by the server's default headers it did not set."""
        state = self.server_state
        return checked_headers(headers, state.default_headers, state.caches)

    def refuse(self, status: int) -> None:
        """Answer the handshake with a plain HTTP error (403, 400, 503) and close."""
        self.state = CLOSED
        self.reading = False
        if not self.transport.is_closing():
            self.transport.write(simple_response(status, _REFUSED[status]))
        self.log_access(status)
        self.set_disconnect(1006, "")
        self.close_transport()

    # -- closing

    def start_close(self, code: int, reason: str) -> None:
        """Send our close frame; the peer answers with its own, else the connection is aborted later."""
        self.state = CLOSING
        self.close_code = code
        self.cancel_timers()
        self.transport.write(self.frame_close(code, reason))
        if self.close_timer is None:
            self.close_timer = self.loop.call_later(CLOSE_TIMEOUT, self.transport.abort)

    def finish(self, code: int, reason: str) -> None:
        self.state = CLOSED
        self.cancel_timers()
        self.set_disconnect(code, reason)
        self.close_transport()

    def set_disconnect(self, code: int, reason: str) -> None:
        if self.disconnect is None:
            self.disconnect = {"type": "websocket.disconnect", "code": code, "reason": reason}
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def close_transport(self) -> None:
        """Close after the buffered bytes are sent; abort if the peer does not read them in time."""
        transport = self.transport
        if not transport.is_closing():
            transport.close()
        if self.close_timer is None:
            self.close_timer = self.loop.call_later(CLOSE_TIMEOUT, transport.abort)

    def shutdown(self) -> None:
        """Graceful shutdown: close 1012 to an open WebSocket (the app then sees the disconnect)."""
        if self.state == OPEN:
            self.start_close(1012, "")
        elif self.state == CONNECTING:
            self.refuse(503)

    def stop_keep_alive(self) -> None:
        """Nothing to stop: a WebSocket is one request, already counted, served to its end."""

    # -- keepalive

    def send_ping(self) -> None:
        self.ping_timer = None
        if self.state != OPEN:
            return
        self.transport.write(self.frame_ping(os.urandom(4)))
        if self.ping_timeout is not None and self.pong_timer is None:
            self.pong_timer = self.loop.call_later(self.ping_timeout, self.on_ping_timeout)
        assert self.ping_interval is not None
        self.ping_timer = self.loop.call_later(self.ping_interval, self.send_ping)

    def on_ping_timeout(self) -> None:
        self.pong_timer = None
        if self.state != OPEN:
            return
        if self.flow.read_paused:
            # The pong may be waiting unread behind messages the app has not taken yet: a slow app
            # is not a dead peer, so wait again.
            assert self.ping_timeout is not None
            self.pong_timer = self.loop.call_later(self.ping_timeout, self.on_ping_timeout)
            return
        self.fail(1011, "keepalive ping timeout")

    def cancel_timers(self) -> None:
        if self.failure_timer is not None:
            self.failure_timer.cancel()
            self.failure_timer = None
        if self.ping_timer is not None:
            self.ping_timer.cancel()
            self.ping_timer = None
        if self.pong_timer is not None:
            self.pong_timer.cancel()
            self.pong_timer = None

    # -- logging

    @property
    def client_text(self) -> str:
        return client_text(self.scope.get("client"))  # after any X-Forwarded-For

    def log_access(self, status: int) -> None:
        """One access line per handshake, in the HTTP format, with ``WebSocket`` as the method; and its
        count with ``--metrics-bind``. The server log gets the lines uvicorn writes there (``"WebSocket
        /path" [accepted]``, ``connection open``, ``connection rejected (403 Forbidden)``, and
        ``connection closed`` at the end), so that what reads uvicorn's logs reads these."""
        self.status = status
        if logger.isEnabledFor(logging.INFO):
            request = f'{self.client_text} - "WebSocket {quoted_full_path(self.scope)}"'
            if status == 101:
                logger.info("%s [accepted]", request)
                logger.info("connection open")
            else:
                logger.info("%s %d", request, status)
                logger.info("connection rejected (%d %s)", status, _phrase(status))
        if self.metrics is not None:
            self.metrics.count(WEBSOCKET + status)
        if self.access_log:
            buffer = self.server_state.access_buffer
            log_access(self.scope, "WebSocket", status, self.bytes_sent, self.started_at, buffer)

    # -- the engine: implemented by the adapters

    @abc.abstractmethod
    def start_engine(self, scope: dict[str, Any]) -> None:
        """Check the handshake and negotiate extensions; raise :class:`HandshakeError` when invalid."""
        ...

    @abc.abstractmethod
    def accept_response(self, headers: list[tuple[bytes, bytes]]) -> bytes:
        """The ``101 Switching Protocols`` response, with the engine's headers and ``headers``."""
        ...

    @abc.abstractmethod
    def feed(self, data: bytes) -> None:
        """Parse one whole control frame (ping, pong or close) into a call of :meth:`on_ping`,
        :meth:`on_pong`, :meth:`on_close` or :meth:`fail`; data frames never reach the engine."""
        ...

    # -- control frames (the same for both engines)

    @staticmethod
    def frame_ping(payload: bytes) -> bytes:
        return encode_frame(PING, payload)

    @staticmethod
    def frame_pong(payload: bytes) -> bytes:
        return encode_frame(PONG, payload)

    @staticmethod
    def frame_close(code: int | None, reason: str) -> bytes:
        """A close frame; ``code`` None means an empty one (the echo of a close without a code)."""
        return encode_frame(CLOSE, b"" if code is None else _CLOSE_CODE.pack(code) + reason.encode())
