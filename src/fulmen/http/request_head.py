"""The checks of an HTTP/1.1 request head, without I/O: header pairs in, what they mean out.

Both parser adapters (httptools, h11) hand a complete head to
:meth:`HTTPConnection.on_request <fulmen.http.connection.HTTPConnection.on_request>`, which calls
:func:`check_request_head`: so both parsers answer a bad head alike, with the status of the
:class:`HTTPRequestError` raised here (400, 431, 505) and a closed connection.
"""

from __future__ import annotations


class HTTPRequestError(Exception):
    """A request the server answers itself with ``status`` and closes: bad syntax, limits, smuggling."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status


_HOST, _CONTENT_LENGTH, _TRANSFER_ENCODING, _CONNECTION, _EXPECT, _UPGRADE, _FORWARDING = range(7)
#: The request headers a head's meaning depends on (names as the parsers give them: lower case).
_REQUEST_HEADER_KINDS = {
    b"host": _HOST,
    b"content-length": _CONTENT_LENGTH,
    b"transfer-encoding": _TRANSFER_ENCODING,
    b"connection": _CONNECTION,
    b"expect": _EXPECT,
    b"upgrade": _UPGRADE,
    b"forwarded": _FORWARDING,
    b"x-forwarded-for": _FORWARDING,
    b"x-forwarded-proto": _FORWARDING,
}
_HTTP_VERSIONS = {"1.1": "1.1", "1.0": "1.0", "HTTP/1.1": "1.1", "HTTP/1.0": "1.0"}

#: What :func:`check_request_head` returns: the HTTP version ("1.1" or "1.0"), whether the client
#: keeps the connection alive, whether it expects ``100 Continue``, the lower-cased Upgrade header
#: (or None), and the forwarding headers to apply (only when ``trusted_peer``; else empty).
RequestHead = tuple[str, bool, bool, "bytes | None", tuple[tuple[bytes, bytes], ...]]


def check_request_head(
    http_version: str,
    headers: list[tuple[bytes, bytes]],
    head_size: int,
    max_head_size: int,
    max_headers: int,
    trusted_peer: bool,
) -> RequestHead:
    """Check a parsed request head and say what it means (see :data:`RequestHead`).

    ``head_size`` is the head's size in bytes, or 0 when the caller knows it is under the limit.
    Raises :class:`HTTPRequestError`: 431 past the limits, 505 for another version than 1.0 and 1.1,
    400 without Host in HTTP/1.1, for a second Host, for conflicting or invalid Content-Length, and
    for a Transfer-Encoding other than ``chunked`` alone (or any with Content-Length, or in 1.0),
    which two parsers or a proxy could frame differently (request smuggling).
    """
    if head_size > max_head_size:
        raise HTTPRequestError(431, "Request head too large")
    if len(headers) > max_headers:
        raise HTTPRequestError(431, "Too many request headers")
    version = _HTTP_VERSIONS.get(http_version)
    if version is None:
        raise HTTPRequestError(505, "Unsupported HTTP version")

    keep_alive = version == "1.1"
    expect_continue = False
    upgrade: bytes | None = None
    has_host = False
    content_length: bytes | None = None
    transfer_encoding: bytes | None = None
    forwarding: tuple[tuple[bytes, bytes], ...] = ()
    kinds = _REQUEST_HEADER_KINDS
    for name, value in headers:
        if name not in kinds:
            continue  # most headers: one membership test, nothing to check
        kind = kinds[name]
        # In the order requests carry them most: Host always, forwarding headers behind a proxy,
        # Connection from browsers.
        if kind == _HOST:
            if has_host:
                raise HTTPRequestError(400, "Duplicate Host header")
            has_host = True
        elif kind == _FORWARDING:
            if trusted_peer:
                forwarding += ((name, value),)  # usually the only one: a tuple, the cache's key as it is
        elif kind == _CONNECTION:
            if value == b"keep-alive":  # as browsers send it: no lower() nor searches
                keep_alive = True
            else:
                tokens = value.lower()
                if tokens.find(b"close") >= 0:  # find(): `bytes in bytes` first tries an int, and raises
                    keep_alive = False
                elif tokens.find(b"keep-alive") >= 0:
                    keep_alive = True
        elif kind == _CONTENT_LENGTH:
            if content_length is not None and content_length != value:
                raise HTTPRequestError(400, "Conflicting Content-Length headers")
            if not value.isdigit():
                raise HTTPRequestError(400, "Invalid Content-Length header")
            content_length = value
        elif kind == _TRANSFER_ENCODING:
            transfer_encoding = value if transfer_encoding is None else transfer_encoding + b"," + value
        elif kind == _EXPECT:
            expect_continue = value.lower() == b"100-continue"
        else:  # _UPGRADE
            upgrade = value.lower()
    if version == "1.1" and not has_host:
        raise HTTPRequestError(400, "Missing Host header")
    if transfer_encoding is not None:
        if content_length is not None:
            raise HTTPRequestError(400, "Both Content-Length and Transfer-Encoding")
        # Only "chunked" alone frames a body both parsers read alike (RFC 9112 section 6.3).
        if transfer_encoding.strip().lower() != b"chunked" or version == "1.0":
            raise HTTPRequestError(400, "Invalid Transfer-Encoding")
    return version, keep_alive, expect_continue, upgrade, forwarding
