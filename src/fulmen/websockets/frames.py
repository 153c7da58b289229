"""WebSocket frames: reading messages off the wire and building the frames a server sends.

Shared by both engines: every data frame is read here (whole or fragmented, compressed or not), so
the per-message path is the same short loop whatever the engine, and the engines only see control
frames (ping, pong, close), whole. Frames are checked as RFC 6455 asks: masked, known opcodes,
reserved bits clear unless permessage-deflate was negotiated, fragments in order. Text is checked as
UTF-8 as soon as its bytes arrive, even in a frame not complete yet, so a bad message fails at once.
"""

from __future__ import annotations

import codecs
import struct
from collections.abc import Callable
from typing import Any

from fulmen.websockets.deflate import TAIL, Codec

_apply_mask: Callable[[bytes | bytearray, bytes], bytes] | None
try:
    from websockets.speedups import apply_mask as _apply_mask
except ImportError:  # pragma: no cover - websockets is optional (wsproto alone)
    _apply_mask = None

_U16 = struct.Struct("!H")
_U64 = struct.Struct("!Q")
_Utf8Decoder = codecs.getincrementaldecoder("utf-8")

CONTINUATION = 0x0
TEXT = 0x1
BINARY = 0x2
CLOSE = 0x8
PING = 0x9
PONG = 0xA
#: The RSV1 bit: set on the first frame of a compressed message (RFC 7692).
COMPRESSED = 0x40

# First bytes of the frames of the fast path: final, no reserved bit, text or binary.
_TEXT_FRAME = 0x80 | TEXT
_BINARY_FRAME = 0x80 | BINARY


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
    """A final, unmasked frame, as a server sends it (``opcode`` may carry :data:`COMPRESSED`)."""
    size = len(payload)
    if size < 126:
        return bytes((0x80 | opcode, size)) + payload
    if size < 65536:
        return bytes((0x80 | opcode, 126)) + _U16.pack(size) + payload
    return bytes((0x80 | opcode, 127)) + _U64.pack(size) + payload


class ProtocolViolation(Exception):
    """The peer broke the protocol or a limit: the connection fails with ``code``."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


class MessageReader:
    """Turns received bytes into messages (``on_message`` with ``str`` or ``bytes``) and whole control
    frames (``on_control``); a violation calls ``on_error`` with the close code and stops reading.

    A frame's bytes are kept until complete; a frame larger than ``max_size`` is refused from its
    header and an inflated message is cut at ``max_size`` + 1 bytes, so memory stays bounded."""

    __slots__ = (
        "buffer",
        "checked",
        "checker",
        "codec",
        "compressed",
        "decoder",
        "max_size",
        "on_control",
        "on_error",
        "on_message",
        "opcode",
        "parts",
        "size",
    )

    def __init__(
        self,
        max_size: int,
        on_message: Callable[[Any], None],
        on_control: Callable[[bytes], None],
        on_error: Callable[[int, str], None],
    ) -> None:
        self.buffer = bytearray()  # a frame not complete yet (grown in place: large frames stay linear)
        self.max_size = max_size
        self.on_message = on_message
        self.on_control = on_control
        self.on_error = on_error
        self.codec: Codec | None = None  # permessage-deflate, once negotiated
        # The fragmented message being received: its opcode (0 when none), whether it is compressed,
        # its parts and size so far, and its UTF-8 decoder when text.
        self.opcode = 0
        self.compressed = False
        self.parts: list[Any] = []
        self.size = 0
        self.decoder: codecs.IncrementalDecoder | None = None
        # The text frame still incomplete in ``buffer``: payload bytes already checked as UTF-8.
        self.checked = 0
        self.checker: codecs.IncrementalDecoder | None = None

    def feed(self, data: bytes, keep_reading: Callable[[], bool]) -> None:
        try:
            self._feed(data, keep_reading)
        except ProtocolViolation as exc:
            self.buffer = bytearray()
            self.on_error(exc.code, exc.reason)

    def _feed(self, data: bytes, keep_reading: Callable[[], bool]) -> None:
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
            header = 6
            if length == 126:
                if size - position < 8:
                    break
                length = _U16.unpack_from(buffer, position + 2)[0]
                header = 8
            elif length == 127:
                if size - position < 14:
                    break
                length = _U64.unpack_from(buffer, position + 2)[0]
                header = 14
            if not second & 0x80:
                raise ProtocolViolation(1002, "Unmasked frame from a client")
            if length > 125 and (first & 0x08 or length > self.max_size):
                # Refused from the header, before buffering it: 1002 for a control frame over 125
                # bytes (RFC 6455 section 5.5), 1009 for a message over --ws-max-size.
                if first & 0x08:
                    raise ProtocolViolation(1002, "Control frame too long")
                raise ProtocolViolation(1009, "Message too big")
            start = position + header
            end = start + length
            if end > size:
                if start < size and (
                    (first & 0x7F == TEXT and not self.opcode)
                    or (first & 0x7F == CONTINUATION and self.opcode == TEXT and not self.compressed)
                ):
                    self.check_partial(buffer, start, size)
                break
            key = bytes(buffer[start - 4 : start])
            if (first == _TEXT_FRAME or first == _BINARY_FRAME) and not self.opcode:
                payload = unmask(buffer[start:end], key)
                if first == _TEXT_FRAME:
                    try:
                        self.on_message(payload.decode("utf-8"))
                    except UnicodeDecodeError:
                        raise ProtocolViolation(1007, "Invalid UTF-8 in text message") from None
                else:
                    self.on_message(payload)
            else:
                self.read_frame(first, buffer, position, start, end, key)
            self.checked = 0
            position = end
        if position < size and keep_reading():
            if position or buffer is not self.buffer:
                self.buffer = bytearray(buffer[position:])
        elif self.buffer:
            self.buffer = bytearray()

    def read_frame(
        self, first: int, buffer: bytes | bytearray, position: int, start: int, end: int, key: bytes
    ) -> None:
        """Every frame but a whole uncompressed message: control frames, fragments, compressed."""
        opcode = first & 0x0F
        reserved = first & 0x70
        fin = first & 0x80
        if opcode >= CLOSE:
            if opcode > PONG:
                raise ProtocolViolation(1002, f"Reserved opcode {opcode}")
            if not fin:
                raise ProtocolViolation(1002, "Fragmented control frame")
            if reserved:
                raise ProtocolViolation(1002, "Reserved bits set")
            self.on_control(bytes(buffer[position:end]))
            return
        if opcode > BINARY:
            raise ProtocolViolation(1002, f"Reserved opcode {opcode}")
        if opcode == CONTINUATION:
            if not self.opcode:
                raise ProtocolViolation(1002, "Continuation frame without a message to continue")
            if reserved:
                raise ProtocolViolation(1002, "Reserved bits set")
        else:
            if self.opcode:
                raise ProtocolViolation(1002, "New message before the end of a fragmented one")
            if reserved and (reserved != COMPRESSED or self.codec is None):
                raise ProtocolViolation(1002, "Reserved bits set")
            self.compressed = bool(reserved)
            if fin:  # one frame: no parts to keep, and no incremental decoding
                data = unmask(buffer[start:end], key)
                if reserved:
                    data = self.inflate(data + TAIL, self.max_size)
                if opcode == TEXT:
                    try:
                        self.on_message(data.decode("utf-8"))
                    except UnicodeDecodeError:
                        raise ProtocolViolation(1007, "Invalid UTF-8 in text message") from None
                else:
                    self.on_message(data)
                return
            self.opcode = opcode
            self.size = 0
            self.decoder = _Utf8Decoder() if opcode == TEXT else None
        data = unmask(buffer[start:end], key)
        if self.compressed:
            data = self.inflate(data + TAIL if fin else data, self.max_size - self.size)
        self.size += len(data)
        if self.size > self.max_size:
            raise ProtocolViolation(1009, "Message too big")
        part: Any = data
        if self.decoder is not None:
            try:
                part = self.decoder.decode(data, bool(fin))
            except UnicodeDecodeError:
                raise ProtocolViolation(1007, "Invalid UTF-8 in text message") from None
        parts = self.parts
        parts.append(part)
        if fin:
            message = "".join(parts) if self.decoder is not None else b"".join(parts)
            parts.clear()
            self.opcode = 0
            self.decoder = None
            self.on_message(message)

    def inflate(self, data: bytes, limit: int) -> bytes:
        codec = self.codec
        assert codec is not None
        try:
            inflated = codec.decompress(data, limit)
        except ValueError:
            raise ProtocolViolation(1007, "Invalid compressed data") from None
        if len(inflated) > limit:
            raise ProtocolViolation(1009, "Message too big")
        return inflated

    def check_partial(self, buffer: bytes | bytearray, start: int, size: int) -> None:
        """Check the UTF-8 of an uncompressed text frame's payload received so far (only its new
        bytes): an invalid message fails before its end arrives."""
        checked = self.checked
        if size - start <= checked:
            return
        key = bytes(buffer[start - 4 : start])
        shift = checked % 4
        chunk = unmask(buffer[start + checked : size], key[shift:] + key[:shift])
        checker = self.checker
        if not checked or checker is None:
            checker = self.checker = _Utf8Decoder()
            if self.decoder is not None:
                checker.setstate(self.decoder.getstate())
        try:
            checker.decode(chunk, False)
        except UnicodeDecodeError:
            raise ProtocolViolation(1007, "Invalid UTF-8 in text message") from None
        self.checked = size - start
