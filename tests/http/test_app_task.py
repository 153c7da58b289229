"""How the application's task runs: context variables, cancellation and exceptions keep ASGI
semantics whether the task starts eagerly (Python 3.12+) or on the next loop turn."""

from __future__ import annotations

import asyncio
import contextvars
from typing import Any

import httpx
import pytest

from tests.conftest import run_server

request_var: contextvars.ContextVar[str] = contextvars.ContextVar("request_var", default="unset")
lifespan_var: contextvars.ContextVar[str] = contextvars.ContextVar("lifespan_var", default="unset")


async def context_app(scope: Any, receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            lifespan_var.set("set in lifespan")
            await send({"type": message["type"] + ".complete"})
            if message["type"] == "lifespan.shutdown":
                return
    before = request_var.get()
    request_var.set(scope["path"])
    await asyncio.sleep(0)
    body = f"{before}|{request_var.get()}|{lifespan_var.get()}".encode()
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": body})


@pytest.mark.parametrize("reset", [False, True])
def test_context_does_not_leak_between_requests(http_impl: str, reset: bool) -> None:
    with run_server(context_app, http=http_impl, lifespan="on", reset_contextvars=reset) as server:
        with httpx.Client(base_url=server.url) as client:
            first = client.get("/one").text
            second = client.get("/two").text
    assert first.split("|")[:2] == ["unset", "/one"]
    assert second.split("|")[:2] == ["unset", "/two"]


def test_exception_before_response_is_a_500(http_impl: str, loop_impl: str) -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        raise ValueError("raised before any await")

    with run_server(app, http=http_impl, loop=loop_impl) as server:
        with httpx.Client(base_url=server.url) as client:
            assert client.get("/").status_code == 500
            assert client.get("/").status_code == 500


def test_cancellation_on_forced_shutdown(http_impl: str) -> None:
    cancelled: list[bool] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            cancelled.append(True)
            raise

    with run_server(app, http=http_impl, timeout_graceful_shutdown=1) as server:
        with pytest.raises(httpx.HTTPError):
            with httpx.Client(base_url=server.url, timeout=0.5) as client:
                client.get("/")
        server.server.should_exit = True
        server.thread.join(10)
    assert cancelled == [True]
