"""HTTP/2 (``--http2``): one protocol per connection, one ASGI task per stream.

A connection reaches :class:`H2Protocol` from :meth:`HTTPConnection.detect_http2
<fulmen.http.connection.HTTPConnection.detect_http2>` once TLS negotiated ``h2`` or its first bytes
are the HTTP/2 preface, or from an ``Upgrade: h2c`` request. The frames and their rules are the
sans-I/O :class:`~fulmen.http.h2_connection.H2Connection`; this module turns its events into ASGI
exchanges and their responses into frames: the scope, request data acknowledged as the application
reads it, responses sent as the client's windows allow (and the transport takes them), limits,
graceful shutdown and the access log. The order of messages and the response checks are the shared
:mod:`~fulmen.protocols.response_rules`; the idle timer is the protocol floor's.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
from collections.abc import Awaitable
from typing import Any

from fulmen.access_log import log_access
from fulmen.caches import MAX_ENTRIES, remember
from fulmen.forwarding import rewrite_from_headers
from fulmen.http.h2_connection import (
    DataReceived,
    GoAwayReceived,
    H2Connection,
    PingAcked,
    RequestReceived,
    StreamReset,
    WindowOpened,
)
from fulmen.http.h2_frames import MAX_STREAM_ID, ErrorCode, H2ConnectionError
from fulmen.http.h2_hpack import encode_headers
from fulmen.http.h2_websocket import StreamTransport, handshake_headers
from fulmen.http.request_head import HTTPRequestError
from fulmen.http.target import parse_target
from fulmen.metrics.recorder import HTTP2
from fulmen.protocols.response_rules import (
    DISCONNECT,
    ERROR_BODIES,
    RESPONSE_EXTENSIONS,
    ASGIExchange,
    FileBody,
    accepts_trailers,
    body_allowed,
    body_too_long,
    body_too_short,
    check_header_value,
    check_status,
    content_length,
    file_chunks,
    header_name,
)
from fulmen.protocols.server_protocol import ServerProtocol

logger = logging.getLogger("fulmen.error")

#: Streams one connection may have open; also the bound on app tasks per connection, so streams reset
#: at once by the client (a "rapid reset" flood) cannot start more tasks than this.
MAX_CONCURRENT_STREAMS = 100
#: Request data a stream may have in flight before the application reads it (INITIAL_WINDOW_SIZE).
STREAM_WINDOW = 256 * 1024
#: Request data the whole connection may have in flight: the bound on what one connection buffers.
CONNECTION_WINDOW = 1024 * 1024
#: Response bytes queued before they are written out, so large bodies meet transport back-pressure.
_FLUSH_SIZE = 65536
#: How long the final GOAWAY of a graceful shutdown waits for the client to answer the PING that
#: follows the first (the answer proves every stream the client opened before it has arrived).
_PING_WAIT = 1.0
_SHUTDOWN_PING = b"fulmen\x00\x00"

_STATUS = {status: str(status).encode() for status in range(100, 600)}
#: HTTP/1.1 connection and framing headers: meaningless in HTTP/2 and forbidden on the wire (RFC 9113
#: section 8.2.2), so an application's are dropped (an app written for HTTP/1.1 may send them).
_HOP_BY_HOP = frozenset({b"connection", b"keep-alive", b"proxy-connection", b"transfer-encoding", b"upgrade"})
_SPECIAL_NAMES = _HOP_BY_HOP | {b"content-length", b"server", b"date"}
#: A checked response head: its status, its fields encoded, its content length (-1: none) and the
#: default headers the application's replace.
_Head = tuple[int, bytes, int, frozenset[bytes]]


_SWITCHING = b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n"


def h2c_settings(scope: dict[str, Any]) -> bytes | None:
    """The SETTINGS payload of an ``Upgrade: h2c`` request that may switch to HTTP/2 (RFC 7540 section
    3.2): in cleartext, one valid ``HTTP2-Settings`` header, and no body (a body would have to be read
    in HTTP/1.1 first). None: the request is served in HTTP/1.1, as the upgrade is optional."""
    if scope["scheme"] != "http":
        return None
    found = []
    for name, value in scope["headers"]:
        if name == b"http2-settings":
            found.append(value)
        elif name == b"transfer-encoding" or (name == b"content-length" and value != b"0"):
            return None
    if len(found) != 1:
        return None
    try:
        settings = base64.urlsafe_b64decode(found[0] + b"=" * (-len(found[0]) % 4))
    except (binascii.Error, ValueError):
        return None
    return settings if len(settings) % 6 == 0 else None


class H2Stream(ASGIExchange):
    """One request and its response: the ASGI ``receive`` and ``send`` of a stream."""

    __slots__ = ("_write_waiter", "ended", "stream_id", "unacked")

    conn: H2Protocol
    #: Every response extension: trailers as a last HEADERS frame, 103 as an informational HEADERS,
    #: files read in chunks that meet the windows.
    extensions = frozenset(RESPONSE_EXTENSIONS)

    def __init__(self, conn: H2Protocol, stream_id: int, *request: Any) -> None:
        """``request``: the method, path, raw path, query, headers and expect_continue of the request,
        as :class:`ASGIExchange` takes them after the HTTP version."""
        ASGIExchange.__init__(self, conn, "2", *request)
        self.stream_id = stream_id
        self.body: list[bytes] = []
        self.unacked = 0  # flow-controlled bytes received and not yet read by the application
        self.ended = False  # END_STREAM sent
        self._write_waiter: asyncio.Future[None] | None = None

    # -- events from the connection

    def wake_writer(self) -> None:
        waiter = self._write_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def disconnect(self) -> None:
        self.disconnected = True
        self.wake()
        self.wake_writer()

    # -- the ASGI application

    async def call_app(self, app: Any) -> None:
        try:
            await ASGIExchange.call_app(self, app)
        finally:
            self.conn.on_stream_done(self)

    def abort(self) -> None:
        """Reset the stream: the client sees the response cut, and the connection's other streams go on."""
        if not self.disconnected and not self.ended:
            self.conn.reset(self.stream_id, ErrorCode.INTERNAL_ERROR)
        self.disconnect()

    def send_500(self) -> None:
        if self.disconnected:
            return
        self.response_started = self.response_complete = True
        self.status = 500
        self.conn.respond(self.stream_id, 500, ERROR_BODIES[500])
        self.ended = True
        self.conn.on_response_complete(self)

    async def receive(self) -> dict[str, Any]:
        if self.expect_continue:
            self.expect_continue = False
            if not self.response_started and not self.disconnected:
                self.conn.h2.send_headers(self.stream_id, [(b":status", b"100")])
                self.conn.schedule_flush()
        if not self.body and not self.disconnected and not self.response_complete:
            if self.more_body:
                await self.wait()
            else:
                while self.body_delivered and not self.disconnected and not self.response_complete:
                    await self.wait()
        if self.disconnected or self.response_complete:
            return DISCONNECT
        body = self.body
        self.body = []
        if self.unacked:
            self.conn.acknowledge(self.stream_id, self.unacked)
            self.unacked = 0
        if not self.more_body:
            self.body_delivered = True
        data = body[0] if len(body) == 1 else b"".join(body)
        return {"type": "http.request", "body": data, "more_body": self.more_body}

    async def wait_writable(self) -> None:
        while self.flow.write_paused and not self.disconnected:
            await self._wait_write()

    async def _wait_write(self) -> None:
        waiter = self._write_waiter = self.conn.loop.create_future()
        try:
            await waiter
        finally:
            self._write_waiter = None

    # -- the response on the wire

    def start_response(self, status: Any, headers: Any) -> None:
        conn = self.conn
        caches = conn.server_state.caches
        heads = caches.h2_heads
        key: tuple[object, ...] | None = None
        head = None
        if type(headers) is list or type(headers) is tuple:  # not an iterator, which a key would consume
            try:
                key = (status, *headers)
                head = heads.get(key)
            except TypeError:  # unhashable (lists for pairs, bytearray values): checked every time
                key = None
        if head is None:
            head = self._check_head(status, headers)
            if key is not None:
                if len(heads) >= MAX_ENTRIES:
                    heads.clear()
                heads[key] = head
        self.status, block, length, replaced = head
        if replaced:
            defaults = encode_headers(
                [field for field in conn.server_state.default_headers if field[0] not in replaced],
                caches.h2_fields,
            )
        else:
            if conn.server_state.default_headers is not conn.default_source:
                conn.default_source = conn.server_state.default_headers
                conn.default_block = encode_headers(conn.default_source, caches.h2_fields)
            defaults = conn.default_block
        if not body_allowed(self.status, self.head_request):
            self.remaining = 0
        elif length >= 0:
            self.remaining = length
        self.ended = self.remaining == 0  # HEAD, 204 and 304: the headers are the whole response
        conn.h2.send_block(self.stream_id, block + defaults, end_stream=self.ended)
        conn.schedule_flush()

    def send_body(self, body: bytes) -> Awaitable[None] | None:
        return self._write(body, False)

    def send_last(self, body: bytes) -> Awaitable[None] | None:
        waiting = self._write(body, True)
        if waiting is None:
            self._finish()
            return None
        return self._finish_after(waiting)

    def _check_head(self, status: Any, headers: Any) -> _Head:
        """The response head checked, its fields lower-cased and encoded (without the server's default
        headers, which change every second); remembered by the caller for the same status and headers."""
        # An informational status cannot be the final response in HTTP/2.
        status = check_status(status, 200)
        fields = [(b":status", _STATUS[status])]
        length = -1
        replaced: frozenset[bytes] = frozenset()
        caches = self.conn.server_state.caches
        for name, raw_value in headers:
            lname = caches.header_names.get(name) or header_name(name, caches)
            value = raw_value if type(raw_value) is bytes else bytes(raw_value)
            if value not in caches.header_values:
                check_header_value(value, caches)
            if lname in _SPECIAL_NAMES:
                if lname == b"content-length":
                    length = caches.content_lengths.get(value, -1)
                    if length < 0:
                        length = content_length(value, caches)
                elif lname in _HOP_BY_HOP:
                    continue
                else:  # server, date: the application's replace the defaults
                    replaced |= {lname}
            fields.append((lname, value))
        return status, encode_headers(fields, caches.h2_fields), length, replaced

    async def _finish_after(self, waiting: Awaitable[None]) -> None:
        await waiting
        self._finish()

    def _write(self, body: bytes, last: bool) -> Awaitable[None] | None:
        """Frame what the windows allow now; an awaitable that sends the rest when they do not."""
        size = len(body)
        self.bytes_sent += size
        if self.ended:  # HEAD, 204, 304: the body is not sent
            return None
        if self.remaining >= 0:
            if size > self.remaining:
                raise body_too_long()
            self.remaining -= size
            if last and self.remaining > 0:
                raise body_too_short()
        conn = self.conn
        sent = conn.h2.send_data(self.stream_id, body, last)
        if sent < 0:  # reset meanwhile
            self.ended = True
            return None
        conn.queued(sent)
        if sent == size:
            self.ended = last
            return None
        return self._write_rest(memoryview(body)[sent:], last)

    async def _write_rest(self, view: memoryview, last: bool) -> None:
        """The rest of a body the windows held back: sent as WINDOW_UPDATEs and SETTINGS open them and
        the transport drains; a turn of the loop between chunks lets the connection's other streams
        have their share of the window."""
        conn = self.conn
        h2 = conn.h2
        stream_id = self.stream_id
        while view:
            if conn.flow.write_paused or h2.window(stream_id) <= 0:
                await self._wait_write()
            elif len(conn.streams) > 1:
                await asyncio.sleep(0)
            if self.disconnected:
                return
            if conn.flow.write_paused:
                continue
            sent = h2.send_data(stream_id, view[:_FLUSH_SIZE], last and len(view) <= _FLUSH_SIZE)
            if sent < 0:
                self.ended = True
                return
            view = view[sent:]
            conn.queued(sent)
        self.ended = last

    # -- the response extensions (see response_rules)

    def send_early_hint(self, headers: list[tuple[bytes, bytes]]) -> None:
        """A ``103 Early Hints`` response: an informational HEADERS frame before the response's."""
        self.conn.h2.send_headers(self.stream_id, [(b":status", b"103"), *headers])
        self.conn.schedule_flush()

    def send_trailers(self, fields: list[tuple[bytes, bytes]]) -> Awaitable[None] | None:
        """The trailer fields as a HEADERS frame that ends the stream, when the client said ``TE:
        trailers``; else the response ends with an empty DATA frame."""
        if not fields or self.ended or not accepts_trailers(self.scope["headers"]):
            return self.send_last(b"")
        if self.remaining > 0:
            raise body_too_short()
        self.conn.h2.send_headers(self.stream_id, fields, end_stream=True)
        self.ended = True
        self.conn.schedule_flush()
        self._finish()
        return None

    async def send_file(self, body: FileBody) -> None:
        """A file's bytes as DATA frames, read in chunks as the windows and the socket take them."""
        if self.ended:  # HEAD, 204, 304: counted, not read
            self.bytes_sent += body.count
            return
        if self.remaining >= 0 and body.count > self.remaining:
            raise body_too_long()
        sent = 0
        for chunk in file_chunks(body):
            if self.flow.write_paused:
                await self.wait_writable()
            if self.disconnected:
                return
            waiting = self._write(chunk, False)
            if waiting is not None:
                await waiting
            sent += len(chunk)
        if sent < body.count and not self.disconnected:
            raise RuntimeError(
                f"The file ended {body.count - sent} bytes short of the response body's length."
            )

    def _finish(self) -> None:
        self.response_complete = True
        self.wake()
        if self.conn.access_log:
            buffer = self.conn.server_state.access_buffer
            scope = self.scope
            log_access(scope, scope["method"], self.status, self.bytes_sent, self.started_at, buffer)
        self.conn.on_response_complete(self)


class H2Protocol(ServerProtocol):
    """One HTTP/2 connection: the connection's events in, frames out, and a task for each stream."""

    response_extensions = RESPONSE_EXTENSIONS

    def setup(self) -> None:
        super().setup()
        self.max_head_size: int = self.config.h11_max_incomplete_event_size
        self.max_headers: int = self.config.limit_request_headers
        self.ws_protocol_class: Any = self.config.ws_protocol_class
        self.h2 = H2Connection(
            max_concurrent_streams=MAX_CONCURRENT_STREAMS,
            stream_window=STREAM_WINDOW,
            connection_window=CONNECTION_WINDOW,
            max_header_list_size=self.max_head_size,
            # MAX_HEADER_LIST_SIZE is advisory: a larger header list gets 431 on its stream, and only
            # one past twice the limit (a decompression bomb) closes the connection.
            decoder_limit=max(2 * self.max_head_size, 65536),
            connect_protocol=self.ws_protocol_class is not None,  # RFC 8441: WebSockets over HTTP/2
            field_cache=self.server_state.caches.h2_fields,
        )
        self.streams: dict[int, H2Stream] = {}
        self.tunnels: dict[int, StreamTransport] = {}  # WebSocket streams (extended CONNECT)
        self.closing = False  # shutting down: close once the streams in flight are done
        self.final_goaway = False  # the GOAWAY with the last stream served is sent
        self.ping_timer: asyncio.TimerHandle | None = None
        self.refusing = False  # --limit-max-requests reached: new streams are refused
        self.unflushed = 0
        self.flush_scheduled = False
        self.default_source: list[tuple[bytes, bytes]] | None = None  # the server's default headers ...
        self.default_block = b""  # ... encoded, rebuilt when they change (every second: the date)

    # -- asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.attach(transport)
        self.read_addresses()
        self.h2.initiate()
        self.flush()
        self.start_idle()

    def accept_upgrade(
        self, transport: asyncio.Transport, scope: dict[str, Any], settings: bytes, trailing: bytes
    ) -> None:
        """Take over from HTTP/1.1 after an ``Upgrade: h2c`` request: 101, the server's SETTINGS, and
        the request served as stream 1 (its scope already made, forwarding headers applied)."""
        self.attach(transport)
        self.read_addresses()
        if not transport.is_reading():
            transport.resume_reading()  # the HTTP/1.1 parser may have paused it at the upgrade
        transport.write(_SWITCHING)
        try:
            self.h2.upgrade(settings)
        except H2ConnectionError as exc:
            logger.debug("%s - HTTP/2 connection error: %s", self.client_text, exc)
            self.h2.terminate(exc.code, str(exc))
            self.flush()
            transport.close()
            return
        self.h2.initiate()
        self.flush()
        root = len(self.root_path)
        stream = H2Stream(
            self,
            1,
            scope["method"],
            scope["path"][root:],
            scope["raw_path"][root:],
            scope["query_string"],
            scope["headers"],
            False,
        )
        scope["http_version"] = "2"
        stream.scope = scope
        stream.more_body = False
        self.streams[1] = stream
        self.start_exchange(stream)
        if trailing:
            self.data_received(trailing)

    def connection_lost(self, exc: Exception | None) -> None:
        for stream in self.streams.values():
            stream.disconnect()
        for tunnel in list(self.tunnels.values()):
            tunnel.connection_lost()
        if self.ping_timer is not None:
            self.ping_timer.cancel()
        super().connection_lost(exc)

    def eof_received(self) -> None:
        """The client closed its side: the streams see a disconnect when the transport closes."""

    def pause_writing(self) -> None:
        # Reading pauses too: a peer that does not read cannot make the server queue control frames
        # (PING and SETTINGS acknowledgements, resets) without bound.
        self.flow.pause_writing()
        self.flow.pause_reading()

    def resume_writing(self) -> None:
        self.flow.resume_writing()
        self.flow.resume_reading()
        self.wake_writers()

    def data_received(self, data: bytes) -> None:
        if self.metrics is not None:
            self.metrics.received_bytes += len(data)
        try:
            events = self.h2.receive(data)
        except H2ConnectionError as exc:
            logger.debug("%s - HTTP/2 connection error: %s", self.client_text, exc)
            self.flush()
            self.transport.close()
            return
        for event in events:
            kind = type(event)
            if kind is RequestReceived:
                self.on_request(event)  # type: ignore[arg-type]
            elif kind is DataReceived:
                self.on_data(event)  # type: ignore[arg-type]
            elif kind is WindowOpened:
                if event.stream_id:  # type: ignore[union-attr]
                    stream = self.streams.get(event.stream_id)  # type: ignore[union-attr]
                    if stream is not None:
                        stream.wake_writer()
                    elif event.stream_id in self.tunnels:  # type: ignore[union-attr]
                        self.tunnels[event.stream_id].pump()  # type: ignore[union-attr]
                else:
                    self.wake_writers()
            elif kind is StreamReset:
                stream = self.streams.get(event.stream_id)  # type: ignore[union-attr]
                if stream is not None:
                    stream.disconnect()
                elif event.stream_id in self.tunnels:  # type: ignore[union-attr]
                    self.tunnels[event.stream_id].connection_lost()  # type: ignore[union-attr]
            elif kind is GoAwayReceived:
                # The client opens no more streams: the ones in flight finish, then the connection ends.
                self.closing = True
                if not self.streams and not self.tunnels:
                    self.close()
                    return
            elif kind is PingAcked and event.opaque == _SHUTDOWN_PING:  # type: ignore[union-attr]
                self.send_final_goaway()
        self.flush()

    # -- streams

    def on_request(self, event: RequestReceived) -> None:
        stream_id = event.stream_id
        if self.refusing:
            self.h2.reset_stream(stream_id, ErrorCode.REFUSED_STREAM)
            return
        if len(self.streams) >= MAX_CONCURRENT_STREAMS:
            # The tasks of streams the client reset have not ended yet: refuse, and count it as a reset.
            self.h2.reset_stream(stream_id, ErrorCode.REFUSED_STREAM)
            try:
                self.h2.count_reset()
            except H2ConnectionError as exc:
                self.h2.terminate(exc.code, str(exc))
                self.flush()
                self.transport.close()
            return
        head = event.head
        request = head.request
        if request is None:  # first seen: checked once, the connection's decoder remembers the head
            request = head.request = self.check_request(event)
            if request is None:
                return
        method, path_text, raw_path, query = request
        stream = H2Stream(
            self, stream_id, method, path_text, raw_path, query, list(head.headers), head.expect_continue
        )
        if event.ended:
            stream.more_body = False
        if self.trusted_peer and head.forwarding:
            assert self.proxy_trust is not None
            rewrite_from_headers(stream.scope, self.proxy_trust)
        self.streams[stream_id] = stream
        self.start_exchange(stream)

    def check_request(self, event: RequestReceived) -> tuple[str, str, bytes, bytes] | None:
        """A request head's method and target for the scope; None when the server answers it itself
        (431, 400, 501) or gives the stream to a WebSocket."""
        head = event.head
        if head.size > self.max_head_size or len(head.headers) > self.max_headers:
            logger.warning("%s: request header list too large", ERROR_BODIES[431].decode())
            self.refuse(event, 431)
            return None
        if head.method == b"CONNECT":
            if head.protocol == b"websocket" and self.ws_protocol_class is not None:
                self.open_websocket(event)
            else:  # not a proxy
                self.refuse(event, 501)
            return None
        caches = self.server_state.caches
        try:
            parsed = caches.targets.get(head.path)
            if parsed is None:
                parsed = parse_target(head.path)
                remember(caches.targets, head.path, parsed)
        except HTTPRequestError:
            logger.warning("Invalid HTTP request received.")
            self.refuse(event, 400)
            return None
        method = caches.methods.get(head.method)
        if method is None:
            method = head.method.decode("ascii")  # a token: checked with the header block
            remember(caches.methods, head.method, method)
        return (method, *parsed)

    def on_data(self, event: DataReceived) -> None:
        stream = self.streams.get(event.stream_id)
        data = event.data
        if stream is None and event.stream_id in self.tunnels:
            if data:
                self.tunnels[event.stream_id].data_received(data)
            return
        if stream is None or stream.disconnected or stream.response_complete:
            if data:
                self.h2.acknowledge(event.stream_id, len(data))  # nobody reads it: give the window back now
            return
        if data:
            stream.body.append(data)
            stream.unacked += len(data)
        if event.ended:
            stream.more_body = False
        stream.wake()

    def on_response_complete(self, stream: H2Stream) -> None:
        self.server_state.completed_requests += 1
        if self.metrics is not None:
            self.metrics.record(HTTP2 + stream.status, stream.started_at, stream.bytes_sent)
        if stream.more_body and not stream.disconnected:
            # The response is complete before the request: ask the client to stop sending it
            # (RFC 9113 section 8.1), and give back the window of what was never read.
            self.reset(stream.stream_id, ErrorCode.NO_ERROR)
        if stream.unacked:
            self.acknowledge(stream.stream_id, stream.unacked)
            stream.unacked = 0
            stream.body = []
        self.schedule_flush()

    def on_stream_done(self, stream: H2Stream | None) -> None:
        """A stream's task (or a WebSocket stream) has ended: forget the stream, and close if shutting
        down."""
        if stream is not None:
            self.streams.pop(stream.stream_id, None)
            if stream.unacked:
                self.acknowledge(stream.stream_id, stream.unacked)
                stream.unacked = 0
        if self.streams or self.tunnels or self.transport.is_closing():
            return
        if self.closing:
            if self.final_goaway or self.ping_timer is None:
                self.close()
        else:
            self.start_idle()

    def wake_writers(self) -> None:
        for stream in self.streams.values():
            stream.wake_writer()
        for tunnel in list(self.tunnels.values()):
            tunnel.pump()

    def open_websocket(self, event: RequestReceived) -> None:
        """An extended CONNECT with ``:protocol websocket``: the stream is given to a WebSocket session
        (``--ws``), as an HTTP/1.1 upgrade would be."""
        head = event.head
        targets = self.server_state.caches.targets
        try:
            parsed = targets.get(head.path)
            if parsed is None:
                parsed = parse_target(head.path)
                remember(targets, head.path, parsed)
        except HTTPRequestError:
            self.refuse(event, 400)
            return
        path, raw_path, query = parsed
        headers = list(head.headers)
        scope = self.scope_template.copy()
        del scope["method"]
        scope["path"] = self.root_path + path
        scope["raw_path"] = self.root_path_bytes + raw_path
        scope["query_string"] = query
        scope["headers"] = handshake_headers(headers)
        scope["state"] = self.app_state.copy()
        if self.trusted_peer:
            assert self.proxy_trust is not None
            rewrite_from_headers(scope, self.proxy_trust)
        scope["type"] = "websocket"
        scope["scheme"] = "wss" if scope["scheme"] == "https" else "ws"  # after any X-Forwarded-Proto
        tunnel = StreamTransport(self, event.stream_id)
        self.tunnels[event.stream_id] = tunnel
        session = self.ws_protocol_class(
            config=self.config, server_state=self.server_state, app_state=self.app_state, _loop=self.loop
        )
        tunnel.set_protocol(session)
        # The session checks the handshake as HTTP/1.1's; the application sees the request as it came.
        session.accept_upgrade(tunnel, scope, b"")
        scope["http_version"] = "2"
        scope["headers"] = headers

    def on_tunnel_done(self) -> None:
        self.on_stream_done(None)

    # -- frames out

    def acknowledge(self, stream_id: int, length: int) -> None:
        """Give the client back ``length`` bytes of window (WINDOW_UPDATEs go out in batches)."""
        if length and not self.transport.is_closing():
            self.h2.acknowledge(stream_id, length)
            self.schedule_flush()

    def reset(self, stream_id: int, code: ErrorCode) -> None:
        if stream_id in self.h2.streams:
            self.h2.reset_stream(stream_id, code)
            self.schedule_flush()

    def refuse(self, event: RequestReceived, status: int) -> None:
        """The server's own answer to a request it does not serve; counted by ``--metrics-bind`` like
        the application's answers."""
        self.respond(event.stream_id, status, ERROR_BODIES[status])
        if not event.ended:
            self.reset(event.stream_id, ErrorCode.NO_ERROR)
        if self.metrics is not None:
            self.metrics.count(HTTP2 + status)

    def respond(self, stream_id: int, status: int, body: bytes) -> None:
        """A response the server makes itself: errors before or instead of the application's. The body
        is left out when the client's window cannot take it now (nothing waits for a window here)."""
        h2 = self.h2
        if h2.window(stream_id) < len(body):
            body = b""
        headers = [
            (b":status", _STATUS[status]),
            (b"content-type", b"text/plain; charset=utf-8"),
            (b"content-length", b"%d" % len(body)),
            *self.server_state.default_headers,
        ]
        if h2.send_headers(stream_id, headers, end_stream=not body) and body:
            h2.send_data(stream_id, body, end_stream=True)
        self.schedule_flush()

    def queued(self, size: int) -> None:
        """Body bytes were framed: written at the end of the loop turn, or now past _FLUSH_SIZE."""
        self.unflushed += size
        if self.unflushed >= _FLUSH_SIZE:
            self.flush()
        elif not self.flush_scheduled:
            self.flush_scheduled = True
            self.loop.call_soon(self._scheduled_flush)

    def flush(self) -> None:
        """Write every frame ready, in one call."""
        self.unflushed = 0
        data = self.h2.data_to_send()
        if data and not self.transport.is_closing():
            self.transport.write(data)

    def schedule_flush(self) -> None:
        # Frames made in one loop turn (headers, body, other streams' frames) go out in one write.
        if not self.flush_scheduled:
            self.flush_scheduled = True
            self.loop.call_soon(self._scheduled_flush)

    def _scheduled_flush(self) -> None:
        self.flush_scheduled = False
        self.flush()

    # -- timeouts, shutdown

    def busy(self) -> bool:
        return bool(self.streams or self.tunnels)

    def close_idle(self) -> None:
        self.close()

    def close(self) -> None:
        """GOAWAY (no error) and close."""
        if not self.final_goaway:
            self.h2.terminate(ErrorCode.NO_ERROR)
        self.flush()
        self.transport.close()

    def shutdown(self) -> None:
        """Graceful shutdown (RFC 9113 section 6.8): a GOAWAY naming the last stream id there can be,
        then a PING; once the client answers, every stream it opened before the GOAWAY has arrived,
        and a second GOAWAY names the last one served. Streams up to it finish (the server bounds
        that with --timeout-graceful-shutdown), then the connection closes."""
        if self.closing or self.transport.is_closing():
            return
        self.closing = True
        self.h2.goaway(MAX_STREAM_ID)
        self.h2.ping(_SHUTDOWN_PING)
        self.flush()
        self.ping_timer = self.loop.call_later(_PING_WAIT, self.send_final_goaway)

    def stop_keep_alive(self) -> None:
        """--limit-max-requests reached: no stream beyond the ones started is served. The client's
        later streams are refused (REFUSED_STREAM: it may retry them elsewhere), the GOAWAY names the
        last one, and the connection closes once the streams in flight are done."""
        if self.closing or self.transport.is_closing():
            return
        self.closing = self.refusing = True
        self.send_final_goaway()

    def send_final_goaway(self) -> None:
        if self.final_goaway or self.transport.is_closing():
            return
        self.final_goaway = True
        if self.ping_timer is not None:
            self.ping_timer.cancel()
            self.ping_timer = None
        self.h2.goaway(self.h2.highest_stream_id)
        if self.streams or self.tunnels:
            self.flush()
        else:
            self.close()
