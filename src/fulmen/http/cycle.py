"""One HTTP/1.1 request and its response: the ASGI ``receive`` and ``send`` of a single request.

The parsers (httptools, h11) only fill ``body``/``more_body`` and call :meth:`wake`; everything the
application sees, and every byte of the response, is produced here, once for both parsers. The
order of messages and the checks are the shared :mod:`~fulmen.protocols.response_rules`; this module
frames what they allow as HTTP/1.1 bytes and hands them to the connection's
:class:`~fulmen.protocols.output.ConnectionOutput`, the only place that writes them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

from fulmen.access_log import log_access
from fulmen.caches import HTTPCaches, remember
from fulmen.http.wire import CONTINUE_RESPONSE, STATUS_LINES, simple_response
from fulmen.protocols.output import ConnectionOutput
from fulmen.protocols.response_rules import (
    DISCONNECT,
    ERROR_BODIES,
    NO_BODY_STATUSES,
    RESPONSE_EXTENSIONS,
    ASGIExchange,
    ExchangeOwner,
    FileBody,
    accepts_trailers,
    body_too_long,
    body_too_short,
    check_header_value,
    check_status,
    content_length,
    header_name,
)

if TYPE_CHECKING:
    from fulmen.server import ServerState

_CONTENT_LENGTH = b"content-length"
#: The end of a chunked body without trailer fields.
_LAST_CHUNK = b"0\r\n\r\n"
_TRANSFER_ENCODING = b"transfer-encoding"
_CONNECTION = b"connection"
#: The response headers the server acts on, by the start of their line, to their name. Looked up once
#: per header name: the answer is remembered with the line start (:func:`header_line`).
_SPECIAL_PREFIXES = {
    name + b": ": name for name in (_CONTENT_LENGTH, _TRANSFER_ENCODING, _CONNECTION, b"server", b"date")
}


def header_line(name: bytes, caches: HTTPCaches) -> tuple[bytes, bytes | None]:
    """The start of a response header's line (``content-type: ``), its name checked, and the name of a
    header the server acts on (None for the others); remembered in ``caches.header_lines``, so that a
    response's header costs one lookup, in a dict this server filled."""
    prefix = header_name(name, caches) + b": "
    line = (prefix, _SPECIAL_PREFIXES.get(prefix))
    remember(caches.header_lines, name, line)
    return line


class CycleOwner(ExchangeOwner, Protocol):
    """What a cycle asks of the connection it belongs to (:class:`fulmen.http.connection.HTTPConnection`)."""

    output: ConnectionOutput
    server_state: ServerState
    closing: bool  # no request after this one: every response says ``Connection: close``
    default_source: list[tuple[bytes, bytes]] | None  # the server's default headers ...
    default_block: bytes  # ... as lines, and the method that rebuilds them when they change

    def default_header_block(self) -> bytes: ...

    def on_response_complete(self, cycle: RequestResponseCycle) -> None: ...


class RequestResponseCycle(ASGIExchange):
    """The exchange of one HTTP/1.1 request, framed as HTTP/1.1 bytes."""

    __slots__ = ("body_allowed", "chunked", "http10", "keep_alive")

    #: Every response extension: trailers on chunked bodies, 103 for HTTP/1.1 clients, files through
    #: sendfile where the connection allows it.
    extensions = frozenset(RESPONSE_EXTENSIONS)
    conn: CycleOwner
    # Made with the shared ASGIExchange.__init__ (one call less per request than an __init__ of its
    # own); the connection sets what it knows of the request, the response head the rest:
    keep_alive: bool  # the connection may serve another request after this one
    http10: bool  # an HTTP/1.0 request
    chunked: bool  # the response body is sent in chunks
    body_allowed: bool  # False for HEAD, 1xx, 204 and 304 responses: body bytes are dropped

    # -- events from the connection

    def disconnect(self) -> None:
        self.disconnected = True
        self.wake()

    # -- the ASGI application

    def abort(self) -> None:
        """Close the connection after what the application sent so far: the client sees a cut response."""
        self.conn.output.close()

    def send_500(self) -> None:
        output = self.conn.output
        if output.is_closing():
            return
        self.response_started = self.response_complete = True
        self.status = 500
        self.keep_alive = False
        output.write(simple_response(500, ERROR_BODIES[500]))
        self.conn.on_response_complete(self)

    async def receive(self) -> dict[str, Any]:
        if self.expect_continue:
            self.expect_continue = False
            if not self.response_started and not self.conn.output.is_closing():
                self.conn.output.write(CONTINUE_RESPONSE)
        if not self.body and not self.disconnected and not self.response_complete:
            if self.more_body:
                self.flow.resume_reading()
                await self.wait()
            elif self.body_delivered:
                while not self.disconnected and not self.response_complete:
                    await self.wait()
        if self.disconnected or self.response_complete:
            return DISCONNECT
        body = self.body
        self.body = b""
        if not self.more_body:
            self.body_delivered = True
        elif self.flow.read_paused:
            self.flow.resume_reading()
        return {"type": "http.request", "body": body, "more_body": self.more_body}

    def wait_writable(self) -> Any:
        return self.flow.drain()

    # -- the response on the wire

    def start_response(self, status: Any, headers: Any) -> None:
        """The response head, checked and framed, corked: it goes out with the first body chunk when
        that follows in the same loop turn, else at the turn's end."""
        if type(status) is not int or status not in STATUS_LINES:
            check_status(status)  # raises
        self.status = status
        lines = [STATUS_LINES[status]]
        length = -1
        app_chunked = False
        seen_defaults: set[bytes] | None = None
        conn = self.conn
        caches = conn.server_state.caches
        lines_by_name = caches.header_lines
        checked = caches.header_values
        for name, value in headers:
            line = lines_by_name.get(name)
            if line is None:
                line = header_line(name, caches)
            prefix, special = line
            if special is _CONTENT_LENGTH:
                try:
                    length = caches.content_lengths[value]
                except (KeyError, TypeError):  # not seen yet, or a bytearray
                    length = content_length(value, caches)
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
        # The body rules (response_rules.body_allowed), inline: this is once per response.
        self.chunked = False
        self.body_allowed = True
        if status < 200 or status in NO_BODY_STATUSES:
            self.remaining = 0
            self.body_allowed = False
            if app_chunked:
                raise RuntimeError(f"A {status} response cannot have a body.")
        elif self.head_request:
            self.remaining = 0
            self.body_allowed = False
        elif length >= 0 and not app_chunked:
            self.remaining = length
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
        output = self.conn.output
        output.pending.append(b"".join(lines))
        if not output.corked:
            output.cork()

    def send_body(self, body: bytes) -> None:
        """A chunk with more to follow: corked, and written once enough has piled up or at the turn's end."""
        size = len(body)
        self.bytes_sent += size
        if not size or not self.body_allowed:
            return
        if self.chunked:
            self.conn.output.add_body((b"%x\r\n" % size, body, b"\r\n"), size)
            return
        if self.remaining >= 0:
            if size > self.remaining:
                raise body_too_long()
            self.remaining -= size
        self.conn.output.add_body((body,), size)

    def send_last(self, body: bytes, last_chunk: bytes = _LAST_CHUNK) -> None:
        """The last chunk (usually the only one), then the response is complete: the output writes it
        with the corked head, at once or with the loop turn's other responses (see
        :mod:`fulmen.protocols.output`). ``last_chunk``: the end of a chunked body (with trailer
        fields, :meth:`send_trailers`)."""
        size = len(body)
        self.bytes_sent += size
        output = self.conn.output
        pending = output.pending
        if self.chunked:
            if size:
                pending += (b"%x\r\n" % size, body, b"\r\n" + last_chunk)
            else:
                pending.append(last_chunk)
        elif self.body_allowed:
            if self.remaining >= 0:
                if size > self.remaining:
                    raise body_too_long()
                self.remaining -= size
            if size:
                pending.append(body)
        if not output.batched:  # the first response of the loop turn: written at once
            output.flush()
        if self.remaining > 0:
            raise body_too_short()
        self.response_complete = True
        if self.waiter is not None:
            self.wake()
        conn = self.conn
        if conn.access_log:
            buffer = conn.server_state.access_buffer
            scope = self.scope
            log_access(scope, scope["method"], self.status, self.bytes_sent, self.started_at, buffer)
        conn.on_response_complete(self)

    # -- the response extensions (see response_rules)

    def send_early_hint(self, headers: list[tuple[bytes, bytes]]) -> None:
        """A ``103 Early Hints`` response, written at once (HTTP/1.0 clients do not get one)."""
        output = self.conn.output
        if self.http10 or output.is_closing():
            return
        lines = b"".join(b"%s: %s\r\n" % field for field in headers)
        output.write(STATUS_LINES[103] + lines + b"\r\n")

    def send_trailers(self, fields: list[tuple[bytes, bytes]]) -> None:
        """The trailer fields after the last chunk, when the body is chunked and the client said ``TE:
        trailers``; else the response ends without them."""
        last_chunk = _LAST_CHUNK
        if fields and self.chunked and accepts_trailers(self.scope["headers"]):
            last_chunk = b"0\r\n" + b"".join(b"%s: %s\r\n" % field for field in fields) + b"\r\n"
        self.send_last(b"", last_chunk)

    async def send_file(self, body: FileBody) -> None:
        """A file's bytes as body bytes (one chunk when chunked), through ``sendfile`` where the
        connection allows it (see :meth:`ConnectionOutput.write_file`)."""
        count = body.count
        self.bytes_sent += count
        if not count or not self.body_allowed:
            return
        if self.remaining >= 0:
            if count > self.remaining:
                raise body_too_long()
            self.remaining -= count
        output = self.conn.output
        if self.chunked:
            output.pending.append(b"%x\r\n" % count)
        sent = await output.write_file(body, self.flow)
        if output.is_closing():
            self.disconnect()  # the client went away: the application sees a disconnect
        elif sent < count:
            raise RuntimeError(f"The file ended {count - sent} bytes short of the response body's length.")
        elif self.chunked:
            output.add_body((b"\r\n",), 0)
