"""The WebSocket frame fast path (fulmen.websockets.frames): framing, masking, and what it hands on."""

from __future__ import annotations

import os
import struct

import pytest

from fulmen.websockets import frames
from fulmen.websockets.frames import BINARY, TEXT, FrameReader, encode_frame, unmask


def client_frame(
    opcode: int, payload: bytes, *, fin: bool = True, rsv: int = 0, masked: bool = True
) -> bytes:
    first = (0x80 if fin else 0) | rsv << 4 | opcode
    size = len(payload)
    mask_bit = 0x80 if masked else 0
    if size < 126:
        head = bytes((first, mask_bit | size))
    elif size < 65536:
        head = bytes((first, mask_bit | 126)) + struct.pack("!H", size)
    else:
        head = bytes((first, mask_bit | 127)) + struct.pack("!Q", size)
    if not masked:
        return head + payload
    key = os.urandom(4)
    return head + key + bytes(byte ^ key[i % 4] for i, byte in enumerate(payload))


class Recorder:
    def __init__(self, max_size: int = 1 << 20) -> None:
        self.messages: list[tuple[int, bytes]] = []
        self.others: list[bytes] = []
        self.refused: list[int] = []
        self.reader = FrameReader(max_size, self.on_message, self.others.append, self.refused.append)

    def on_message(self, opcode: int, payload: bytes) -> None:
        self.messages.append((opcode, payload))

    def feed(self, data: bytes) -> None:
        self.reader.feed(data, lambda: not self.refused)


@pytest.mark.parametrize("size", [0, 1, 125, 126, 65535, 65536, 70000])
def test_encode_frame_lengths(size: int) -> None:
    payload = os.urandom(size)
    frame = encode_frame(BINARY, payload)
    assert frame[0] == 0x82
    assert frame.endswith(payload)
    length = frame[1]
    if size < 126:
        assert length == size
    elif size < 65536:
        assert length == 126 and struct.unpack("!H", frame[2:4])[0] == size
    else:
        assert length == 127 and struct.unpack("!Q", frame[2:10])[0] == size


@pytest.mark.parametrize("size", [0, 1, 3, 4, 5, 1000])
def test_unmask_matches_the_definition_with_and_without_speedups(
    size: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    payload, key = os.urandom(size), os.urandom(4)
    expected = bytes(byte ^ key[i % 4] for i, byte in enumerate(payload))
    assert unmask(payload, key) == expected
    monkeypatch.setattr(frames, "_apply_mask", None)
    assert unmask(payload, key) == expected


def test_simple_frames_split_anywhere_are_read_by_the_fast_path() -> None:
    data = client_frame(TEXT, "héllo".encode()) + client_frame(BINARY, b"x" * 300) + client_frame(TEXT, b"")
    for cut in range(len(data) + 1):
        recorder = Recorder()
        recorder.feed(data[:cut])
        recorder.feed(data[cut:])
        assert recorder.messages == [(TEXT, "héllo".encode()), (BINARY, b"x" * 300), (TEXT, b"")]
        assert recorder.others == []


def test_other_frames_are_handed_on_whole_and_in_order() -> None:
    ping = client_frame(0x9, b"p")
    first = client_frame(TEXT, b"frag", fin=False)
    middle_ping = client_frame(0x9, b"q")
    last = client_frame(0x0, b"ment")
    after = client_frame(TEXT, b"whole")
    compressed = client_frame(TEXT, b"zz", rsv=4)
    unmasked = client_frame(BINARY, b"u", masked=False)
    recorder = Recorder()
    for byte in ping + first + middle_ping + last + after + compressed + unmasked:
        recorder.feed(bytes([byte]))
    assert recorder.others == [ping, first, middle_ping, last, compressed, unmasked]
    assert recorder.messages == [(TEXT, b"whole")]


def test_too_large_frames_are_refused_from_their_header() -> None:
    recorder = Recorder(max_size=1000)
    recorder.feed(client_frame(BINARY, b"x" * 2000)[:12])
    assert recorder.refused == [1009]
    control = Recorder()
    control.feed(bytes((0x89, 0x80 | 126)) + struct.pack("!H", 200))
    assert control.refused == [1002]


def test_a_large_frame_in_small_pieces_grows_one_buffer_in_place() -> None:
    """A frame arriving in many pieces is appended to one buffer, not copied again for every piece
    (which made a 16 MiB message quadratic)."""
    payload = os.urandom(1 << 20)
    frame = client_frame(BINARY, payload)
    recorder = Recorder(max_size=1 << 21)
    buffers = set()
    for offset in range(0, len(frame), 16384):
        recorder.feed(frame[offset : offset + 16384])
        if recorder.reader.buffer:
            buffers.add(id(recorder.reader.buffer))
    assert recorder.messages == [(BINARY, payload)]
    assert len(buffers) == 1
    assert not recorder.reader.buffer
