"""Reading WebSocket frames (fulmen.websockets.frames): framing, masking, fragments, compression,
UTF-8 and the limits, on raw frames; and what it hands on to the engine."""

from __future__ import annotations

import os
import struct

import pytest

from fulmen.websockets import frames
from fulmen.websockets.deflate import Codec
from fulmen.websockets.frames import BINARY, TEXT, MessageReader, encode_frame, unmask


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
    def __init__(self, max_size: int = 1 << 20, codec: Codec | None = None) -> None:
        self.messages: list[str | bytes] = []
        self.controls: list[bytes] = []
        self.errors: list[tuple[int, str]] = []
        self.reader = MessageReader(max_size, self.messages.append, self.controls.append, self.on_error)
        self.reader.codec = codec

    def on_error(self, code: int, reason: str) -> None:
        self.errors.append((code, reason))

    def feed(self, data: bytes) -> None:
        self.reader.feed(data, lambda: not self.errors)

    @property
    def codes(self) -> list[int]:
        return [code for code, _ in self.errors]


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


def test_simple_frames_split_anywhere_are_read() -> None:
    data = client_frame(TEXT, "héllo".encode()) + client_frame(BINARY, b"x" * 300) + client_frame(TEXT, b"")
    for cut in range(len(data) + 1):
        recorder = Recorder()
        recorder.feed(data[:cut])
        recorder.feed(data[cut:])
        assert recorder.messages == ["héllo", b"x" * 300, ""]
        assert recorder.controls == []


def test_fragments_are_joined_and_control_frames_between_them_handed_on_whole() -> None:
    ping = client_frame(0x9, b"p")
    first = client_frame(TEXT, b"fr" + "é".encode()[:1], fin=False)
    middle_ping = client_frame(0x9, b"q")
    last = client_frame(0x0, "é".encode()[1:] + b"ment")
    binary = (
        client_frame(BINARY, b"ab", fin=False) + client_frame(0x0, b"", fin=False) + client_frame(0, b"c")
    )
    recorder = Recorder()
    for byte in ping + first + middle_ping + last + binary:
        recorder.feed(bytes([byte]))
    assert recorder.controls == [ping, middle_ping]
    assert recorder.messages == ["frément", b"abc"]
    assert recorder.errors == []


@pytest.mark.parametrize(
    "data",
    [
        client_frame(BINARY, b"u", masked=False),
        client_frame(TEXT, b"zz", rsv=4),  # RSV1 without permessage-deflate
        client_frame(TEXT, b"zz", rsv=2),
        client_frame(0x3, b""),  # reserved opcodes
        client_frame(0xB, b""),
        client_frame(0x9, b"", fin=False),  # a fragmented control frame
        client_frame(0x0, b"x"),  # a continuation without a message
        client_frame(TEXT, b"a", fin=False) + client_frame(TEXT, b"b"),  # a new message inside one
        client_frame(TEXT, b"a", fin=False) + client_frame(0x0, b"b", rsv=4),
    ],
    ids=[
        "unmasked",
        "rsv1",
        "rsv3",
        "opcode3",
        "opcode11",
        "fragmented-ping",
        "lone-continuation",
        "interleaved",
        "rsv1-on-continuation",
    ],
)
def test_protocol_violations_fail_with_1002(data: bytes) -> None:
    recorder = Recorder()
    recorder.feed(data + client_frame(TEXT, b"after"))
    assert recorder.codes == [1002]
    assert recorder.messages == []


def test_too_large_frames_are_refused_from_their_header() -> None:
    recorder = Recorder(max_size=1000)
    recorder.feed(client_frame(BINARY, b"x" * 2000)[:16])
    assert recorder.codes == [1009]
    control = Recorder()
    control.feed(bytes((0x89, 0x80 | 126)) + struct.pack("!H", 200) + os.urandom(4))
    assert control.codes == [1002]


def test_too_large_fragmented_messages_fail_with_1009() -> None:
    recorder = Recorder(max_size=1000)
    recorder.feed(client_frame(BINARY, b"x" * 600, fin=False) + client_frame(0x0, b"x" * 600))
    assert recorder.codes == [1009]
    assert recorder.messages == []


@pytest.mark.parametrize(
    "parts",
    [
        [b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5", b"\xf4\x90\x80\x80", b"edited"],  # split by frame
        [
            b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xf4",
            b"\x90",
            b"\x80\x80edited",
        ],  # inside a character
    ],
)
def test_invalid_utf8_in_a_fragmented_message_fails_at_the_bad_fragment(parts: list[bytes]) -> None:
    recorder = Recorder()
    recorder.feed(client_frame(TEXT, parts[0], fin=False))
    assert recorder.errors == []
    recorder.feed(client_frame(0x0, parts[1], fin=False))
    assert recorder.codes == [1007]


def test_invalid_utf8_fails_before_the_frame_is_complete() -> None:
    """A single text frame arriving in pieces fails as soon as the invalid bytes arrive."""
    payload = b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5" + b"\xf4\x90\x80\x80" + b"edited" * 20
    frame = client_frame(TEXT, payload)
    recorder = Recorder()
    recorder.feed(frame[:17])  # header, mask and the valid start
    assert recorder.errors == []
    recorder.feed(frame[17:21])  # the invalid code point
    assert recorder.codes == [1007]
    # The same inside a fragmented message, with a character split across frames.
    recorder = Recorder()
    recorder.feed(client_frame(TEXT, b"ok\xce", fin=False))
    second = client_frame(0x0, b"\xba" + b"a" * 200 + b"\xff" + b"b" * 100)
    recorder.feed(second[:20])
    assert recorder.errors == []
    recorder.feed(second[20:215])
    assert recorder.codes == [1007]


def test_valid_utf8_arriving_in_pieces_is_read_whole() -> None:
    text = "κόσμε " * 100
    frame = client_frame(TEXT, text.encode())
    recorder = Recorder()
    for offset in range(0, len(frame), 7):
        recorder.feed(frame[offset : offset + 7])
    assert recorder.messages == [text]
    assert recorder.errors == []


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
    assert recorder.messages == [payload]
    assert len(buffers) == 1
    assert not recorder.reader.buffer
