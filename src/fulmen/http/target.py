"""Request targets (RFC 9112 section 3.2) as the ASGI scope gives them: decoded path, raw path, query.

Shared by HTTP/1.1 and HTTP/2 (``:path``). Most requests ask for a few targets again and again, so
parsed targets are cached, per server (:attr:`fulmen.caches.HTTPCaches.targets`): the hot path looks
there before calling :func:`parse_target`, and remembers what it parsed.
"""

from __future__ import annotations

import urllib.parse

from fulmen.http.request_head import HTTPRequestError


def parse_target(target: bytes) -> tuple[str, bytes, bytes]:
    """The decoded path, raw path and query of a request target (origin or absolute form, or ``*``)."""
    if not target.startswith(b"/"):
        if target == b"*":
            raw_path, query = target, b""
        else:
            scheme_end = target.find(b"://")
            if scheme_end < 0:
                raise HTTPRequestError(400, "Invalid request target")
            path_start = target.find(b"/", scheme_end + 3)
            query_start = target.find(b"?", scheme_end + 3)
            if path_start < 0 or (0 <= query_start < path_start):
                raw_path, query = b"/", (target[query_start + 1 :] if query_start >= 0 else b"")
            else:
                raw_path, _, query = target[path_start:].partition(b"?")
    else:
        raw_path, _, query = target.partition(b"?")
    fragment = query.find(b"#")
    if fragment >= 0:
        query = query[:fragment]
    try:
        path = raw_path.decode("ascii")
    except UnicodeDecodeError:
        raise HTTPRequestError(400, "Invalid characters in request target") from None
    if "%" in path:
        path = urllib.parse.unquote(path)
    return path, raw_path, query
