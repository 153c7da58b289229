"""The access log line: one per HTTP request and per WebSocket handshake, on ``fulmen.access``.

The fields are built only when the line is logged, and passed to the formatters in
``record.access`` (see :mod:`fulmen.logging`), so text, custom and JSON formats read the same data.

When ``fulmen.access`` is set up as by default (one stream handler with fulmen's text or JSON
formatter), an :class:`AccessLogBuffer` writes the same lines without the logging machinery: a
``LogRecord``, a formatter's copy of it, a lock and a flush per request cost more than the request.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import urllib.parse
from dataclasses import dataclass
from typing import Any

from fulmen.caches import remember
from fulmen.logging import (
    DEFAULT_ACCESS_FORMAT,
    AccessFormatter,
    JSONFormatter,
    level_prefix,
    render_access_format,
)

access_logger = logging.getLogger("fulmen.access")

#: The message of an access record (its arguments are uvicorn's five).
_ACCESS_MESSAGE = '%s - "%s %s HTTP/%s" %d'
_SAFE_PATH_CHARACTERS = "/?=&%:;@+$,!~*'()[]"
_QUOTED_PATHS: dict[str, str] = {}
#: At most this many characters per write of buffered lines: at most 4,096 bytes (PIPE_BUF) once
#: encoded, so that lines written to one pipe by several worker processes never interleave.
_WRITE_CHARACTERS = 2048


def quoted_full_path(scope: dict[str, Any], cache: dict[str, str] = _QUOTED_PATHS) -> str:
    """The request's path and query as the access line shows them (percent-quoted; cached in
    ``cache``: each :class:`AccessLogBuffer` has its own, see :mod:`fulmen.caches` for why)."""
    query = scope["query_string"].decode("latin-1")
    full_path = f"{scope['path']}?{query}" if query else scope["path"]
    quoted = cache.get(full_path)
    if quoted is None:
        quoted = urllib.parse.quote(full_path, safe=_SAFE_PATH_CHARACTERS)
        remember(cache, full_path, quoted)
    return quoted


def client_text(client: tuple[str, int] | None) -> str:
    """A client address as logs show it: ``host:port``, or empty (a UNIX socket)."""
    return f"{client[0]}:{client[1]}" if client else ""


def access_fields(
    scope: dict[str, Any],
    method: str,
    status: int,
    bytes_sent: int,
    started_at: float,
    quoted_paths: dict[str, str] = _QUOTED_PATHS,
) -> dict[str, Any]:
    """Every field an access format may name (see :data:`fulmen.logging.ACCESS_FIELDS`)."""
    headers = dict(scope["headers"])
    return {
        "client": client_text(scope.get("client")),
        "method": method,
        "path": scope["path"],
        "full_path": quoted_full_path(scope, quoted_paths),
        "query": scope["query_string"].decode("latin-1"),
        "http_version": scope["http_version"],
        "status": status,
        "bytes": bytes_sent,
        "duration_ms": round((time.monotonic() - started_at) * 1000, 3),
        "user_agent": headers.get(b"user-agent", b"-").decode("latin-1"),
        "referer": headers.get(b"referer", b"-").decode("latin-1"),
        "request_id": headers.get(b"x-request-id", b"-").decode("latin-1"),
    }


def log_access(
    scope: dict[str, Any],
    method: str,
    status: int,
    bytes_sent: int,
    started_at: float,
    buffer: AccessLogBuffer | None = None,
) -> None:
    """Log one access line: through ``buffer`` when the server has one, else through logging."""
    if buffer is not None:
        buffer.add(scope, method, status, bytes_sent, started_at)
        return
    fields = access_fields(scope, method, status, bytes_sent, started_at)
    access_logger.info(_ACCESS_MESSAGE, *_message_args(fields), extra={"access": fields})


def _message_args(fields: dict[str, Any]) -> tuple[Any, ...]:
    return (fields["client"], fields["method"], fields["full_path"], fields["http_version"], fields["status"])


@dataclass(frozen=True)
class _Setup:
    """How ``fulmen.access`` is set up, as far as the lines it writes depend on it."""

    handler: logging.StreamHandler[Any]
    formatter: AccessFormatter | JSONFormatter
    fmt: str | None  # the formatter's own format: changed on the same formatter, the setup changed
    custom_format: str | None
    use_colors: bool
    terminator: str


def _logging_setup() -> _Setup | None:
    """What decides how ``fulmen.access`` lines come out, when an :class:`AccessLogBuffer` can write
    them exactly as logging would; None when they must go through logging."""
    logger = access_logger
    if logger.disabled or logger.filters or not logger.isEnabledFor(logging.INFO):
        return None
    handlers: list[logging.Handler] = []
    current: logging.Logger | None = logger
    while current is not None:  # the handlers logging would call: up the tree until propagate is off
        handlers.extend(current.handlers)
        current = current.parent if current.propagate else None
    if len(handlers) != 1:
        return None
    handler = handlers[0]
    if type(handler) not in (logging.StreamHandler, logging.FileHandler) or handler.filters:
        return None
    assert isinstance(handler, logging.StreamHandler)
    formatter = handler.formatter
    if handler.level > logging.INFO or handler.stream is None:
        return None
    if type(formatter) is JSONFormatter:
        return _Setup(handler, formatter, None, None, False, handler.terminator)
    if type(formatter) is not AccessFormatter:
        return None
    custom = formatter.custom_format
    percent_style = type(formatter._style) is logging.PercentStyle
    default_format = formatter._fmt == DEFAULT_ACCESS_FORMAT and percent_style
    if custom is None and not default_format:
        return None
    return _Setup(handler, formatter, formatter._fmt, custom, formatter.use_colors, handler.terminator)


class AccessLogBuffer:
    """Access lines formatted as fulmen's :class:`~fulmen.logging.AccessFormatter` (or
    :class:`~fulmen.logging.JSONFormatter`) formats them and written to its handler's stream, all the
    lines of one loop turn at once (under the handler's lock).

    One per server, used only while ``fulmen.access`` is set up as by default: :meth:`refresh`
    (at startup, then once a second) checks that and falls back to logging when it changes.
    """

    def __init__(self, setup: _Setup, loop: asyncio.AbstractEventLoop) -> None:
        self.setup = setup
        self.handler = setup.handler
        self.formatter = setup.formatter
        self.custom_format = setup.custom_format
        self.terminator = setup.terminator
        self.prefix = level_prefix(logging.INFO, "INFO", setup.use_colors)
        self.loop = loop
        self.lines: list[str] = []
        self.quoted_paths: dict[str, str] = {}

    @classmethod
    def refresh(
        cls, current: AccessLogBuffer | None, loop: asyncio.AbstractEventLoop
    ) -> AccessLogBuffer | None:
        """The buffer for the logging setup now: ``current`` while the setup is unchanged, a new
        one when it changed, None when the lines must go through logging."""
        setup = _logging_setup()
        if current is not None:
            if setup == current.setup:
                return current
            current.flush()
        return None if setup is None else cls(setup, loop)

    def add(
        self, scope: dict[str, Any], method: str, status: int, bytes_sent: int, started_at: float
    ) -> None:
        formatter = self.formatter
        if type(formatter) is JSONFormatter:
            fields = access_fields(scope, method, status, bytes_sent, started_at, self.quoted_paths)
            created = time.time()
            message = _ACCESS_MESSAGE % _message_args(fields)
            document = formatter.document(
                created, (created - int(created)) * 1000, "INFO", access_logger.name, message, fields
            )
            line = json.dumps(document, default=str)
        elif self.custom_format is not None:
            fields = access_fields(scope, method, status, bytes_sent, started_at, self.quoted_paths)
            line = render_access_format(self.custom_format, fields)
        else:
            fields = {
                "client": client_text(scope.get("client")),
                "method": method,
                "full_path": quoted_full_path(scope, self.quoted_paths),
                "http_version": scope["http_version"],
                "status": status,
            }
            assert isinstance(formatter, AccessFormatter)
            values = formatter.access_values(fields)
            values["levelprefix"] = self.prefix
            line = DEFAULT_ACCESS_FORMAT % values
        lines = self.lines
        lines.append(line + self.terminator)
        if len(lines) == 1:
            self.loop.call_soon(self.flush)

    def flush(self) -> None:
        """Write the buffered lines, a few KiB per write."""
        lines = self.lines
        if not lines:
            return
        self.lines = []
        handler = self.handler
        handler.acquire()
        try:
            stream = handler.stream
            start = 0
            while start < len(lines):
                end, size = start, 0
                while end < len(lines) and (end == start or size + len(lines[end]) <= _WRITE_CHARACTERS):
                    size += len(lines[end])
                    end += 1
                stream.write("".join(lines[start:end]) if end - start > 1 else lines[start])
                stream.flush()
                start = end
        except Exception:
            handler.handleError(logging.makeLogRecord({"name": access_logger.name, "msg": lines[0]}))
        finally:
            handler.release()
