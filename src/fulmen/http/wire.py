"""HTTP/1.1 bytes on the wire: status lines, canned responses, and the request heads h11 would read
more loosely than llhttp.

Everything here is computed once at import, so the per-request path only looks things up (the
response header lines, checked once per name, are each server's: :mod:`fulmen.http.cycle`). What
makes a response valid is :mod:`fulmen.protocols.response_rules`'s.
"""

from __future__ import annotations

import http


def status_line(status: int) -> bytes:
    try:
        phrase = http.HTTPStatus(status).phrase.encode()
    except ValueError:
        phrase = b""
    return b"HTTP/1.1 %d %s\r\n" % (status, phrase)


STATUS_LINES: dict[int, bytes] = {status: status_line(status) for status in range(100, 600)}


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


def simple_response(status: int, body: bytes) -> bytes:
    """A complete plain-text response that closes the connection, for errors the server answers itself."""
    return b"".join(
        (
            STATUS_LINES[status],
            b"content-type: text/plain; charset=utf-8\r\n",
            b"content-length: %d\r\nconnection: close\r\n\r\n" % len(body),
            body,
        )
    )


CONTINUE_RESPONSE = b"HTTP/1.1 100 Continue\r\n\r\n"
