"""The HTTP/1.1 connection: everything about a connection that does not depend on the parser.

A parser adapter (:mod:`fulmen.http.httptools_impl`, :mod:`fulmen.http.h11_impl`) turns bytes into
three calls: :meth:`HTTPConnection.on_request` when a request head is complete, :meth:`on_body` and
:meth:`on_message_complete`; or :meth:`reject` when the bytes are not HTTP. This class owns the
rest: the ASGI scope, the request checks (:mod:`fulmen.http.request_head`), pipelining, keep-alive
and header timeouts, flow control, graceful shutdown, and the hand-over to HTTP/2 or WebSocket.
Each request is a :class:`~fulmen.http.cycle.RequestResponseCycle`; every byte the connection
writes goes through its :class:`~fulmen.protocols.output.ConnectionOutput`.
"""

from __future__ import annotations

import abc
import asyncio
import logging
from bisect import bisect_left
from collections import deque
from time import monotonic
from typing import Any

from fulmen.caches import remember
from fulmen.forwarding import apply_forwarding
from fulmen.http.cycle import RequestResponseCycle
from fulmen.http.request_head import HTTPRequestError, check_request_head
from fulmen.http.target import parse_target
from fulmen.http.wire import simple_response
from fulmen.metrics.recorder import DURATION_BOUNDS, HTTP1
from fulmen.protocols.flow_control import HIGH_WATER_LIMIT
from fulmen.protocols.output import ConnectionOutput
from fulmen.protocols.response_rules import ERROR_BODIES, RESPONSE_EXTENSIONS
from fulmen.protocols.server_protocol import ServerProtocol

logger = logging.getLogger("fulmen.error")

_TRACE = 5
#: The first bytes of an HTTP/2 connection with prior knowledge (RFC 9113 section 3.4).
HTTP2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
#: Seconds an idle keep-alive connection stays open at shutdown, for a request already on its way.
SHUTDOWN_GRACE = 1.0


class HTTPConnection(ServerProtocol):
    """Shared by both HTTP/1.1 parsers. Subclasses implement :meth:`feed` and may refine hooks."""

    response_extensions = RESPONSE_EXTENSIONS

    __slots__ = (
        "active",
        "closing",
        "cycle",
        "default_block",
        "default_source",
        "head_started",
        "h2c_settings",
        "header_timer",
        "max_head_size",
        "max_headers",
        "output",
        "parser_paused",
        "pending_error",
        "pipeline",
        "prepares_requests",
        "ready",
        "timeout_request_header",
        "upgrade_scope",
        "ws_protocol_class",
    )

    def setup(self) -> None:
        super().setup()
        self.ws_protocol_class: Any = self.config.ws_protocol_class
        self.max_head_size: int = self.config.h11_max_incomplete_event_size
        self.max_headers: int = self.config.limit_request_headers
        self.timeout_request_header: float = self.config.timeout_request_header
        # Only h11 needs a call between requests (a fresh state machine); llhttp goes on by itself.
        self.prepares_requests = type(self).prepare_next_request is not HTTPConnection.prepare_next_request

        self.output: ConnectionOutput = None  # type: ignore[assignment]  # made with the transport
        self.cycle: RequestResponseCycle | None = None  # the request whose body is being read
        self.active: RequestResponseCycle | None = None  # the request whose response is being sent
        self.pipeline: deque[RequestResponseCycle] = deque()
        self.closing = False  # no new request is served: shutdown, or an error after the current one
        self.pending_error: HTTPRequestError | None = None
        self.header_timer: asyncio.TimerHandle | None = None
        self.head_started = False  # some bytes of a request head have arrived, not yet all
        self.upgrade_scope: dict[str, Any] | None = None  # a WebSocket handshake waiting for hand-over
        self.h2c_settings: bytes | None = None  # with upgrade_scope: an Upgrade: h2c request's settings
        self.parser_paused = False  # the parser holds a complete request until the current one ends
        self.ready: RequestResponseCycle | None = None  # parsed, to start when the parser returns
        self.default_source: list[tuple[bytes, bytes]] | None = None
        self.default_block = b""
        if self.config.http2:
            # Only with --http2: the first bytes go through detect_http2 once; no cost per request.
            self.preface = b""
            self.data_received = self.detect_http2  # type: ignore[method-assign]

    # -- asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.attach(transport)
        self.read_addresses()
        self.output = ConnectionOutput(self.transport, self.loop)
        if logger.isEnabledFor(_TRACE):
            logger.log(_TRACE, "%s - HTTP connection made", self.client_text)
        self.start_idle()

    def connection_lost(self, exc: Exception | None) -> None:
        if logger.isEnabledFor(_TRACE):
            logger.log(_TRACE, "%s - HTTP connection lost", self.client_text)
        self.cancel_header_timer()
        self.output.connection_lost()
        for cycle in (self.active, self.cycle, *self.pipeline):
            if cycle is not None:
                cycle.disconnect()
        self.pipeline.clear()
        super().connection_lost(exc)

    def eof_received(self) -> None:
        """The client closed its side: like uvicorn, treat it as gone (the app sees a disconnect)."""

    def data_received(self, data: bytes) -> None:
        if self.metrics is not None:
            self.metrics.received_bytes += len(data)
        try:
            self.feed(data)
        except HTTPRequestError as exc:
            self.reject(exc)  # a request before the bad one may still be ready to start
        if self.upgrade_scope is not None:
            self.complete_upgrade(self.take_trailing_data())
            return
        if self.ready is not None:
            cycle, self.ready = self.ready, None
            self.start_exchange(cycle)
        if self.head_started and self.header_timer is None and not self.transport.is_closing():
            self.header_timer = self.loop.call_later(self.timeout_request_header, self.on_header_timeout)

    def detect_http2(self, data: bytes) -> None:
        """The first bytes of a connection with --http2: HTTP/2 when TLS negotiated "h2" or they are the
        HTTP/2 preface (prior knowledge); otherwise this connection serves HTTP/1.1 from here on."""
        data = self.preface + data
        ssl_object = self.transport.get_extra_info("ssl_object")
        alpn = ssl_object.selected_alpn_protocol() if ssl_object is not None else None
        if alpn == "h2" or (alpn is None and data.startswith(HTTP2_PREFACE)):
            self.hand_over_http2(data)
            return
        if alpn is None and len(data) < len(HTTP2_PREFACE) and HTTP2_PREFACE.startswith(data):
            self.preface = data  # "P" could be either; wait for more
            return
        del self.data_received  # back to the class's method
        self.transport.set_protocol(self)  # for transports that keep the bound method (uvloop)
        self.data_received(data)

    def hand_over_http2(self, data: bytes) -> None:
        """Give the connection to the HTTP/2 protocol, as :meth:`complete_upgrade` does for WebSockets."""
        from fulmen.http.h2_impl import H2Protocol

        self.detach()
        self.cancel_header_timer()
        protocol = H2Protocol(self.config, self.server_state, self.app_state, _loop=self.loop)
        self.transport.set_protocol(protocol)
        protocol.connection_made(self.transport)
        protocol.data_received(data)

    # -- implemented by the parser adapters

    @abc.abstractmethod
    def feed(self, data: bytes) -> None:
        """Parse ``data``, calling :meth:`on_request`, :meth:`on_body` and :meth:`on_message_complete`."""

    def prepare_next_request(self) -> None:
        """Called when a response is complete and the connection stays open."""

    # -- events from the parser adapters

    def on_request(
        self,
        method: str,
        target: bytes,
        http_version: str,
        headers: list[tuple[bytes, bytes]],
        head_size: int,
    ) -> None:
        """A complete request head: check it, build the scope, and start (or queue) the request."""
        self.head_started = False
        if self.header_timer is not None:
            self.header_timer.cancel()
            self.header_timer = None
        version, keep_alive, expect_continue, upgrade, forwarding = check_request_head(
            http_version, headers, head_size, self.max_head_size, self.max_headers, self.trusted_peer
        )
        targets = self.server_state.caches.targets
        parsed = targets.get(target)
        if parsed is None:
            parsed = parse_target(target)
            remember(targets, target, parsed)
        path, raw_path, query = parsed
        cycle = RequestResponseCycle(self, version, method, path, raw_path, query, headers, expect_continue)
        if forwarding:
            assert self.proxy_trust is not None
            apply_forwarding(cycle.scope, self.proxy_trust, forwarding)
        if upgrade is not None and self.handle_upgrade(upgrade, cycle.scope):
            return  # the connection is handed over with the scope: no cycle
        cycle.keep_alive = keep_alive and not self.closing
        cycle.http10 = version == "1.0"
        self.cycle = cycle
        if self.active is None:
            # Started once the parser returns, so the application never runs inside a parser callback.
            self.active = self.ready = cycle
        else:
            self.pipeline.append(cycle)
            self.flow.pause_reading()

    def on_body(self, data: bytes) -> None:
        cycle = self.cycle
        if cycle is None or cycle.response_complete or cycle.disconnected:
            return
        cycle.body += data
        if len(cycle.body) > HIGH_WATER_LIMIT:
            self.flow.pause_reading()
        cycle.wake()

    def on_message_complete(self) -> None:
        cycle = self.cycle
        if cycle is None:
            return
        cycle.more_body = False
        if cycle.waiter is not None:
            cycle.wake()

    # -- running requests

    def on_response_complete(self, cycle: RequestResponseCycle) -> None:
        """The current response is written: close, or go on with the next request."""
        if cycle is not self.active:
            return
        self.active = None
        self.server_state.completed_requests += 1
        metrics = self.metrics
        if metrics is not None:  # WorkerMetrics.record(HTTP1 + status, ...), inline: once per request
            elapsed = monotonic() - cycle.started_at
            metrics.statuses[cycle.status] += 1  # HTTP1 is 0
            metrics.duration_buckets[bisect_left(DURATION_BOUNDS, elapsed)] += 1
            metrics.duration_sum += elapsed
            metrics.sent_bytes += cycle.bytes_sent
        if self.transport.is_closing():
            return
        if not cycle.keep_alive or self.closing or cycle.more_body:
            # An unread request body would be parsed as the next request: close instead.
            self.output.close()
            return
        if self.pending_error is not None and not self.pipeline:
            self.reject(self.pending_error)  # after every request that came before the bad one
            return
        if self.prepares_requests:
            try:
                self.prepare_next_request()
            except HTTPRequestError as exc:
                self.reject(exc)
                return
            if self.upgrade_scope is not None:
                self.complete_upgrade(self.take_trailing_data())
                return
            if self.closing:
                self.output.close()
                return
            if self.ready is not None:
                cycle, self.ready = self.ready, None
                self.start_exchange(cycle)
        if self.pipeline and self.active is None:
            self.active = self.pipeline.popleft()
            self.start_exchange(self.active)
        # Reading resumes once nothing parsed waits (and nothing after a bad request is read).
        flow = self.flow
        if flow.read_paused and not self.pipeline and not self.parser_paused and self.pending_error is None:
            flow.resume_reading()
        if self.active is None and not self.head_started:
            # Idle (start_idle(), inline: this is once per request): the one lazy timer closes the
            # connection once this deadline has passed.
            self.idle_deadline = self.loop.time() + self.timeout_keep_alive
            if self.idle_timer is None:
                self.idle_timer = self.loop.call_later(self.timeout_keep_alive, self.on_idle_timeout)

    def handle_upgrade(self, upgrade: bytes, scope: dict[str, Any]) -> bool:
        """Note a WebSocket or h2c upgrade for hand-over once the parser has stopped; False serves plain
        HTTP."""
        if upgrade.find(b"h2c") >= 0 and self.config.http2 and self.active is None:
            from fulmen.http.h2_impl import h2c_settings

            self.h2c_settings = h2c_settings(scope)
            if self.h2c_settings is not None:
                self.upgrade_scope = scope
                return True
        if b"websocket" not in upgrade or self.ws_protocol_class is None or scope["method"] != "GET":
            if b"websocket" in upgrade and self.ws_protocol_class is None:
                logger.warning("Unsupported upgrade request.")
                logger.warning(
                    "No supported WebSocket library detected. Please use \"pip install 'fulmen[standard]'\", "
                    'or install "websockets" or "wsproto" manually.'
                )
            return False
        if self.active is not None:
            raise HTTPRequestError(400, "WebSocket upgrade pipelined behind another request")
        scope["type"] = "websocket"
        del scope["method"]
        scope["scheme"] = "wss" if scope["scheme"] == "https" else "ws"  # after any X-Forwarded-Proto
        self.upgrade_scope = scope
        return True

    def complete_upgrade(self, trailing: bytes) -> None:
        """Give the connection to the WebSocket protocol, with the parsed handshake and any bytes after it."""
        scope = self.upgrade_scope
        assert scope is not None
        self.upgrade_scope = None
        self.output.flush()  # the responses before the handshake's, in order
        self.detach()
        self.cancel_header_timer()
        if self.h2c_settings is not None:
            from fulmen.http.h2_impl import H2Protocol

            h2 = H2Protocol(self.config, self.server_state, self.app_state, _loop=self.loop)
            self.transport.set_protocol(h2)
            h2.accept_upgrade(self.transport, scope, self.h2c_settings, trailing)
            return
        protocol: Any = self.ws_protocol_class(
            config=self.config, server_state=self.server_state, app_state=self.app_state, _loop=self.loop
        )
        self.transport.set_protocol(protocol)
        protocol.accept_upgrade(self.transport, scope, trailing)

    def take_trailing_data(self) -> bytes:
        """Bytes received after the upgrade request's head (the parser adapters override this)."""
        return b""

    # -- errors, timeouts, shutdown

    def reject(self, error: HTTPRequestError) -> None:
        """Answer a bad request with ``error.status`` and close; after the response in flight, if any."""
        if self.transport.is_closing():
            return
        self.cancel_idle()
        self.cancel_header_timer()
        self.flow.pause_reading()
        active = self.active
        if active is not None and not active.response_complete:
            if active is self.cycle and active.more_body:
                # The body being read is malformed: the application sees a disconnect.
                active.disconnect()
                if active.response_started:
                    self.output.close()  # what the application sent, then the client sees it cut
                    return
            else:
                # A later request is bad: answered after the requests before it (the ones pipelined
                # behind the current one too), unless one of them closes the connection first.
                if active.keep_alive and not self.closing:
                    self.pending_error = error
                else:
                    self.closing = True
                return
        status = error.status
        if status == 400:
            logger.warning("Invalid HTTP request received.")
        else:
            logger.warning("%s: %s", ERROR_BODIES.get(status, b"").decode(), error)
        logger.debug("Rejected request from %s: %s", self.client_text, error)
        self.refuse(status, ERROR_BODIES.get(status, str(error).encode()))

    def refuse(self, status: int, body: bytes) -> None:
        """The server's own answer to a request it does not serve (a bad or incomplete one), then the
        end of the connection; counted by ``--metrics-bind`` like the application's answers."""
        self.output.write(simple_response(status, body))
        self.output.close()
        if self.metrics is not None:
            self.metrics.count(HTTP1 + status)

    def cancel_header_timer(self) -> None:
        if self.header_timer is not None:
            self.header_timer.cancel()
            self.header_timer = None

    def busy(self) -> bool:
        return self.active is not None or self.head_started

    def close_idle(self) -> None:
        self.output.close()

    def on_header_timeout(self) -> None:
        self.header_timer = None
        if self.head_started and self.active is None and not self.transport.is_closing():
            logger.debug("%s - request head not complete in time", self.client_text)
            self.refuse(408, ERROR_BODIES[408])

    def shutdown(self) -> None:
        """Graceful shutdown: close after the response in flight; an idle connection after a short
        grace, because a keep-alive client may already have sent its next request (that one is
        answered, with ``Connection: close``)."""
        self.stop_keep_alive()

    def stop_keep_alive(self) -> None:
        """Serve no request after the ones in flight (or on their way), then close."""
        self.closing = True
        active = self.active
        if active is not None and not active.response_complete:
            active.keep_alive = False
        elif not self.head_started and not self.transport.is_closing():
            self.start_idle(SHUTDOWN_GRACE)

    def default_header_block(self) -> bytes:
        """The server's default headers (date, server, --header) as bytes, rebuilt when they change."""
        source = self.server_state.default_headers
        if source is not self.default_source:
            self.default_source = source
            self.default_block = b"".join(b"%s: %s\r\n" % (name, value) for name, value in source)
        return self.default_block
