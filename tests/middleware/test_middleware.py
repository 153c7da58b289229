"""ASGI 2 and WSGI applications, wrapped by the server (WSGI in a thread pool)."""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator
from typing import Any

import httpx

from fulmen import Config
from fulmen.middleware.asgi2 import ASGI2Middleware
from fulmen.middleware.wsgi import WSGIMiddleware
from tests.conftest import run_server


class ASGI2App:
    def __init__(self, scope: dict[str, Any]) -> None:
        self.scope = scope

    async def __call__(self, receive: Any, send: Any) -> None:
        if self.scope["type"] != "http":
            return
        body = f"asgi2 {self.scope['path']} {self.scope['asgi']['version']}".encode()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": body})


def asgi2_function(scope: dict[str, Any]) -> Any:
    async def instance(receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"asgi2 function"})

    return instance


def test_asgi2_class_is_detected_and_wrapped() -> None:
    config = Config(ASGI2App, log_config=None, lifespan="off", proxy_headers=False)
    config.load()
    assert config.interface == "asgi2" and config.asgi_version == "2.0"
    assert isinstance(config.loaded_app, ASGI2Middleware)
    with run_server(ASGI2App) as server:
        assert httpx.get(server.url + "/x", timeout=5).text == "asgi2 /x 2.0"


def test_asgi2_explicit_interface() -> None:
    with run_server(asgi2_function, interface="asgi2") as server:
        assert httpx.get(server.url, timeout=5).text == "asgi2 function"


def test_asgi2_with_lifespan_auto() -> None:
    with run_server(ASGI2App, lifespan="auto") as server:
        assert httpx.get(server.url + "/y", timeout=5).text == "asgi2 /y 2.0"


def wsgi_app(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
    path = environ["PATH_INFO"]
    if path == "/error":
        raise RuntimeError("wsgi failure")
    if path == "/write":
        write = start_response("200 OK", [("Content-Type", "text/plain")])
        write(b"written ")
        return [b"and returned"]
    if path == "/stream":
        start_response("200 OK", [("Content-Type", "text/plain")])
        return (b"chunk%d " % i for i in range(5))
    body = environ["wsgi.input"].read()
    info = {
        "method": environ["REQUEST_METHOD"],
        "script": environ["SCRIPT_NAME"],
        "path": path,
        "query": environ["QUERY_STRING"],
        "protocol": environ["SERVER_PROTOCOL"],
        "custom": environ.get("HTTP_X_CUSTOM"),
        "type": environ.get("CONTENT_TYPE"),
        "length": environ.get("CONTENT_LENGTH"),
        "remote": environ.get("REMOTE_ADDR"),
        "scheme": environ["wsgi.url_scheme"],
        "server_port": environ["SERVER_PORT"],
        "thread": threading.current_thread().name,
        "body": body.decode(),
    }
    start_response("201 Created", [("Content-Type", "application/json"), ("X-Wsgi", "yes")])
    import json

    return [json.dumps(info).encode()]


def test_wsgi_request_and_environ() -> None:
    with run_server(wsgi_app, interface="wsgi", root_path="/app") as server:
        response = httpx.post(
            server.url + "/things?a=1",
            content=b"payload",
            headers={"X-Custom": "v", "Content-Type": "text/plain"},
            timeout=5,
        )
        assert response.status_code == 201
        assert response.headers["x-wsgi"] == "yes"
        info = response.json()
        assert info["method"] == "POST" and info["body"] == "payload"
        assert (info["script"], info["path"], info["query"]) == ("/app", "/things", "a=1")
        assert info["protocol"] == "HTTP/1.1" and info["scheme"] == "http"
        assert (info["custom"], info["type"], info["length"]) == ("v", "text/plain", "7")
        assert info["remote"] == "127.0.0.1" and info["server_port"] == str(server.port)
        assert info["thread"] != threading.main_thread().name and info["thread"].startswith("wsgi")


def test_wsgi_streaming_write_and_errors() -> None:
    with run_server(wsgi_app, interface="wsgi") as server:
        with httpx.Client(base_url=server.url, timeout=5) as client:
            assert client.get("/stream").text == "chunk0 chunk1 chunk2 chunk3 chunk4 "
            assert client.get("/write").text == "written and returned"
            assert client.get("/error").status_code == 500
            assert client.get("/stream").status_code == 200  # still serving


def test_wsgi_runs_requests_concurrently_in_threads() -> None:
    barrier = threading.Barrier(3, timeout=5)

    def app(environ: dict[str, Any], start_response: Any) -> Iterator[bytes]:
        barrier.wait()  # only passes when three requests run at once
        start_response("200 OK", [])
        yield b"together"

    with run_server(app, interface="wsgi") as server:
        results: list[str] = []

        def get() -> None:
            results.append(httpx.get(server.url, timeout=10).text)

        threads = [threading.Thread(target=get) for _ in range(3)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(10)
        assert results == ["together"] * 3


def test_wsgi_close_is_called() -> None:
    closed = threading.Event()

    class Body:
        def __iter__(self) -> Iterator[bytes]:
            yield b"body"

        def close(self) -> None:
            closed.set()

    def app(environ: dict[str, Any], start_response: Any) -> Body:
        start_response("200 OK", [])
        return Body()

    with run_server(app, interface="wsgi") as server:
        assert httpx.get(server.url, timeout=5).text == "body"
        assert closed.wait(5)


def test_wsgi_middleware_directly_and_disables_websockets() -> None:
    config = Config(wsgi_app, interface="wsgi", log_config=None, proxy_headers=False)
    config.load()
    assert isinstance(config.loaded_app, WSGIMiddleware)
    assert config.ws_protocol_class is None
