"""What a uvicorn user meets when switching: startup failures, option checks, uvicorn's loggers and
variables, ``fulmen.main`` as the command. Real subprocesses, real sockets."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import ROOT, free_port

RUNNING = "Fulmen running on"

#: Logs on uvicorn's logger, as FastAPI applications often do, and answers "ok".
UVICORN_LOGGING_APP = """
import logging

async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            else:
                await send({"type": "lifespan.shutdown.complete"})
                return
    logging.getLogger("uvicorn.error").info("the app logs on uvicorn.error")
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})
"""


def _write(directory: Path, name: str, source: str) -> Path:
    path = directory / name
    path.write_text(textwrap.dedent(source))
    return path


def _no_traceback(output: str) -> None:
    assert "Traceback" not in output, output


# -- worker startup failures


@pytest.mark.parametrize("worker_class", ["process", "auto"])
def test_lifespan_failure_under_two_workers_exits_3_within_seconds(cli: Any, worker_class: str) -> None:
    started = time.monotonic()
    process = cli(
        "tests.apps:lifespan_fails",
        *("--workers", "2", "--worker-class", worker_class, "--port", str(free_port())),
    )
    assert process.wait(30) == 3, process.output
    assert time.monotonic() - started < 20
    assert "failed to start (status 3); stopping the server." in process.output
    # Stopped at the first failure: no worker is started again.
    assert process.output.count("Waiting for application startup.") <= 2, process.output


THREAD_POOL = """
import sys
from fulmen import Config
from fulmen.supervisors import Supervisor

config = Config(app=sys.argv[2], port=int(sys.argv[1]), workers=2, **{OPTIONS})
supervisor = Supervisor(config, mode="thread")
supervisor.run()
sys.exit(supervisor.returncode)
"""


def _thread_pool(tmp_path: Path, app: str, port: int, **options: Any) -> subprocess.CompletedProcess[str]:
    script = _write(tmp_path, "pool.py", THREAD_POOL.replace("{OPTIONS}", repr(options)))
    return subprocess.run(
        [sys.executable, str(script), str(port), app],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_lifespan_failure_of_thread_workers_exits_3(tmp_path: Path) -> None:
    result = _thread_pool(tmp_path, "tests.apps:lifespan_fails", free_port())
    output = result.stdout + result.stderr
    assert result.returncode == 3, output
    assert "Worker thread" in output and "failed to start (status 3)" in output


def test_import_error_of_thread_workers_exits_3(tmp_path: Path) -> None:
    result = _thread_pool(tmp_path, "tests.no_such_module:app", free_port())
    output = result.stdout + result.stderr
    assert result.returncode == 3, output
    assert "Could not import module" in output


@pytest.mark.parametrize("mode", ["process", "thread"])
def test_bind_error_with_workers_exits_3_naming_the_address(cli: Any, tmp_path: Path, mode: str) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        if mode == "process":
            process = cli("tests.apps:hello", "--workers", "2", "--port", str(port))
            code, output = process.wait(30), process.output
        else:
            result = _thread_pool(tmp_path, "tests.apps:hello", port)
            code, output = result.returncode, result.stdout + result.stderr
    assert code == 3, output
    assert f"Cannot bind to 127.0.0.1:{port}: Address already in use" in output
    _no_traceback(output)


def test_thread_workers_past_limit_max_requests_are_replaced(tmp_path: Path) -> None:
    port = free_port()
    script = _write(tmp_path, "pool.py", THREAD_POOL.replace("{OPTIONS}", repr({"limit_max_requests": 2})))
    process = subprocess.Popen(
        [sys.executable, str(script), str(port), "tests.apps:hello"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        statuses = []
        deadline = time.monotonic() + 30
        while len(statuses) < 8 and time.monotonic() < deadline:
            try:
                statuses.append(httpx.get(f"http://127.0.0.1:{port}/", timeout=5).status_code)
            except httpx.TransportError:
                time.sleep(0.05)  # between a worker's stop and its replacement
        assert statuses == [200] * 8
        assert process.poll() is None, "the pool stopped instead of replacing its workers"
    finally:
        process.terminate()
        output, _ = process.communicate(timeout=30)
    assert "exited; starting a new one" in output, output
    assert "failed to start" not in output, output


# -- option values checked at startup


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (("--access-log-format", "{clinet} {status}"), "unknown field 'clinet'"),
        (("--access-log-format", "%(clinet)s %(status)s"), "unknown field 'clinet'"),
        (("--access-log-format", "{status:d} {client:d}"), "cannot be rendered"),
        (("--ssl-keyfile", "tests/apps.py"), "a TLS key needs its certificate"),
        (("--ssl-certfile", "missing-cert.pem"), "TLS certificate file 'missing-cert.pem' does not exist"),
        (("--port", "99999"), "Invalid value for '--port'"),
        (("--header", "NoColon"), "'NoColon' is not 'Name: Value'"),
        (("--forwarded-allow-ips", "10.0.0.0/33"), "'10.0.0.0/33' is neither an IP address nor a network"),
        (("--http", "zttp"), "--http2"),
        (("--timeout-request-header", "0"), "Invalid value for '--timeout-request-header'"),
        (("--limit-concurrency", "0"), "Invalid value for '--limit-concurrency'"),
    ],
)
def test_bad_option_value_is_a_usage_error_with_one_line(
    cli: Any, args: tuple[str, ...], expected: str
) -> None:
    process = cli("tests.apps:hello", "--port", str(free_port()), *args)
    assert process.wait(15) == 2, process.output
    errors = [line for line in process.lines if line.startswith("Error:")]
    assert len(errors) == 1 and expected in errors[0], process.output
    assert RUNNING not in process.output
    _no_traceback(process.output)


def test_bad_web_concurrency_is_a_usage_error(cli: Any) -> None:
    process = cli("tests.apps:hello", "--port", str(free_port()), env={"WEB_CONCURRENCY": "many"})
    assert process.wait(15) == 2, process.output
    assert "$WEB_CONCURRENCY is 'many', not a whole number" in process.output
    _no_traceback(process.output)


def test_bad_access_log_format_through_run_exits_3_before_serving(tmp_path: Path) -> None:
    script = _write(
        tmp_path,
        "serve.py",
        f"""
        import fulmen
        fulmen.run("tests.apps:hello", port={free_port()}, access_log_format="{{clinet}}")
        """,
    )
    result = subprocess.run(
        [sys.executable, str(script)], cwd=ROOT, capture_output=True, text=True, timeout=30
    )
    output = result.stdout + result.stderr
    assert result.returncode == 3, output
    assert "Invalid value for 'access_log_format' (--access-log-format): unknown field 'clinet'" in output
    assert "Started server process" not in output
    _no_traceback(output)


def test_tls_file_that_is_not_a_certificate_is_named(cli: Any) -> None:
    process = cli("tests.apps:hello", "--port", str(free_port()), "--ssl-certfile", "tests/apps.py")
    assert process.wait(15) == 3, process.output
    assert "Error loading TLS certificate or key (certificate 'tests/apps.py')" in process.output
    _no_traceback(process.output)


def test_unreadable_log_config_exits_3_naming_the_file(cli: Any, tmp_path: Path) -> None:
    broken = _write(tmp_path, "logging.json", '{"version": 1, "handlers": ')
    process = cli("tests.apps:hello", "--port", str(free_port()), "--log-config", str(broken))
    assert process.wait(15) == 3, process.output
    assert f"Cannot read the log config '{broken}'" in process.output
    _no_traceback(process.output)


def test_log_level_help_shows_its_default(cli: Any) -> None:
    process = cli("--help")
    assert process.wait(15) == 0
    help_text = " ".join(process.output.split())
    assert "Log level. [default: info]" in help_text


# -- uvicorn's log configs, loggers and variables

UVICORN_LOG_CONFIG: dict[str, Any] = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "default": {"()": "uvicorn.logging.DefaultFormatter", "fmt": "FILE %(levelprefix)s %(message)s"},
        "access": {
            "()": "uvicorn.logging.AccessFormatter",
            "fmt": 'FILE-ACCESS %(client_addr)s "%(request_line)s" %(status_code)s',
        },
    },
    "handlers": {
        "default": {"formatter": "default", "class": "logging.FileHandler", "filename": "ERROR_LOG"},
        "access": {"formatter": "access", "class": "logging.FileHandler", "filename": "ACCESS_LOG"},
    },
    "loggers": {
        "uvicorn.error": {"handlers": ["default"], "level": "INFO", "propagate": False},
        "uvicorn.access": {"handlers": ["access"], "level": "INFO", "propagate": False},
    },
}


def _uvicorn_log_config(tmp_path: Path, kind: str) -> Path:
    config = json.loads(
        json.dumps(UVICORN_LOG_CONFIG)
        .replace("ERROR_LOG", str(tmp_path / "error.log"))
        .replace("ACCESS_LOG", str(tmp_path / "access.log"))
    )
    if kind == "json":
        return _write(tmp_path, "logging.json", json.dumps(config))
    if kind == "ini":
        return _write(tmp_path, "logging.ini", INI_LOG_CONFIG.replace("TMP", str(tmp_path)))
    import yaml

    return _write(tmp_path, "logging.yaml", yaml.safe_dump(config))


#: The same configuration as an INI file for logging.config.fileConfig.
INI_LOG_CONFIG = """
[loggers]
keys=root,error,access

[handlers]
keys=error,access

[formatters]
keys=default,access

[logger_root]
level=WARNING
handlers=

[logger_error]
level=INFO
handlers=error
propagate=0
qualname=uvicorn.error

[logger_access]
level=INFO
handlers=access
propagate=0
qualname=uvicorn.access

[handler_error]
class=FileHandler
formatter=default
args=('TMP/error.log',)

[handler_access]
class=FileHandler
formatter=access
args=('TMP/access.log',)

[formatter_default]
class=uvicorn.logging.DefaultFormatter
format=FILE %(levelprefix)s %(message)s
datefmt=%Y-%m-%d %H:%M:%S

[formatter_access]
class=uvicorn.logging.AccessFormatter
format=FILE-ACCESS %(client_addr)s "%(request_line)s" %(status_code)s
"""


@pytest.mark.parametrize("kind", ["json", "yaml", "ini"])
def test_uvicorn_log_config_file_applies_to_fulmen(cli: Any, tmp_path: Path, kind: str) -> None:
    _write(tmp_path, "logs_on_uvicorn.py", UVICORN_LOGGING_APP)
    log_config = _uvicorn_log_config(tmp_path, kind)
    port = free_port()
    process = cli("logs_on_uvicorn:app", "--port", str(port), "--log-config", str(log_config), cwd=tmp_path)
    error_log = tmp_path / "error.log"
    deadline = time.monotonic() + 15
    while RUNNING not in (error_log.read_text() if error_log.exists() else ""):
        assert time.monotonic() < deadline and process.process.poll() is None, process.output
        time.sleep(0.05)
    assert httpx.get(f"http://127.0.0.1:{port}/path", timeout=5).text == "ok"
    process.process.terminate()
    assert process.wait(15) == 0
    errors = error_log.read_text().splitlines()
    assert errors[0] == (
        "FILE INFO:     The log config is written for uvicorn: its settings of uvicorn.error, "
        "uvicorn.access also apply to fulmen.error, fulmen.access."
    )
    assert f"FILE INFO:     Fulmen running on http://127.0.0.1:{port} (Press CTRL+C to quit)" in errors
    assert "FILE INFO:     the app logs on uvicorn.error" in errors
    assert (tmp_path / "access.log").read_text().startswith("FILE-ACCESS 127.0.0.1:")
    assert '"GET /path HTTP/1.1" 200 OK' in (tmp_path / "access.log").read_text()
    assert process.output == ""  # everything went to the configured files


def test_app_records_on_uvicorn_error_appear_with_the_default_config(cli: Any, tmp_path: Path) -> None:
    _write(tmp_path, "logs_on_uvicorn.py", UVICORN_LOGGING_APP)
    port = free_port()
    process = cli("logs_on_uvicorn:app", "--port", str(port), cwd=tmp_path)
    assert process.wait_for(RUNNING), process.output
    assert httpx.get(f"http://127.0.0.1:{port}/", timeout=5).text == "ok"
    assert process.wait_for("INFO:     the app logs on uvicorn.error"), process.output


def test_uvicorn_port_is_used_when_fulmen_port_is_not_set(cli: Any) -> None:
    port = free_port()
    process = cli("tests.apps:hello", env={"UVICORN_PORT": str(port), "FULMEN_PORT": ""})
    assert process.wait_for(f"{RUNNING} http://127.0.0.1:{port} "), process.output
    assert "Read uvicorn's environment variables UVICORN_PORT" in process.output


def test_fulmen_port_wins_over_uvicorn_port(cli: Any) -> None:
    port = free_port()
    process = cli("tests.apps:hello", env={"UVICORN_PORT": "1", "FULMEN_PORT": str(port)})
    assert process.wait_for(f"{RUNNING} http://127.0.0.1:{port} "), process.output
    assert "UVICORN_PORT" not in process.output


def test_uvicorn_app_variable(cli: Any) -> None:
    port = free_port()
    process = cli("--port", str(port), env={"UVICORN_APP": "tests.apps:hello"})
    assert process.wait_for(RUNNING), process.output
    assert httpx.get(f"http://127.0.0.1:{port}/", timeout=5).status_code == 200


# -- fulmen.main, as uvicorn.main


@pytest.mark.parametrize(
    "call",
    [
        "import fulmen; fulmen.main(ARGS)",
        "import fulmen; fulmen.main.main(ARGS)",
        "from fulmen import main; main(ARGS)",
        "import fulmen.main; fulmen.main.run('tests.apps:hello', port=PORT)",
        "from fulmen.main import run; run('tests.apps:hello', port=PORT)",
    ],
)
def test_fulmen_main_is_called_as_uvicorn_main_is(call: str) -> None:
    port = free_port()
    args = repr(["tests.apps:hello", "--port", str(port)])
    code = call.replace("ARGS", args).replace("PORT", str(port))
    process = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                assert httpx.get(f"http://127.0.0.1:{port}/", timeout=5).status_code == 200
                break
            except httpx.TransportError:
                assert process.poll() is None and time.monotonic() < deadline, "did not serve"
                time.sleep(0.05)
    finally:
        process.terminate()
        process.communicate(timeout=20)


def test_reload_logs_the_watched_directories(cli: Any, tmp_path: Path) -> None:
    _write(tmp_path, "logs_on_uvicorn.py", UVICORN_LOGGING_APP)
    process = cli("logs_on_uvicorn:app", "--reload", "--port", str(free_port()), cwd=tmp_path)
    try:
        assert process.wait_for(RUNNING), process.output
        expected = f"INFO:     Will watch for changes in these directories: ['{tmp_path.resolve()}']"
        assert process.lines[0] == expected, process.output
    finally:
        process.process.terminate()  # the reloader stops its worker (killing it would orphan the worker)
        assert process.wait(15) == 0
