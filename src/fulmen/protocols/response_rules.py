"""The ASGI response rules, stated once for every way a response is framed: an HTTP/1.1 response
(:mod:`fulmen.http.cycle`), an HTTP/2 stream (:mod:`fulmen.http.h2_impl`) and the HTTP answer an
application gives to a WebSocket handshake (:mod:`fulmen.websockets.session`).

- the order of messages: ``http.response.start``, then ``http.response.body`` until one without
  ``more_body``, then nothing (:meth:`ASGIExchange.send`);
- what the server does when the application breaks the rules or fails: a 500 answer when the
  response has not started, a cut response when it has (:meth:`ASGIExchange.call_app`);
- valid statuses (:func:`check_status`), header names (:func:`header_name`) and values
  (:func:`check_header_value`), body types (:func:`body_bytes`);
- which responses carry no body (:func:`body_allowed`: HEAD, 1xx, 204, 304), and a body that keeps
  to its Content-Length (:func:`content_length`, :func:`body_too_long`, :func:`body_too_short`).

Nothing here knows a wire format: a framing layer gives statuses, header pairs and body sizes, and
frames what the rules allow its own way, through the hooks of :class:`ASGIExchange`. The checks made
on every response look values up in the server's bounded caches (:class:`fulmen.caches.HTTPCaches`),
so the hot path pays a lookup, not a scan.
"""

from __future__ import annotations

import abc
import asyncio
import logging
import time
from collections.abc import Awaitable
from typing import Any, Protocol

from fulmen.caches import MAX_ENTRIES, MAX_KEY_SIZE, HTTPCaches, remember
from fulmen.protocols.flow_control import FlowControl

logger = logging.getLogger("fulmen.error")

#: Statuses whose responses never carry a body (RFC 9110 sections 15.3.5 and 15.4.5); 1xx neither.
NO_BODY_STATUSES = frozenset({204, 304})
#: What ``receive()`` returns once the client is gone or the response is complete.
DISCONNECT: dict[str, Any] = {"type": "http.disconnect"}
#: The bodies of the answers the server gives itself, by status.
ERROR_BODIES: dict[int, bytes] = {
    400: b"Invalid HTTP request received.",
    408: b"Request Timeout",
    413: b"Request Entity Too Large",
    431: b"Request Header Fields Too Large",
    500: b"Internal Server Error",
    501: b"Not Implemented",
    503: b"Service Unavailable",
}
#: Characters allowed in a header name (RFC 9110 "token").
TOKEN_CHARS = b"!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
#: bytes.translate table that deletes nothing; used with a delete set to find bad characters.
_IDENTITY = bytes(range(256))


# -- statuses and bodies


def check_status(status: Any, lowest: int = 100) -> int:
    """``status`` when it is an int from ``lowest`` to 599 (200 where an informational status cannot
    be the final one, as in HTTP/2); a RuntimeError otherwise."""
    if type(status) is not int or not lowest <= status <= 599:
        raise RuntimeError(f"Invalid HTTP status code '{status}' in response.")
    return status


def body_allowed(status: int, head_request: bool) -> bool:
    """False for responses that carry no body: to HEAD, and 1xx, 204 and 304 (the body the application
    sends is counted, not sent)."""
    return not (head_request or status < 200 or status in NO_BODY_STATUSES)


def body_bytes(body: Any) -> bytes:
    """The body of an ``http.response.body`` message as bytes (bytes, bytearray or memoryview)."""
    if type(body) is bytes:
        return body
    if not isinstance(body, (bytearray, memoryview)):
        raise TypeError(f"Expected bytes as 'http.response.body' body, got {type(body).__name__}.")
    return bytes(body)


def body_too_long() -> RuntimeError:
    return RuntimeError("Response content longer than Content-Length")


def body_too_short() -> RuntimeError:
    return RuntimeError("Response content shorter than Content-Length")


def content_length(value: bytes, caches: HTTPCaches) -> int:
    """The length a response's Content-Length value gives, remembered (look in
    ``caches.content_lengths`` first: most responses repeat a few sizes)."""
    if not value.isdigit():
        raise RuntimeError(f"Invalid Content-Length {value!r} in response.")
    length = int(value)
    if type(value) is bytes:
        remember(caches.content_lengths, value, length)
    return length


# -- headers


def is_token(name: bytes) -> bool:
    """True when ``name`` is a valid header name: non-empty and only token characters."""
    return bool(name) and not name.translate(_IDENTITY, TOKEN_CHARS)


def header_name(name: bytes, caches: HTTPCaches) -> bytes:
    """A response header name, checked and lower-cased, remembered (look in ``caches.header_names``
    first)."""
    lower = bytes(name).lower()
    if not is_token(lower):
        raise RuntimeError(f"Invalid HTTP header name {name!r} in response.")
    remember(caches.header_names, name, lower)
    return lower


def check_header_value(value: bytes, caches: HTTPCaches) -> None:
    """Refuse a response header value that would end the line early or smuggle a header: CR, LF, NUL.
    Short values are remembered (skip the values in ``caches.header_values``): apps send the same few
    again and again."""
    if value.find(b"\r") >= 0 or value.find(b"\n") >= 0 or value.find(b"\0") >= 0:
        raise RuntimeError(f"Invalid HTTP header value {value!r} in response.")
    if type(value) is bytes and len(value) <= MAX_KEY_SIZE:
        values = caches.header_values
        if len(values) >= MAX_ENTRIES:
            values.clear()
        values.add(value)


def checked_headers(
    headers: Any, defaults: list[tuple[bytes, bytes]], caches: HTTPCaches
) -> list[tuple[bytes, bytes]]:
    """The application's headers checked and lower-cased, followed by the server's default headers
    (date, server, ``--header``) it did not set itself; for responses off the hot path."""
    checked: list[tuple[bytes, bytes]] = []
    for raw_name, raw_value in headers:
        name, value = bytes(raw_name), bytes(raw_value)
        if value not in caches.header_values:
            check_header_value(value, caches)
        checked.append((caches.header_names.get(name) or header_name(name, caches), value))
    names = {name for name, _ in checked}
    checked += [(name, value) for name, value in defaults if name not in names]
    return checked


# -- the order of messages, and failures


def unexpected_message(message_type: str, expected: str) -> RuntimeError:
    return RuntimeError(f"Expected ASGI message {expected}, but got '{message_type}'.")


def message_after_response(message_type: str) -> RuntimeError:
    return RuntimeError(f"Unexpected ASGI message '{message_type}' sent, after response already completed.")


async def service_unavailable(scope: Any, receive: Any, send: Any) -> None:
    """The application that answers requests over ``--limit-concurrency`` or after the request limit."""
    await send(
        {
            "type": "http.response.start",
            "status": 503,
            "headers": [(b"content-type", b"text/plain; charset=utf-8"), (b"connection", b"close")],
        }
    )
    await send({"type": "http.response.body", "body": b"Service Unavailable"})


class ExchangeOwner(Protocol):
    """What an exchange reads of the protocol it belongs to (a ``ServerProtocol``)."""

    scope_template: dict[str, Any]  # what the scopes of the connection's requests share
    root_path: str
    root_path_bytes: bytes
    app_state: dict[str, Any]  # the lifespan state, copied into each scope
    flow: FlowControl
    access_log: bool
    timed: bool  # the start time is taken (access log, metrics)
    loop: asyncio.AbstractEventLoop
    tasks: set[asyncio.Task[None]]  # the server's application tasks


class ASGIExchange(abc.ABC):
    """One request and its response as the application sees them, whatever frames them.

    :meth:`send` applies the order of messages and hands each step to the framing layer's hooks
    (:meth:`start_response`, :meth:`send_body`, :meth:`send_last`); :meth:`call_app` runs the
    application and answers its failures by one policy, through :meth:`send_500` before the response
    started and :meth:`abort` after. ``conn`` is the protocol the exchange belongs to.
    """

    __slots__ = (
        "body",
        "body_delivered",
        "bytes_sent",
        "conn",
        "disconnected",
        "expect_continue",
        "flow",
        "head_request",
        "more_body",
        "remaining",
        "response_complete",
        "response_started",
        "scope",
        "started_at",
        "status",
        "task",
        "waiter",
    )

    conn: ExchangeOwner
    task: asyncio.Task[None]  # the application's task, set when the protocol starts it

    def __init__(
        self,
        conn: ExchangeOwner,
        http_version: str,
        method: str,
        path: str,
        raw_path: bytes,
        query: bytes,
        headers: list[tuple[bytes, bytes]],
        expect_continue: bool,
    ) -> None:
        """The exchange of a parsed request on ``conn`` (``path`` already decoded)."""
        # The scope: a copy of the connection's template (a C-level clone) and the keys that vary,
        # cheaper than building a 13-key dict, with the keys in the same order.
        scope = conn.scope_template.copy()
        scope["http_version"] = http_version
        scope["method"] = method
        scope["path"] = conn.root_path + path
        root = conn.root_path_bytes
        scope["raw_path"] = root + raw_path if root else raw_path
        scope["query_string"] = query
        scope["headers"] = headers
        scope["state"] = conn.app_state.copy()
        self.scope = scope
        self.conn = conn
        self.flow = conn.flow
        self.expect_continue = expect_continue  # a 100 Continue is owed when the body is first read
        self.body: Any = b""  # request body received and not read yet (HTTP/2 keeps a list of chunks)
        self.head_request = method == "HEAD"
        self.more_body = True  # request body still to come
        self.body_delivered = False  # the application has had the last of the request body
        self.disconnected = False
        self.response_started = False
        self.response_complete = False
        self.status = 0
        self.bytes_sent = 0  # response body bytes the application sent (for the access log)
        self.remaining = -1  # bytes of Content-Length still to send; -1 when not framed by length
        self.started_at = time.monotonic() if conn.timed else 0.0
        self.waiter: asyncio.Future[None] | None = None  # what receive() waits on

    # -- the request body

    def wake(self) -> None:
        """Tell a ``receive()`` waiting for body or disconnect that something changed."""
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def wait(self) -> None:
        """Wait for :meth:`wake`."""
        waiter = self.waiter = self.conn.loop.create_future()
        try:
            await waiter
        finally:
            self.waiter = None

    # -- the framing layer

    @abc.abstractmethod
    async def receive(self) -> dict[str, Any]: ...

    @abc.abstractmethod
    def start_response(self, status: Any, headers: Any) -> None:
        """Check and frame the response head (raise before anything is sent: the app then gets a 500)."""

    @abc.abstractmethod
    def send_body(self, body: bytes) -> Awaitable[None] | None:
        """Frame a body chunk with more to follow; an awaitable when the caller must wait to go on."""

    @abc.abstractmethod
    def send_last(self, body: bytes) -> Awaitable[None] | None:
        """Frame the last body chunk; the response is complete once it returns (or its awaitable ends)."""

    @abc.abstractmethod
    def wait_writable(self) -> Awaitable[None]:
        """Wait while the connection's flow control holds writes (``flow.write_paused``)."""

    @abc.abstractmethod
    def send_500(self) -> None:
        """Answer 500 in place of a response the application did not start."""

    @abc.abstractmethod
    def abort(self) -> None:
        """Cut a response the application started but did not finish, so the client sees it cut."""

    # -- the application

    async def send(self, message: dict[str, Any]) -> None:
        message_type = message["type"]
        if self.flow.write_paused and not self.disconnected:
            await self.wait_writable()
        if self.disconnected:
            return
        if not self.response_started:
            if message_type != "http.response.start":
                raise unexpected_message(message_type, "'http.response.start'")
            self.start_response(message["status"], message.get("headers", ()))
            self.response_started = True  # after the checks: an invalid start still gets a 500
            self.expect_continue = False
        elif not self.response_complete:
            if message_type != "http.response.body":
                raise unexpected_message(message_type, "'http.response.body'")
            body = message.get("body", b"")
            if type(body) is not bytes:
                body = body_bytes(body)  # checked before anything is framed, or a corked head is lost
            if message.get("more_body", False):
                waiting = self.send_body(body)
            else:
                waiting = self.send_last(body)
            if waiting is not None:
                await waiting
        else:
            raise message_after_response(message_type)

    async def call_app(self, app: Any) -> None:
        """The coroutine of the request's task: the application, and the answers to its failures."""
        try:
            try:
                result = await app(self.scope, self.receive, self.send)
            except asyncio.CancelledError:
                self.abort()
                raise
            except BaseException as exc:
                logger.error("Exception in ASGI application\n", exc_info=exc)
                if not self.response_started:
                    self.send_500()
                elif not self.response_complete:  # a complete response (Starlette re-raises after 500)
                    self.abort()
            else:
                if result is not None:
                    logger.error("ASGI callable should return None, but returned '%s'.", result)
                    self.abort()
                elif not self.response_started and not self.disconnected:
                    logger.error("ASGI callable returned without starting response.")
                    self.send_500()
                elif not self.response_complete and not self.disconnected:
                    logger.error("ASGI callable returned without completing response.")
                    self.abort()
        finally:
            # The task leaves ServerState.tasks in its own last step: cheaper than a done-callback,
            # which costs a loop turn per request (and than asyncio.current_task(), which asks the
            # kernel for the process id).
            self.conn.tasks.discard(self.task)
