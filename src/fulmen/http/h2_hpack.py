"""HTTP/2 header blocks: requests decoded and checked (RFC 9113 section 8), responses encoded.

Requests: the ``hpack`` package's decoder, then the rules of a well-formed request (pseudo-header
fields first, once each, the ones the method needs; lower-case names; no HTTP/1.1 connection
headers; TE only "trailers"). A client repeats the same block byte for byte when it sends the same
request again and the block leaves the dynamic table as it was (indexed fields only, as h2load and
browsers do for repeated requests): such blocks are remembered with their checked result, so a
repeated request costs one dict lookup. Any block that changes the dynamic table empties that cache,
since the same bytes could then name other fields.

Responses: encoded with the static table and literals that are never added to the dynamic table, so
encoding has no state, each field's bytes can be remembered, and the peer's table size does not
matter. Response headers are mostly the same few fields: a block is a join of remembered pieces.
"""

from __future__ import annotations

from hpack import Decoder, HPACKDecodingError, OversizedHeaderListError
from hpack.hpack import encode_integer
from hpack.huffman import HuffmanEncoder
from hpack.huffman_constants import REQUEST_CODES, REQUEST_CODES_LENGTH
from hpack.table import HeaderTable

from fulmen.caches import MAX_ENTRIES
from fulmen.forwarding import FORWARDING_HEADERS
from fulmen.http.h2_frames import ErrorCode, H2ConnectionError, H2StreamError
from fulmen.protocols.response_rules import is_token

#: Connection-specific fields of HTTP/1.1, malformed in an HTTP/2 request (section 8.2.2).
CONNECTION_HEADERS = frozenset(
    {b"connection", b"proxy-connection", b"keep-alive", b"transfer-encoding", b"upgrade"}
)
_PSEUDO = frozenset({b":method", b":scheme", b":authority", b":path", b":protocol"})
#: Bytes a field name may not hold (section 8.2.1): controls, space, upper case, DEL and above.
_BAD_NAME_BYTES = bytes([*range(0x21), *range(0x41, 0x5B), *range(0x7F, 0x100)])
_MAX_CACHED_BLOCKS = 256
_MAX_CACHED_BLOCK_SIZE = 2048


class RequestHead:
    """A request's header block, checked: its pseudo-header fields and its other fields."""

    __slots__ = (
        "authority",
        "forwarding",
        "content_length",
        "expect_continue",
        "headers",
        "method",
        "path",
        "protocol",
        "request",
        "scheme",
        "size",
    )

    def __init__(self) -> None:
        self.method = b""
        self.scheme = b""
        self.authority: bytes | None = None
        self.path = b""
        self.protocol: bytes | None = None  # RFC 8441 extended CONNECT
        self.headers: tuple[tuple[bytes, bytes], ...] = ()  # host first (from :authority), cookies joined
        self.content_length = -1
        self.expect_continue = False
        self.size = 0  # as SETTINGS_MAX_HEADER_LIST_SIZE counts: names, values and 32 per field
        self.forwarding = False  # X-Forwarded-For and the like are present (for --forwarded-allow-ips)
        #: What the protocol makes of the head (method and target for the scope), set by the protocol
        #: once checked: a repeated block is then not checked again.
        self.request: tuple[str, str, bytes, bytes] | None = None


class RequestDecoder:
    """Header blocks of one connection's requests (the HPACK dynamic table is per connection)."""

    __slots__ = ("blocks", "decoder", "table")

    def __init__(self, max_list_size: int) -> None:
        self.decoder = Decoder(max_header_list_size=max_list_size)
        self.table = self.decoder.header_table
        self.blocks: dict[bytes, RequestHead] = {}

    def decode(self, block: bytes, stream_id: int) -> RequestHead:
        """The checked head of a request block; an H2ConnectionError when the block cannot be decoded
        (the connection's compression state is then lost), an H2StreamError when it is malformed."""
        head = self.blocks.get(block)
        if head is not None:
            return head
        entries = self.table.dynamic_entries
        count = len(entries)
        first = entries[0] if count else None
        try:
            fields = self.decoder.decode(block, raw=True)
        except OversizedHeaderListError as exc:
            raise H2ConnectionError(ErrorCode.ENHANCE_YOUR_CALM, "header list too large") from exc
        except HPACKDecodingError as exc:
            raise H2ConnectionError(ErrorCode.COMPRESSION_ERROR, f"HPACK: {exc}") from exc
        head = check_request(fields, stream_id)  # type: ignore[arg-type]
        blocks = self.blocks
        if len(entries) != count or (count and entries[0] is not first):
            blocks.clear()  # the table changed: remembered blocks may mean other fields now
        elif len(block) <= _MAX_CACHED_BLOCK_SIZE:
            if len(blocks) >= _MAX_CACHED_BLOCKS:
                blocks.clear()
            blocks[block] = head
        return head

    def decode_trailers(self, block: bytes) -> list[tuple[bytes, bytes]]:
        """A block that is not a request head (trailers, or a block on a closed stream): decoded to
        keep the compression state."""
        self.blocks.clear()
        try:
            return self.decoder.decode(block, raw=True)  # type: ignore[return-value]
        except OversizedHeaderListError as exc:
            raise H2ConnectionError(ErrorCode.ENHANCE_YOUR_CALM, "header list too large") from exc
        except HPACKDecodingError as exc:
            raise H2ConnectionError(ErrorCode.COMPRESSION_ERROR, f"HPACK: {exc}") from exc


def check_trailers(fields: list[tuple[bytes, bytes]], stream_id: int) -> None:
    """Trailers carry no pseudo-header field, and follow the name rules (RFC 9113 section 8.1)."""
    for name, _ in fields:
        if not name or name[:1] == b":" or name.translate(None, _BAD_NAME_BYTES) != name:
            raise H2StreamError(stream_id, ErrorCode.PROTOCOL_ERROR, f"malformed trailers: {name!r}")


def check_request(fields: list[tuple[bytes, bytes]], stream_id: int) -> RequestHead:
    """The rules of RFC 9113 section 8.3 for a request's fields; an H2StreamError when one is broken."""
    head = RequestHead()
    seen: set[bytes] = set()
    headers: list[tuple[bytes, bytes]] = []
    cookies: list[bytes] = []
    has_host = False
    size = 0

    def malformed(why: str) -> H2StreamError:
        return H2StreamError(stream_id, ErrorCode.PROTOCOL_ERROR, f"malformed request: {why}")

    for name, value in fields:
        size += len(name) + len(value) + 32
        if value.find(b"\0") >= 0 or value.find(b"\r") >= 0 or value.find(b"\n") >= 0:
            raise malformed(f"invalid value of {name!r}")
        if value[:1] in (b" ", b"\t") or value[-1:] in (b" ", b"\t"):
            raise malformed(f"whitespace around the value of {name!r}")
        if name[:1] == b":":
            if headers or cookies or has_host:
                raise malformed("pseudo-header field after a regular one")
            if name not in _PSEUDO or name in seen:
                raise malformed(f"pseudo-header field {name!r}")
            seen.add(name)
            if name == b":method":
                head.method = value
            elif name == b":path":
                head.path = value
            elif name == b":scheme":
                head.scheme = value
            elif name == b":authority":
                head.authority = value
            else:
                head.protocol = value
            continue
        if not name or name.translate(None, _BAD_NAME_BYTES) != name:
            raise malformed(f"field name {name!r}")
        if name in CONNECTION_HEADERS:
            raise malformed(f"connection-specific field {name!r}")
        if name == b"te":
            if value != b"trailers":
                raise malformed("TE other than trailers")
        elif name == b"cookie":
            cookies.append(value)
            continue
        elif name == b"host":
            has_host = True
        elif name == b"content-length":
            if not value.isdigit() or (head.content_length >= 0 and int(value) != head.content_length):
                raise malformed("invalid content-length")
            head.content_length = int(value)
        elif name == b"expect":
            head.expect_continue = value.lower() == b"100-continue"
        elif name in FORWARDING_HEADERS:
            head.forwarding = True
        headers.append((name, value))
    if head.method == b"CONNECT" and head.protocol is None:
        if b":scheme" in seen or b":path" in seen or head.authority is None:
            raise malformed("CONNECT takes :authority only")
    else:
        if not is_token(head.method) or not head.scheme or not head.path:
            raise malformed("missing or invalid :method, :scheme or :path")
        if head.protocol is not None and head.method != b"CONNECT":
            raise malformed(":protocol without CONNECT")
        if head.path[:1] != b"/" and not (head.path == b"*" and head.method == b"OPTIONS"):
            raise malformed("invalid :path")
    if cookies:  # section 8.2.3: the crumbs are one field again for HTTP/1.1 semantics
        headers.append((b"cookie", b"; ".join(cookies)))
    if head.authority is not None and not has_host:
        headers.insert(0, (b"host", head.authority))
    head.headers = tuple(headers)
    head.size = size
    return head


# -- responses

_huffman = HuffmanEncoder(REQUEST_CODES, REQUEST_CODES_LENGTH)
_STATIC = HeaderTable.STATIC_TABLE_MAPPING
_MAX_CACHED_FIELD_SIZE = 256


def _string(data: bytes) -> bytes:
    """An HPACK string literal: Huffman-coded when that is shorter."""
    coded = _huffman.encode(data)
    if len(coded) < len(data):
        return bytes(_with_flag(encode_integer(len(coded), 7))) + coded
    return bytes(encode_integer(len(data), 7)) + data


def _with_flag(prefix: bytearray) -> bytearray:
    prefix[0] |= 0x80
    return prefix


def encode_field(name: bytes, value: bytes, cache: dict[tuple[bytes, bytes], bytes]) -> bytes:
    """One field's bytes: a static table index, or a literal not indexed (with a static name when the
    table has the name); remembered in ``cache``."""
    match = _STATIC.get(name)
    if match is not None:
        index = match[1].get(value)
        if index is not None:
            encoded = bytes(_with_flag(encode_integer(index, 7)))
        else:
            encoded = bytes(encode_integer(match[0], 4)) + _string(value)
    else:
        encoded = b"\x00" + _string(name) + _string(value)
    if len(name) + len(value) <= _MAX_CACHED_FIELD_SIZE:
        if len(cache) >= MAX_ENTRIES:
            cache.clear()
        cache[(name, value)] = encoded
    return encoded


def encode_headers(headers: list[tuple[bytes, bytes]], cache: dict[tuple[bytes, bytes], bytes]) -> bytes:
    """A response header block (names already lower-case and checked); each field's bytes are looked
    up in ``cache`` first (the server's ``HTTPCaches.h2_fields``)."""
    parts = []
    for field in headers:
        encoded = cache.get(field)
        parts.append(encoded if encoded is not None else encode_field(field[0], field[1], cache))
    return b"".join(parts)
