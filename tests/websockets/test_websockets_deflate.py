"""permessage-deflate (fulmen.websockets.deflate): the negotiation, the codec on zlib and zlib-ng, and
compressed frames read by the message reader (raw frames, no server)."""

from __future__ import annotations

import os
import zlib as stdlib_zlib
from collections.abc import Iterator
from typing import Any

import pytest

from fulmen.websockets import deflate
from fulmen.websockets.deflate import TAIL, Codec, negotiate
from fulmen.websockets.frames import BINARY, TEXT
from tests.websockets.test_websockets_frames import Recorder, client_frame

BACKENDS = ["zlib"]
try:
    from zlib_ng import zlib_ng

    BACKENDS.append("zlib-ng")
except ImportError:  # pragma: no cover - zlib-ng is a dev dependency, missing on free-threaded builds
    zlib_ng = None


@pytest.fixture(params=BACKENDS, autouse=True)
def backend(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    module = zlib_ng if request.param == "zlib-ng" else stdlib_zlib
    monkeypatch.setattr(deflate, "zlib", module)
    yield module


def offer(value: bytes) -> list[tuple[bytes, bytes]]:
    return [(b"host", b"x"), (b"sec-websocket-extensions", value)]


def compress(data: bytes, wbits: int = 15, compressor: Any = None) -> bytes:
    """What a client sends: a sync-flushed deflate stream without its tail."""
    compressor = compressor or stdlib_zlib.compressobj(6, stdlib_zlib.DEFLATED, -wbits)
    out: bytes = compressor.compress(data) + compressor.flush(stdlib_zlib.Z_SYNC_FLUSH)
    assert out.endswith(TAIL)
    return out[:-4]


def inflate(data: bytes, wbits: int = 15, decompressor: Any = None) -> bytes:
    decompressor = decompressor or stdlib_zlib.decompressobj(-wbits)
    out: bytes = decompressor.decompress(data + TAIL)
    return out


# -- negotiation


@pytest.mark.parametrize(
    ("offered", "accepted"),
    [
        (b"permessage-deflate", "permessage-deflate"),
        (b"permessage-deflate; client_max_window_bits", "permessage-deflate"),  # what browsers send
        (
            b"permessage-deflate; client_max_window_bits=10; server_max_window_bits=12",
            "permessage-deflate; server_max_window_bits=12; client_max_window_bits=10",
        ),
        (
            b"permessage-deflate; server_no_context_takeover; client_no_context_takeover",
            "permessage-deflate; server_no_context_takeover; client_no_context_takeover",
        ),
        (b'permessage-deflate; server_max_window_bits="9"', "permessage-deflate; server_max_window_bits=9"),
        # Invalid offers are declined and the next one taken.
        (b"permessage-deflate; server_max_window_bits=16, permessage-deflate", "permessage-deflate"),
        (b"permessage-deflate; x=1, x-webkit-deflate-frame, permessage-deflate", "permessage-deflate"),
        (
            b"permessage-deflate; server_no_context_takeover; server_no_context_takeover, "
            b"permessage-deflate; client_no_context_takeover",
            "permessage-deflate; client_no_context_takeover",
        ),
        (b"permessage-deflate; server_max_window_bits", None),  # needs a value
        (b"permessage-deflate; client_max_window_bits=7", None),
        (b"permessage-deflate; server_max_window_bits=09", None),
        (b"permessage-deflate; server_no_context_takeover=1", None),
        (b"x-webkit-deflate-frame", None),
    ],
)
def test_negotiation(offered: bytes, accepted: str | None) -> None:
    negotiated = negotiate(offer(offered))
    assert (negotiated[0] if negotiated else None) == accepted


def test_no_offer_no_extension() -> None:
    assert negotiate([(b"host", b"x")]) is None


# -- the codec


def test_round_trip_with_context_takeover() -> None:
    codec = Codec(False, 15, 15)
    message = b'{"user": "ada", "text": "hello there", "tags": ["a", "b"]}' * 4
    peer_inflater = stdlib_zlib.decompressobj(-15)
    first = codec.compress(message)
    second = codec.compress(message)
    assert inflate(first, decompressor=peer_inflater) == message
    assert inflate(second, decompressor=peer_inflater) == message
    assert len(second) < len(first)  # the second refers back to the first


def test_no_context_takeover_forgets_between_messages() -> None:
    codec = Codec(True, 15, 15)
    message = os.urandom(200).hex().encode()
    first = codec.compress(message)
    second = codec.compress(message)
    assert first == second  # the history is forgotten: the same message compresses the same
    assert inflate(second) == message  # a fresh inflater reads it alone


@pytest.mark.parametrize("bits", [9, 10, 12])
def test_server_window_bits_are_honoured(bits: int) -> None:
    """A peer inflating with a small window reads what the codec sent with that window, even when the
    message repeats itself from further back than the window."""
    codec = Codec(False, bits, 15)
    chunk = os.urandom(600)
    message = chunk + os.urandom(3000) + chunk
    peer_inflater = stdlib_zlib.decompressobj(-bits)
    for _ in range(3):
        assert inflate(codec.compress(message), decompressor=peer_inflater) == message


def test_window_bits_8_is_never_compressed_and_read_as_9() -> None:
    codec = Codec(False, 8, 8)
    assert not codec.can_compress
    compressor = stdlib_zlib.compressobj(6, stdlib_zlib.DEFLATED, -9)  # what zlib does when told 8
    message = b"abc" * 300
    assert codec.decompress(compress(message, compressor=compressor) + TAIL, 1 << 20) == message


def test_decompress_is_bounded() -> None:
    codec = Codec(False, 15, 15)
    bomb = compress(b"\0" * (10 << 20))
    inflated = codec.decompress(bomb + TAIL, 1000)
    assert len(inflated) == 1001  # one more than the limit: the caller sees it is too big


def test_bad_data_raises_value_error() -> None:
    with pytest.raises(ValueError):
        Codec(False, 15, 15).decompress(b"\xff\xff\xff\xff" + TAIL, 1000)


def test_a_stream_ended_by_the_peer_starts_again() -> None:
    codec = Codec(False, 15, 15)
    compressor = stdlib_zlib.compressobj(6, stdlib_zlib.DEFLATED, -15)
    final = compressor.compress(b"last") + compressor.flush(stdlib_zlib.Z_FINISH)  # BFINAL set
    assert codec.decompress(final, 100) == b"last"
    assert codec.decompress(compress(b"next") + TAIL, 100) == b"next"


# -- compressed frames through the message reader


def reader(max_size: int = 1 << 20) -> Recorder:
    return Recorder(max_size, Codec(False, 15, 15))


def test_compressed_frames_single_and_fragmented() -> None:
    recorder = reader()
    client = stdlib_zlib.compressobj(6, stdlib_zlib.DEFLATED, -15)  # context taken over by the client
    text = "κόσμε " * 50
    whole = compress(text.encode(), compressor=client)
    fragmented = compress(b"binary " * 100, compressor=client)
    recorder.feed(
        client_frame(TEXT, whole, rsv=4)
        + client_frame(TEXT, b"plain")  # an uncompressed message between compressed ones
        + client_frame(BINARY, fragmented[:5], rsv=4, fin=False)
        + client_frame(0x9, b"ping")
        + client_frame(0x0, fragmented[5:20], fin=False)
        + client_frame(0x0, fragmented[20:])
        + client_frame(TEXT, compress(text.encode(), compressor=client), rsv=4)
    )
    assert recorder.errors == []
    assert recorder.messages == [text, "plain", b"binary " * 100, text]
    assert len(recorder.controls) == 1


def test_compressed_frames_without_context_takeover() -> None:
    recorder = reader()
    for text in ("one " * 40, "two " * 40, "one " * 40):
        recorder.feed(client_frame(TEXT, compress(text.encode()), rsv=4))  # a fresh compressor each
    assert recorder.messages == ["one " * 40, "two " * 40, "one " * 40]


def test_compression_bomb_in_one_frame_and_in_fragments() -> None:
    bomb = compress(b"\0" * (8 << 20))
    recorder = reader(max_size=1 << 16)
    recorder.feed(client_frame(BINARY, bomb, rsv=4))
    assert recorder.codes == [1009]
    recorder = reader(max_size=1 << 16)
    recorder.feed(client_frame(BINARY, bomb[:100], rsv=4, fin=False))
    recorder.feed(client_frame(0x0, bomb[100:]))
    assert recorder.codes == [1009]
    assert recorder.messages == []


def test_invalid_compressed_data_is_1007() -> None:
    recorder = reader()
    recorder.feed(client_frame(TEXT, b"\xff\xff\xff\xff", rsv=4))
    assert recorder.codes == [1007]


def test_invalid_utf8_in_a_compressed_fragment_fails_at_that_fragment() -> None:
    recorder = reader()
    data = compress(b"valid start " * 10 + b"\xff" + os.urandom(1000).hex().encode())
    recorder.feed(client_frame(TEXT, data[: len(data) // 2], rsv=4, fin=False))
    assert recorder.codes == [1007]
