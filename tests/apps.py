"""Small ASGI applications the tests serve (importable as ``tests.apps:<name>``)."""

from __future__ import annotations

import asyncio
import json
import os
from typing import Any


async def hello(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": b"Hello, world!"})


async def read_body(receive: Any) -> bytes:
    """The whole request body, read message by message (what a disconnect leaves of it)."""
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            return body


async def echo_messages(receive: Any, send: Any) -> None:
    """A WebSocket accepted: every message sent back as it came, until the client goes."""
    await send({"type": "websocket.accept"})
    try:
        while True:
            message = await receive()
            if message["type"] == "websocket.disconnect":
                return
            if message.get("text") is not None:
                await send({"type": "websocket.send", "text": message["text"]})
            else:
                await send({"type": "websocket.send", "bytes": message["bytes"]})
    except OSError:
        return


async def echo(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Echoes the request body, reading it chunk by chunk."""
    body = await read_body(receive)
    await send(
        {"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"%d" % len(body))]}
    )
    await send({"type": "http.response.body", "body": body})


async def scope_json(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Answers with the request's scope as JSON (bytes as latin-1 text)."""
    if scope["type"] != "http":
        return

    def plain(value: Any) -> Any:
        if isinstance(value, bytes):
            return value.decode("latin-1")
        if isinstance(value, (list, tuple)):
            return [plain(item) for item in value]
        if isinstance(value, dict):
            return {key: plain(item) for key, item in value.items()}
        return value

    body = json.dumps(plain({key: value for key, value in scope.items()})).encode()
    await send(
        {"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]}
    )
    await send({"type": "http.response.body", "body": body})


async def slow(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Sleeps for ?<seconds> (default 0.5) before answering."""
    if scope["type"] != "http":
        return
    delay = float(scope["query_string"] or b"0.5")
    await asyncio.sleep(delay)
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"slept"})


async def lifespan_state(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                scope["state"]["greeting"] = "from lifespan"
                await send({"type": "lifespan.startup.complete"})
            else:
                await send({"type": "lifespan.shutdown.complete"})
                return
    body = scope["state"].get("greeting", "none").encode()
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": body})


async def lifespan_fails(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        await receive()
        await send({"type": "lifespan.startup.failed", "message": "the database is not there"})
        return
    await hello(scope, receive, send)


async def worker_pid(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Answers with the process id of the worker that served the request (also as ``x-worker``),
    404 for ``/missing``; a WebSocket is echoed. With a lifespan, for the supervisor tests."""
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            await send({"type": message["type"] + ".complete"})
            if message["type"] == "lifespan.shutdown":
                return
    if scope["type"] == "websocket":
        await receive()  # websocket.connect
        await echo_messages(receive, send)
        return
    body = str(os.getpid()).encode()
    headers = [(b"x-worker", body), (b"content-type", b"text/plain"), (b"content-length", b"%d" % len(body))]
    status = 200 if scope["path"] != "/missing" else 404
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def factory() -> Any:
    return hello


not_callable = 42


async def response_extensions(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """The ASGI response extensions, one case per path; a file's path (absolute) in the query string."""
    if scope["type"] != "http":
        return
    path, query = scope["path"], scope["query_string"].decode()
    if path == "/extensions":
        body = json.dumps(sorted(scope.get("extensions", {}))).encode()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": body})
    elif path.startswith("/trailers"):
        headers = [(b"trailer", b"x-checksum, x-count")]
        if path == "/trailers/length":
            headers.append((b"content-length", b"4"))
        await send({"type": "http.response.start", "status": 200, "headers": headers, "trailers": True})
        await send({"type": "http.response.body", "body": b"ab", "more_body": True})
        await send({"type": "http.response.body", "body": b"cd"})
        await send(
            {"type": "http.response.trailers", "headers": [(b"X-Checksum", b"abcd")], "more_trailers": True}
        )
        await send({"type": "http.response.trailers", "headers": [(b"x-count", b"4")]})
    elif path == "/early-hint":
        links = [b"</style.css>; rel=preload; as=style", b"</app.js>; rel=preload; as=script"]
        await send({"type": "http.response.early_hint", "links": links})
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
        await send({"type": "http.response.early_hint", "links": [b"</late.css>"]})  # too late: ignored
        await send({"type": "http.response.body", "body": b"ok"})
    elif path in ("/pathsend", "/pathsend/length"):
        headers = [(b"content-length", b"%d" % os.path.getsize(query))] if path == "/pathsend/length" else []
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.pathsend", "path": query})
    elif path == "/zerocopysend":
        # The file's bytes 3..12, then 3 bytes from its position (moved to 1), then a body.
        await send({"type": "http.response.start", "status": 200, "headers": []})
        with open(query, "rb") as file:
            await send(
                {
                    "type": "http.response.zerocopysend",
                    "file": file,
                    "offset": 3,
                    "count": 10,
                    "more_body": True,
                }
            )
            file.seek(1)
            await send({"type": "http.response.zerocopysend", "file": file, "count": 3, "more_body": True})
        await send({"type": "http.response.body", "body": b"END"})
    elif path == "/pathsend-after-body":
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"x", "more_body": True})
        await send({"type": "http.response.pathsend", "path": query})
    elif path == "/body-after-trailers":
        await send({"type": "http.response.start", "status": 200, "headers": [], "trailers": True})
        await send({"type": "http.response.body", "body": b"x"})
        await send({"type": "http.response.body", "body": b"y"})
