"""The MUSTs of RFC 9113 (and HPACK's, RFC 7541) for a server, on the sans-I/O connection: frames in
(made with hyperframe and hpack, the reference implementations), the server's frames out. The same
rules over a real socket, with the protocol and its application tasks, are at the end."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest

from fulmen.http.h2_connection import (
    DataReceived,
    GoAwayReceived,
    H2Connection,
    RequestReceived,
    StreamReset,
    WindowOpened,
)
from fulmen.http.h2_frames import H2ConnectionError
from tests import apps
from tests.conftest import run_server

pytest.importorskip("hyperframe")

from hpack import Encoder
from hyperframe.frame import (
    ContinuationFrame,
    DataFrame,
    GoAwayFrame,
    HeadersFrame,
    PingFrame,
    PriorityFrame,
    RstStreamFrame,
    SettingsFrame,
    WindowUpdateFrame,
)

from tests.http.h2_helpers import PREFACE, FrameReader, parse_frames, raw_connect, request_frame

PROTOCOL_ERROR, STREAM_CLOSED, FRAME_SIZE_ERROR, REFUSED_STREAM = 0x1, 0x5, 0x6, 0x7
FLOW_CONTROL_ERROR, COMPRESSION_ERROR, ENHANCE_YOUR_CALM = 0x3, 0x9, 0xB
GET = [(b":method", b"GET"), (b":scheme", b"http"), (b":authority", b"t"), (b":path", b"/")]


def block(fields: list[tuple[bytes, bytes]]) -> bytes:
    return Encoder().encode(fields)  # type: ignore[no-any-return]


def headers(stream_id: int, fields: list[tuple[bytes, bytes]] = GET, end_stream: bool = True) -> bytes:
    flags = ["END_HEADERS", "END_STREAM"] if end_stream else ["END_HEADERS"]
    return HeadersFrame(stream_id, block(fields), flags=flags).serialize()  # type: ignore[no-any-return]


def raw_frame(kind: int, flags: int, stream_id: int, payload: bytes) -> bytes:
    return len(payload).to_bytes(3, "big") + bytes([kind, flags]) + stream_id.to_bytes(4, "big") + payload


class Peer:
    """A client talking to a fresh sans-I/O connection: feed bytes, read the server's frames."""

    def __init__(self, **options: Any) -> None:
        self.conn = H2Connection(**options)
        self.conn.initiate()
        self.events: list[Any] = []
        self.error: H2ConnectionError | None = None
        self.frames: list[Any] = []
        self.feed(PREFACE + SettingsFrame(0).serialize())
        self.frames.clear()

    def feed(self, data: bytes) -> Peer:
        try:
            self.events += self.conn.receive(data)
        except H2ConnectionError as exc:
            self.error = exc
        frames, rest = parse_frames(self.conn.data_to_send())
        assert rest == b""
        self.frames += frames
        return self

    def goaway(self) -> int | None:
        found = [f.error_code for f in self.frames if isinstance(f, GoAwayFrame)]
        assert len(found) <= 1
        return found[0] if found else None

    def resets(self) -> list[tuple[int, int]]:
        return [(f.stream_id, f.error_code) for f in self.frames if isinstance(f, RstStreamFrame)]

    def requests(self) -> list[int]:
        return [e.stream_id for e in self.events if isinstance(e, RequestReceived)]


# -- connection errors


CONNECTION_ERRORS = {
    "settings-ack-with-payload": (raw_frame(0x4, 0x1, 0, b"\0" * 6), FRAME_SIZE_ERROR),
    "settings-length-not-6n": (raw_frame(0x4, 0, 0, b"\0" * 5), FRAME_SIZE_ERROR),
    "settings-on-a-stream": (raw_frame(0x4, 0, 1, b""), PROTOCOL_ERROR),
    "enable-push-2": (SettingsFrame(0, settings={0x2: 2}).serialize(), PROTOCOL_ERROR),
    "initial-window-2^31": (SettingsFrame(0, settings={0x4: 2**31}).serialize(), FLOW_CONTROL_ERROR),
    "max-frame-size-too-small": (SettingsFrame(0, settings={0x5: 16383}).serialize(), PROTOCOL_ERROR),
    "max-frame-size-too-large": (SettingsFrame(0, settings={0x5: 2**24}).serialize(), PROTOCOL_ERROR),
    "connect-protocol-2": (SettingsFrame(0, settings={0x8: 2}).serialize(), PROTOCOL_ERROR),
    "ping-length-7": (raw_frame(0x6, 0, 0, b"\0" * 7), FRAME_SIZE_ERROR),
    "ping-on-a-stream": (raw_frame(0x6, 0, 1, b"\0" * 8), PROTOCOL_ERROR),
    "even-stream-id": (headers(2), PROTOCOL_ERROR),
    "headers-on-stream-0": (raw_frame(0x1, 0x4, 0, block(GET)), PROTOCOL_ERROR),
    "decreasing-stream-id": (headers(5) + headers(3), PROTOCOL_ERROR),
    "data-on-stream-0": (raw_frame(0x0, 0, 0, b"x"), PROTOCOL_ERROR),
    "data-on-idle-stream": (DataFrame(1, b"x").serialize(), PROTOCOL_ERROR),
    "rst-on-idle-stream": (RstStreamFrame(1, 0x8).serialize(), PROTOCOL_ERROR),
    "rst-on-stream-0": (raw_frame(0x3, 0, 0, b"\0" * 4), PROTOCOL_ERROR),
    "rst-length-3": (headers(1, end_stream=False) + raw_frame(0x3, 0, 1, b"\0" * 3), FRAME_SIZE_ERROR),
    "window-update-on-idle-stream": (WindowUpdateFrame(1, window_increment=1).serialize(), PROTOCOL_ERROR),
    "window-update-0-on-connection": (raw_frame(0x8, 0, 0, b"\0" * 4), PROTOCOL_ERROR),
    "window-update-length-3": (raw_frame(0x8, 0, 0, b"\0" * 3), FRAME_SIZE_ERROR),
    "connection-window-overflow": (
        WindowUpdateFrame(0, window_increment=2**31 - 1).serialize(),
        FLOW_CONTROL_ERROR,
    ),
    "priority-on-stream-0": (raw_frame(0x2, 0, 0, b"\0" * 5), PROTOCOL_ERROR),
    "push-promise-from-client": (raw_frame(0x5, 0x4, 1, b"\0\0\0\x02" + block(GET)), PROTOCOL_ERROR),
    "continuation-without-headers": (raw_frame(0x9, 0x4, 1, block(GET)), PROTOCOL_ERROR),
    "continuation-on-another-stream": (
        HeadersFrame(1, block(GET)[:2]).serialize() + raw_frame(0x9, 0x4, 3, block(GET)[2:]),
        PROTOCOL_ERROR,
    ),
    "frame-between-headers-and-continuation": (
        HeadersFrame(1, block(GET)[:2]).serialize() + PingFrame(0, b"\0" * 8).serialize(),
        PROTOCOL_ERROR,
    ),
    "unknown-frame-inside-a-header-block": (
        HeadersFrame(1, block(GET)[:2]).serialize() + raw_frame(0xFA, 0, 1, b"x"),
        PROTOCOL_ERROR,
    ),
    "continuation-flood": (
        HeadersFrame(1, block(GET)).serialize() + raw_frame(0x9, 0, 1, b"") * 100,
        ENHANCE_YOUR_CALM,
    ),
    "empty-data-flood": (
        headers(1, end_stream=False) + DataFrame(1, b"").serialize() * 1001,
        ENHANCE_YOUR_CALM,
    ),
    "frame-larger-than-16384": (raw_frame(0x0, 0, 1, b"x" * 16385), FRAME_SIZE_ERROR),
    "padding-longer-than-data": (
        headers(1, end_stream=False) + raw_frame(0x0, 0x8, 1, b"\x05abc"),
        PROTOCOL_ERROR,
    ),
    "padding-longer-than-headers": (raw_frame(0x1, 0x4 | 0x8, 1, b"\xff" + block(GET)), PROTOCOL_ERROR),
    "invalid-hpack-index": (raw_frame(0x1, 0x5, 1, b"\xff\xff\xff\xff"), COMPRESSION_ERROR),
    "hpack-table-size-above-settings": (
        raw_frame(0x1, 0x5, 1, b"\x3f\xe1\x3f" + block(GET)),
        COMPRESSION_ERROR,
    ),
    "hpack-bomb": (
        HeadersFrame(1, block([*GET, (b"x-bomb", b"b" * 16000)])[:16000]).serialize()
        + b"".join(raw_frame(0x9, 0, 1, b"\x00" * 16000) for _ in range(5)),
        ENHANCE_YOUR_CALM,
    ),
}


@pytest.mark.parametrize(("data", "code"), list(CONNECTION_ERRORS.values()), ids=list(CONNECTION_ERRORS))
def test_connection_errors(data: bytes, code: int) -> None:
    peer = Peer().feed(data)
    assert peer.goaway() == code and peer.error is not None and peer.error.code == code
    assert peer.feed(headers(101)).requests() == []  # nothing is read after the GOAWAY


def test_the_preface_must_be_followed_by_settings() -> None:
    conn = H2Connection()
    conn.initiate()
    conn.data_to_send()
    with pytest.raises(H2ConnectionError) as info:
        conn.receive(PREFACE + PingFrame(0, b"\0" * 8).serialize())
    assert info.value.code == PROTOCOL_ERROR
    frames, _ = parse_frames(conn.data_to_send())
    assert [type(f) for f in frames] == [GoAwayFrame]


def test_a_wrong_preface_is_a_protocol_error() -> None:
    conn = H2Connection()
    with pytest.raises(H2ConnectionError):
        conn.receive(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")


def test_the_first_frames_are_settings_and_the_connection_window() -> None:
    conn = H2Connection(max_concurrent_streams=7, stream_window=1000, connection_window=1 << 20)
    conn.initiate()
    frames, _ = parse_frames(conn.data_to_send())
    assert (
        isinstance(frames[0], SettingsFrame)
        and frames[0].settings[0x3] == 7
        and frames[0].settings[0x4] == 1000
    )
    assert frames[0].settings[0x2] == 0  # no push
    assert isinstance(frames[1], WindowUpdateFrame) and frames[1].window_increment == (1 << 20) - 65535


def test_settings_are_acknowledged_and_ping_answered() -> None:
    peer = Peer().feed(SettingsFrame(0, settings={0x1: 0, 0x99: 5}).serialize())  # unknown setting ignored
    assert [f.flags for f in peer.frames if isinstance(f, SettingsFrame)] == [{"ACK"}]
    peer.feed(PingFrame(0, b"12345678").serialize())
    pings = [f for f in peer.frames if isinstance(f, PingFrame)]
    assert pings[-1].opaque_data == b"12345678" and "ACK" in pings[-1].flags
    peer.feed(raw_frame(0xFA, 0, 0, b"unknown"))  # unknown frame types are ignored
    peer.feed(PriorityFrame(1, depends_on=0, stream_weight=10).serialize())  # accepted and ignored
    peer.feed(headers(1))
    assert peer.goaway() is None and peer.requests() == [1]


# -- stream errors: the stream ends, the connection goes on


MALFORMED = {
    "upper-case-name": [*GET, (b"X-Up", b"1")],
    "pseudo-after-regular": [(b":method", b"GET"), (b"x", b"1"), (b":scheme", b"http"), (b":path", b"/")],
    "unknown-pseudo": [*GET, (b":foo", b"1")],
    "response-pseudo": [*GET, (b":status", b"200")],
    "duplicate-path": [*GET, (b":path", b"/again")],
    "empty-path": [(b":method", b"GET"), (b":scheme", b"http"), (b":path", b"")],
    "missing-scheme": [(b":method", b"GET"), (b":path", b"/")],
    "missing-method": [(b":scheme", b"http"), (b":path", b"/")],
    "connection-header": [*GET, (b"connection", b"close")],
    "transfer-encoding": [*GET, (b"transfer-encoding", b"chunked")],
    "te-gzip": [*GET, (b"te", b"gzip")],
    "value-with-newline": [*GET, (b"x", b"a\nb")],
    "value-leading-space": [*GET, (b"x", b" a")],
    "connect-with-path": [(b":method", b"CONNECT"), (b":authority", b"t:443"), (b":path", b"/")],
    "protocol-without-connect": [*GET, (b":protocol", b"websocket")],
    "bad-content-length": [*GET, (b"content-length", b"x")],
}


@pytest.mark.parametrize("fields", list(MALFORMED.values()), ids=list(MALFORMED))
def test_malformed_requests_are_stream_errors(fields: list[tuple[bytes, bytes]]) -> None:
    peer = Peer().feed(headers(1, fields))
    assert peer.resets() == [(1, PROTOCOL_ERROR)] and peer.requests() == []
    assert peer.feed(headers(3)).requests() == [3] and peer.goaway() is None


def test_well_formed_details_are_accepted() -> None:
    fields = [*GET, (b"te", b"trailers"), (b"cookie", b"a=1"), (b"cookie", b"b=2"), (b"content-length", b"0")]
    peer = Peer().feed(headers(1, fields))
    head = peer.events[0].head
    assert (b"cookie", b"a=1; b=2") in head.headers and head.headers[0] == (b"host", b"t")
    options = [(b":method", b"OPTIONS"), (b":scheme", b"http"), (b":path", b"*")]
    connect = [(b":method", b"CONNECT"), (b":authority", b"t:443")]
    assert peer.feed(headers(3, options)).feed(headers(5, connect, end_stream=False)).requests() == [1, 3, 5]


@pytest.mark.parametrize(
    ("length", "bodies"),
    [(b"3", [b"ab"]), (b"3", [b"abcd"]), (b"0", [b"a"])],
    ids=["shorter", "longer", "body-for-zero"],
)
def test_content_length_must_match_the_data(length: bytes, bodies: list[bytes]) -> None:
    peer = Peer().feed(headers(1, [*GET, (b"content-length", length)], end_stream=False))
    for body in bodies:
        peer.feed(DataFrame(1, body, flags=["END_STREAM"]).serialize())
    assert peer.resets() == [(1, PROTOCOL_ERROR)] and peer.goaway() is None
    assert [type(e) for e in peer.events] == [RequestReceived, StreamReset]


def test_frames_on_half_closed_and_closed_streams() -> None:
    peer = Peer().feed(headers(1))  # half-closed (remote)
    peer.feed(DataFrame(1, b"late").serialize())
    assert peer.resets() == [(1, STREAM_CLOSED)]
    peer.feed(headers(3, end_stream=False)).feed(RstStreamFrame(3, 0x8).serialize())
    peer.feed(DataFrame(3, b"after the reset").serialize())
    assert peer.resets()[-1] == (3, STREAM_CLOSED)
    peer.feed(headers(5))
    peer.conn.send_headers(5, [(b":status", b"204")], end_stream=True)  # closed on both sides
    peer.feed(headers(5))  # HEADERS on a closed stream
    assert peer.resets()[-1] == (5, STREAM_CLOSED)
    # Late frames allowed on closed streams: ignored.
    peer.feed(WindowUpdateFrame(5, window_increment=5).serialize() + RstStreamFrame(5, 0).serialize())
    peer.feed(PriorityFrame(5, depends_on=0).serialize())
    assert peer.goaway() is None and len(peer.resets()) == 3


def test_frames_on_a_stream_the_server_reset_are_ignored() -> None:
    peer = Peer().feed(headers(1, end_stream=False))
    peer.conn.reset_stream(1, 0x8)
    peer.feed(DataFrame(1, b"in flight", flags=["END_STREAM"]).serialize())
    assert peer.goaway() is None and peer.resets() == [(1, 0x8)]


def test_window_update_errors_on_a_stream() -> None:
    peer = Peer().feed(headers(1)).feed(raw_frame(0x8, 0, 1, b"\0" * 4))
    assert peer.resets() == [(1, PROTOCOL_ERROR)]
    peer.feed(headers(3)).feed(WindowUpdateFrame(3, window_increment=2**31 - 1).serialize())
    assert peer.resets()[-1] == (3, FLOW_CONTROL_ERROR) and peer.goaway() is None


def test_priority_errors_are_stream_errors() -> None:
    peer = Peer().feed(raw_frame(0x2, 0, 1, b"\0" * 4))
    assert peer.resets() == [(1, FRAME_SIZE_ERROR)]
    peer.feed(PriorityFrame(3, depends_on=3).serialize())
    assert peer.resets()[-1] == (3, PROTOCOL_ERROR)
    peer.feed(
        HeadersFrame(5, block(GET), depends_on=5, flags=["END_HEADERS", "END_STREAM", "PRIORITY"]).serialize()
    )
    assert peer.resets()[-1] == (5, PROTOCOL_ERROR) and peer.goaway() is None


def test_data_beyond_the_stream_window_is_a_flow_control_error() -> None:
    peer = Peer(stream_window=100).feed(headers(1, end_stream=False))
    peer.feed(DataFrame(1, b"x" * 101).serialize())
    assert peer.resets() == [(1, FLOW_CONTROL_ERROR)] and peer.goaway() is None


def test_data_beyond_the_connection_window_is_a_connection_error() -> None:
    peer = Peer(stream_window=65535).feed(headers(1, end_stream=False) + headers(3, end_stream=False))
    for stream_id in (1, 3):
        for _ in range(3):
            peer.feed(DataFrame(stream_id, b"x" * 16000).serialize())
    assert peer.goaway() == FLOW_CONTROL_ERROR


def test_request_data_is_acknowledged_in_batches() -> None:
    peer = Peer(stream_window=1000, connection_window=65535).feed(headers(1, end_stream=False))
    for _ in range(10):
        peer.feed(DataFrame(1, b"x" * 100).serialize())
        peer.conn.acknowledge(1, 100)
    peer.feed(b"")
    updates = [(f.stream_id, f.window_increment) for f in peer.frames if isinstance(f, WindowUpdateFrame)]
    assert updates == [(1, 500), (1, 500)]
    peer.feed(DataFrame(1, b"x" * 1000).serialize())  # the window is open again
    assert (
        peer.resets() == [] and sum(len(e.data) for e in peer.events if isinstance(e, DataReceived)) == 2000
    )


def test_streams_over_the_limit_are_refused_not_the_connection() -> None:
    peer = Peer(max_concurrent_streams=2)
    peer.feed(headers(1) + headers(3) + headers(5))
    assert peer.requests() == [1, 3] and peer.resets() == [(5, REFUSED_STREAM)] and peer.goaway() is None
    peer.conn.send_headers(1, [(b":status", b"200")], end_stream=True)
    assert peer.feed(headers(7)).requests() == [1, 3, 7]


def test_rapid_reset_flood_is_bounded() -> None:
    peer = Peer()
    for stream_id in range(1, 1000, 2):
        peer.feed(headers(stream_id, end_stream=False) + RstStreamFrame(stream_id, 0x8).serialize())
        if peer.error:
            break
    assert peer.goaway() == ENHANCE_YOUR_CALM and len(peer.requests()) < 300


def test_resets_among_served_streams_are_fine() -> None:
    peer = Peer()
    for stream_id in range(1, 2000, 4):
        peer.feed(headers(stream_id))
        peer.conn.send_headers(stream_id, [(b":status", b"200")], end_stream=True)
        peer.feed(headers(stream_id + 2, end_stream=False) + RstStreamFrame(stream_id + 2, 0x8).serialize())
    assert peer.goaway() is None and len(peer.requests()) == 1000


def test_trailers_end_the_request_and_must_end_the_stream() -> None:
    peer = Peer().feed(headers(1, end_stream=False)).feed(DataFrame(1, b"body").serialize())
    peer.feed(
        HeadersFrame(1, block([(b"x-checksum", b"1")]), flags=["END_HEADERS", "END_STREAM"]).serialize()
    )
    assert [(type(e), getattr(e, "ended", None)) for e in peer.events][-1] == (DataReceived, True)
    peer.feed(headers(3, end_stream=False)).feed(
        HeadersFrame(3, block([(b"x", b"1")]), flags=["END_HEADERS"]).serialize()
    )
    assert peer.resets() == [(3, PROTOCOL_ERROR)]
    for stream_id, trailers in ((5, [(b":path", b"/")]), (7, [(b"X-Up", b"1")])):
        peer.feed(headers(stream_id, end_stream=False))
        peer.feed(HeadersFrame(stream_id, block(trailers), flags=["END_HEADERS", "END_STREAM"]).serialize())
        assert peer.resets()[-1] == (stream_id, PROTOCOL_ERROR)


def test_window_updates_and_settings_reopen_sending() -> None:
    peer = Peer().feed(SettingsFrame(0, settings={0x4: 10}).serialize()).feed(headers(1))
    conn = peer.conn
    assert conn.send_headers(1, [(b":status", b"200")])
    assert conn.send_data(1, b"x" * 25, end_stream=True) == 10 and conn.window(1) == 0
    peer.feed(WindowUpdateFrame(1, window_increment=5).serialize())
    assert isinstance(peer.events[-1], WindowOpened) and conn.send_data(1, b"x" * 15, end_stream=True) == 5
    peer.feed(SettingsFrame(0, settings={0x4: 30}).serialize())  # +20 for the open stream
    assert isinstance(peer.events[-1], WindowOpened) and conn.send_data(1, b"x" * 10, end_stream=True) == 10
    data = [f for f in peer.feed(b"").frames if isinstance(f, DataFrame)]
    assert sum(len(f.data) for f in data) == 25 and "END_STREAM" in data[-1].flags
    assert not conn.is_open(1)


def test_large_header_blocks_are_split_into_continuation_frames() -> None:
    peer = Peer().feed(headers(1))
    big = [(b":status", b"200"), (b"x-big", b"v" * 40000)]
    peer.conn.send_headers(1, big, end_stream=True)
    frames, _ = parse_frames(peer.conn.data_to_send())
    assert [type(f) for f in frames] == [HeadersFrame, ContinuationFrame, ContinuationFrame]
    assert "END_HEADERS" in frames[-1].flags and "END_STREAM" in frames[0].flags


def test_goaway_from_the_client_is_an_event() -> None:
    peer = Peer().feed(GoAwayFrame(0, last_stream_id=0, error_code=0).serialize())
    assert isinstance(peer.events[-1], GoAwayReceived) and peer.goaway() is None


def test_upgrade_makes_stream_1_half_closed() -> None:
    conn = H2Connection()
    conn.upgrade(SettingsFrame(0, settings={0x4: 1000}).serialize()[9:])
    conn.initiate()
    assert conn.send_headers(1, [(b":status", b"200")]) and conn.window(1) == 1000
    events = conn.receive(PREFACE + SettingsFrame(0).serialize() + DataFrame(1, b"x").serialize())
    frames, _ = parse_frames(conn.data_to_send())
    assert [type(e) for e in events] == [StreamReset] and (1, STREAM_CLOSED) in [
        (f.stream_id, f.error_code) for f in frames if isinstance(f, RstStreamFrame)
    ]


# -- over a socket, with the protocol and its tasks


def test_the_101st_stream_is_refused_and_the_connection_goes_on() -> None:
    release = threading.Event()

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        while not release.is_set():
            await asyncio.sleep(0.01)
        await apps.hello(scope, receive, send)

    with run_server(app, http2=True) as server:
        sock = raw_connect(server.port)
        reader = FrameReader(sock)
        sock.sendall(b"".join(request_frame(stream_id) for stream_id in range(1, 203, 2)))
        reader.until(lambda fs: any(isinstance(f, RstStreamFrame) for f in fs))
        assert [(f.stream_id, f.error_code) for f in reader.frames if isinstance(f, RstStreamFrame)] == [
            (201, REFUSED_STREAM)
        ]
        release.set()
        frames = reader.until(lambda fs: sum(isinstance(f, DataFrame) for f in fs) == 100)
        assert not any(isinstance(f, GoAwayFrame) for f in frames)
        sock.sendall(request_frame(203))
        reader.until(lambda fs: any(isinstance(f, DataFrame) and f.stream_id == 203 for f in fs))
        sock.close()


def test_rapid_reset_on_a_server_ends_in_enhance_your_calm() -> None:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await asyncio.sleep(1)

    with run_server(app, http2=True) as server:
        sock = raw_connect(server.port)
        reader = FrameReader(sock)
        flood = b"".join(
            request_frame(stream_id) + RstStreamFrame(stream_id, 0x8).serialize()
            for stream_id in range(1, 2001, 2)
        )
        try:
            sock.sendall(flood)
        except OSError:
            pass  # closed by the server meanwhile
        frames = reader.until(lambda fs: any(isinstance(f, GoAwayFrame) for f in fs))
        assert [f.error_code for f in frames if isinstance(f, GoAwayFrame)] == [ENHANCE_YOUR_CALM]
        assert server.server.server_state.total_requests <= 300
        sock.close()


def test_response_blocks_decode_with_a_client_table_of_size_0() -> None:
    """The first response block empties the server's HPACK table (a size update to 0), so a client
    that lowers SETTINGS_HEADER_TABLE_SIZE, even to 0, decodes every block."""
    from hpack import Decoder

    peer = Peer().feed(SettingsFrame(0, settings={0x1: 0}).serialize()).feed(headers(1) + headers(3))
    for stream_id in (1, 3):
        peer.conn.send_headers(stream_id, [(b":status", b"200"), (b"x-a", b"b")], end_stream=True)
    decoder = Decoder()
    decoder.max_allowed_table_size = 0
    blocks = [f.data for f in peer.feed(b"").frames if isinstance(f, HeadersFrame)]
    assert [decoder.decode(block, raw=True) for block in blocks] == [
        [(b":status", b"200"), (b"x-a", b"b")]
    ] * 2


def test_frames_a_byte_at_a_time() -> None:
    """A frame trickled in byte by byte arrives whole; a frame head announcing more than 16 KiB is a
    FRAME_SIZE_ERROR as soon as its 9 bytes are in, not after its payload."""
    peer = Peer()
    for byte in headers(1, end_stream=False) + DataFrame(1, b"d" * 16384, flags=["END_STREAM"]).serialize():
        peer.feed(bytes([byte]))
    data = [e for e in peer.events if isinstance(e, DataReceived)]
    assert peer.requests() == [1] and b"".join(e.data for e in data) == b"d" * 16384 and data[-1].ended
    peer = Peer()
    for byte in raw_frame(0x0, 0, 1, b"")[:3].replace(b"\0\0\0", b"\x10\0\0") + raw_frame(0x0, 0, 1, b"")[3:]:
        peer.feed(bytes([byte]))
    assert peer.goaway() == FRAME_SIZE_ERROR
