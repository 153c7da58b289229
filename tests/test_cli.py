"""``python -m fulmen`` as a real subprocess: messages, exit statuses, app loading, env vars."""

from __future__ import annotations

import re
import signal
import socket
import textwrap
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import free_port

RUNNING = "Fulmen running on"


def _serve(cli: Any, *args: str, **kwargs: Any) -> tuple[Any, int]:
    port = free_port()
    process = cli(*args, "--port", str(port), **kwargs)
    assert process.wait_for(RUNNING), process.output
    return process, port


def _write_app(directory: Path, name: str, source: str) -> None:
    (directory / f"{name}.py").write_text(textwrap.dedent(source))


def test_serves_logs_like_uvicorn_and_exits_0_on_sigterm(cli: Any) -> None:
    process, port = _serve(cli, "tests.apps:hello")
    response = httpx.get(f"http://127.0.0.1:{port}/path?q=1", timeout=5)
    assert response.status_code == 200
    assert process.wait_for('"GET /path?q=1 HTTP/1.1" 200 OK')
    process.process.send_signal(signal.SIGTERM)
    assert process.wait(15) == 0
    lines = process.lines
    pid = process.process.pid
    expected = [
        f"INFO:     Started server process [{pid}]",
        "INFO:     Waiting for application startup.",
        "INFO:     Application startup complete.",
        f"INFO:     Fulmen running on http://127.0.0.1:{port} (Press CTRL+C to quit)",
    ]
    assert lines[:4] == expected, process.output
    assert re.search(
        r'^INFO:     127\.0\.0\.1:\d+ - "GET /path\?q=1 HTTP/1\.1" 200 OK$', process.output, re.M
    )
    assert lines[-4:] == [
        "INFO:     Shutting down",
        "INFO:     Waiting for application shutdown.",
        "INFO:     Application shutdown complete.",
        f"INFO:     Finished server process [{pid}]",
    ], process.output


def test_sigint_exits_0(cli: Any) -> None:
    process, port = _serve(cli, "tests.apps:hello")
    process.process.send_signal(signal.SIGINT)
    assert process.wait(15) == 0
    assert "Finished server process" in process.output
    assert "Traceback" not in process.output


@pytest.mark.parametrize(
    ("target", "message"),
    [
        ("no_such_module:app", 'Error loading ASGI app. Could not import module "no_such_module".'),
        (
            "tests.apps:no_such_attr",
            'Error loading ASGI app. Attribute "no_such_attr" not found in module "tests.apps".',
        ),
        (
            "tests.apps",
            'Error loading ASGI app. Import string "tests.apps" must be in format "<module>:<attribute>".',
        ),
        ("tests.apps:not_callable", "Error loading ASGI app. 'tests.apps:not_callable' is not callable."),
    ],
)
def test_bad_application_exits_3_with_one_line(cli: Any, target: str, message: str) -> None:
    process = cli(target, "--port", str(free_port()))
    assert process.wait(15) == 3
    assert f"ERROR:    {message}" in process.lines, process.output
    assert "Traceback" not in process.output


def test_module_that_raises_on_import_exits_3(cli: Any, tmp_path: Path) -> None:
    _write_app(tmp_path, "broken", "raise RuntimeError('boom at import')\n")
    process = cli("broken:app", "--app-dir", str(tmp_path), "--port", str(free_port()))
    assert process.wait(15) == 3
    assert "boom at import" in process.output


def test_missing_dependency_of_the_module_is_shown(cli: Any, tmp_path: Path) -> None:
    _write_app(tmp_path, "needsdep", "import not_installed_dependency\napp = None\n")
    process = cli("needsdep:app", "--app-dir", str(tmp_path), "--port", str(free_port()))
    assert process.wait(15) != 0
    assert "not_installed_dependency" in process.output


def test_factory(cli: Any) -> None:
    process, port = _serve(cli, "tests.apps:factory", "--factory")
    assert httpx.get(f"http://127.0.0.1:{port}/", timeout=5).text == "Hello, world!"
    assert "factory detected" not in process.output


def test_factory_detected_without_flag(cli: Any) -> None:
    process, port = _serve(cli, "tests.apps:factory")
    assert httpx.get(f"http://127.0.0.1:{port}/", timeout=5).text == "Hello, world!"
    assert "ASGI app factory detected" in process.output


def test_factory_flag_on_a_non_factory_exits_3(cli: Any) -> None:
    process = cli("tests.apps:hello", "--factory", "--port", str(free_port()))
    assert process.wait(15) == 3
    assert "Error loading ASGI app factory" in process.output


def test_app_dir(cli: Any, tmp_path: Path) -> None:
    _write_app(
        tmp_path,
        "elsewhere",
        """
        async def app(scope, receive, send):
            if scope["type"] != "http":
                return
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b"from app-dir"})
        """,
    )
    process, port = _serve(cli, "elsewhere:app", "--app-dir", str(tmp_path))
    assert httpx.get(f"http://127.0.0.1:{port}/", timeout=5).text == "from app-dir"


def test_env_file(cli: Any, tmp_path: Path) -> None:
    _write_app(
        tmp_path,
        "envapp",
        """
        import os

        async def app(scope, receive, send):
            if scope["type"] != "http":
                return
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": os.environ["FULMEN_TEST_GREETING"].encode()})
        """,
    )
    env_file = tmp_path / "test.env"
    env_file.write_text("FULMEN_TEST_GREETING=hello from env file\n")
    process, port = _serve(cli, "envapp:app", "--app-dir", str(tmp_path), "--env-file", str(env_file))
    assert httpx.get(f"http://127.0.0.1:{port}/", timeout=5).text == "hello from env file"
    assert f"Loading environment from '{env_file}'" in process.output


def test_missing_env_file_is_a_usage_error(cli: Any) -> None:
    process = cli("tests.apps:hello", "--env-file", "/no/such/file.env")
    assert process.wait(15) == 2
    assert "does not exist" in process.output


def test_options_from_environment(cli: Any) -> None:
    port = free_port()
    process = cli(
        env={
            "FULMEN_APP": "tests.apps:hello",
            "FULMEN_PORT": str(port),
            "FULMEN_NO_ACCESS_LOG": "",
            "FULMEN_ACCESS_LOG": "false",
            "FULMEN_HEADER": "x-from-env:yes",
            "FULMEN_SERVER_HEADER": "false",
        }
    )
    assert process.wait_for(f"http://127.0.0.1:{port}"), process.output
    response = httpx.get(f"http://127.0.0.1:{port}/", timeout=5)
    assert response.headers["x-from-env"] == "yes"
    assert "server" not in response.headers
    process.process.send_signal(signal.SIGTERM)
    assert process.wait(15) == 0
    assert '"GET / HTTP/1.1"' not in process.output  # access log off


def test_command_line_wins_over_environment(cli: Any) -> None:
    port = free_port()
    process = cli("tests.apps:hello", "--port", str(port), env={"FULMEN_PORT": "1"})
    assert process.wait_for(f"http://127.0.0.1:{port}"), process.output


def test_port_in_use_exits_3(cli: Any) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        process = cli("tests.apps:hello", "--port", str(port))
        assert process.wait(15) == 3
    assert "address already in use" in process.output.lower()


def test_http2_without_hpack_exits_3(cli: Any, tmp_path: Path) -> None:
    (tmp_path / "hpack.py").write_text("raise ImportError('hpack is not installed')\n")
    # hpack hidden by a module that fails to import; the app comes from the working directory.
    env = {"PYTHONPATH": str(tmp_path)}
    process = cli("tests.apps:hello", "--http2", "--port", str(free_port()), env=env)
    assert process.wait(15) == 3
    assert "HTTP/2 needs the hpack package" in process.output


def test_version(cli: Any) -> None:
    process = cli("--version")
    assert process.wait(15) == 0
    assert re.match(r"Running fulmen \S+ with \S+ \S+ on \S+", process.output)


def test_invalid_choice_is_a_usage_error(cli: Any) -> None:
    process = cli("tests.apps:hello", "--lifespan", "sometimes")
    assert process.wait(15) == 2
    assert "Invalid value for '--lifespan'" in process.output


def test_port_zero_logs_the_real_port(cli: Any) -> None:
    process = cli("tests.apps:hello", "--port", "0")
    assert process.wait_for(RUNNING), process.output
    match = re.search(r"http://127\.0\.0\.1:(\d+) ", process.output)
    assert match and int(match.group(1)) > 0
    assert httpx.get(f"http://127.0.0.1:{match.group(1)}/", timeout=5).status_code == 200


def test_limit_max_requests_stops_gracefully(cli: Any) -> None:
    process, port = _serve(cli, "tests.apps:hello", "--limit-max-requests", "2")
    with httpx.Client(timeout=5) as client:
        for _ in range(2):
            assert client.get(f"http://127.0.0.1:{port}/").status_code == 200
    assert process.wait(10) == 0
    assert "INFO:     Maximum request limit of 2 exceeded. Terminating process." in process.lines
    assert "Finished server process" in process.output
