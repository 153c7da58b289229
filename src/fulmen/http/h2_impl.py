"""HTTP/2 (``--http2``) on the sans-I/O ``h2`` library: one protocol per connection, one ASGI task per stream.

A connection reaches :class:`H2Protocol` from :meth:`HTTPConnection.detect_http2
<fulmen.http.connection.HTTPConnection.detect_http2>` once TLS negotiated ``h2`` or its first bytes
are the HTTP/2 preface. h2 turns bytes into events and frames; this module owns the rest: the
scope, flow control both ways (request data is acknowledged as the application reads it, responses
wait for the peer's window), limits, graceful shutdown (GOAWAY, then the streams in flight finish)
and the access log. The order of messages and the response checks are the shared
:mod:`~fulmen.protocols.response_rules`; the idle timer is the protocol floor's.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import h2.config
import h2.connection
import h2.events
import h2.exceptions
import h2.settings
from h2.errors import ErrorCodes
from h2.settings import SettingCodes
from hpack import HPACKError
from hyperframe.frame import GoAwayFrame

from fulmen.access_log import log_access
from fulmen.caches import remember
from fulmen.forwarding import rewrite_from_headers
from fulmen.http.request_head import HTTPRequestError
from fulmen.http.target import parse_target
from fulmen.metrics.recorder import HTTP2
from fulmen.protocols.response_rules import (
    DISCONNECT,
    ERROR_BODIES,
    ASGIExchange,
    body_allowed,
    body_too_long,
    body_too_short,
    check_header_value,
    check_status,
    content_length,
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
#: Response bytes handed to h2 before they are written out, so large bodies meet transport back-pressure.
_FLUSH_SIZE = 65536
_DEFAULT_WINDOW = 65535

_H2_CONFIG = h2.config.H2Configuration(
    client_side=False,
    header_encoding=None,
    # Response headers are checked (and lower-cased) below, as for HTTP/1.1.
    validate_outbound_headers=False,
    normalize_outbound_headers=False,
)
_STATUS = {status: str(status).encode() for status in range(100, 600)}
#: HTTP/1.1 connection and framing headers: meaningless in HTTP/2 and forbidden on the wire (RFC 9113
#: section 8.2.2), so an application's are dropped (an app written for HTTP/1.1 may send them).
_HOP_BY_HOP = frozenset({b"connection", b"keep-alive", b"proxy-connection", b"transfer-encoding", b"upgrade"})
_SPECIAL_NAMES = _HOP_BY_HOP | {b"content-length", b"server", b"date"}


def _with_goaway_code(output: bytes, last_stream_id: int) -> bytes:
    """h2 ends the connection with PROTOCOL_ERROR when a header block cannot be decompressed; RFC 9113
    section 4.3 says COMPRESSION_ERROR. The GOAWAY h2 queued is the last frame of its output."""
    queued = GoAwayFrame(0, last_stream_id=last_stream_id, error_code=ErrorCodes.PROTOCOL_ERROR).serialize()
    if not output.endswith(queued):
        return output
    fixed = GoAwayFrame(0, last_stream_id=last_stream_id, error_code=ErrorCodes.COMPRESSION_ERROR)
    return output[: -len(queued)] + fixed.serialize()


class H2Stream(ASGIExchange):
    """One request and its response: the ASGI ``receive`` and ``send`` of a stream."""

    __slots__ = ("_write_waiter", "body", "ended", "stream_id", "unacked")

    conn: H2Protocol

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
            self.conn.reset(self.stream_id, ErrorCodes.INTERNAL_ERROR)
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
                self.conn.h2c.send_headers(self.stream_id, [(b":status", b"100")])
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
        headers = self._build_headers(status, headers)
        self.ended = self.remaining == 0  # HEAD, 204 and 304: the headers are the whole response
        self.conn.h2c.send_headers(self.stream_id, headers, end_stream=self.ended)
        self.conn.schedule_flush()

    def send_body(self, body: bytes) -> Any:
        return self._write_body(body, True)

    def send_last(self, body: bytes) -> Any:
        return self._write_last(body)

    def _build_headers(self, status: Any, headers: Any) -> list[tuple[bytes, bytes]]:
        # An informational status cannot be the final response in HTTP/2.
        self.status = check_status(status, 200)
        result = [(b":status", _STATUS[status])]
        append = result.append
        length = -1
        seen_defaults: set[bytes] | None = None
        caches = self.conn.server_state.caches
        names = caches.header_names
        checked = caches.header_values
        for name, raw_value in headers:
            lname = names.get(name)
            if lname is None:
                lname = header_name(name, caches)
            value = bytes(raw_value)
            if value not in checked:
                check_header_value(value, caches)
            if lname in _SPECIAL_NAMES:
                if lname == b"content-length":
                    length = content_length(value, caches)
                elif lname in _HOP_BY_HOP:
                    continue
                else:  # server, date: the application's replace the defaults
                    seen_defaults = seen_defaults or set()
                    seen_defaults.add(lname)
            append((lname, value))
        for name, value in self.conn.server_state.default_headers:
            if seen_defaults is None or name not in seen_defaults:
                append((name, value))
        if not body_allowed(status, self.head_request):
            self.remaining = 0
        elif length >= 0:
            self.remaining = length
        return result

    async def _write_last(self, body: bytes) -> None:
        await self._write_body(body, False)
        self._finish()

    async def _write_body(self, body: bytes | bytearray | memoryview, more_body: bool) -> None:
        size = len(body)
        self.bytes_sent += size
        if self.ended:  # HEAD, 204, 304: the body is not sent
            return
        if self.remaining >= 0:
            if size > self.remaining:
                raise body_too_long()
            self.remaining -= size
            if not more_body and self.remaining > 0:
                raise body_too_short()
        conn = self.conn
        h2c = conn.h2c
        stream_id = self.stream_id
        view = memoryview(body)
        while view:
            window = h2c.local_flow_control_window(stream_id)
            if window <= 0 or conn.flow.write_paused:
                # The peer's window is closed, or the transport is full: wait for a WINDOW_UPDATE,
                # a SETTINGS change or the transport draining.
                await self._wait_write()
                if self.disconnected:
                    return
                continue
            size = min(window, len(view), h2c.max_outbound_frame_size)
            self.ended = size == len(view) and not more_body
            h2c.send_data(stream_id, view[:size], end_stream=self.ended)
            view = view[size:]
            conn.unflushed += size
            if conn.unflushed >= _FLUSH_SIZE:
                conn.flush()
        if not more_body and not self.ended:
            h2c.end_stream(stream_id)
            self.ended = True
        conn.schedule_flush()

    def _finish(self) -> None:
        self.response_complete = True
        self.wake()
        if self.conn.access_log:
            buffer = self.conn.server_state.access_buffer
            scope = self.scope
            log_access(scope, scope["method"], self.status, self.bytes_sent, self.started_at, buffer)
        self.conn.on_response_complete(self)


class H2Protocol(ServerProtocol):
    """One HTTP/2 connection: h2's events in, frames out, and a task for each stream."""

    def setup(self) -> None:
        super().setup()
        self.max_head_size: int = self.config.h11_max_incomplete_event_size
        self.max_headers: int = self.config.limit_request_headers

        self.h2c = h2.connection.H2Connection(config=_H2_CONFIG)
        self.streams: dict[int, H2Stream] = {}
        self.closing = False  # GOAWAY sent: no new stream; close once the streams in flight are done
        self.unflushed = 0
        self.flush_scheduled = False

    # -- asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.attach(transport)
        self.read_addresses()
        h2c = self.h2c
        h2c.local_settings = h2.settings.Settings(
            client=False,
            initial_values={
                SettingCodes.MAX_CONCURRENT_STREAMS: MAX_CONCURRENT_STREAMS,
                SettingCodes.MAX_HEADER_LIST_SIZE: self.max_head_size,
                SettingCodes.INITIAL_WINDOW_SIZE: STREAM_WINDOW,
            },
        )
        # MAX_HEADER_LIST_SIZE is advisory: a larger header list gets 431 on its stream, and only one
        # past twice the limit (a decompression bomb) closes the connection.
        h2c.decoder.max_header_list_size = max(2 * self.max_head_size, 65536)
        h2c.initiate_connection()
        h2c.increment_flow_control_window(CONNECTION_WINDOW - _DEFAULT_WINDOW)
        self.flush()
        self.start_idle()

    def connection_lost(self, exc: Exception | None) -> None:
        for stream in self.streams.values():
            stream.disconnect()
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
            events = self.h2c.receive_data(data)
        except h2.exceptions.ProtocolError as exc:
            # h2 has queued a GOAWAY with the error's code (PROTOCOL_ERROR, FRAME_SIZE_ERROR, ...).
            logger.debug("%s - HTTP/2 connection error: %s", self.client_text, exc)
            output = self.h2c.data_to_send()
            if isinstance(exc.__cause__, HPACKError) and exc.error_code == ErrorCodes.PROTOCOL_ERROR:
                output = _with_goaway_code(output, self.h2c.highest_inbound_stream_id)
            self.transport.write(output)
            self.transport.close()
            return
        for event in events:
            if isinstance(event, h2.events.DataReceived):
                self.on_data(event)
            elif isinstance(event, h2.events.RequestReceived):
                self.on_request(event)
            elif isinstance(event, h2.events.StreamEnded):
                stream = self.streams.get(event.stream_id)
                if stream is not None:
                    stream.more_body = False
                    stream.wake()
            elif isinstance(event, h2.events.WindowUpdated):
                if event.stream_id:
                    stream = self.streams.get(event.stream_id)
                    if stream is not None:
                        stream.wake_writer()
                else:
                    self.wake_writers()
            elif isinstance(event, h2.events.StreamReset):
                stream = self.streams.get(event.stream_id)
                if stream is not None:
                    stream.disconnect()
            elif isinstance(event, h2.events.RemoteSettingsChanged):
                if SettingCodes.INITIAL_WINDOW_SIZE in event.changed_settings:
                    self.wake_writers()
            elif isinstance(event, h2.events.ConnectionTerminated):
                # h2 sends nothing after a GOAWAY from the peer: the streams in flight are gone.
                self.flush()
                self.transport.close()
                return
        self.flush()

    # -- streams

    def on_request(self, event: h2.events.RequestReceived) -> None:
        stream_id: int = event.stream_id
        if self.closing or len(self.streams) >= MAX_CONCURRENT_STREAMS:
            self.reset(stream_id, ErrorCodes.REFUSED_STREAM)
            return
        method = path = authority = None
        headers: list[tuple[bytes, bytes]] = []
        has_host = expect_continue = False
        size = 0
        for name, value in event.headers or ():
            size += len(name) + len(value) + 32  # as SETTINGS_MAX_HEADER_LIST_SIZE counts
            if name[:1] == b":":
                if name == b":method":
                    method = value
                elif name == b":path":
                    path = value
                elif name == b":authority":
                    authority = value
                continue
            if name == b"host":
                has_host = True
            elif name == b"expect":
                expect_continue = value.lower() == b"100-continue"
            headers.append((name, value))
        if size > self.max_head_size or len(headers) > self.max_headers:
            logger.warning("%s: request header list too large", ERROR_BODIES[431].decode())
            self.refuse(event, 431)
            return
        if method is None or path is None:  # CONNECT (h2 checked every other request has both)
            self.refuse(event, 501)
            return
        targets = self.server_state.caches.targets
        try:
            parsed = targets.get(path)
            if parsed is None:
                parsed = parse_target(path)
                remember(targets, path, parsed)
            path_text, raw_path, query = parsed
            method_text = method.decode("ascii")
        except (HTTPRequestError, UnicodeDecodeError):
            logger.warning("Invalid HTTP request received.")
            self.refuse(event, 400)
            return
        if authority is not None and not has_host:
            headers.insert(0, (b"host", authority))
        stream = H2Stream(self, stream_id, method_text, path_text, raw_path, query, headers, expect_continue)
        if self.trusted_peer:
            assert self.proxy_trust is not None
            rewrite_from_headers(stream.scope, self.proxy_trust)
        self.streams[stream_id] = stream

        self.start_exchange(stream)

    def on_data(self, event: h2.events.DataReceived) -> None:
        stream = self.streams.get(event.stream_id)
        length: int = event.flow_controlled_length
        if stream is None or stream.disconnected or stream.response_complete:
            self.acknowledge(event.stream_id, length)  # nobody reads it: give the window back now
            return
        if event.data:
            stream.body.append(event.data)
        stream.unacked += length
        stream.wake()

    def on_response_complete(self, stream: H2Stream) -> None:
        self.server_state.completed_requests += 1
        if self.metrics is not None:
            self.metrics.record(HTTP2 + stream.status, stream.started_at, stream.bytes_sent)
        if stream.more_body and not stream.disconnected:
            # The response is complete before the request: ask the client to stop sending it
            # (RFC 9113 section 8.1), and give back the window of what was never read.
            self.reset(stream.stream_id, ErrorCodes.NO_ERROR)
        if stream.unacked:
            self.acknowledge(stream.stream_id, stream.unacked)
            stream.unacked = 0
            stream.body = []
        self.schedule_flush()

    def on_stream_done(self, stream: H2Stream) -> None:
        """The stream's task has ended: forget the stream, and close if shutting down."""
        self.streams.pop(stream.stream_id, None)
        if stream.unacked:
            self.acknowledge(stream.stream_id, stream.unacked)
            stream.unacked = 0
        if self.streams or self.transport.is_closing():
            return
        if self.closing:
            self.close()
        else:
            self.start_idle()

    def wake_writers(self) -> None:
        for stream in self.streams.values():
            stream.wake_writer()

    # -- h2 calls

    def acknowledge(self, stream_id: int, length: int) -> None:
        """Give the client back ``length`` bytes of window (h2 sends WINDOW_UPDATE in batches)."""
        if length and not self.transport.is_closing():
            try:
                self.h2c.acknowledge_received_data(length, stream_id)
            except h2.exceptions.ProtocolError:
                return  # the connection is closing
            self.schedule_flush()

    def reset(self, stream_id: int, code: ErrorCodes) -> None:
        try:
            self.h2c.reset_stream(stream_id, code)
        except h2.exceptions.ProtocolError:
            pass  # already closed on both sides, or the connection is closing
        self.schedule_flush()

    def refuse(self, event: h2.events.RequestReceived, status: int) -> None:
        """The server's own answer to a request it does not serve; counted by ``--metrics-bind`` like
        the application's answers."""
        self.respond(
            event.stream_id, status, ERROR_BODIES[status], request_ended=event.stream_ended is not None
        )
        if self.metrics is not None:
            self.metrics.count(HTTP2 + status)

    def respond(self, stream_id: int, status: int, body: bytes, request_ended: bool = True) -> None:
        """A response the server makes itself: errors before or instead of the application's."""
        headers = [
            (b":status", _STATUS[status]),
            (b"content-type", b"text/plain; charset=utf-8"),
            (b"content-length", b"%d" % len(body)),
            *self.server_state.default_headers,
        ]
        try:
            h2c = self.h2c
            fits = h2c.local_flow_control_window(stream_id) >= len(body)
            h2c.send_headers(stream_id, headers, end_stream=not fits)
            if fits:
                h2c.send_data(stream_id, body, end_stream=True)
            if not request_ended:
                h2c.reset_stream(stream_id, ErrorCodes.NO_ERROR)
        except h2.exceptions.ProtocolError:
            pass  # reset by the client meanwhile
        self.schedule_flush()

    def flush(self) -> None:
        """Write every frame h2 has ready, in one call."""
        self.unflushed = 0
        data = self.h2c.data_to_send()
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
        return bool(self.streams)

    def close_idle(self) -> None:
        self.close()

    def close(self) -> None:
        """GOAWAY (no error) and close."""
        try:
            self.h2c.close_connection()
        except h2.exceptions.ProtocolError:
            pass  # h2 already sent or received one
        self.flush()
        self.transport.close()

    def shutdown(self) -> None:
        """Graceful shutdown: GOAWAY now, so the client opens no new stream here; the streams in flight
        finish (the server bounds that with --timeout-graceful-shutdown), then the connection closes."""
        self.stop_keep_alive()

    def stop_keep_alive(self) -> None:
        if self.closing or self.transport.is_closing():
            return
        self.closing = True
        if not self.streams:
            self.close()
            return
        # Written here, not with h2's close_connection(): after that h2 would send nothing more, not
        # even the rest of the responses in flight.
        self.flush()
        goaway = GoAwayFrame(0, last_stream_id=self.h2c.highest_inbound_stream_id, error_code=0)
        self.transport.write(goaway.serialize())
