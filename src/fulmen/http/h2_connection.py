"""The server side of one HTTP/2 connection without I/O: bytes in, events out, frames out (RFC 9113).

:meth:`H2Connection.receive` parses frames, applies every rule the RFC puts on a server (the
preface and first SETTINGS, stream states and ids, flow control both ways, CONTINUATION, SETTINGS
values, header blocks through :mod:`fulmen.http.h2_hpack`) and returns what the protocol above must
act on: requests, request data, resets, windows that opened, the peer's GOAWAY and PING answers.
The frames the server owes (SETTINGS and PING acknowledgements, WINDOW_UPDATE, RST_STREAM, GOAWAY)
and the ones the protocol asks for (:meth:`send_headers`, :meth:`send_data`) wait in
:meth:`data_to_send`. A broken rule of a stream resets that stream and the connection goes on; one
of the connection queues a GOAWAY and raises :class:`H2ConnectionError`.

Abuse is bounded here too: concurrent streams (REFUSED_STREAM over the limit), streams reset by the
client faster than they are served ("rapid reset", CVE-2023-44487), CONTINUATION floods and header
blocks too large: each ends in ENHANCE_YOUR_CALM.
"""

from __future__ import annotations

from fulmen.http.h2_frames import (
    ACK,
    CONTINUATION,
    DATA,
    DEFAULT_MAX_FRAME_SIZE,
    DEFAULT_WINDOW,
    ENABLE_CONNECT_PROTOCOL,
    ENABLE_PUSH,
    END_HEADERS,
    END_STREAM,
    GOAWAY,
    HEADERS,
    INITIAL_WINDOW_SIZE,
    MAX_CONCURRENT_STREAMS,
    MAX_FRAME_SIZE,
    MAX_FRAME_SIZE_LIMIT,
    MAX_HEADER_LIST_SIZE,
    MAX_WINDOW,
    PADDED,
    PING,
    PREFACE,
    PRIORITY,
    PRIORITY_FLAG,
    PUSH_PROMISE,
    RST_STREAM,
    SETTINGS,
    SETTINGS_ACK,
    WINDOW_UPDATE,
    ErrorCode,
    H2ConnectionError,
    H2StreamError,
    frame_header,
    goaway_frame,
    iter_settings,
    pack_header,
    ping_frame,
    rst_stream_frame,
    settings_frame,
    unpack_header,
    unpack_pair,
    unpack_u32,
    window_update_frame,
)
from fulmen.http.h2_hpack import RequestDecoder, RequestHead, check_trailers, encode_headers

#: Streams the client may reset (or have refused) beyond the ones served, before the connection ends
#: with ENHANCE_YOUR_CALM: a browser cancels some requests, a rapid-reset flood cancels all.
RESET_ALLOWANCE = 200
#: CONTINUATION frames one header block may take (a flood of empty ones costs the server, not the peer).
MAX_CONTINUATIONS = 64
#: Empty DATA frames (without END_STREAM) a connection may send: they carry nothing and cost the
#: server a frame each (CVE-2019-9518); past this the connection ends with ENHANCE_YOUR_CALM.
MAX_EMPTY_DATA = 1000
#: Streams reset by the server (their late frames are ignored), and ranges of stream ids skipped by the
#: client (never opened: a HEADERS there is a connection error), remembered.
_CLOSED_MEMORY = 512
_STREAM_ID_MASK = 0x7FFFFFFF


# -- events


class RequestReceived:
    """A new stream's request head; ``ended`` when it has no body."""

    __slots__ = ("ended", "head", "stream_id")

    def __init__(self, stream_id: int, head: RequestHead, ended: bool) -> None:
        self.stream_id = stream_id
        self.head = head
        self.ended = ended


class DataReceived:
    """Request body bytes (flow-controlled: give them back with :meth:`H2Connection.acknowledge` once
    read); ``ended`` at the end of the request (empty data when trailers ended it)."""

    __slots__ = ("data", "ended", "stream_id")

    def __init__(self, stream_id: int, data: bytes, ended: bool) -> None:
        self.stream_id = stream_id
        self.data = data
        self.ended = ended


class StreamReset:
    """A stream ended early: by the client's RST_STREAM (``remote``) or by the server for an error."""

    __slots__ = ("code", "remote", "stream_id")

    def __init__(self, stream_id: int, code: int, remote: bool) -> None:
        self.stream_id = stream_id
        self.code = code
        self.remote = remote


class WindowOpened:
    """More can be sent on a stream, or on all of them (``stream_id`` 0)."""

    __slots__ = ("stream_id",)

    def __init__(self, stream_id: int) -> None:
        self.stream_id = stream_id


class GoAwayReceived:
    """The client opens no more streams."""

    __slots__ = ("code", "last_stream_id")

    def __init__(self, last_stream_id: int, code: int) -> None:
        self.last_stream_id = last_stream_id
        self.code = code


class PingAcked:
    """The answer to a PING the server sent."""

    __slots__ = ("opaque",)

    def __init__(self, opaque: bytes) -> None:
        self.opaque = opaque


Event = RequestReceived | DataReceived | StreamReset | WindowOpened | GoAwayReceived | PingAcked


class StreamState:
    """The RFC 9113 section 5.1 state of an open stream and its two windows. A stream is open while
    either side may still send; it is dropped from :attr:`H2Connection.streams` once closed."""

    __slots__ = ("expected", "local_open", "received", "recv_window", "remote_open", "send_window", "unacked")

    def __init__(self, send_window: int, recv_window: int) -> None:
        self.remote_open = True  # the client may send (not half-closed remote)
        self.local_open = True  # the server may send (not half-closed local)
        self.send_window = send_window  # what the server may send before a WINDOW_UPDATE
        self.recv_window = recv_window  # what the client may send before the server's WINDOW_UPDATE
        self.unacked = 0  # bytes read by the application, not yet given back to the client
        self.expected = -1  # the request's content-length
        self.received = 0


class H2Connection:
    """One connection's HTTP/2 state, server side."""

    def __init__(
        self,
        *,
        max_concurrent_streams: int = 100,
        stream_window: int = DEFAULT_WINDOW,
        connection_window: int = DEFAULT_WINDOW,
        max_header_list_size: int = 65536,
        decoder_limit: int = 65536,
        connect_protocol: bool = False,
        field_cache: dict[tuple[bytes, bytes], bytes] | None = None,
    ) -> None:
        """``max_header_list_size`` is advertised; ``decoder_limit``, past which a header block ends the
        connection, is what the server can afford to decode (a larger list it still answers).
        ``field_cache``: the encoded response fields, shared by a server's connections."""
        self.field_cache = {} if field_cache is None else field_cache
        self.max_concurrent_streams = max_concurrent_streams
        self.stream_window = stream_window
        self.connection_window = connection_window
        self.max_header_list_size = max_header_list_size
        self.connect_protocol = connect_protocol
        self.decoder = RequestDecoder(decoder_limit)
        self.block_limit = decoder_limit  # compressed bytes of one header block
        self.streams: dict[int, StreamState] = {}
        self.reset_by_server: dict[int, None] = {}  # recent streams the server reset (late frames ignored)
        self.skipped: list[tuple[int, int]] = []  # recent ranges of stream ids the client never opened
        self.highest_stream_id = 0  # the last stream the client opened
        self.goaway_last: int | None = None  # the last stream id of the server's GOAWAY
        self.out: list[bytes | memoryview] = []
        # The start of a frame not yet whole: its pieces, and how many bytes make it whole (a frame
        # sent a byte at a time is joined once, not copied again for every byte).
        self.partial: list[bytes] = []
        self.partial_size = 0
        self.needed = 0
        self.preface_needed = True
        self.settings_needed = True  # the client's first frame must be SETTINGS
        self.terminated = False
        self.table_emptied = False  # the HPACK table size update to 0 is sent
        # Flow control: what the server may send, and what it lets the client send.
        self.send_window = DEFAULT_WINDOW
        self.peer_initial_window = DEFAULT_WINDOW
        self.peer_max_frame_size = DEFAULT_MAX_FRAME_SIZE
        self.recv_window = connection_window
        self.unacked = 0
        # Header block being received (HEADERS then CONTINUATION).
        self.block_stream = 0
        self.block_parts: list[bytes] = []
        self.block_size = 0
        self.block_frames = 0
        self.block_ended = False
        self.block_error: H2StreamError | None = None
        # Abuse accounting.
        self.peer_resets = 0
        self.completed = 0
        self.empty_data = 0

    # -- setup

    def initiate(self) -> None:
        """The server's first frames: its SETTINGS, and the connection window beyond the default."""
        settings = {
            MAX_CONCURRENT_STREAMS: self.max_concurrent_streams,
            INITIAL_WINDOW_SIZE: self.stream_window,
            MAX_HEADER_LIST_SIZE: self.max_header_list_size,
            ENABLE_PUSH: 0,
        }
        if self.connect_protocol:
            settings[ENABLE_CONNECT_PROTOCOL] = 1
        self.out.append(settings_frame(settings))
        if self.connection_window > DEFAULT_WINDOW:
            self.out.append(window_update_frame(0, self.connection_window - DEFAULT_WINDOW))

    def upgrade(self, settings: bytes) -> None:
        """An ``Upgrade: h2c`` request: the client's settings from ``HTTP2-Settings`` (acknowledged by the
        101 itself), and stream 1, the upgrade request, already half-closed by the client."""
        if len(settings) % 6:
            raise H2ConnectionError(ErrorCode.FRAME_SIZE_ERROR, "HTTP2-Settings")
        self.apply_settings(settings)
        stream = StreamState(self.peer_initial_window, self.stream_window)
        stream.remote_open = False
        self.streams[1] = stream
        self.highest_stream_id = 1

    def data_to_send(self) -> bytes:
        out = self.out
        if not out:
            return b""
        self.out = []
        return b"".join(out)

    # -- receiving

    def receive(self, data: bytes) -> list[Event]:
        """The events of the bytes the client sent; frames the server owes are queued. Raises
        H2ConnectionError (its GOAWAY queued) when the connection must end."""
        if self.terminated:
            return []
        if self.partial:
            self.partial.append(data)
            self.partial_size += len(data)
            if self.partial_size < self.needed:
                return []
            data = b"".join(self.partial)
            self.partial = []
        events: list[Event] = []
        try:
            if self.preface_needed:
                if len(data) < len(PREFACE):
                    if not PREFACE.startswith(data):
                        raise H2ConnectionError(ErrorCode.PROTOCOL_ERROR, "invalid connection preface")
                    self.keep_partial(data, len(PREFACE))
                    return events
                if not data.startswith(PREFACE):
                    raise H2ConnectionError(ErrorCode.PROTOCOL_ERROR, "invalid connection preface")
                self.preface_needed = False
                data = data[len(PREFACE) :]
            position = 0
            size = len(data)
            while size - position >= 9:
                high, low, kind, flags, stream_id = unpack_header(data, position)
                length = high << 16 | low
                if length > DEFAULT_MAX_FRAME_SIZE:
                    raise H2ConnectionError(
                        ErrorCode.FRAME_SIZE_ERROR, "frame larger than SETTINGS_MAX_FRAME_SIZE"
                    )
                end = position + 9 + length
                if end > size:
                    break
                payload = data[position + 9 : end]
                position = end
                stream_id &= _STREAM_ID_MASK
                if self.block_stream and (kind != CONTINUATION or stream_id != self.block_stream):
                    raise H2ConnectionError(ErrorCode.PROTOCOL_ERROR, "expected CONTINUATION")
                if self.settings_needed:
                    if kind != SETTINGS or flags & ACK:
                        raise H2ConnectionError(
                            ErrorCode.PROTOCOL_ERROR, "the preface must be followed by SETTINGS"
                        )
                    self.settings_needed = False
                try:
                    if kind == HEADERS:
                        self.on_headers(flags, stream_id, payload, events)
                    elif kind == DATA:
                        self.on_data(flags, stream_id, payload, events)
                    else:
                        self.on_control(kind, flags, stream_id, payload, events)
                except H2StreamError as exc:
                    self.stream_error(exc, events)
            if position < size:
                rest = data[position:]
                self.keep_partial(rest, 9 + (int.from_bytes(rest[:3], "big") if len(rest) >= 9 else 0))
        except H2ConnectionError as exc:
            self.terminate(exc.code, str(exc))
            raise
        return events

    def keep_partial(self, data: bytes, needed: int) -> None:
        self.partial = [data]
        self.partial_size = len(data)
        self.needed = needed

    def terminate(self, code: ErrorCode, message: str = "") -> None:
        """GOAWAY with ``code``: the connection ends; nothing is received after it."""
        if not self.terminated:
            self.terminated = True
            debug = message.encode("ascii", "replace")[:200] if code else b""
            self.out.append(goaway_frame(self.highest_stream_id, code, debug))

    def stream_error(self, exc: H2StreamError, events: list[Event]) -> None:
        stream_id = exc.stream_id
        known = stream_id in self.streams
        self.reset_stream(stream_id, exc.code)
        if known:
            events.append(StreamReset(stream_id, exc.code, remote=False))

    def on_data(self, flags: int, stream_id: int, payload: bytes, events: list[Event]) -> None:
        if stream_id == 0:
            raise H2ConnectionError(ErrorCode.PROTOCOL_ERROR, "DATA on stream 0")
        length = len(payload)
        data = payload
        if flags & PADDED:
            if not length or payload[0] >= length:
                raise H2ConnectionError(ErrorCode.PROTOCOL_ERROR, "padding longer than the frame")
            data = payload[1 : length - payload[0]]
        self.recv_window -= length
        if self.recv_window < 0:
            raise H2ConnectionError(ErrorCode.FLOW_CONTROL_ERROR, "connection window exceeded")
        stream = self.streams.get(stream_id)
        if stream is None or not stream.remote_open:
            self.acknowledge(0, length)  # nobody reads it
            if stream_id > self.highest_stream_id:
                raise H2ConnectionError(ErrorCode.PROTOCOL_ERROR, "DATA on an idle stream")
            if stream is None and stream_id in self.reset_by_server:
                return  # reset by the server: frames in flight are ignored
            raise H2StreamError(stream_id, ErrorCode.STREAM_CLOSED, "DATA on a closed stream")
        stream.recv_window -= length
        if stream.recv_window < 0:
            self.acknowledge(0, length)
            raise H2StreamError(stream_id, ErrorCode.FLOW_CONTROL_ERROR, "stream window exceeded")
        if len(data) < length:
            self.acknowledge(stream_id, length - len(data))  # padding: nobody reads it
        ended = bool(flags & END_STREAM)
        if not data and not ended:
            self.empty_data += 1
            if self.empty_data > MAX_EMPTY_DATA:
                raise H2ConnectionError(ErrorCode.ENHANCE_YOUR_CALM, "too many empty DATA frames")
        if stream.expected >= 0:
            stream.received += len(data)
            if stream.received > stream.expected or (ended and stream.received != stream.expected):
                self.acknowledge(0, len(data))
                raise H2StreamError(
                    stream_id, ErrorCode.PROTOCOL_ERROR, "body length differs from content-length"
                )
        if ended:
            self.remote_closed(stream_id, stream)
        events.append(DataReceived(stream_id, data, ended))

    def on_headers(self, flags: int, stream_id: int, payload: bytes, events: list[Event]) -> None:
        if stream_id == 0:
            raise H2ConnectionError(ErrorCode.PROTOCOL_ERROR, "HEADERS on stream 0")
        start = 0
        padding = 0
        if flags & PADDED:
            if not payload:
                raise H2ConnectionError(ErrorCode.FRAME_SIZE_ERROR, "HEADERS too short")
            padding = payload[0]
            start = 1
        error = None
        if flags & PRIORITY_FLAG:
            if len(payload) < start + 5:
                raise H2ConnectionError(ErrorCode.FRAME_SIZE_ERROR, "HEADERS too short")
            if unpack_u32(payload, start)[0] & _STREAM_ID_MASK == stream_id:
                error = H2StreamError(stream_id, ErrorCode.PROTOCOL_ERROR, "stream depends on itself")
            start += 5
        if padding > len(payload) - start:
            raise H2ConnectionError(ErrorCode.PROTOCOL_ERROR, "padding longer than the frame")
        fragment = payload[start : len(payload) - padding] if start or padding else payload
        self.block_ended = bool(flags & END_STREAM)
        self.block_error = error
        if flags & END_HEADERS:
            self.on_header_block(stream_id, fragment, events)
        else:
            self.block_stream = stream_id
            self.block_parts = [fragment]
            self.block_size = len(fragment)
            self.block_frames = 0

    def on_continuation(self, flags: int, stream_id: int, payload: bytes, events: list[Event]) -> None:
        if not self.block_stream:
            raise H2ConnectionError(ErrorCode.PROTOCOL_ERROR, "CONTINUATION without HEADERS")
        self.block_parts.append(payload)
        self.block_size += len(payload)
        self.block_frames += 1
        if self.block_size > self.block_limit or self.block_frames > MAX_CONTINUATIONS:
            raise H2ConnectionError(ErrorCode.ENHANCE_YOUR_CALM, "header block too large")
        if flags & END_HEADERS:
            block = b"".join(self.block_parts)
            self.block_stream = 0
            self.block_parts = []
            self.on_header_block(stream_id, block, events)

    def on_header_block(self, stream_id: int, block: bytes, events: list[Event]) -> None:
        """A complete header block: a new request, or trailers. Every block is decoded, even one that
        is refused: the HPACK state is the connection's."""
        ended = self.block_ended
        stream = self.streams.get(stream_id)
        if stream is not None:
            fields = self.decoder.decode_trailers(block)
            if not stream.remote_open:
                raise H2StreamError(stream_id, ErrorCode.STREAM_CLOSED, "HEADERS on a half-closed stream")
            if not ended:
                raise H2StreamError(stream_id, ErrorCode.PROTOCOL_ERROR, "trailers without END_STREAM")
            check_trailers(fields, stream_id)
            if stream.expected >= 0 and stream.received != stream.expected:
                raise H2StreamError(
                    stream_id, ErrorCode.PROTOCOL_ERROR, "body length differs from content-length"
                )
            self.remote_closed(stream_id, stream)
            events.append(DataReceived(stream_id, b"", True))
            return
        if stream_id <= self.highest_stream_id:
            self.decoder.decode_trailers(block)
            if stream_id in self.reset_by_server:
                return
            if not stream_id & 1 or any(low <= stream_id <= high for low, high in self.skipped):
                raise H2ConnectionError(ErrorCode.PROTOCOL_ERROR, "stream id lower than a previous one")
            raise H2StreamError(stream_id, ErrorCode.STREAM_CLOSED, "HEADERS on a closed stream")
        if not stream_id & 1:
            raise H2ConnectionError(ErrorCode.PROTOCOL_ERROR, "even stream id from the client")
        if stream_id > self.highest_stream_id + 2:  # ids skipped: never opened, now closed (5.1.1)
            self.skipped.append((self.highest_stream_id + 2, stream_id - 2))
            del self.skipped[:-_CLOSED_MEMORY]
        self.highest_stream_id = stream_id
        if self.block_error is not None or (self.goaway_last is not None and stream_id > self.goaway_last):
            self.decoder.decode_trailers(block)
            self.remember_reset(stream_id)
            if self.block_error is not None:
                raise self.block_error
            return  # after the server's GOAWAY: not served, and the client knows
        try:
            head = self.decoder.decode(block, stream_id)
        except H2StreamError:
            self.remember_reset(stream_id)
            raise
        if len(self.streams) >= self.max_concurrent_streams:
            self.count_reset()
            self.reset_stream(stream_id, ErrorCode.REFUSED_STREAM)
            return
        if head.protocol is not None and not self.connect_protocol:
            self.remember_reset(stream_id)
            raise H2StreamError(
                stream_id, ErrorCode.PROTOCOL_ERROR, ":protocol without SETTINGS_ENABLE_CONNECT_PROTOCOL"
            )
        if ended and head.content_length > 0:
            self.remember_reset(stream_id)
            raise H2StreamError(
                stream_id, ErrorCode.PROTOCOL_ERROR, "body length differs from content-length"
            )
        stream = StreamState(self.peer_initial_window, self.stream_window)
        stream.expected = head.content_length
        stream.remote_open = not ended
        self.streams[stream_id] = stream
        events.append(RequestReceived(stream_id, head, ended))

    def on_control(self, kind: int, flags: int, stream_id: int, payload: bytes, events: list[Event]) -> None:
        """Every frame but HEADERS and DATA."""
        length = len(payload)
        if kind == WINDOW_UPDATE:
            if length != 4:
                raise H2ConnectionError(ErrorCode.FRAME_SIZE_ERROR, "WINDOW_UPDATE size")
            increment = unpack_u32(payload)[0] & _STREAM_ID_MASK
            if stream_id == 0:
                if increment == 0:
                    raise H2ConnectionError(ErrorCode.PROTOCOL_ERROR, "WINDOW_UPDATE of 0")
                self.send_window += increment
                if self.send_window > MAX_WINDOW:
                    raise H2ConnectionError(ErrorCode.FLOW_CONTROL_ERROR, "connection window above 2^31-1")
                events.append(WindowOpened(0))
                return
            if stream_id > self.highest_stream_id:
                raise H2ConnectionError(ErrorCode.PROTOCOL_ERROR, "WINDOW_UPDATE on an idle stream")
            stream = self.streams.get(stream_id)
            if stream is None:
                return  # closed: a late update
            if increment == 0:
                raise H2StreamError(stream_id, ErrorCode.PROTOCOL_ERROR, "WINDOW_UPDATE of 0")
            stream.send_window += increment
            if stream.send_window > MAX_WINDOW:
                raise H2StreamError(stream_id, ErrorCode.FLOW_CONTROL_ERROR, "stream window above 2^31-1")
            events.append(WindowOpened(stream_id))
        elif kind == CONTINUATION:
            self.on_continuation(flags, stream_id, payload, events)
        elif kind == SETTINGS:
            if stream_id:
                raise H2ConnectionError(ErrorCode.PROTOCOL_ERROR, "SETTINGS on a stream")
            if flags & ACK:
                if length:
                    raise H2ConnectionError(ErrorCode.FRAME_SIZE_ERROR, "SETTINGS ACK with a payload")
                return
            if length % 6:
                raise H2ConnectionError(ErrorCode.FRAME_SIZE_ERROR, "SETTINGS size not a multiple of 6")
            if self.apply_settings(payload):
                events.append(WindowOpened(0))
            self.out.append(SETTINGS_ACK)
        elif kind == PING:
            if length != 8:
                raise H2ConnectionError(ErrorCode.FRAME_SIZE_ERROR, "PING size")
            if stream_id:
                raise H2ConnectionError(ErrorCode.PROTOCOL_ERROR, "PING on a stream")
            if flags & ACK:
                events.append(PingAcked(payload))
            else:
                self.out.append(ping_frame(payload, ack=True))
        elif kind == RST_STREAM:
            if length != 4:
                raise H2ConnectionError(ErrorCode.FRAME_SIZE_ERROR, "RST_STREAM size")
            if stream_id == 0 or stream_id > self.highest_stream_id:
                raise H2ConnectionError(ErrorCode.PROTOCOL_ERROR, "RST_STREAM on an idle stream")
            if self.streams.pop(stream_id, None) is None:
                return
            self.count_reset()
            events.append(StreamReset(stream_id, unpack_u32(payload)[0], remote=True))
        elif kind == PRIORITY:  # accepted, and ignored (RFC 9113 deprecates the priority scheme)
            if stream_id == 0:
                raise H2ConnectionError(ErrorCode.PROTOCOL_ERROR, "PRIORITY on stream 0")
            if length != 5:
                raise H2StreamError(stream_id, ErrorCode.FRAME_SIZE_ERROR, "PRIORITY size")
            if unpack_u32(payload)[0] & _STREAM_ID_MASK == stream_id:
                raise H2StreamError(stream_id, ErrorCode.PROTOCOL_ERROR, "stream depends on itself")
        elif kind == GOAWAY:
            if stream_id:
                raise H2ConnectionError(ErrorCode.PROTOCOL_ERROR, "GOAWAY on a stream")
            if length < 8:
                raise H2ConnectionError(ErrorCode.FRAME_SIZE_ERROR, "GOAWAY size")
            last, code = unpack_pair(payload)
            events.append(GoAwayReceived(last & _STREAM_ID_MASK, code))
        elif kind == PUSH_PROMISE:
            raise H2ConnectionError(ErrorCode.PROTOCOL_ERROR, "PUSH_PROMISE from a client")
        # Frames of unknown types are ignored (section 4.1).

    def apply_settings(self, payload: bytes) -> bool:
        """The client's settings; True when a window grew (sending may resume)."""
        grew = False
        for key, value in iter_settings(payload):
            if key == INITIAL_WINDOW_SIZE:
                if value > MAX_WINDOW:
                    raise H2ConnectionError(
                        ErrorCode.FLOW_CONTROL_ERROR, "SETTINGS_INITIAL_WINDOW_SIZE above 2^31-1"
                    )
                delta = value - self.peer_initial_window
                self.peer_initial_window = value
                for stream in self.streams.values():  # section 6.9.2: windows may go negative
                    stream.send_window += delta
                    if stream.send_window > MAX_WINDOW:
                        raise H2ConnectionError(ErrorCode.FLOW_CONTROL_ERROR, "stream window above 2^31-1")
                grew = grew or delta > 0
            elif key == MAX_FRAME_SIZE:
                if not DEFAULT_MAX_FRAME_SIZE <= value <= MAX_FRAME_SIZE_LIMIT:
                    raise H2ConnectionError(ErrorCode.PROTOCOL_ERROR, "SETTINGS_MAX_FRAME_SIZE out of range")
                self.peer_max_frame_size = value
            elif key in (ENABLE_PUSH, ENABLE_CONNECT_PROTOCOL):
                if value > 1:
                    raise H2ConnectionError(ErrorCode.PROTOCOL_ERROR, "SETTINGS value must be 0 or 1")
            # HEADER_TABLE_SIZE: responses use no dynamic table. The others bind a client, or nobody.
        return grew

    # -- stream bookkeeping

    def remote_closed(self, stream_id: int, stream: StreamState) -> None:
        stream.remote_open = False
        if not stream.local_open:
            del self.streams[stream_id]

    def remember_reset(self, stream_id: int) -> None:
        reset = self.reset_by_server
        reset[stream_id] = None
        if len(reset) > 2 * _CLOSED_MEMORY:  # keep the newest half: one trim per _CLOSED_MEMORY resets
            self.reset_by_server = dict.fromkeys(list(reset)[_CLOSED_MEMORY:])

    def count_reset(self) -> None:
        """A stream the client reset or that was refused: past the allowance, and more of those than
        streams served, the connection ends (a rapid-reset flood)."""
        self.peer_resets += 1
        if self.peer_resets > RESET_ALLOWANCE and self.peer_resets > self.completed:
            raise H2ConnectionError(ErrorCode.ENHANCE_YOUR_CALM, "too many streams reset")

    # -- sending

    def is_open(self, stream_id: int) -> bool:
        """Whether the server may still send on the stream."""
        stream = self.streams.get(stream_id)
        return stream is not None and stream.local_open

    def window(self, stream_id: int) -> int:
        """How many bytes of DATA the stream may send now."""
        stream = self.streams.get(stream_id)
        if stream is None:
            return 0
        return min(self.send_window, stream.send_window)

    def send_headers(
        self, stream_id: int, headers: list[tuple[bytes, bytes]], end_stream: bool = False
    ) -> bool:
        """A response head (or trailers, or a 1xx); False when the stream is closed."""
        return self.send_block(stream_id, encode_headers(headers, self.field_cache), end_stream)

    def send_block(self, stream_id: int, block: bytes, end_stream: bool = False) -> bool:
        """:meth:`send_headers` with the fields already encoded (``h2_hpack.encode_headers``)."""
        stream = self.streams.get(stream_id)
        if stream is None or not stream.local_open:
            return False
        if not self.table_emptied:
            # The first block says the server's dynamic table is empty (RFC 7541 section 6.3): the
            # encoder never uses it, so no SETTINGS_HEADER_TABLE_SIZE the client sends later can
            # require an update.
            block = b"\x20" + block
            self.table_emptied = True
        size = len(block)
        limit = self.peer_max_frame_size
        flags = END_STREAM if end_stream else 0
        if size <= limit:
            self.out.append(
                pack_header(size >> 16, size & 0xFFFF, HEADERS, flags | END_HEADERS, stream_id) + block
            )
        else:
            out = self.out
            out.append(frame_header(limit, HEADERS, flags, stream_id) + block[:limit])
            for start in range(limit, size, limit):
                piece = block[start : start + limit]
                last = start + limit >= size
                out.append(
                    frame_header(len(piece), CONTINUATION, END_HEADERS if last else 0, stream_id) + piece
                )
        if end_stream:
            self.local_closed(stream_id, stream)
        return True

    def send_data(self, stream_id: int, data: bytes | memoryview, end_stream: bool = False) -> int:
        """DATA frames for as much of ``data`` as the windows allow; the number of bytes sent (-1 when
        the stream is closed). END_STREAM goes with the last byte, only when all were sent."""
        stream = self.streams.get(stream_id)
        if stream is None or not stream.local_open:
            return -1
        size = len(data)
        window = self.send_window
        if stream.send_window < window:
            window = stream.send_window
        limit = self.peer_max_frame_size
        out = self.out
        if (size <= window and size <= limit) or not size:  # the common case: one frame
            out.append(
                pack_header(size >> 16, size & 0xFFFF, DATA, END_STREAM if end_stream else 0, stream_id)
            )
            out.append(data)
            sent = size
        else:
            sent = 0
            view = memoryview(data)
            while sent < size and window > 0:
                count = min(size - sent, window, limit)
                last = end_stream and sent + count == size
                out.append(frame_header(count, DATA, END_STREAM if last else 0, stream_id))
                out.append(view[sent : sent + count])
                sent += count
                window -= count
        self.send_window -= sent
        stream.send_window -= sent
        if end_stream and sent == size:
            self.local_closed(stream_id, stream)
        return sent

    def local_closed(self, stream_id: int, stream: StreamState) -> None:
        stream.local_open = False
        self.completed += 1
        if not stream.remote_open:
            del self.streams[stream_id]

    def reset_stream(self, stream_id: int, code: int) -> None:
        """RST_STREAM: the stream ends now, both ways."""
        self.out.append(rst_stream_frame(stream_id, code))
        self.streams.pop(stream_id, None)
        self.remember_reset(stream_id)

    def acknowledge(self, stream_id: int, length: int) -> None:
        """``length`` bytes of request data were read: the client may send them again. WINDOW_UPDATEs go
        out once half a window is owed, not for every read."""
        self.unacked += length
        if self.unacked >= self.connection_window >> 1:
            self.out.append(window_update_frame(0, self.unacked))
            self.recv_window += self.unacked
            self.unacked = 0
        stream = self.streams.get(stream_id)
        if stream is not None and stream.remote_open:
            stream.unacked += length
            if stream.unacked >= self.stream_window >> 1:
                self.out.append(window_update_frame(stream_id, stream.unacked))
                stream.recv_window += stream.unacked
                stream.unacked = 0

    def goaway(self, last_stream_id: int, code: int = 0) -> None:
        """GOAWAY: streams above ``last_stream_id`` will not be served; the connection stays open for
        the ones below (use :meth:`terminate` to end it)."""
        self.goaway_last = last_stream_id
        self.out.append(goaway_frame(last_stream_id, code))

    def ping(self, opaque: bytes) -> None:
        self.out.append(ping_frame(opaque))
