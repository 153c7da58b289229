"""Starlette and FastAPI applications served for real."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import textwrap
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import free_port, run_server

starlette = pytest.importorskip("starlette")
fastapi = pytest.importorskip("fastapi")

from fastapi import BackgroundTasks, FastAPI, HTTPException, Request  # noqa: E402
from fastapi.responses import JSONResponse, PlainTextResponse, StreamingResponse  # noqa: E402
from starlette.applications import Starlette  # noqa: E402
from starlette.routing import Route  # noqa: E402


class TeapotError(Exception):
    pass


def make_fastapi(events: list[str]) -> FastAPI:
    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[dict[str, Any]]:
        events.append("startup")
        yield {"db": "connected"}
        events.append("shutdown")

    app = FastAPI(lifespan=lifespan)

    @app.get("/items/{item_id}")
    async def item(item_id: int, q: str | None = None) -> dict[str, Any]:
        return {"item_id": item_id, "q": q}

    @app.post("/echo")
    async def echo(payload: dict[str, Any]) -> dict[str, Any]:
        return {"got": payload}

    @app.get("/state")
    async def state(request: Request) -> dict[str, Any]:
        return {"db": request.state.db, "client": request.client.host if request.client else None}

    @app.get("/stream")
    async def stream() -> StreamingResponse:
        async def chunks() -> AsyncIterator[bytes]:
            for i in range(5):
                yield f"part{i};".encode()
                await asyncio.sleep(0.01)

        return StreamingResponse(chunks(), media_type="text/plain")

    @app.get("/background")
    async def background(tasks: BackgroundTasks) -> dict[str, str]:
        async def later() -> None:
            await asyncio.sleep(0.05)
            events.append("background done")

        tasks.add_task(later)
        return {"status": "scheduled"}

    @app.get("/missing")
    async def missing() -> None:
        raise HTTPException(status_code=404, detail="nothing here")

    @app.get("/teapot")
    async def teapot() -> None:
        raise TeapotError()

    @app.exception_handler(TeapotError)
    async def teapot_handler(request: Request, exc: TeapotError) -> JSONResponse:
        return JSONResponse({"error": "teapot"}, status_code=418)

    @app.get("/crash")
    async def crash() -> None:
        raise RuntimeError("unhandled")

    @app.get("/sync")
    def sync_route() -> PlainTextResponse:
        return PlainTextResponse(threading.current_thread().name)

    return app


@pytest.mark.parametrize("http", ["httptools", "h11"])
def test_fastapi(http: str) -> None:
    events: list[str] = []
    with run_server(make_fastapi(events), lifespan="on", http=http) as server:
        with httpx.Client(base_url=server.url, timeout=5) as client:
            assert client.get("/items/3?q=x").json() == {"item_id": 3, "q": "x"}
            assert client.get("/items/notanint").status_code == 422
            assert client.post("/echo", json={"a": [1, 2]}).json() == {"got": {"a": [1, 2]}}
            assert client.get("/state").json() == {"db": "connected", "client": "127.0.0.1"}
            with client.stream("GET", "/stream") as response:
                assert response.headers["transfer-encoding"] == "chunked"
                assert b"".join(response.iter_bytes()) == b"part0;part1;part2;part3;part4;"
            assert client.get("/background").json() == {"status": "scheduled"}
            missing = client.get("/missing")
            assert missing.status_code == 404 and missing.json() == {"detail": "nothing here"}
            assert client.get("/teapot").status_code == 418
            assert client.get("/crash").status_code == 500
            assert client.get("/sync").text != "MainThread"
            assert client.get("/openapi.json").json()["paths"]["/items/{item_id}"]
            assert client.get("/items/4").json()["item_id"] == 4  # still serving after the crash
    assert events[0] == "startup" and events[-1] == "shutdown"
    assert "background done" in events


def test_starlette() -> None:
    from starlette.requests import Request as StarletteRequest
    from starlette.responses import JSONResponse as StarletteJSON

    async def homepage(request: StarletteRequest) -> StarletteJSON:
        return StarletteJSON(
            {"hello": "world", "root_path": request.scope["root_path"], "url": str(request.url)}
        )

    app = Starlette(routes=[Route("/", homepage)])
    with run_server(app, root_path="/api") as server:
        data = httpx.get(server.url + "/", timeout=5).json()
        assert data["hello"] == "world" and data["root_path"] == "/api"
        assert data["url"] == f"http://127.0.0.1:{server.port}/api/"
        assert httpx.get(server.url + "/nope", timeout=5).status_code == 404


def test_fastapi_from_the_cli(cli: Any, tmp_path: Path) -> None:
    (tmp_path / "fastapp.py").write_text(
        textwrap.dedent(
            """
            import contextlib
            from fastapi import FastAPI

            @contextlib.asynccontextmanager
            async def lifespan(app):
                print("fastapi startup", flush=True)
                yield
                print("fastapi shutdown", flush=True)

            app = FastAPI(lifespan=lifespan)

            @app.get("/")
            async def root():
                return {"ok": True}
            """
        )
    )
    port = free_port()
    process = cli("fastapp:app", "--app-dir", str(tmp_path), "--port", str(port))
    assert process.wait_for("Fulmen running on"), process.output
    assert httpx.get(f"http://127.0.0.1:{port}/", timeout=5).json() == {"ok": True}
    process.process.send_signal(signal.SIGTERM)
    assert process.wait(10) == 0
    out = process.output
    assert out.index("fastapi startup") < out.index("Application startup complete.")
    assert out.index("fastapi shutdown") < out.index("Application shutdown complete.")
