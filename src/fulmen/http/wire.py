"""HTTP/1.1 bytes on the wire: status lines, header checks and canned responses.

Everything here is computed once at import, so the per-request path only looks things up.
"""

from __future__ import annotations

import http

from fulmen.http.caches import MAX_ENTRIES, MAX_KEY_SIZE, HTTPCaches, remember

#: Characters allowed in a header name (RFC 9110 "token").
TOKEN_CHARS = b"!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
#: bytes.translate table that deletes nothing; used with a delete set to find bad characters.
_IDENTITY = bytes(range(256))


def status_line(status: int) -> bytes:
    try:
        phrase = http.HTTPStatus(status).phrase.encode()
    except ValueError:
        phrase = b""
    return b"HTTP/1.1 %d %s\r\n" % (status, phrase)


STATUS_LINES: dict[int, bytes] = {status: status_line(status) for status in range(100, 600)}


def is_token(name: bytes) -> bool:
    """True when ``name`` is a valid header name: non-empty and only token characters."""
    return bool(name) and not name.translate(_IDENTITY, TOKEN_CHARS)


def lax_framing(head: bytes, *, folding: bool = True) -> str | None:
    """Why a raw request head is framed more loosely than llhttp accepts, or None.

    h11 tolerates bare LF line ends, obsolete line folding, control characters in values,
    ``Content-Length: 5, 5``, duplicate or space-padded Content-Length; llhttp rejects them. The
    h11 path checks heads (and trailers) with this so both parsers give the same answer. With
    ``folding=False`` the caller finds folded lines itself (h11 joins them: it reports fewer header
    lines than the head has), which is cheaper than searching for them.
    """
    # Every CR is followed by LF, or h11 refuses the line; so equal counts leave no bare LF (and
    # counting single bytes is cheaper than counting CRLF).
    if head.count(b"\r") != head.count(b"\n"):
        return "bare LF in request head"
    if folding and (head.find(b"\n ") >= 0 or head.find(b"\n\t") >= 0):
        return "obsolete line folding in request head"
    if head.translate(None, _LAX_ALLOWED):
        return "control character in request head"
    lower = head.lower()
    start = lower.find(b"\ncontent-length:")
    seen = False
    while start >= 0:
        if seen:  # llhttp rejects a second Content-Length even with the same value; h11 merges them
            return "duplicate Content-Length"
        seen = True
        end = lower.find(b"\r\n", start + 1)
        # Leading whitespace only: llhttp rejects "Content-Length: 5 " (h11 strips it).
        value = lower[start + 16 : end if end >= 0 else len(lower)].lstrip(b" \t")
        if not value.isdigit():
            return "invalid Content-Length"
        start = lower.find(b"\ncontent-length:", start + 1)
    return None


#: Bytes allowed in a request head: all but the control characters (except HTAB, CR and LF) and DEL,
#: which llhttp rejects and h11 lets through in header values.
_LAX_ALLOWED = bytes(c for c in range(256) if c in (9, 10, 13) or 32 <= c != 127)


def checked_header_name(name: bytes, caches: HTTPCaches) -> bytes:
    """The lower-case form of a response header name, refused unless it is a token; remembered."""
    lower = bytes(name).lower()
    if not is_token(lower):
        raise RuntimeError(f"Invalid HTTP header name {name!r} in response.")
    remember(caches.header_names, name, lower)
    return lower


def checked_header_prefix(name: bytes, caches: HTTPCaches) -> bytes:
    """The start of a response header line ("content-type: ") for a name, checked."""
    return checked_header_name(name, caches) + b": "


def check_header_value(value: bytes, caches: HTTPCaches) -> None:
    """Refuse a response header value that would end the line early or smuggle a header: CR, LF, NUL.
    Short values are remembered: apps send the same few again and again."""
    if value.find(b"\r") >= 0 or value.find(b"\n") >= 0 or value.find(b"\0") >= 0:
        raise RuntimeError(f"Invalid HTTP header value {value!r} in response.")
    values = caches.header_values
    if type(value) is bytes and len(value) <= MAX_KEY_SIZE:
        if len(values) >= MAX_ENTRIES:
            values.clear()
        values.add(value)


def response_content_length(value: bytes, caches: HTTPCaches) -> int:
    """A response's Content-Length value as a number, refused unless it is one; remembered."""
    if not value.isdigit():
        raise RuntimeError(f"Invalid Content-Length {value!r} in response.")
    length = int(value)
    if type(value) is bytes:
        remember(caches.content_lengths, value, length)
    return length


def simple_response(status: int, body: bytes, *, close: bool = True, extra: bytes = b"") -> bytes:
    """A complete plain-text response, for errors the server answers itself."""
    return b"".join(
        (
            STATUS_LINES.get(status) or status_line(status),
            b"content-type: text/plain; charset=utf-8\r\n",
            b"content-length: %d\r\n" % len(body),
            b"connection: close\r\n" if close else b"",
            extra,
            b"\r\n",
            body,
        )
    )


#: Reasons the server gives itself, by status.
ERROR_BODIES: dict[int, bytes] = {
    400: b"Invalid HTTP request received.",
    408: b"Request Timeout",
    413: b"Request Entity Too Large",
    431: b"Request Header Fields Too Large",
    500: b"Internal Server Error",
    501: b"Not Implemented",
    503: b"Service Unavailable",
}

CONTINUE_RESPONSE = b"HTTP/1.1 100 Continue\r\n\r\n"
