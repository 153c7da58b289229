"""Plain ASGI applications used by the benchmark harness.

No framework is involved: each workload is a bare ASGI 3 callable so that the
numbers measure the server (protocol parsing, event loop integration, ASGI
glue) and not a routing layer.  Every app also answers the ``lifespan`` scope
so servers started with ``--lifespan auto`` (the default) stay quiet.

Workloads (attribute names are what ``run.py`` passes to the servers):

``plaintext``  GET, 13-byte ``text/plain`` body ``Hello, World!``
``json_app``   GET, a small JSON object
``headers``    GET with ~20 browser-like request headers, small body back
``echo``       POST a body (16 KiB in the benchmark) and get it back
``stream``     GET, 10 chunks of 1 KiB sent with ``more_body=True``
``websocket``  WebSocket echo of every text/binary message received
``app``        all of the above behind a tiny path dispatcher (for manual tests)

The ``fastapi`` workload (the ``json`` answer from a FastAPI route) is in ``fastapi_app.py``.

Run one by hand with e.g.::

    uvicorn benchmarks.apps:plaintext --port 8000 --no-access-log
"""

from __future__ import annotations

import json as _json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

PLAINTEXT_BODY = b"Hello, World!"
JSON_OBJECT: dict[str, Any] = {"message": "Hello, World!", "id": 42, "ok": True}
JSON_BODY = _json.dumps(JSON_OBJECT, separators=(",", ":")).encode()
HEADERS_BODY = b"headers ok"
STREAM_CHUNK = b"x" * 1024
STREAM_CHUNKS = 10

_TEXT_HEADERS = [(b"content-type", b"text/plain; charset=utf-8")]


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


async def _reply(send: Send, body: bytes, headers: list[tuple[bytes, bytes]]) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [*headers, (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def _drain(receive: Receive) -> bytes:
    """Read the whole request body (bounded by what the client sends)."""
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


async def plaintext(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] == "lifespan":
        await _lifespan(receive, send)
        return
    await _reply(send, PLAINTEXT_BODY, _TEXT_HEADERS)


async def json_app(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] == "lifespan":
        await _lifespan(receive, send)
        return
    body = _json.dumps(JSON_OBJECT, separators=(",", ":")).encode()
    await _reply(send, body, [(b"content-type", b"application/json")])


async def headers(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] == "lifespan":
        await _lifespan(receive, send)
        return
    # Touch the headers the way a real app would (look one up), so a lazy
    # header implementation cannot skip the work entirely.
    user_agent = b""
    for name, value in scope["headers"]:
        if name == b"user-agent":
            user_agent = value
            break
    body = HEADERS_BODY if user_agent else b"no user-agent"
    await _reply(send, body, _TEXT_HEADERS)


async def echo(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] == "lifespan":
        await _lifespan(receive, send)
        return
    body = await _drain(receive)
    await _reply(send, body, [(b"content-type", b"application/octet-stream")])


async def stream(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] == "lifespan":
        await _lifespan(receive, send)
        return
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"application/octet-stream")],
        }
    )
    for _ in range(STREAM_CHUNKS):
        await send({"type": "http.response.body", "body": STREAM_CHUNK, "more_body": True})
    await send({"type": "http.response.body", "body": b"", "more_body": False})


async def websocket(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] == "lifespan":
        await _lifespan(receive, send)
        return
    if scope["type"] == "http":
        # Lets the harness probe readiness with a plain GET.
        await _reply(send, b"websocket endpoint", _TEXT_HEADERS)
        return
    first = await receive()
    if first["type"] != "websocket.connect":
        return
    await send({"type": "websocket.accept"})
    while True:
        message = await receive()
        kind = message["type"]
        if kind == "websocket.receive":
            if message.get("text") is not None:
                await send({"type": "websocket.send", "text": message["text"]})
            else:
                await send({"type": "websocket.send", "bytes": message.get("bytes") or b""})
        elif kind == "websocket.disconnect":
            return


_ROUTES: dict[str, ASGIApp] = {
    "/plaintext": plaintext,
    "/json": json_app,
    "/headers": headers,
    "/echo": echo,
    "/stream": stream,
    "/ws": websocket,
}


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    """Dispatch on path to the workload apps (handy for poking at a server by hand)."""
    if scope["type"] == "lifespan":
        await _lifespan(receive, send)
        return
    target = _ROUTES.get(scope.get("path", "/"), plaintext)
    await target(scope, receive, send)


# Workload name -> attribute name in this module (or a "module:attribute" elsewhere).
WORKLOAD_APPS: dict[str, str] = {
    "plaintext": "plaintext",
    "json": "json_app",
    "headers": "headers",
    "echo": "echo",
    "stream": "stream",
    "websocket": "websocket",
    "websocket-1k": "websocket",
    "websocket-plain": "websocket",
    "websocket-plain-1k": "websocket",
    "fastapi": "benchmarks.fastapi_app:app",
}


def workload_target(workload: str) -> str:
    """The import string a server is started with for ``workload``."""
    name = WORKLOAD_APPS[workload]
    return name if ":" in name else f"benchmarks.apps:{name}"
