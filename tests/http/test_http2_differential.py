"""fulmen's HTTP/2 connection against the ``h2`` library's, on the same bytes: random well-formed client
traffic (headers that fill and reuse the HPACK table, bodies cut into DATA frames with and without
padding, header blocks split into CONTINUATION frames, trailers, resets, pings, window updates) must
give the same requests, bodies and resets. h2 is the reference for valid traffic; for malformed
traffic fulmen follows RFC 9113 where h2 does not (see test_http2_rfc.py)."""

from __future__ import annotations

import random
from typing import Any

import pytest

from fulmen.http.h2_connection import DataReceived, H2Connection, RequestReceived, StreamReset

pytest.importorskip("h2")

import h2.config
import h2.connection
import h2.events
from hpack import Encoder
from hyperframe.frame import (
    ContinuationFrame,
    DataFrame,
    HeadersFrame,
    PingFrame,
    RstStreamFrame,
    WindowUpdateFrame,
)

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
NAMES = [b"accept", b"user-agent", b"x-trace", b"cookie", b"accept-language", b"x-custom-%d"]


def client_traffic(rng: random.Random) -> bytes:
    """A client's bytes: the preface, SETTINGS, then streams of random requests."""
    encoder = Encoder()
    frames = [PREFACE, h2_settings()]
    for stream_id in range(1, 2 * rng.randint(1, 12), 2):
        fields = [
            (b":method", rng.choice([b"GET", b"POST", b"PUT"])),
            (b":scheme", b"https"),
            (b":authority", b"example.org"),
            (b":path", b"/p/%d?q=%d" % (rng.randint(0, 3), rng.randint(0, 3))),
        ]
        for _ in range(rng.randint(0, 6)):
            name = rng.choice(NAMES)
            if b"%d" in name:
                name = name % rng.randint(0, 5)
            fields.append((name, b"v%d" % rng.randint(0, 3) * rng.randint(1, 40)))
        body = bytes(rng.getrandbits(8) for _ in range(rng.choice([0, 0, 5, 300, 20000])))
        trailers = rng.random() < 0.2 and body
        block = encoder.encode(fields)
        end_on_headers = not body
        cut = rng.randint(1, len(block)) if rng.random() < 0.3 else len(block)
        first = HeadersFrame(stream_id, block[:cut])
        if end_on_headers:
            first.flags.add("END_STREAM")
        if cut == len(block):
            first.flags.add("END_HEADERS")
            frames.append(first.serialize())
        else:
            frames.append(first.serialize())
            frames.append(ContinuationFrame(stream_id, block[cut:], flags=["END_HEADERS"]).serialize())
        position = 0
        while position < len(body):
            size = rng.randint(1, 16000)
            piece = body[position : position + size]
            position += len(piece)
            frame = DataFrame(stream_id, piece)
            if rng.random() < 0.3:
                frame.flags.add("PADDED")
                frame.pad_length = rng.randint(0, 20)
            if position >= len(body) and not trailers:
                frame.flags.add("END_STREAM")
            frames.append(frame.serialize())
        if trailers:
            frames.append(
                HeadersFrame(
                    stream_id,
                    encoder.encode([(b"x-checksum", b"%d" % len(body))]),
                    flags=["END_HEADERS", "END_STREAM"],
                ).serialize()
            )
        if rng.random() < 0.1:
            frames.append(RstStreamFrame(stream_id, 8).serialize())
        if rng.random() < 0.2:
            frames.append(PingFrame(0, b"%08d" % stream_id).serialize())
        if rng.random() < 0.2:
            frames.append(WindowUpdateFrame(0, window_increment=1000).serialize())
    return b"".join(frames)


def h2_settings() -> bytes:
    from hyperframe.frame import SettingsFrame

    return SettingsFrame(0).serialize()  # type: ignore[no-any-return]


def chunks(data: bytes, rng: random.Random) -> list[bytes]:
    """The bytes as a socket may deliver them: in random pieces."""
    pieces, position = [], 0
    while position < len(data):
        size = rng.choice([1, 7, 100, 4096, 65536])
        pieces.append(data[position : position + size])
        position += size
    return pieces


def with_h2(pieces: list[bytes]) -> list[tuple[Any, ...]]:
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False, header_encoding=None))
    conn.local_settings = h2.settings.Settings(
        client=False, initial_values={h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 2**20}
    )
    conn.initiate_connection()
    conn.increment_flow_control_window(2**24)
    seen: list[tuple[Any, ...]] = []
    for piece in pieces:
        for event in conn.receive_data(piece):
            if isinstance(event, h2.events.RequestReceived):
                seen.append(
                    (
                        "request",
                        event.stream_id,
                        [tuple(f) for f in event.headers],
                        event.stream_ended is not None,
                    )
                )
            elif isinstance(event, h2.events.DataReceived):
                seen.append(("data", event.stream_id, event.data))
                conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
            elif isinstance(event, h2.events.StreamEnded):
                seen.append(("end", event.stream_id))
            elif isinstance(event, h2.events.StreamReset):
                seen.append(("reset", event.stream_id, int(event.error_code)))
    return seen


def with_fulmen(pieces: list[bytes]) -> list[tuple[Any, ...]]:
    conn = H2Connection(stream_window=2**20, connection_window=2**24)
    conn.initiate()
    seen: list[tuple[Any, ...]] = []
    for piece in pieces:
        for event in conn.receive(piece):
            if isinstance(event, RequestReceived):
                head = event.head
                pseudo = [
                    (b":method", head.method),
                    (b":scheme", head.scheme),
                    (b":authority", head.authority),
                    (b":path", head.path),
                ]
                # fulmen gives host first (from :authority) and joins cookies; compare as h2 gives them.
                fields = [f for f in head.headers if f != (b"host", head.authority)]
                seen.append(("request", event.stream_id, pseudo + fields, event.ended))
                if event.ended:
                    seen.append(("end", event.stream_id))
            elif isinstance(event, DataReceived):
                if event.data:
                    seen.append(("data", event.stream_id, event.data))
                    conn.acknowledge(event.stream_id, len(event.data))
                if event.ended:
                    seen.append(("end", event.stream_id))
            elif isinstance(event, StreamReset):
                seen.append(("reset", event.stream_id, event.code))
    return seen


def h2_view(seen: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    """h2's events with cookies joined as fulmen joins them, and empty DATA dropped."""
    view = []
    for item in seen:
        if item[0] == "request":
            fields = [f for f in item[2] if f[0] != b"cookie"]
            cookies = [f[1] for f in item[2] if f[0] == b"cookie"]
            if cookies:
                fields.append((b"cookie", b"; ".join(cookies)))
            item = (item[0], item[1], fields, item[3])
        elif item[0] == "data" and not item[2]:
            continue
        view.append(item)
    return view


@pytest.mark.parametrize("seed", range(40))
def test_same_requests_as_h2(seed: int) -> None:
    rng = random.Random(seed)
    pieces = chunks(client_traffic(rng), rng)
    assert with_fulmen(pieces) == h2_view(with_h2(pieces))
