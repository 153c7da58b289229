"""permessage-deflate (RFC 7692): the handshake negotiation and the per-connection codec.

Both engines share this module; the engines never see a compressed frame. Compression runs on
``zlib`` objects directly, one compressor and one decompressor per connection, kept across
messages: with ``*_no_context_takeover`` the compressor flushes with ``Z_FULL_FLUSH`` (which forgets
the history) instead of being rebuilt, and the decompressor is simply reused, since a peer that does
not take over its context never refers back to earlier messages. Building a compressor costs far
more than compressing a small message, so neither is ever rebuilt on the message path.

The zlib-ng library (the ``zlib-ng`` package) is used when it is installed: the same format, a few
times faster for the small messages WebSockets carry.
"""

from __future__ import annotations

from collections.abc import Iterable
from types import ModuleType
from typing import Any

zlib: ModuleType
try:
    from zlib_ng import zlib_ng as zlib
except ImportError:  # pragma: no cover - depends on the installed packages
    import zlib

#: What every message's deflate stream ends with after a sync flush: stripped when sending, added
#: back when receiving (RFC 7692 section 7.2.1).
TAIL = b"\x00\x00\xff\xff"
#: zlib compression level: the fastest one; small messages barely compress better at higher levels.
LEVEL = 1
#: zlib's memory level for the compressor (its default).
MEM_LEVEL = 8

_EXTENSION = "permessage-deflate"


class Codec:
    """One connection's compressor and decompressor, with the parameters negotiated."""

    __slots__ = (
        "_compress",
        "_compress_flush",
        "_decompress",
        "_decompressor",
        "_flush_mode",
        "_window",
        "can_compress",
    )

    def __init__(self, server_no_context_takeover: bool, server_window: int, client_window: int) -> None:
        # zlib cannot compress with a 256-byte window (8 bits): a peer that asks for it gets every
        # message uncompressed, which RFC 7692 allows.
        self.can_compress = server_window > 8
        compressor = zlib.compressobj(LEVEL, zlib.DEFLATED, -max(server_window, 9), MEM_LEVEL)
        self._compress = compressor.compress
        self._flush_mode = zlib.Z_FULL_FLUSH if server_no_context_takeover else zlib.Z_SYNC_FLUSH
        # Inflating with a window larger than the peer's is always correct: 8 bits read as 9, so a
        # zlib peer (which itself compresses with 9 when told 8) is understood.
        self._window = -max(client_window, 9)
        self._decompressor = zlib.decompressobj(self._window)
        self._decompress = self._decompressor.decompress
        self._compress_flush = compressor.flush

    def compress(self, data: bytes) -> bytes:
        """One whole message's payload, to send with RSV1 set."""
        compressed: bytes = self._compress(data) + self._compress_flush(self._flush_mode)
        return compressed[:-4] if compressed.endswith(TAIL) else compressed

    def decompress(self, data: bytes, limit: int) -> bytes:
        """Inflate a frame's payload (``TAIL`` added by the caller at a message's end). At most
        ``limit + 1`` bytes come out, so more than ``limit`` means the message is too big; a zlib
        error (bad data) raises ``ValueError``."""
        try:
            inflated: bytes = self._decompress(data, limit + 1)
        except zlib.error as exc:
            raise ValueError(str(exc)) from None
        if self._decompressor.eof:
            # The peer ended the deflate stream (a final block): the next message starts a new one.
            self._decompressor = zlib.decompressobj(self._window)
            self._decompress = self._decompressor.decompress
        return inflated


class Offer:
    """One permessage-deflate offer: its parameters, checked (``ValueError`` when invalid)."""

    __slots__ = ("client_no_context_takeover", "client_window", "server_no_context_takeover", "server_window")

    def __init__(self, params: Iterable[tuple[str, str | None]]) -> None:
        self.server_no_context_takeover = False
        self.client_no_context_takeover = False
        self.server_window: int | None = None
        self.client_window: int | bool | None = None  # True: offered without a value
        seen: set[str] = set()
        for name, value in params:
            if name in seen:
                raise ValueError(f"duplicate parameter {name}")
            seen.add(name)
            if name in ("server_no_context_takeover", "client_no_context_takeover"):
                if value is not None:
                    raise ValueError(f"{name} takes no value")
                setattr(self, name, True)
            elif name == "server_max_window_bits":
                self.server_window = _window_bits(value)
            elif name == "client_max_window_bits":
                self.client_window = True if value is None else _window_bits(value)
            else:
                raise ValueError(f"unknown parameter {name}")

    def accept(self) -> tuple[str, Codec]:
        """The response's extension header value and the codec it implies. Every parameter offered
        is accepted as offered: the client's limits are honoured and nothing more is asked of it."""
        parts = [_EXTENSION]
        if self.server_no_context_takeover:
            parts.append("server_no_context_takeover")
        if self.client_no_context_takeover:
            parts.append("client_no_context_takeover")
        if self.server_window is not None:
            parts.append(f"server_max_window_bits={self.server_window}")
        client_window = 15
        if type(self.client_window) is int:
            client_window = self.client_window
            parts.append(f"client_max_window_bits={client_window}")
        codec = Codec(self.server_no_context_takeover, self.server_window or 15, client_window)
        return "; ".join(parts), codec


def _window_bits(value: str | None) -> int:
    if value is None or not value.isdigit() or value.startswith("0") or not 8 <= int(value) <= 15:
        raise ValueError(f"invalid window bits {value!r}")
    return int(value)


def _unquote(value: str) -> str:
    value = value.strip()
    if len(value) >= 2 and value[0] == value[-1] == '"':
        return value[1:-1]
    return value


def parse_offers(headers: Iterable[tuple[bytes, bytes]]) -> list[list[tuple[str, str | None]]]:
    """The permessage-deflate offers of ``Sec-WebSocket-Extensions`` headers, in order."""
    offers: list[list[tuple[str, str | None]]] = []
    for name, value in headers:
        if name != b"sec-websocket-extensions":
            continue
        for extension in value.decode("latin-1").split(","):
            name_and_params = extension.split(";")
            if name_and_params[0].strip().lower() != _EXTENSION:
                continue
            params: list[tuple[str, str | None]] = []
            for param in name_and_params[1:]:
                key, equals, param_value = param.partition("=")
                params.append((key.strip().lower(), _unquote(param_value) if equals else None))
            offers.append(params)
    return offers


def negotiate(headers: Iterable[tuple[bytes, bytes]]) -> tuple[str, Codec] | None:
    """Accept the first valid permessage-deflate offer (invalid ones are declined, RFC 7692
    section 5): the response header value and the connection's codec, or None."""
    for params in parse_offers(headers):
        try:
            offer = Offer(params)
        except ValueError:
            continue
        return offer.accept()
    return None


def backend() -> Any:
    """The zlib module in use (``zlib_ng.zlib_ng`` or ``zlib``), for the docs and the tests."""
    return zlib
