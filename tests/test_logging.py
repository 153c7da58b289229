"""Logging: the fulmen.error and fulmen.access loggers, formats, --log-config files, levels and colours."""

from __future__ import annotations

import json
import logging
import re
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from fulmen import Config
from fulmen.access_log import AccessLogBuffer, log_access
from fulmen.logging import DEFAULT_ACCESS_FORMAT, AccessFormatter, render_access_format
from tests import apps
from tests.conftest import free_port, run_server

ESC = "\x1b["


def _serve_and_get(cli: Any, *args: str, path: str = "/p?q=1", headers: dict[str, str] | None = None) -> Any:
    port = free_port()
    process = cli("tests.apps:hello", "--port", str(port), *args)
    deadline = time.monotonic() + 15
    while True:
        assert process.process.poll() is None and time.monotonic() < deadline, process.output
        try:
            httpx.get(f"http://127.0.0.1:{port}{path}", headers=headers or {}, timeout=5)
            break
        except httpx.ConnectError:
            time.sleep(0.05)
    process.process.send_signal(signal.SIGTERM)
    assert process.wait(10) == 0, process.output
    return process


def test_access_log_statuses(cli: Any, tmp_path: Path) -> None:
    (tmp_path / "statusapp.py").write_text(
        "async def app(scope, receive, send):\n"
        "    if scope['type'] != 'http':\n"
        "        return\n"
        "    status = int(scope['path'][1:])\n"
        "    await send({'type': 'http.response.start', 'status': status, 'headers': []})\n"
        "    await send({'type': 'http.response.body', 'body': b''})\n"
    )
    port = free_port()
    process = cli("statusapp:app", "--app-dir", str(tmp_path), "--port", str(port))
    assert process.wait_for("Fulmen running on"), process.output
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=5) as client:
        for status in (201, 302, 404, 503, 599):
            client.get(f"/{status}")
    for text in ("201 Created", "302 Found", "404 Not Found", "503 Service Unavailable", "599 "):
        assert process.wait_for(f'HTTP/1.1" {text}', timeout=5), process.output


def test_access_log_format_named_fields(cli: Any) -> None:
    fields = "client method path query http_version status bytes duration_ms user_agent referer request_id"
    fmt = "|".join("{" + name + "}" for name in fields.split())
    process = _serve_and_get(
        cli,
        "--access-log-format",
        fmt,
        headers={"User-Agent": "tester/1", "Referer": "http://ref/", "X-Request-ID": "req-42"},
    )
    line = next(line for line in process.lines if line.count("|") == 10)
    client, method, path, query, version, status, size, duration, agent, referer, request_id = line.split("|")
    assert re.fullmatch(r"127\.0\.0\.1:\d+", client)
    assert (method, path, query, version, status, size) == ("GET", "/p", "q=1", "1.1", "200", "13")
    assert float(duration) >= 0
    assert (agent, referer, request_id) == ("tester/1", "http://ref/", "req-42")


def test_access_log_format_percent_style() -> None:
    fields = {"client": "1.2.3.4:5", "status": 200, "method": "GET"}
    assert (
        render_access_format("%(client)s %(method)s %(status)s %(referer)s", fields) == "1.2.3.4:5 GET 200 -"
    )
    assert render_access_format("{client} {status}", fields) == "1.2.3.4:5 200"


def test_json_log_format(cli: Any) -> None:
    process = _serve_and_get(cli, "--log-format", "json", headers={"User-Agent": "tester/1"})
    records = [json.loads(line) for line in process.lines if line.strip()]  # every line is one JSON object
    loggers = {record["logger"] for record in records}
    assert {"fulmen.error", "fulmen.access"} <= loggers
    access = next(record for record in records if record["logger"] == "fulmen.access")
    assert access["method"] == "GET" and access["path"] == "/p" and access["query"] == "q=1"
    assert access["status"] == 200 and access["user_agent"] == "tester/1" and access["level"] == "info"
    assert any(record["message"].startswith("Fulmen running on") for record in records)


LOG_CONFIG = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "CUSTOM %(name)s %(levelname)s %(message)s"}},
    "handlers": {
        "out": {"class": "logging.StreamHandler", "formatter": "plain", "stream": "ext://sys.stdout"}
    },
    "loggers": {
        "fulmen": {"handlers": ["out"], "level": "INFO", "propagate": False},
        "fulmen.access": {"handlers": ["out"], "level": "INFO", "propagate": False},
    },
}

INI_CONFIG = """
[loggers]
keys=root,fulmen,access

[handlers]
keys=out

[formatters]
keys=plain

[logger_root]
level=WARNING
handlers=

[logger_fulmen]
level=INFO
handlers=out
propagate=0
qualname=fulmen

[logger_access]
level=INFO
handlers=out
propagate=0
qualname=fulmen.access

[handler_out]
class=StreamHandler
formatter=plain
args=(sys.stdout,)

[formatter_plain]
format=CUSTOM %(name)s %(levelname)s %(message)s
"""


@pytest.mark.parametrize("suffix", [".json", ".yaml", ".ini"])
def test_log_config_files(cli: Any, tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"logging{suffix}"
    if suffix == ".json":
        path.write_text(json.dumps(LOG_CONFIG))
    elif suffix == ".yaml":
        yaml = pytest.importorskip("yaml")
        path.write_text(yaml.safe_dump(LOG_CONFIG))
    else:
        path.write_text(INI_CONFIG)
    process = _serve_and_get(cli, "--log-config", str(path))
    assert "CUSTOM fulmen.error INFO Started server process" in process.output
    assert re.search(
        r'CUSTOM fulmen\.access INFO 127\.0\.0\.1:\d+ - "GET /p\?q=1 HTTP/1\.1" 200', process.output
    )
    assert "INFO:     " not in process.output


def test_log_level_trace_logs_asgi_messages(cli: Any) -> None:
    process = _serve_and_get(cli, "--log-level", "trace")
    out = process.output
    assert "TRACE:    ASGI [1] Started scope={'type': 'lifespan'" in out
    assert re.search(r"TRACE:    127\.0\.0\.1:\d+ - HTTP connection made", out)
    assert re.search(r"TRACE:    127\.0\.0\.1:\d+ - ASGI \[2\] Started scope=\{'type': 'http'", out)
    assert "Send {'type': 'http.response.body', 'body': '<13 bytes>'}" in out
    assert re.search(r"TRACE:    127\.0\.0\.1:\d+ - ASGI \[2\] Completed", out)


def test_log_level_warning_hides_info(cli: Any) -> None:
    process = _serve_and_get(cli, "--log-level", "warning")
    assert "INFO:" not in process.output


def test_no_access_log(cli: Any) -> None:
    process = _serve_and_get(cli, "--no-access-log")
    assert "Fulmen running on" in process.output
    assert '"GET /p?q=1 HTTP/1.1"' not in process.output


def test_colours(cli: Any) -> None:
    coloured = _serve_and_get(cli, "--use-colors")
    assert f"{ESC}32mINFO{ESC}0m:" in coloured.output
    assert f"{ESC}1mGET /p?q=1 HTTP/1.1{ESC}0m" in coloured.output
    plain = _serve_and_get(cli, "--no-use-colors")
    assert ESC not in plain.output  # and not a terminal: no colours by default either
    default = _serve_and_get(cli)
    assert ESC not in default.output


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def access_records() -> Iterator[_Records]:
    handler = _Records()
    logger = logging.getLogger("fulmen.access")
    logger.addHandler(handler)
    previous = logger.level
    logger.setLevel(logging.INFO)
    yield handler
    logger.removeHandler(handler)
    logger.setLevel(previous)


def test_access_records_have_uvicorn_args(access_records: _Records) -> None:
    """uvicorn-style formatters read five args; fulmen's access records carry the same five."""
    with run_server(apps.hello) as server:
        httpx.get(server.url + "/x?y=1", timeout=5)
    record = access_records.records[-1]
    client, method, full_path, http_version, status = record.args  # type: ignore[misc]
    assert (method, full_path, http_version, status) == ("GET", "/x?y=1", "1.1", 200)
    formatter = AccessFormatter(
        '%(levelprefix)s %(client_addr)s - "%(request_line)s" %(status_code)s', use_colors=False
    )
    assert formatter.format(record) == f'INFO:     {client} - "GET /x?y=1 HTTP/1.1" 200 OK'
    uvicorn_logging = pytest.importorskip("uvicorn.logging")
    theirs = uvicorn_logging.AccessFormatter(
        '%(levelprefix)s %(client_addr)s - "%(request_line)s" %(status_code)s', use_colors=False
    )
    assert theirs.format(record) == formatter.format(record)


def test_config_log_level_sets_the_loggers() -> None:
    Config(apps.hello, log_config=None, log_level="debug")
    for name in ("fulmen.error", "fulmen.access", "fulmen.asgi"):
        assert logging.getLogger(name).level == logging.DEBUG
    Config(apps.hello, log_config=None, log_level=logging.WARNING)
    assert logging.getLogger("fulmen.error").level == logging.WARNING
    for name in ("fulmen", "fulmen.error", "fulmen.access", "fulmen.asgi"):
        logging.getLogger(name).setLevel(logging.NOTSET)


@pytest.fixture
def access_stream() -> Iterator[tuple[logging.StreamHandler[Any], Any]]:
    """``fulmen.access`` set up as by default, writing to a StringIO; restored afterwards. (pytest adds
    its capture handlers to non-propagating loggers when a test starts: tests call :func:`_only`.)"""
    import io

    logger = logging.getLogger("fulmen.access")
    saved = (
        logger.handlers[:],
        logger.filters[:],
        logger.level,
        logger.propagate,
        AccessFormatter.custom_format,
    )
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(AccessFormatter(DEFAULT_ACCESS_FORMAT, use_colors=False))
    logger.handlers, logger.filters = [handler], []
    logger.setLevel(logging.INFO)
    logger.propagate = False
    AccessFormatter.custom_format = None
    yield handler, stream
    logger.handlers, logger.filters, level, logger.propagate, AccessFormatter.custom_format = saved
    logger.setLevel(level)


_SCOPE: dict[str, Any] = {
    "client": ("10.1.2.3", 5555),
    "path": "/caf\u00e9 menu/x",
    "query_string": b"a=1&b=%20",
    "http_version": "1.1",
    "headers": [(b"user-agent", b"tester/1"), (b"referer", b"http://r/")],
}


def _only(handler: logging.Handler) -> None:
    """Leave ``handler`` the only handler of ``fulmen.access`` (without pytest's capture handlers)."""
    logging.getLogger("fulmen.access").handlers = [handler]


def _both_ways(handler: logging.StreamHandler[Any], stream: Any, status: int = 404) -> tuple[str, str]:
    """The same request's access line through logging, and through an AccessLogBuffer."""
    import asyncio

    _only(handler)
    log_access(_SCOPE, "GET", status, 12, time.monotonic())
    through_logging = stream.getvalue()
    stream.seek(0)
    stream.truncate()
    loop = asyncio.new_event_loop()
    try:
        buffer = AccessLogBuffer.refresh(None, loop)
        assert buffer is not None, "the default setup should be buffered"
        log_access(_SCOPE, "GET", status, 12, time.monotonic(), buffer)
        assert stream.getvalue() == ""  # held until the loop turn ends
        buffer.flush()
    finally:
        loop.close()
    return through_logging, stream.getvalue()


@pytest.mark.parametrize("use_colors", [False, True])
@pytest.mark.parametrize("status", [200, 404, 599])
def test_buffered_access_lines_are_the_lines_logging_writes(
    access_stream: tuple[logging.StreamHandler[Any], Any], use_colors: bool, status: int
) -> None:
    handler, stream = access_stream
    handler.setFormatter(AccessFormatter(DEFAULT_ACCESS_FORMAT, use_colors=use_colors))
    through_logging, buffered = _both_ways(handler, stream, status)
    assert buffered == through_logging
    assert (ESC in buffered) is use_colors
    if not use_colors:
        assert buffered.startswith('INFO:     10.1.2.3:5555 - "GET /caf%C3%A9%20menu/x?a=1&b=%20 HTTP/1.1" ')


def test_buffered_access_lines_with_a_custom_format(
    access_stream: tuple[logging.StreamHandler[Any], Any],
) -> None:
    handler, stream = access_stream
    AccessFormatter.custom_format = "{client} {method} {path} {query} {status} {user_agent} {referer} {bytes}"
    through_logging, buffered = _both_ways(handler, stream)
    assert (
        buffered
        == through_logging
        == "10.1.2.3:5555 GET /caf\u00e9 menu/x a=1&b=%20 404 tester/1 http://r/ 12\n"
    )


def test_access_buffer_only_while_logging_is_set_up_as_by_default(
    access_stream: tuple[logging.StreamHandler[Any], Any],
) -> None:
    import asyncio

    handler, _ = access_stream
    _only(handler)
    logger = logging.getLogger("fulmen.access")
    loop = asyncio.new_event_loop()
    try:
        buffer = AccessLogBuffer.refresh(None, loop)
        assert buffer is not None
        assert AccessLogBuffer.refresh(buffer, loop) is buffer  # unchanged: the same buffer
        changes = [
            lambda: logger.addFilter(lambda record: True),
            lambda: logger.setLevel(logging.WARNING),
            lambda: handler.setLevel(logging.ERROR),
            lambda: handler.addFilter(lambda record: True),
            lambda: logger.addHandler(logging.NullHandler()),
            lambda: handler.setFormatter(AccessFormatter("%(asctime)s %(client_addr)s", use_colors=False)),
            lambda: handler.setFormatter(logging.Formatter()),
            lambda: (
                setattr(logger, "propagate", True) or logging.getLogger().addHandler(logging.NullHandler())
            ),
        ]
        for change in changes:
            state = (logger.filters[:], logger.level, handler.level, handler.filters[:], logger.handlers[:])
            formatter, root_handlers = handler.formatter, logging.getLogger().handlers[:]
            change()
            assert AccessLogBuffer.refresh(buffer, loop) is None
            logger.filters, _, _, handler.filters, logger.handlers = state
            logger.setLevel(state[1])
            handler.setLevel(state[2])
            handler.setFormatter(formatter)
            logger.propagate = False
            logging.getLogger().handlers = root_handlers
            assert AccessLogBuffer.refresh(None, loop) is not None
    finally:
        loop.close()


def test_every_access_line_written_whole_and_once_under_load(cli: Any) -> None:
    """2,000 requests on 20 pipelining connections, then SIGTERM: stdout has each line once, whole."""
    import socket

    port = free_port()
    process = cli("tests.apps:hello", "--port", str(port))
    assert process.wait_for("Fulmen running on"), process.output
    request = b"GET /n HTTP/1.1\r\nHost: x\r\n\r\n"
    sockets = [socket.create_connection(("127.0.0.1", port), timeout=10) for _ in range(20)]
    try:
        for sock in sockets:
            sock.sendall(request * 100)
        for sock in sockets:
            received = b""
            deadline = time.monotonic() + 20
            while received.count(b"Hello, world!") < 100 and time.monotonic() < deadline:
                received += sock.recv(65536)
            assert received.count(b"Hello, world!") == 100
    finally:
        for sock in sockets:
            sock.close()
    process.process.send_signal(signal.SIGTERM)
    assert process.wait(10) == 0, process.output
    lines = [line for line in process.lines if '"GET /n HTTP/1.1"' in line]
    assert len(lines) == 2000, process.output[-2000:]
    assert all(
        re.fullmatch(r'INFO:     127\.0\.0\.1:\d+ - "GET /n HTTP/1\.1" 200 OK', line) for line in lines
    )


def test_buffered_json_access_lines_are_the_lines_logging_writes(
    access_stream: tuple[logging.StreamHandler[Any], Any],
) -> None:
    from fulmen.logging import JSONFormatter

    handler, stream = access_stream
    handler.setFormatter(JSONFormatter())
    through_logging, buffered = _both_ways(handler, stream)
    theirs, ours = json.loads(through_logging), json.loads(buffered)
    assert buffered.endswith("}\n") and buffered.count("\n") == 1
    for document in (theirs, ours):
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", document.pop("time"))
        document.pop("duration_ms")
    assert ours == theirs
    assert ours["message"] == '10.1.2.3:5555 - "GET /caf%C3%A9%20menu/x?a=1&b=%20 HTTP/1.1" 404'
    assert (ours["level"], ours["logger"], ours["user_agent"], ours["bytes"]) == (
        "info",
        "fulmen.access",
        "tester/1",
        12,
    )
