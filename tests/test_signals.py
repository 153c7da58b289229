"""Real signals to real processes: graceful SIGTERM/SIGINT, forced second SIGINT, embedding."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import ROOT, free_port

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")


def _get_in_thread(url: str, results: list[Any]) -> threading.Thread:
    def request() -> None:
        try:
            response = httpx.get(url, timeout=20)
            results.append((response.status_code, response.text))
        except httpx.HTTPError as exc:
            results.append(exc)

    thread = threading.Thread(target=request, daemon=True)
    thread.start()
    return thread


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_graceful_shutdown_finishes_the_request_in_flight(cli: Any, sig: int) -> None:
    port = free_port()
    process = cli("tests.apps:slow", "--port", str(port))
    assert process.wait_for("Fulmen running on"), process.output
    results: list[Any] = []
    client = _get_in_thread(f"http://127.0.0.1:{port}/?1", results)
    time.sleep(0.3)
    process.process.send_signal(sig)
    assert process.wait_for("Shutting down")
    client.join(10)
    assert results == [(200, "slept")]
    assert process.wait(15) == 0
    assert "Waiting for connections to close. (CTRL+C to force quit)" in process.output
    assert "Application shutdown complete." in process.output
    assert "Traceback" not in process.output


def test_second_sigint_forces_the_exit(cli: Any) -> None:
    port = free_port()
    process = cli("tests.apps:slow", "--port", str(port))
    assert process.wait_for("Fulmen running on"), process.output
    results: list[Any] = []
    client = _get_in_thread(f"http://127.0.0.1:{port}/?60", results)
    time.sleep(0.3)
    process.process.send_signal(signal.SIGINT)
    assert process.wait_for("Waiting for connections to close")
    started = time.monotonic()
    process.process.send_signal(signal.SIGINT)
    assert process.wait(10) == 0
    assert time.monotonic() - started < 5
    client.join(10)
    assert results and isinstance(results[0], httpx.HTTPError)
    assert "Application shutdown complete." not in process.output  # forced: the lifespan is not awaited


def test_sigterm_before_any_request(cli: Any) -> None:
    process = cli("tests.apps:hello", "--port", str(free_port()))
    assert process.wait_for("Fulmen running on")
    process.process.send_signal(signal.SIGTERM)
    assert process.wait(10) == 0


# A program started from a shell's background job inherits SIGINT ignored, and Python then leaves it
# ignored (no KeyboardInterrupt): the programs start as an interactive one would, whatever ran pytest.
_INTERACTIVE_SIGINT = "import signal\nsignal.signal(signal.SIGINT, signal.default_int_handler)\n"


def _program(tmp_path: Path, source: str) -> subprocess.Popen[str]:
    script = tmp_path / "program.py"
    script.write_text(_INTERACTIVE_SIGINT + textwrap.dedent(source))
    return subprocess.Popen(
        [sys.executable, str(script)],
        cwd=str(ROOT),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={"PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1", "PATH": "/usr/bin:/bin"},
    )


def _wait_listening(port: int, process: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        assert process.poll() is None, process.communicate()[0]
        try:
            httpx.get(f"http://127.0.0.1:{port}/", timeout=1)
            return
        except httpx.HTTPError:
            time.sleep(0.05)
    raise AssertionError("the embedded server did not start")


def _finish(process: subprocess.Popen[str]) -> tuple[int, str]:
    try:
        output, _ = process.communicate(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()
        output, _ = process.communicate(timeout=5)
        raise AssertionError("the program did not stop: " + output) from None
    return process.returncode, output


def test_embedded_program_gets_its_signal_handlers_back(tmp_path: Path) -> None:
    port = free_port()
    process = _program(
        tmp_path,
        f"""
        import asyncio, signal
        from fulmen import Config, Server
        from tests import apps

        seen = []
        def mine(signum, frame):
            seen.append(signum)
        signal.signal(signal.SIGTERM, mine)

        async def main():
            server = Server(Config(apps.hello, port={port}, log_config=None))
            await server.serve()
            print("serve returned, should_exit =", server.should_exit)
            assert signal.getsignal(signal.SIGTERM) is mine
            await asyncio.sleep(0.1)
            print("program handler saw", seen)

        asyncio.run(main())
        print("program goes on")
        """,
    )
    _wait_listening(port, process)
    process.send_signal(signal.SIGTERM)
    code, output = _finish(process)
    assert code == 0, output
    assert "serve returned, should_exit = True" in output
    assert f"program handler saw [{int(signal.SIGTERM)}]" in output
    assert "program goes on" in output


def test_embedded_program_gets_keyboard_interrupt_after_graceful_shutdown(tmp_path: Path) -> None:
    port = free_port()
    process = _program(
        tmp_path,
        f"""
        import asyncio
        from fulmen import Config, Server
        from tests import apps

        async def main():
            config = Config(apps.lifespan_state, port={port})
            await Server(config).serve()

        try:
            asyncio.run(main())
        except KeyboardInterrupt:
            print("KeyboardInterrupt reached the program")
        """,
    )
    _wait_listening(port, process)
    process.send_signal(signal.SIGINT)
    code, output = _finish(process)
    assert code == 0, output
    for line in ("Application shutdown complete.", "KeyboardInterrupt reached the program"):
        assert line in output, output
    assert output.index("Application shutdown complete.") < output.index(
        "KeyboardInterrupt reached the program"
    )


def test_custom_signal_handlers_example(tmp_path: Path) -> None:
    """The seed's example: the program installs its handlers and drives startup/main_loop/shutdown."""
    port = free_port()
    process = _program(
        tmp_path,
        f"""
        import asyncio, signal
        from fulmen import Config, Server
        from tests import apps

        async def run_with_custom_signals():
            config = Config(app=apps.hello, host="127.0.0.1", port={port}, log_config=None)
            config.load()
            server = Server(config)

            def shutdown_handler(signum, frame):
                print(f"Received signal {{signum}}, shutting down...")
                server.should_exit = True

            signal.signal(signal.SIGINT, shutdown_handler)
            signal.signal(signal.SIGTERM, shutdown_handler)
            await server.startup()
            if server.started:
                try:
                    await server.main_loop()
                finally:
                    await server.shutdown()
            print("stopped")

        asyncio.run(run_with_custom_signals())
        """,
    )
    _wait_listening(port, process)
    process.send_signal(signal.SIGTERM)
    code, output = _finish(process)
    assert code == 0, output
    assert f"Received signal {int(signal.SIGTERM)}, shutting down..." in output
    assert "stopped" in output


def test_server_run_in_a_script_exits_0_on_sigterm(tmp_path: Path) -> None:
    port = free_port()
    process = _program(
        tmp_path,
        f"""
        from fulmen import Config, Server
        from tests import apps

        config = Config(app=apps.hello, host="127.0.0.1", port={port})
        server = Server(config)
        server.run()
        print("run returned")
        """,
    )
    _wait_listening(port, process)
    process.send_signal(signal.SIGTERM)
    code, output = _finish(process)
    assert code == 0, output
    assert "Finished server process" in output and "run returned" in output
