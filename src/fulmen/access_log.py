"""The access log line: one per HTTP request and per WebSocket handshake, on ``fulmen.access``.

The fields are built only when the line is logged, and passed to the formatters in
``record.access`` (see :mod:`fulmen.logging`), so text, custom and JSON formats read the same data.
"""

from __future__ import annotations

import logging
import time
import urllib.parse
from typing import Any

access_logger = logging.getLogger("fulmen.access")


def log_access(scope: dict[str, Any], method: str, status: int, bytes_sent: int, started_at: float) -> None:
    query = scope["query_string"].decode("latin-1")
    path = scope["path"]
    full_path = f"{path}?{query}" if query else path
    client = scope.get("client")
    headers = dict(scope["headers"])
    fields = {
        "client": f"{client[0]}:{client[1]}" if client else "",
        "method": method,
        "path": path,
        "full_path": urllib.parse.quote(full_path, safe="/?=&%:;@+$,!~*'()[]"),
        "query": query,
        "http_version": scope["http_version"],
        "status": status,
        "bytes": bytes_sent,
        "duration_ms": round((time.monotonic() - started_at) * 1000, 3),
        "user_agent": headers.get(b"user-agent", b"-").decode("latin-1"),
        "referer": headers.get(b"referer", b"-").decode("latin-1"),
        "request_id": headers.get(b"x-request-id", b"-").decode("latin-1"),
    }
    access_logger.info(
        '%s - "%s %s HTTP/%s" %d',
        fields["client"],
        method,
        fields["full_path"],
        fields["http_version"],
        status,
        extra={"access": fields},
    )
