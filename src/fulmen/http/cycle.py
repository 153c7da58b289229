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
from fulmen.http.exchange import ASGIExchange
from fulmen.http.wire import (
    CONTINUE_RESPONSE,
    RESPONSE_HEADER_NAMES,
    STATUS_LINES,
    checked_header_name,
    response_content_length,
    simple_response,
    status_line,
)

if TYPE_CHECKING:
    from fulmen.http.connection import HTTPConnection

logger = logging.getLogger("fulmen.error")
access_logger = logging.getLogger("fulmen.access")

_NO_BODY_STATUSES = frozenset({204, 304})
_CORK_LIMIT = 65536
_SPECIAL_NAMES = frozenset({b"content-length", b"transfer-encoding", b"connection", b"server", b"date"})
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
        "flush_scheduled",
        "task",
        "status",
        "bytes_sent",
        "started_at",
        "body_delivered",
        "_waiter",
    )

    def __init__(
        self, scope: dict[str, Any], conn: HTTPConnection, keep_alive: bool, expect_continue: bool
    ) -> None:
        self.scope = scope
        self.conn = conn
        self.transport = conn.transport
        self.keep_alive = keep_alive
        self.expect_continue = expect_continue
        self.body = b""
        self.more_body = True
        self.disconnected = False
        self.response_started = False
        self.response_complete = False
        self.chunked = False
        self.remaining = -1  # bytes of Content-Length still to send; -1 when not framed by length
        self.head_request = scope["method"] == "HEAD"
        self.http10 = scope["http_version"] == "1.0"
        # The response is corked: the head and the body chunks sent in one loop turn go out in one write.
        self.pending: list[bytes | bytearray | memoryview] = []
        self.pending_size = 0
        self.flush_scheduled = False
        self.task: asyncio.Task[None] | None = None  # set by the connection when it starts the request
        self.status = 0
        self.bytes_sent = 0
        self.started_at = time.monotonic() if conn.access_log else 0.0
        self.body_delivered = False
        self._waiter: asyncio.Future[None] | None = None

    # -- events from the connection

    def wake(self) -> None:
        """Tell a ``receive()`` waiting for body or disconnect that something changed."""
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def disconnect(self) -> None:
        self.disconnected = True
        self.wake()

    # -- the ASGI application

    async def run_asgi(self, app: Any) -> None:
        try:
            await self.call_app(app)
        finally:
            # Cheaper than a done-callback, which costs a loop turn per request (and cheaper than
            # asyncio.current_task(), which asks the kernel for the process id).
            if self.task is not None:
                self.conn.tasks.discard(self.task)

    def abort(self) -> None:
        """Close the connection after what the application sent so far: the client sees a cut response."""
        self.flush()
        self.transport.close()

    def send_500(self) -> None:
        if self.transport.is_closing():
            return
        self.response_started = self.response_complete = True
        self.status = 500
        self.keep_alive = False
        self.transport.write(simple_response(500, b"Internal Server Error"))
        self.conn.on_response_complete(self)

    async def receive(self) -> dict[str, Any]:
        if self.expect_continue:
            self.expect_continue = False
            if not self.response_started and not self.transport.is_closing():
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
        waiter = self._waiter = self.conn.loop.create_future()
        try:
            await waiter
        finally:
            self._waiter = None

    async def _wait_for_disconnect(self) -> None:
        while not self.disconnected and not self.response_complete:
            await self._wait()

    async def send(self, message: dict[str, Any]) -> None:
        message_type = message["type"]
        if self.conn.flow.write_paused and not self.disconnected:
            await self.conn.flow.drain()
        if self.disconnected:
            return

        if not self.response_started:
            if message_type != "http.response.start":
                raise RuntimeError(f"Expected ASGI message 'http.response.start', but got '{message_type}'.")
            self.pending.append(self._build_head(message["status"], message.get("headers", ())))
            self.response_started = True  # after the checks: an invalid start still gets a 500
            self.expect_continue = False
            # Sent with the first body chunk when that follows at once, else on the next loop turn.
            self.schedule_flush()
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
            more_body = message.get("more_body", False)
            self._write_body(body, more_body)
            if not more_body:
                self._finish()
        else:
            raise RuntimeError(
                f"Unexpected ASGI message '{message_type}' sent, after response already completed."
            )

    # -- the response on the wire

    def _build_head(self, status: Any, headers: Any) -> bytes:
        if type(status) is not int or not 100 <= status <= 599:
            raise RuntimeError(f"Invalid HTTP status code '{status}' in response.")
        self.status = status
        parts = [STATUS_LINES.get(status) or status_line(status)]
        append = parts.append
        content_length = -1
        app_chunked = False
        seen_defaults: set[bytes] | None = None
        names = RESPONSE_HEADER_NAMES
        for name, value in headers:
            lname = names.get(name)
            if lname is None:
                lname = checked_header_name(name)
            if b"\r" in value or b"\n" in value or b"\0" in value:
                raise RuntimeError(f"Invalid HTTP header value {value!r} in response.")
            if lname in _SPECIAL_NAMES:
                if lname == b"content-length":
                    content_length = response_content_length(value)
                elif lname == b"transfer-encoding":
                    if value.lower() != b"chunked":
                        raise RuntimeError(f"Unsupported Transfer-Encoding {value!r} in response.")
                    app_chunked = True
                elif lname == b"connection":
                    if b"close" in value.lower():
                        self.keep_alive = False
                else:  # server, date: the application's replace the defaults
                    seen_defaults = seen_defaults or set()
                    seen_defaults.add(lname)
            append(lname)
            append(b": ")
            append(value)
            append(b"\r\n")
        if seen_defaults is None:
            append(self.conn.default_header_block())
        else:
            for name, value in self.conn.server_state.default_headers:
                if name not in seen_defaults:
                    append(b"%s: %s\r\n" % (name, value))

        if self.conn.closing:
            self.keep_alive = False
        if status < 200 or status in _NO_BODY_STATUSES:
            self.remaining = 0
            if app_chunked:
                raise RuntimeError(f"A {status} response cannot have a body.")
        elif self.head_request:
            self.remaining = 0
        elif content_length >= 0 and not app_chunked:
            self.remaining = content_length
        elif self.http10:
            self.keep_alive = False  # the end of the body is the end of the connection
        else:
            self.chunked = True
            if not app_chunked:
                parts.append(b"transfer-encoding: chunked\r\n")
        if not self.keep_alive:
            parts.append(b"connection: close\r\n")
        elif self.http10:
            parts.append(b"connection: keep-alive\r\n")
        parts.append(b"\r\n")
        return b"".join(parts)

    def schedule_flush(self) -> None:
        if not self.flush_scheduled:
            self.flush_scheduled = True
            self.conn.loop.call_soon(self._scheduled_flush)

    def _scheduled_flush(self) -> None:
        self.flush_scheduled = False
        self.flush()

    def flush(self) -> None:
        """Write everything corked, in one call."""
        pending = self.pending
        if pending:
            self.pending = []
            self.pending_size = 0
            if not self.disconnected:
                self.transport.write(pending[0] if len(pending) == 1 else b"".join(pending))

    def _write_body(self, body: bytes | bytearray | memoryview, more_body: bool) -> None:
        size = len(body)
        self.bytes_sent += size
        pending = self.pending
        if self.head_request or self.status < 200 or self.status in _NO_BODY_STATUSES:
            size = 0
        elif self.chunked:
            if body:
                pending.append(b"%x\r\n" % size)
                pending.append(body)
                pending.append(b"\r\n")
            if not more_body:
                pending.append(b"0\r\n\r\n")
        else:
            if self.remaining >= 0:
                if size > self.remaining:
                    raise RuntimeError("Response content longer than Content-Length")
                self.remaining -= size
            if body:
                pending.append(body)
        if not more_body:
            self.flush()
            return
        self.pending_size += size
        if self.pending_size >= _CORK_LIMIT:
            self.flush()  # then send() waits for the transport to drain, if it must
        elif pending:
            self.schedule_flush()

    def _finish(self) -> None:
        if self.remaining > 0 and not self.head_request:
            raise RuntimeError("Response content shorter than Content-Length")
        self.response_complete = True
        self.wake()
        if self.conn.access_log:
            log_access(self.scope, self.scope["method"], self.status, self.bytes_sent, self.started_at)
        self.conn.on_response_complete(self)
