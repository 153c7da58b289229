"""The ASGI lifespan protocol: auto/on/off, state shared with requests, failures at startup and shutdown."""

from __future__ import annotations

import signal
import textwrap
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests import apps
from tests.conftest import free_port, run_server

LIFESPAN_APPS = """
import asyncio

events = []

async def unsupported(scope, receive, send):
    if scope["type"] == "lifespan":
        raise RuntimeError("this app knows nothing of lifespan")
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"served"})

async def raises_at_startup(scope, receive, send):
    if scope["type"] == "lifespan":
        await receive()
        raise RuntimeError("the cache is cold")
    await unsupported(scope, receive, send)

async def shutdown_fails(scope, receive, send):
    if scope["type"] == "lifespan":
        await receive()
        await send({"type": "lifespan.startup.complete"})
        await receive()
        await send({"type": "lifespan.shutdown.failed", "message": "could not flush"})
        return
    await unsupported(scope, receive, send)

async def prints_events(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            print("lifespan event", message["type"], flush=True)
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            else:
                await send({"type": "lifespan.shutdown.complete"})
                return
    await unsupported(scope, receive, send)
"""


@pytest.fixture
def app_dir(tmp_path: Path) -> Path:
    (tmp_path / "lifespan_apps.py").write_text(textwrap.dedent(LIFESPAN_APPS))
    return tmp_path


def _start(cli: Any, app_dir: Path, target: str, *args: str) -> tuple[Any, int]:
    port = free_port()
    process = cli(f"lifespan_apps:{target}", "--app-dir", str(app_dir), "--port", str(port), *args)
    return process, port


def test_state_reaches_every_request_as_a_copy() -> None:
    seen: list[dict[str, Any]] = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            message = await receive()
            scope["state"]["counter"] = 0
            scope["state"]["shared"] = ["from lifespan"]
            await send({"type": "lifespan.startup.complete"})
            message = await receive()
            assert message["type"] == "lifespan.shutdown"
            await send({"type": "lifespan.shutdown.complete"})
            return
        seen.append(dict(scope["state"]))
        scope["state"]["counter"] += 1  # only this request's copy changes
        scope["state"]["added"] = True
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    with run_server(app, lifespan="on") as server:
        with httpx.Client(base_url=server.url, timeout=5) as client:
            client.get("/")
            client.get("/")
    assert seen == [{"counter": 0, "shared": ["from lifespan"]}] * 2


def test_lifespan_state_app() -> None:
    with run_server(apps.lifespan_state, lifespan="auto") as server:
        assert httpx.get(server.url, timeout=5).text == "from lifespan"


def test_lifespan_off_sends_no_events_and_state_is_empty() -> None:
    with run_server(apps.lifespan_state, lifespan="off") as server:
        assert httpx.get(server.url, timeout=5).text == "none"


def test_auto_with_an_app_without_lifespan_support(cli: Any, app_dir: Path) -> None:
    process, port = _start(cli, app_dir, "unsupported")
    assert process.wait_for("Fulmen running on"), process.output
    assert "INFO:     ASGI 'lifespan' protocol appears unsupported." in process.lines
    assert httpx.get(f"http://127.0.0.1:{port}/", timeout=5).text == "served"
    process.process.send_signal(signal.SIGTERM)
    assert process.wait(10) == 0
    assert "Waiting for application shutdown." not in process.output


def test_on_with_an_app_without_lifespan_support_exits_3(cli: Any, app_dir: Path) -> None:
    process, _ = _start(cli, app_dir, "unsupported", "--lifespan", "on")
    assert process.wait(15) == 3
    assert "ERROR:    Exception in 'lifespan' protocol" in process.output
    assert "this app knows nothing of lifespan" in process.output
    assert "ERROR:    Application startup failed. Exiting." in process.lines
    assert "Fulmen running on" not in process.output


def test_startup_failed_message_exits_3(cli: Any) -> None:
    port = free_port()
    process = cli("tests.apps:lifespan_fails", "--port", str(port))
    assert process.wait(15) == 3
    assert "ERROR:    the database is not there" in process.lines
    assert "ERROR:    Application startup failed. Exiting." in process.lines
    assert "Fulmen running on" not in process.output


def test_startup_exception_with_auto_still_serves(cli: Any, app_dir: Path) -> None:
    """With auto, an app that raises on the lifespan scope simply does not support it (as uvicorn)."""
    process, port = _start(cli, app_dir, "raises_at_startup")
    assert process.wait_for("Fulmen running on"), process.output
    assert "ASGI 'lifespan' protocol appears unsupported." in process.output


def test_startup_exception_with_on_exits_3(cli: Any, app_dir: Path) -> None:
    process, _ = _start(cli, app_dir, "raises_at_startup", "--lifespan", "on")
    assert process.wait(15) == 3
    assert "the cache is cold" in process.output


def test_shutdown_failed_is_logged(cli: Any, app_dir: Path) -> None:
    process, port = _start(cli, app_dir, "shutdown_fails")
    assert process.wait_for("Fulmen running on"), process.output
    process.process.send_signal(signal.SIGTERM)
    process.wait(10)
    assert "ERROR:    could not flush" in process.lines
    assert "ERROR:    Application shutdown failed. Exiting." in process.lines


def test_events_in_order(cli: Any, app_dir: Path) -> None:
    process, port = _start(cli, app_dir, "prints_events")
    assert process.wait_for("Fulmen running on"), process.output
    assert httpx.get(f"http://127.0.0.1:{port}/", timeout=5).status_code == 200
    process.process.send_signal(signal.SIGTERM)
    assert process.wait(10) == 0
    out = process.output
    order = [
        "Waiting for application startup.",
        "lifespan event lifespan.startup",
        "Application startup complete.",
        "Fulmen running on",
        "Shutting down",
        "Waiting for application shutdown.",
        "lifespan event lifespan.shutdown",
        "Application shutdown complete.",
        "Finished server process",
    ]
    positions = [out.index(text) for text in order]
    assert positions == sorted(positions), out


def test_lifespan_off_prints_no_lifespan_lines(cli: Any, app_dir: Path) -> None:
    process, port = _start(cli, app_dir, "prints_events", "--lifespan", "off")
    assert process.wait_for("Fulmen running on"), process.output
    process.process.send_signal(signal.SIGTERM)
    assert process.wait(10) == 0
    assert "lifespan event" not in process.output
    assert "Waiting for application startup." not in process.output
