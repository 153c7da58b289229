"""Log formatters and the default logging configuration.

Two loggers matter: ``fulmen.error`` (server events and application errors) and ``fulmen.access``
(one line per request). uvicorn's ``uvicorn.error`` and ``uvicorn.access`` are set up the same way,
for applications that log on them. Access records carry their fields in ``record.access`` so that the text,
custom and JSON formatters all read the same data.
"""

from __future__ import annotations

import http
import json
import logging
import sys
import time
from copy import copy
from typing import Any, Literal

import click

TRACE_LOG_LEVEL = 5
logging.addLevelName(TRACE_LOG_LEVEL, "TRACE")

LOG_LEVELS: dict[str, int] = {
    "critical": logging.CRITICAL,
    "error": logging.ERROR,
    "warning": logging.WARNING,
    "info": logging.INFO,
    "debug": logging.DEBUG,
    "trace": TRACE_LOG_LEVEL,
}

#: Fields an access log format may name.
ACCESS_FIELDS = (
    "client",
    "method",
    "path",
    "query",
    "http_version",
    "status",
    "bytes",
    "duration_ms",
    "user_agent",
    "referer",
    "request_id",
)

_LEVEL_COLOURS: dict[int, Any] = {
    TRACE_LOG_LEVEL: lambda text: click.style(text, fg="blue"),
    logging.DEBUG: lambda text: click.style(text, fg="cyan"),
    logging.INFO: lambda text: click.style(text, fg="green"),
    logging.WARNING: lambda text: click.style(text, fg="yellow"),
    logging.ERROR: lambda text: click.style(text, fg="red"),
    logging.CRITICAL: lambda text: click.style(text, fg="bright_red"),
}


_STATUS_PHRASES: dict[int, str] = {}


def _status_phrase(status: int) -> str:
    """``"200 OK"``; ``"599 "`` for an unknown status, as uvicorn prints it (cached: once per status)."""
    text = _STATUS_PHRASES.get(status)
    if text is None:
        try:
            phrase = http.HTTPStatus(status).phrase
        except ValueError:
            phrase = ""
        text = f"{status} {phrase}"
        if 100 <= status <= 999:
            _STATUS_PHRASES[status] = text
    return text


def level_prefix(levelno: int, levelname: str, use_colors: bool) -> str:
    """What ``%(levelprefix)s`` stands for: the level name and a colon, padded, coloured on a terminal."""
    padding = " " * (8 - len(levelname))
    if use_colors:
        colour = _LEVEL_COLOURS.get(levelno)
        levelname = colour(levelname) if colour else levelname
    return f"{levelname}:{padding}"


class ColourizedFormatter(logging.Formatter):
    """Adds ``%(levelprefix)s``: the level name and a colon, padded, coloured on a terminal."""

    def __init__(
        self,
        fmt: str | None = None,
        datefmt: str | None = None,
        style: Literal["%", "{", "$"] = "%",
        use_colors: bool | None = None,
    ) -> None:
        self.use_colors = sys.stdout.isatty() if use_colors is None else use_colors
        super().__init__(fmt=fmt, datefmt=datefmt, style=style)

    def formatMessage(self, record: logging.LogRecord) -> str:
        record = copy(record)
        if self.use_colors and "color_message" in record.__dict__:
            record.msg = record.__dict__["color_message"]
            record.__dict__["message"] = record.getMessage()
        record.__dict__["levelprefix"] = level_prefix(record.levelno, record.levelname, self.use_colors)
        return super().formatMessage(record)


class DefaultFormatter(ColourizedFormatter):
    """The formatter of ``fulmen.error``."""


#: The default format of access lines (uvicorn's).
DEFAULT_ACCESS_FORMAT = '%(levelprefix)s %(client_addr)s - "%(request_line)s" %(status_code)s'


class AccessFormatter(ColourizedFormatter):
    """The formatter of ``fulmen.access``: ``client_addr``, ``request_line`` and ``status_code``.

    With a custom format (``--access-log-format``) the whole message comes from that format instead.
    """

    custom_format: str | None = None

    def formatMessage(self, record: logging.LogRecord) -> str:
        fields: dict[str, Any] | None = getattr(record, "access", None)
        if fields is None:
            return super().formatMessage(record)
        if self.custom_format is not None:
            return render_access_format(self.custom_format, fields)
        record = copy(record)
        record.__dict__.update(self.access_values(fields))
        return super().formatMessage(record)

    def access_values(self, fields: dict[str, Any]) -> dict[str, str]:
        """``client_addr``, ``request_line`` and ``status_code`` of an access line's fields (the
        ``client``, ``method``, ``full_path``, ``http_version`` and ``status`` of the request)."""
        status = _status_phrase(fields["status"])
        request_line = f"{fields['method']} {fields['full_path']} HTTP/{fields['http_version']}"
        if self.use_colors:
            status = click.style(status, fg=_status_colour(fields["status"]))
            request_line = click.style(request_line, bold=True)
        return {"client_addr": fields["client"], "request_line": request_line, "status_code": status}


def _status_colour(status: int) -> str:
    if status < 200:
        return "bright_white"
    if status < 300:
        return "green"
    if status < 400:
        return "yellow"
    if status < 500:
        return "red"
    return "bright_red"


def render_access_format(fmt: str, fields: dict[str, Any]) -> str:
    """Render a custom access format, in ``%(name)s`` or ``{name}`` style."""
    values = {name: fields.get(name, "-") for name in ACCESS_FIELDS}
    if "%(" in fmt:
        return fmt % values
    return fmt.format_map(values)


#: One value of each access field's type, to try a custom format with at startup.
_SAMPLE_FIELDS: dict[str, Any] = {
    "client": "127.0.0.1:50000",
    "method": "GET",
    "path": "/",
    "query": "",
    "http_version": "1.1",
    "status": 200,
    "bytes": 0,
    "duration_ms": 0.5,
    "user_agent": "-",
    "referer": "-",
    "request_id": "-",
}


def check_access_format(fmt: str) -> str | None:
    """Why ``fmt`` cannot render access lines (an unknown field, a bad conversion), or None.

    The fields have the same types on every request, so a format that renders the sample renders
    every line.
    """
    try:
        render_access_format(fmt, _SAMPLE_FIELDS)
    except KeyError as exc:
        return f"unknown field {exc.args[0]!r} in {fmt!r}; the fields are {', '.join(ACCESS_FIELDS)}."
    except (ValueError, TypeError, IndexError, AttributeError) as exc:
        return f"{fmt!r} cannot be rendered: {exc}."
    return None


class JSONFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, and the access fields."""

    def format(self, record: logging.LogRecord) -> str:
        fields: dict[str, Any] | None = getattr(record, "access", None)
        data = self.document(
            record.created, record.msecs, record.levelname, record.name, record.getMessage(), fields
        )
        if record.exc_info:
            data["exc_info"] = self.formatException(record.exc_info)
        return json.dumps(data, default=str)

    @staticmethod
    def document(
        created: float, msecs: float, levelname: str, name: str, message: str, fields: dict[str, Any] | None
    ) -> dict[str, Any]:
        """The object of one line (without ``exc_info``), from what a ``LogRecord`` would carry."""
        data: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(created)) + f".{int(msecs):03d}Z",
            "level": levelname.lower(),
            "logger": name,
            "message": message,
        }
        if fields is not None:
            data.update({name: fields.get(name) for name in ACCESS_FIELDS})
        return data


def logging_config(log_format: str = "default") -> dict[str, Any]:
    """The default ``dictConfig`` for fulmen's loggers."""
    if log_format == "json":
        formatters: dict[str, Any] = {
            "default": {"()": "fulmen.logging.JSONFormatter"},
            "access": {"()": "fulmen.logging.JSONFormatter"},
        }
    else:
        formatters = {
            "default": {
                "()": "fulmen.logging.DefaultFormatter",
                "fmt": "%(levelprefix)s %(message)s",
                "use_colors": None,
            },
            "access": {
                "()": "fulmen.logging.AccessFormatter",
                "fmt": DEFAULT_ACCESS_FORMAT,
            },
        }
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": formatters,
        "handlers": {
            "default": {
                "formatter": "default",
                "class": "logging.StreamHandler",
                "stream": "ext://sys.stderr",
            },
            "access": {"formatter": "access", "class": "logging.StreamHandler", "stream": "ext://sys.stdout"},
        },
        "loggers": {
            "fulmen": {"handlers": ["default"], "level": "INFO", "propagate": False},
            "fulmen.error": {"level": "INFO"},
            "fulmen.access": {"handlers": ["access"], "level": "INFO", "propagate": False},
            # What applications log on uvicorn's loggers (a FastAPI habit) comes out as under uvicorn.
            "uvicorn": {"handlers": ["default"], "level": "INFO", "propagate": False},
            "uvicorn.error": {"level": "INFO"},
            "uvicorn.access": {"handlers": ["access"], "level": "INFO", "propagate": False},
        },
    }


#: The default logging configuration, as uvicorn's ``LOGGING_CONFIG``.
LOGGING_CONFIG: dict[str, Any] = logging_config()
