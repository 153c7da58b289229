"""Request targets (RFC 9112 section 3.2) as the ASGI scope gives them: decoded path, raw path, query.

Shared by HTTP/1.1 and HTTP/2 (``:path``). Most requests ask for a few targets again and again, so
parsed targets are cached: the hot path looks in :data:`PARSED_TARGETS` before calling
:func:`parse_target`.
"""

from __future__ import annotations

import urllib.parse

from fulmen.http.request_head import HTTPRequestError

#: Request targets already parsed, to their (path, raw path, query). Bounded; emptied when full, so
#: that the targets in use now come back in.
PARSED_TARGETS: dict[bytes, tuple[str, bytes, bytes]] = {}
CACHE_SIZE = 1024
#: Longer targets are parsed each time (they are rarely asked for twice).
CACHED_TARGET_LENGTH = 256


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
    parsed = (path, raw_path, query)
    if len(target) <= CACHED_TARGET_LENGTH:
        if len(PARSED_TARGETS) >= CACHE_SIZE:
            PARSED_TARGETS.clear()
        PARSED_TARGETS[target] = parsed
    return parsed
