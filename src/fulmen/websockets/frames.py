"""The WebSocket frame fast path, shared by both engines.

Most traffic is small, whole, uncompressed text or binary messages. The session reads those frames
itself and writes its own data frames when no extension is in use; every other frame (control
frames, fragments, compressed or malformed frames) is handed to the engine whole, so the engine
never holds half a frame and its state stays exact.
"""

from __future__ import annotations

import struct
from collections.abc import Callable

_apply_mask: Callable[[bytes | bytearray, bytes], bytes] | None
try:
    from websockets.speedups import apply_mask as _apply_mask
except ImportError:  # pragma: no cover - websockets is optional (wsproto alone)
    _apply_mask = None

_U16 = struct.Struct("!H")
_U64 = struct.Struct("!Q")

TEXT = 0x1
BINARY = 0x2


def unmask(payload: bytes | bytearray, key: bytes) -> bytes:
    """XOR ``payload`` with the 4-byte masking ``key`` (RFC 6455 section 5.3)."""
    size = len(payload)
    if _apply_mask is not None:
        return bytes(_apply_mask(payload, key))
    if not size:
        return b""
    repeated = (key * (size // 4 + 1))[:size]
    return (int.from_bytes(payload, "little") ^ int.from_bytes(repeated, "little")).to_bytes(size, "little")


def encode_frame(opcode: int, payload: bytes) -> bytes:
    """A final, unmasked, uncompressed frame, as a server sends it."""
    size = len(payload)
    if size < 126:
        return bytes((0x80 | opcode, size)) + payload
    if size < 65536:
        return bytes((0x80 | opcode, 126)) + _U16.pack(size) + payload
    return bytes((0x80 | opcode, 127)) + _U64.pack(size) + payload


class FrameReader:
    """Splits received bytes into frames: simple data frames go to ``on_message``, the rest, whole, to
    ``on_other_frame``. A frame's bytes are kept until complete (a frame larger than ``max_size``
    is refused from its header, so the buffer stays bounded)."""

    __slots__ = ("buffer", "fragmented", "max_size", "on_message", "on_other_frame", "on_refused")

    def __init__(
        self,
        max_size: int,
        on_message: Callable[[int, bytes], None],
        on_other_frame: Callable[[bytes], None],
        on_refused: Callable[[int], None],
    ) -> None:
        self.buffer = bytearray()  # a frame not complete yet (grown in place: large frames stay linear)
        self.fragmented = False  # the engine holds the first fragments of a message
        self.max_size = max_size
        self.on_message = on_message
        self.on_other_frame = on_other_frame
        self.on_refused = on_refused

    def feed(self, data: bytes, keep_reading: Callable[[], bool]) -> None:
        buffer: bytes | bytearray
        if self.buffer:
            self.buffer += data
            buffer = self.buffer
        else:
            buffer = data
        size = len(buffer)
        position = 0
        while size - position >= 2 and keep_reading():
            first = buffer[position]
            second = buffer[position + 1]
            length = second & 0x7F
            header = 2
            if length == 126:
                if size - position < 4:
                    break
                length = _U16.unpack_from(buffer, position + 2)[0]
                header = 4
            elif length == 127:
                if size - position < 10:
                    break
                length = _U64.unpack_from(buffer, position + 2)[0]
                header = 10
            masked = second & 0x80
            if masked:
                header += 4
            opcode = first & 0x0F
            if length > 125 and (opcode >= 8 or length > self.max_size):
                # Refused from the header, before buffering it: 1002 for a control frame over 125
                # bytes (RFC 6455 section 5.5), 1009 for a message over --ws-max-size.
                self.on_refused(1002 if opcode >= 8 else 1009)
                return
            end = position + header + length
            if end > size:
                break
            if (
                masked
                and (first & 0xF0) == 0x80
                and (opcode == TEXT or opcode == BINARY)
                and not self.fragmented
            ):
                start = position + header
                self.on_message(opcode, unmask(buffer[start:end], bytes(buffer[start - 4 : start])))
            else:
                if opcode == TEXT or opcode == BINARY:
                    self.fragmented = not first & 0x80
                elif opcode == 0 and first & 0x80:
                    self.fragmented = False
                self.on_other_frame(bytes(buffer[position:end]))
            position = end
        if position < size and keep_reading():
            if position or buffer is not self.buffer:
                self.buffer = bytearray(buffer[position:])
        elif self.buffer:
            self.buffer = bytearray()
