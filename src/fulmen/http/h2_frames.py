"""HTTP/2 frames on the wire (RFC 9113 sections 4 and 6): the numbers, and the bytes of each frame the
server sends. Parsing is in :mod:`fulmen.http.h2_connection`, where each frame's rules are checked.

Frames are built with :mod:`struct` into ``bytes`` directly: a server sends thousands per second, and
an object per frame would cost more than the frame itself.
"""

from __future__ import annotations

import enum
import struct

#: What a client sends first (RFC 9113 section 3.4), before its SETTINGS.
PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

# Frame types (section 6).
DATA = 0x0
HEADERS = 0x1
PRIORITY = 0x2
RST_STREAM = 0x3
SETTINGS = 0x4
PUSH_PROMISE = 0x5
PING = 0x6
GOAWAY = 0x7
WINDOW_UPDATE = 0x8
CONTINUATION = 0x9

# Flags.
END_STREAM = 0x1
ACK = 0x1
END_HEADERS = 0x4
PADDED = 0x8
PRIORITY_FLAG = 0x20

# Settings (section 6.5.2, and RFC 8441 for ENABLE_CONNECT_PROTOCOL).
HEADER_TABLE_SIZE = 0x1
ENABLE_PUSH = 0x2
MAX_CONCURRENT_STREAMS = 0x3
INITIAL_WINDOW_SIZE = 0x4
MAX_FRAME_SIZE = 0x5
MAX_HEADER_LIST_SIZE = 0x6
ENABLE_CONNECT_PROTOCOL = 0x8

#: The window every stream and the connection start with, until SETTINGS say otherwise.
DEFAULT_WINDOW = 65535
#: The largest frame payload anyone may send before the peer allows more.
DEFAULT_MAX_FRAME_SIZE = 16384
#: The largest window and frame size the protocol can express.
MAX_WINDOW = 2**31 - 1
MAX_FRAME_SIZE_LIMIT = 2**24 - 1
#: The last stream id there can be: a GOAWAY naming it says "stop opening streams" without cutting any.
MAX_STREAM_ID = 2**31 - 1


class ErrorCode(enum.IntEnum):
    """Why a stream or the connection ends (section 7)."""

    NO_ERROR = 0x0
    PROTOCOL_ERROR = 0x1
    INTERNAL_ERROR = 0x2
    FLOW_CONTROL_ERROR = 0x3
    SETTINGS_TIMEOUT = 0x4
    STREAM_CLOSED = 0x5
    FRAME_SIZE_ERROR = 0x6
    REFUSED_STREAM = 0x7
    CANCEL = 0x8
    COMPRESSION_ERROR = 0x9
    CONNECT_ERROR = 0xA
    ENHANCE_YOUR_CALM = 0xB
    INADEQUATE_SECURITY = 0xC
    HTTP_1_1_REQUIRED = 0xD


class H2ConnectionError(Exception):
    """An error that ends the whole connection with a GOAWAY carrying ``code``."""

    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.code = code


class H2StreamError(Exception):
    """An error that ends one stream with a RST_STREAM carrying ``code``; the connection goes on."""

    def __init__(self, stream_id: int, code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.stream_id = stream_id
        self.code = code


_HEADER = struct.Struct(">BHBBL")  # length (24 bits: high byte, low 16 bits), type, flags, stream id
_U32 = struct.Struct(">L")
_PAIR = struct.Struct(">LL")
_SETTING = struct.Struct(">HL")

unpack_header = _HEADER.unpack_from
#: ``frame_header`` without the call, for the hot path: (length >> 16, length & 0xFFFF, type, flags, id).
pack_header = _HEADER.pack
unpack_u32 = _U32.unpack_from
unpack_pair = _PAIR.unpack_from


def frame_header(length: int, kind: int, flags: int, stream_id: int) -> bytes:
    """The 9 bytes in front of every frame's payload."""
    return _HEADER.pack(length >> 16, length & 0xFFFF, kind, flags, stream_id)


def settings_frame(settings: dict[int, int]) -> bytes:
    payload = b"".join(_SETTING.pack(key, value) for key, value in settings.items())
    return frame_header(len(payload), SETTINGS, 0, 0) + payload


SETTINGS_ACK = frame_header(0, SETTINGS, ACK, 0)


def iter_settings(payload: bytes | memoryview) -> list[tuple[int, int]]:
    """The (identifier, value) pairs of a SETTINGS payload whose length is a multiple of 6."""
    return [_SETTING.unpack_from(payload, offset) for offset in range(0, len(payload), 6)]


def window_update_frame(stream_id: int, increment: int) -> bytes:
    return frame_header(4, WINDOW_UPDATE, 0, stream_id) + _U32.pack(increment)


def rst_stream_frame(stream_id: int, code: int) -> bytes:
    return frame_header(4, RST_STREAM, 0, stream_id) + _U32.pack(code)


def goaway_frame(last_stream_id: int, code: int, debug: bytes = b"") -> bytes:
    return frame_header(8 + len(debug), GOAWAY, 0, 0) + _PAIR.pack(last_stream_id, code) + debug


def ping_frame(opaque: bytes, ack: bool = False) -> bytes:
    return frame_header(8, PING, ACK if ack else 0, 0) + opaque
