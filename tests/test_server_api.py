"""The server API of the seed documentation: Config, Server, ServerState, HANDLED_SIGNALS, run()."""

from __future__ import annotations

import asyncio
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable, Coroutine
from typing import Any

import httpx
import pytest

import fulmen
from fulmen import HANDLED_SIGNALS, Config, Server, ServerState
from fulmen.server import HANDLED_SIGNALS as SERVER_HANDLED_SIGNALS
from tests import apps
from tests.conftest import free_port, run_server, wait_until


def _in_thread(coroutine: Callable[[], Coroutine[Any, Any, None]]) -> threading.Thread:
    thread = threading.Thread(target=lambda: asyncio.run(coroutine()), daemon=True)
    thread.start()
    return thread


def test_public_names() -> None:
    assert fulmen.Config is Config and fulmen.Server is Server and fulmen.ServerState is ServerState
    assert HANDLED_SIGNALS is SERVER_HANDLED_SIGNALS
    assert HANDLED_SIGNALS[:2] == (signal.SIGINT, signal.SIGTERM)
    assert callable(fulmen.run)
    assert isinstance(fulmen.__version__, str)


def test_server_initial_attributes() -> None:
    server = Server(Config(apps.hello, log_config=None))
    assert (server.started, server.should_exit, server.force_exit, server.last_notified) == (
        False,
        False,
        False,
        0.0,
    )
    state = server.server_state
    assert isinstance(state, ServerState)
    assert state.total_requests == 0
    assert state.connections == set() and state.tasks == set() and state.default_headers == []


def test_config_load_and_loaded() -> None:
    config = Config("tests.apps:hello", log_config=None)
    assert config.loaded is False
    config.load()
    assert config.loaded is True
    assert callable(config.loaded_app)
    assert config.lifespan_class is not None and config.http_protocol_class is not None
    assert config.asgi_version == "3.0"
    assert config.encoded_headers[0] == (b"server", b"fulmen")


def test_config_use_subprocess_and_workers(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("WEB_CONCURRENCY", raising=False)
    assert Config("tests.apps:hello", log_config=None).use_subprocess is False
    assert Config("tests.apps:hello", log_config=None).workers == 1
    assert Config("tests.apps:hello", log_config=None, reload=True).use_subprocess is True
    assert (
        Config("tests.apps:hello", log_config=None, workers=2, worker_class="process").use_subprocess is True
    )
    monkeypatch.setenv("WEB_CONCURRENCY", "3")
    assert Config("tests.apps:hello", log_config=None).workers == 3
    assert Config("tests.apps:hello", log_config=None, workers=2).workers == 2


def test_forwarded_allow_ips_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FORWARDED_ALLOW_IPS", raising=False)
    assert Config(apps.hello, log_config=None).forwarded_allow_ips == "127.0.0.1,::1"
    monkeypatch.setenv("FORWARDED_ALLOW_IPS", "10.0.0.0/8")
    assert Config(apps.hello, log_config=None).forwarded_allow_ips == "10.0.0.0/8"
    assert Config(apps.hello, log_config=None, forwarded_allow_ips="*").forwarded_allow_ips == "*"


def test_bind_socket_then_run_with_sockets() -> None:
    port = free_port()
    config = Config(apps.hello, port=port, log_config=None, lifespan="off")
    sock = config.bind_socket()
    server = Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        assert wait_until(lambda: server.started, 10)
        assert httpx.get(f"http://127.0.0.1:{port}/", timeout=5).text == "Hello, world!"
    finally:
        server.should_exit = True
        thread.join(10)
    assert not thread.is_alive()


def test_manually_bound_socket_example() -> None:
    """The seed's example: a socket bound by the caller is passed to run()."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = Server(Config("tests.apps:hello", log_config=None))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        assert wait_until(lambda: server.started, 10)
        assert httpx.get(f"http://127.0.0.1:{port}/", timeout=5).status_code == 200
    finally:
        server.should_exit = True
        thread.join(10)


def test_serve_inside_an_existing_loop() -> None:
    port = free_port()
    server = Server(Config(apps.hello, port=port, log_config=None))
    done: list[str] = []

    async def main() -> None:
        other = asyncio.create_task(asyncio.sleep(0.01))
        await server.serve()
        await other
        done.append("served")

    thread = _in_thread(main)
    assert wait_until(lambda: server.started, 10)
    assert httpx.get(f"http://127.0.0.1:{port}/", timeout=5).text == "Hello, world!"
    server.should_exit = True
    thread.join(10)
    assert done == ["served"]


def test_startup_main_loop_shutdown_stages() -> None:
    port = free_port()
    config = Config(apps.lifespan_state, port=port, log_config=None, timeout_graceful_shutdown=30)
    config.load()
    server = Server(config)
    stages: list[str] = []

    async def main() -> None:
        await server.startup()
        stages.append(f"started={server.started}")
        stages.append(f"connections={len(server.server_state.connections)}")
        if server.started:
            try:
                await server.main_loop()
                stages.append("main_loop returned")
            finally:
                await server.shutdown()
                stages.append("shut down")

    thread = _in_thread(main)
    assert wait_until(lambda: server.started, 10)
    assert httpx.get(f"http://127.0.0.1:{port}/", timeout=5).text == "from lifespan"
    server.should_exit = True
    thread.join(10)
    assert stages == ["started=True", "connections=0", "main_loop returned", "shut down"]


def test_startup_without_load_loads() -> None:
    """uvicorn needs load() first; fulmen's startup() loads the config itself when it was not."""
    port = free_port()
    server = Server(Config(apps.hello, port=port, log_config=None, lifespan="off"))

    async def main() -> None:
        await server.startup()
        await server.shutdown()

    thread = _in_thread(main)
    thread.join(10)
    assert server.started


def test_run_for_a_while_then_should_exit() -> None:
    port = free_port()
    config = Config(apps.slow, port=port, log_config=None)
    config.load()
    server = Server(config)
    results: list[int] = []

    async def main() -> None:
        await server.startup()
        try:
            await asyncio.sleep(0.3)
        finally:
            server.should_exit = True
            await server.shutdown()

    thread = _in_thread(main)
    assert wait_until(lambda: server.started, 10)

    def request() -> None:
        results.append(httpx.get(f"http://127.0.0.1:{port}/?0.5", timeout=5).status_code)

    client = threading.Thread(target=request)
    client.start()
    client.join(10)
    thread.join(10)
    assert results == [200]  # the request in flight was completed during the graceful shutdown


def test_monitoring_server_state() -> None:
    port = free_port()
    config = Config(apps.slow, port=port, log_config=None, lifespan="off")
    config.load()
    server = Server(config)
    samples: list[tuple[int, int, int]] = []

    async def main() -> None:
        await server.startup()

        async def reporter() -> None:
            while not server.should_exit:
                state = server.server_state
                samples.append((len(state.connections), state.total_requests, len(state.tasks)))
                await asyncio.sleep(0.02)

        task = asyncio.create_task(reporter())
        try:
            await server.main_loop()
        finally:
            task.cancel()
            await server.shutdown()

    thread = _in_thread(main)
    assert wait_until(lambda: server.started, 10)
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=5) as client:
        assert client.get("/?0.3").text == "slept"
        assert client.get("/?0").text == "slept"
        assert wait_until(lambda: bool(samples) and samples[-1][1] == 2, 10)
        assert (1, 1, 1) in samples  # one connection, one request, one task while the app slept
    server.should_exit = True
    thread.join(10)
    assert server.server_state.total_requests == 2
    assert server.server_state.connections == set()


def test_default_headers_and_date_refresh() -> None:
    with run_server(apps.hello, headers=[("X-Extra", "1")]) as running:
        state = running.server.server_state
        names = [name for name, _ in state.default_headers]
        assert names == [b"date", b"server", b"x-extra"]
        first = dict(state.default_headers)[b"date"]
        response = httpx.get(running.url, timeout=5)
        assert response.headers["date"] == first.decode() or response.headers["date"] > ""
        assert wait_until(lambda: dict(state.default_headers)[b"date"] != first, timeout=3)


def test_on_tick_and_main_loop_stop() -> None:
    server = Server(Config(apps.hello, log_config=None, limit_max_requests=2))
    server.config.load()

    async def main() -> list[bool]:
        results = [await server.on_tick(0)]
        server.server_state.total_requests = 2
        results.append(await server.on_tick(1))
        server.server_state.total_requests = 0
        server.should_exit = True
        results.append(await server.on_tick(2))
        await asyncio.wait_for(server.main_loop(), 5)
        return results

    assert asyncio.run(main()) == [False, True, True]


def test_handle_exit() -> None:
    server = Server(Config(apps.hello, log_config=None))
    server.handle_exit(signal.SIGTERM, None)
    assert server.should_exit and not server.force_exit
    server.handle_exit(signal.SIGTERM, None)
    assert not server.force_exit  # only a second SIGINT forces
    server.handle_exit(signal.SIGINT, None)
    assert server.force_exit


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_capture_signals_restores_handlers_and_hands_back() -> None:
    seen: list[int] = []

    def mine(signum: int, frame: Any) -> None:
        seen.append(signum)

    previous = signal.signal(signal.SIGTERM, mine)
    try:
        server = Server(Config(apps.hello, log_config=None))
        with server.capture_signals():
            assert signal.getsignal(signal.SIGTERM) == server.handle_exit
            signal.raise_signal(signal.SIGTERM)
            assert server.should_exit and seen == []
        assert signal.getsignal(signal.SIGTERM) is mine
        assert seen == [signal.SIGTERM]
    finally:
        signal.signal(signal.SIGTERM, previous)


def test_limit_max_requests_stops_the_server() -> None:
    port = free_port()
    server = Server(Config(apps.hello, port=port, log_config=None, lifespan="off", limit_max_requests=3))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    assert wait_until(lambda: server.started, 10)
    with httpx.Client(timeout=5) as client:
        for _ in range(3):
            assert client.get(f"http://127.0.0.1:{port}/").status_code == 200
    thread.join(10)
    assert not thread.is_alive()


def test_limit_concurrency_answers_503() -> None:
    with run_server(apps.slow, limit_concurrency=1, backlog=16) as running:
        results: list[int] = []

        def request() -> None:
            results.append(httpx.get(running.url + "/?0.5", timeout=5).status_code)

        first = threading.Thread(target=request)
        first.start()
        assert wait_until(lambda: len(running.server.server_state.tasks) == 1, 10)
        assert httpx.get(running.url + "/?0", timeout=5).status_code == 503
        first.join(10)
        assert results == [200]


def test_timeout_graceful_shutdown_cancels_slow_requests() -> None:
    port = free_port()
    server = Server(
        Config(apps.slow, port=port, log_config=None, lifespan="off", timeout_graceful_shutdown=1)
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    assert wait_until(lambda: server.started, 10)
    errors: list[BaseException] = []

    def request() -> None:
        try:
            httpx.get(f"http://127.0.0.1:{port}/?30", timeout=10)
        except httpx.HTTPError as exc:
            errors.append(exc)

    client = threading.Thread(target=request)
    client.start()
    assert wait_until(lambda: len(server.server_state.tasks) == 1, 10)
    started = time.monotonic()
    server.should_exit = True
    thread.join(10)
    assert time.monotonic() - started < 5
    client.join(10)
    assert errors  # the request was cut off


def test_run_function_serves(monkeypatch: pytest.MonkeyPatch) -> None:
    port = free_port()
    servers: list[Server] = []
    original_init = Server.__init__

    def record(self: Server, config: Config) -> None:
        original_init(self, config)
        servers.append(self)

    monkeypatch.setattr(Server, "__init__", record)
    thread = threading.Thread(
        target=fulmen.run, args=(apps.hello,), kwargs={"port": port, "log_config": None}, daemon=True
    )
    thread.start()
    assert wait_until(lambda: any(server.started for server in servers), 10)
    assert httpx.get(f"http://127.0.0.1:{port}/", timeout=5).text == "Hello, world!"
    for server in servers:
        server.should_exit = True
    thread.join(10)
    assert not thread.is_alive()


def test_run_with_workers_needs_an_import_string() -> None:
    with pytest.raises(SystemExit) as info:
        fulmen.run(apps.hello, workers=2, log_config=None)
    assert info.value.code == 3
