"""One HTTP request and its response: the ASGI ``receive`` and ``send`` of a single request.

The parsers (httptools, h11) only fill ``body``/``more_body`` and call :meth:`wake`; everything the
application sees, and every byte of the response, is produced here, once for both parsers.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING, Any

from fulmen.access_log import log_access
from fulmen.http.caches import remember
from fulmen.http.exchange import ASGIExchange
from fulmen.http.wire import (
    CONTINUE_RESPONSE,
    STATUS_LINES,
    check_header_value,
    checked_header_prefix,
    response_content_length,
    simple_response,
)

if TYPE_CHECKING:
    from fulmen.http.connection import HTTPConnection

logger = logging.getLogger("fulmen.error")
access_logger = logging.getLogger("fulmen.access")

_NO_BODY_STATUSES = frozenset({204, 304})
_CORK_LIMIT = 65536
_CONTENT_LENGTH = b"content-length"
_TRANSFER_ENCODING = b"transfer-encoding"
_CONNECTION = b"connection"
#: The response headers the server acts on, by the start of their line, to their name. Looked up once
#: per header name: the answer is cached with the line start (see :attr:`HTTPCaches.header_lines`).
_SPECIAL_PREFIXES = {
    name + b": ": name for name in (_CONTENT_LENGTH, _TRANSFER_ENCODING, _CONNECTION, b"server", b"date")
}
_DISCONNECT: dict[str, Any] = {"type": "http.disconnect"}


class RequestResponseCycle(ASGIExchange):
    __slots__ = (
        "scope",
        "conn",
        "transport",
        "keep_alive",
        "expect_continue",
        "body",
        "more_body",
        "disconnected",
        "response_started",
        "response_complete",
        "chunked",
        "remaining",
        "head_request",
        "http10",
        "pending",
        "pending_size",
        "corked",
        "flow",
        "status",
        "bytes_sent",
        "started_at",
        "body_delivered",
        "body_allowed",
        "waiter",
    )

    def __init__(
        self,
        scope: dict[str, Any],
        conn: HTTPConnection,
        keep_alive: bool,
        expect_continue: bool,
        head_request: bool,
        http10: bool,
    ) -> None:
        self.scope = scope
        self.conn = conn
        self.transport = conn.transport
        self.flow = conn.flow
        self.keep_alive = keep_alive
        self.expect_continue = expect_continue
        self.head_request = head_request
        self.http10 = http10
        self.body = b""
        self.more_body = True
        self.disconnected = False
        self.response_started = False
        self.response_complete = False
        self.chunked = False
        self.body_allowed = True  # False for HEAD, 1xx, 204 and 304 responses: body bytes are dropped
        self.remaining = -1  # bytes of Content-Length still to send; -1 when not framed by length
        # The response is corked: the head and the body chunks sent in one loop turn go out in one write.
        self.pending: list[bytes | bytearray | memoryview] = []
        self.pending_size = 0
        self.corked = False  # in the server's queue of cycles to flush on the next loop turn
        self.task: asyncio.Task[None] | None = None  # set by the connection when it starts the request
        self.status = 0
        self.bytes_sent = 0
        self.started_at = time.monotonic() if conn.access_log else 0.0
        self.body_delivered = False
        self.waiter: asyncio.Future[None] | None = None

    # -- events from the connection

    def wake(self) -> None:
        """Tell a ``receive()`` waiting for body or disconnect that something changed."""
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def disconnect(self) -> None:
        self.disconnected = True
        self.wake()

    # -- the ASGI application

    def app_done(self) -> None:
        # Cheaper than a done-callback, which costs a loop turn per request (and cheaper than
        # asyncio.current_task(), which asks the kernel for the process id).
        if self.task is not None:
            self.conn.tasks.discard(self.task)

    def abort(self) -> None:
        """Close the connection after what the application sent so far: the client sees a cut response."""
        self.conn.flush_deferred()
        self.flush()
        self.transport.close()

    def send_500(self) -> None:
        if self.transport.is_closing():
            return
        self.response_started = self.response_complete = True
        self.status = 500
        self.keep_alive = False
        self.conn.flush_deferred()
        self.transport.write(simple_response(500, b"Internal Server Error"))
        self.conn.on_response_complete(self)

    async def receive(self) -> dict[str, Any]:
        if self.expect_continue:
            self.expect_continue = False
            if not self.response_started and not self.transport.is_closing():
                self.conn.flush_deferred()
                self.transport.write(CONTINUE_RESPONSE)
        if not self.body and not self.disconnected and not self.response_complete:
            if self.more_body:
                self.conn.flow.resume_reading()
                await self._wait()
            elif self.body_delivered:
                await self._wait_for_disconnect()
        if self.disconnected or self.response_complete:
            return _DISCONNECT
        body = self.body
        self.body = b""
        if not self.more_body:
            self.body_delivered = True
        elif self.conn.flow.read_paused:
            self.conn.flow.resume_reading()
        return {"type": "http.request", "body": body, "more_body": self.more_body}

    async def _wait(self) -> None:
        waiter = self.waiter = self.conn.loop.create_future()
        try:
            await waiter
        finally:
            self.waiter = None

    async def _wait_for_disconnect(self) -> None:
        while not self.disconnected and not self.response_complete:
            await self._wait()

    async def send(self, message: dict[str, Any]) -> None:
        message_type = message["type"]
        if self.flow.write_paused and not self.disconnected:
            await self.flow.drain()
        if self.disconnected:
            return

        if not self.response_started:
            if message_type != "http.response.start":
                raise RuntimeError(f"Expected ASGI message 'http.response.start', but got '{message_type}'.")
            self.pending.append(self._build_head(message["status"], message.get("headers", ())))
            self.response_started = True  # after the checks: an invalid start still gets a 500
            self.expect_continue = False
            # Sent with the first body chunk when that follows at once, else on the next loop turn
            # (what cork() does, inline: this is once per response).
            if not self.corked:
                self.corked = True
                queue = self.conn.corked_cycles
                queue.append(self)
                if len(queue) == 1:
                    self.conn.loop.call_soon(flush_corked, queue)
        elif not self.response_complete:
            if message_type != "http.response.body":
                raise RuntimeError(f"Expected ASGI message 'http.response.body', but got '{message_type}'.")
            body = message.get("body", b"")
            if type(body) is not bytes:
                # Checked here: corked, it would fail later in a loop callback, with the head lost.
                if not isinstance(body, (bytearray, memoryview)):
                    raise TypeError(
                        f"Expected bytes as 'http.response.body' body, got {type(body).__name__}."
                    )
                body = bytes(body)
            if message.get("more_body", False):
                self._write_body(body)
            else:
                self._write_last(body)
        else:
            raise RuntimeError(
                f"Unexpected ASGI message '{message_type}' sent, after response already completed."
            )

    # -- the response on the wire

    def _build_head(self, status: Any, headers: Any) -> bytes:
        if type(status) is not int or not 100 <= status <= 599:
            raise RuntimeError(f"Invalid HTTP status code '{status}' in response.")
        self.status = status
        lines = [STATUS_LINES[status]]
        content_length = -1
        app_chunked = False
        seen_defaults: set[bytes] | None = None
        conn = self.conn
        caches = conn.server_state.caches
        header_lines = caches.header_lines
        checked = caches.header_values
        for name, value in headers:
            line = header_lines.get(name)
            if line is None:
                prefix = checked_header_prefix(name, caches)
                line = (prefix, _SPECIAL_PREFIXES.get(prefix))
                remember(header_lines, name, line)
            prefix, special = line
            if special is _CONTENT_LENGTH:
                try:
                    content_length = caches.content_lengths[value]
                except (KeyError, TypeError):  # not seen yet, or a bytearray
                    content_length = response_content_length(value, caches)
                lines += (prefix, value, b"\r\n")
                continue
            try:
                known = value in checked
            except TypeError:  # a bytearray
                known = False
            if not known:
                check_header_value(value, caches)
            if special is not None:
                if special is _TRANSFER_ENCODING:
                    if value.lower() != b"chunked":
                        raise RuntimeError(f"Unsupported Transfer-Encoding {value!r} in response.")
                    app_chunked = True
                elif special is _CONNECTION:
                    if value.lower().find(b"close") >= 0:
                        self.keep_alive = False
                else:  # server, date: the application's replace the defaults
                    seen_defaults = seen_defaults or set()
                    seen_defaults.add(special)
            lines += (prefix, value, b"\r\n")
        if seen_defaults is None:
            defaults = conn.default_block
            if conn.server_state.default_headers is not conn.default_source:
                defaults = conn.default_header_block()
        else:
            defaults = b"".join(
                b"%s: %s\r\n" % (name, value)
                for name, value in conn.server_state.default_headers
                if name not in seen_defaults
            )

        end = b"\r\n"
        if conn.closing:
            self.keep_alive = False
        if status < 200 or status in _NO_BODY_STATUSES:
            self.remaining = 0
            self.body_allowed = False
            if app_chunked:
                raise RuntimeError(f"A {status} response cannot have a body.")
        elif self.head_request:
            self.remaining = 0
            self.body_allowed = False
        elif content_length >= 0 and not app_chunked:
            self.remaining = content_length
        elif self.http10:
            self.keep_alive = False  # the end of the body is the end of the connection
        else:
            self.chunked = True
            if not app_chunked:
                end = b"transfer-encoding: chunked\r\n\r\n"
        if not self.keep_alive:
            end = b"connection: close\r\n" + end
        elif self.http10:
            end = b"connection: keep-alive\r\n" + end
        lines += (defaults, end)
        return b"".join(lines)

    def cork(self) -> None:
        """Hold what is pending until the next loop turn (one callback per turn for the whole server)."""
        self.corked = True
        queue = self.conn.corked_cycles
        queue.append(self)
        if len(queue) == 1:
            self.conn.loop.call_soon(flush_corked, queue)

    def flush(self) -> None:
        """Write everything corked, in one call (a response the connection held is then no longer held)."""
        pending = self.pending
        if pending:
            self.pending = []
            self.pending_size = 0
            conn = self.conn
            if conn.deferred is self:
                conn.deferred = None
            if not self.disconnected:
                self.transport.write(pending[0] if len(pending) == 1 else b"".join(pending))

    def _write_body(self, body: bytes) -> None:
        """A chunk with more to follow: corked, and written once enough has piled up or on the next turn."""
        size = len(body)
        self.bytes_sent += size
        if not size or not self.body_allowed:
            return
        if self.chunked:
            self.pending += (b"%x\r\n" % size, body, b"\r\n")
        else:
            if self.remaining >= 0:
                if size > self.remaining:
                    raise RuntimeError("Response content longer than Content-Length")
                self.remaining -= size
            self.pending.append(body)
        self.pending_size += size
        if self.pending_size >= _CORK_LIMIT:
            self.flush()  # then send() waits for the transport to drain, if it must
        elif not self.corked:
            self.cork()

    def _write_last(self, body: bytes) -> None:
        """The last chunk (usually the only one), then the response is complete.

        It goes out with whatever is corked in one write: at once when nothing is corked or it is the
        loop turn's first response (a lone connection waits for nothing), else with the turn's other
        responses (``flush_corked``). Written together, the responses of a turn wake a client waiting on
        several connections once, not once each: under load that saves about 1 µs of the 6-8 µs the
        kernel spends per request. The connection writes a held response before anything else it
        writes or closes (:meth:`HTTPConnection.flush_deferred`).
        """
        size = len(body)
        self.bytes_sent += size
        pending = self.pending
        if self.chunked:
            if size:
                pending += (b"%x\r\n" % size, body, b"\r\n0\r\n\r\n")
            else:
                pending.append(b"0\r\n\r\n")
        elif self.body_allowed:
            if self.remaining >= 0:
                if size > self.remaining:
                    raise RuntimeError("Response content longer than Content-Length")
                self.remaining -= size
            if size:
                pending.append(body)
        conn = self.conn
        if pending:
            if self.corked and conn.deferred is None and len(conn.corked_cycles) > 1:
                conn.deferred = self
            else:
                if conn.deferred is not None:
                    conn.flush_deferred()
                self.pending = []
                self.pending_size = 0
                self.transport.write(pending[0] if len(pending) == 1 else b"".join(pending))
        if self.remaining > 0:
            raise RuntimeError("Response content shorter than Content-Length")
        self.response_complete = True
        if self.waiter is not None:
            self.wake()
        if conn.access_log:
            buffer = conn.server_state.access_buffer
            scope = self.scope
            log_access(scope, scope["method"], self.status, self.bytes_sent, self.started_at, buffer)
        conn.on_response_complete(self)


def flush_corked(queue: list[RequestResponseCycle]) -> None:
    """Write the responses corked during the last loop turn (see :meth:`RequestResponseCycle.cork`)."""
    cycles = queue.copy()
    queue.clear()
    for cycle in cycles:
        cycle.corked = False
        if cycle.pending:
            cycle.flush()
