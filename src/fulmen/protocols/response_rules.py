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
  to its Content-Length (:func:`content_length`, :func:`body_too_long`, :func:`body_too_short`);
- the ASGI response extensions (:data:`RESPONSE_EXTENSIONS`): what their messages must hold and what
  a framing layer gets to write (:func:`early_hint_headers`, :func:`trailer_fields`,
  :func:`path_body`, :func:`zerocopy_body`), and their place in the order of messages.

Nothing here knows a wire format: a framing layer gives statuses, header pairs and body sizes, and
frames what the rules allow its own way, through the hooks of :class:`ASGIExchange`. The checks made
on every response look values up in the server's bounded caches (:class:`fulmen.caches.HTTPCaches`),
so the hot path pays a lookup, not a scan.
"""

from __future__ import annotations

import abc
import asyncio
import logging
import os
import stat
import time
from collections.abc import Awaitable, Iterator
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol

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


# -- the response extensions

TRAILERS = "http.response.trailers"
EARLY_HINT = "http.response.early_hint"
PATHSEND = "http.response.pathsend"
ZEROCOPYSEND = "http.response.zerocopysend"
#: Every response extension the rules know; a framing layer lists those it frames in its scopes
#: (:func:`scope_extensions`) and in :attr:`ASGIExchange.extensions`.
RESPONSE_EXTENSIONS = (TRAILERS, EARLY_HINT, PATHSEND, ZEROCOPYSEND)
#: ``ASGIExchange.trailers`` of a response that declared trailers, until its body is complete.
DECLARED: tuple[()] = ()
#: Fields a trailer section must not carry (RFC 9110 section 6.5.1): framing, routing and the
#: connection's own, which a client would apply to the message after its body.
FORBIDDEN_TRAILERS = frozenset(
    {
        b"connection",
        b"content-encoding",
        b"content-length",
        b"content-range",
        b"content-type",
        b"host",
        b"keep-alive",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
    }
)


def scope_extensions(names: tuple[str, ...]) -> dict[str, dict[str, Any]]:
    """The ``extensions`` entry of a scope listing ``names`` (each with an empty dict, as ASGI says)."""
    return {name: {} for name in names}


def accepts_trailers(headers: list[tuple[bytes, bytes]]) -> bool:
    """Whether a request's ``TE`` header includes ``trailers``: ASGI sends trailer fields only then."""
    for name, value in headers:
        if name == b"te":
            tokens = [token.split(b";")[0].strip() for token in value.lower().split(b",")]
            if b"trailers" in tokens:
                return True
    return False


def early_hint_headers(message: dict[str, Any], caches: HTTPCaches) -> list[tuple[bytes, bytes]]:
    """The ``link`` headers of an ``http.response.early_hint`` message's ``links``, checked."""
    links = message.get("links")
    if links is None or isinstance(links, (bytes, str)):
        raise TypeError("'http.response.early_hint' needs 'links', an iterable of byte strings.")
    headers = []
    for link in links:
        if not isinstance(link, (bytes, bytearray, memoryview)):
            raise TypeError(f"Expected bytes as an early hint's link, got {type(link).__name__}.")
        value = bytes(link).strip()
        check_header_value(value, caches)
        headers.append((b"link", value))
    return headers


def trailer_fields(message: dict[str, Any], caches: HTTPCaches) -> list[tuple[bytes, bytes]]:
    """The fields of an ``http.response.trailers`` message, checked and lower-cased; pseudo-headers and
    the fields RFC 9110 keeps out of trailers are refused."""
    fields: list[tuple[bytes, bytes]] = []
    for raw_name, raw_value in message.get("headers", ()):
        name, value = header_name(bytes(raw_name), caches), bytes(raw_value)
        if name in FORBIDDEN_TRAILERS:
            raise RuntimeError(f"Header {name!r} is not allowed in trailers.")
        check_header_value(value, caches)
        fields.append((name, value))
    return fields


@dataclass
class FileBody:
    """A response body read from a file: ``count`` bytes of ``file`` from ``offset``."""

    file: Any  # a file object (with fileno(), for sendfile)
    offset: int
    count: int
    owned: bool  # opened by the server (pathsend), so closed by it

    def close(self) -> None:
        if self.owned:
            self.file.close()


#: Bytes read from a file at a time where it cannot be sent with ``sendfile``.
FILE_CHUNK = 256 * 1024


def file_chunks(body: FileBody, size: int = FILE_CHUNK) -> Iterator[bytes]:
    """``body``'s bytes in reads of ``size`` at most (``os.pread``: the file's position stays); fewer
    than ``body.count`` in all when the file is shorter."""
    fd = body.file.fileno()
    offset, end = body.offset, body.offset + body.count
    while offset < end:
        data = os.pread(fd, min(size, end - offset), offset)
        if not data:
            return
        offset += len(data)
        yield data


def path_body(message: dict[str, Any]) -> FileBody:
    """The file an ``http.response.pathsend`` message names (an absolute path to a regular file),
    opened; the caller closes it (:meth:`FileBody.close`)."""
    path = message.get("path")
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"Expected a str path in 'http.response.pathsend', got {type(path).__name__}.")
    if not os.path.isabs(path):
        raise RuntimeError(f"'http.response.pathsend' needs an absolute path, got {str(path)!r}.")
    file = open(path, "rb", buffering=0)  # closed by FileBody.close
    try:
        info = os.fstat(file.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise RuntimeError(f"'http.response.pathsend' needs a regular file: {str(path)!r}.")
    except BaseException:
        file.close()
        raise
    return FileBody(file, 0, info.st_size, owned=True)


def zerocopy_body(message: dict[str, Any]) -> FileBody:
    """What an ``http.response.zerocopysend`` message sends: its ``file`` (a file object or a file
    descriptor, left open) from ``offset`` (else the file's position) for ``count`` bytes (else to
    its end)."""
    file: Any = message.get("file")
    try:
        fd = file if type(file) is int else file.fileno()
    except (AttributeError, OSError, ValueError) as exc:
        raise TypeError("'http.response.zerocopysend' needs 'file', a file with a file descriptor.") from exc
    offset, count = message.get("offset"), message.get("count")
    for key, value in (("offset", offset), ("count", count)):
        if value is not None and (type(value) is not int or value < 0):
            raise RuntimeError(f"Invalid {key} {value!r} in 'http.response.zerocopysend'.")
    if offset is None:
        offset = os.lseek(fd, 0, os.SEEK_CUR)
    if count is None:
        count = max(0, os.fstat(fd).st_size - offset)
    # A file object of the server's own over the descriptor, as loop.sendfile() takes it.
    return FileBody(open(fd, "rb", buffering=0, closefd=False), offset, count, owned=True)


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


class CachesOwner(Protocol):
    """The server state, as far as the rules read it."""

    caches: HTTPCaches


class ExchangeOwner(Protocol):
    """What an exchange reads of the protocol it belongs to (a ``ServerProtocol``)."""

    @property
    def server_state(self) -> CachesOwner: ...

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

    A framing that implements response extensions names them in :attr:`extensions` (and in its
    scopes, :func:`scope_extensions`) and overrides their hooks (:meth:`send_early_hint`,
    :meth:`send_trailers`, :meth:`send_file`): the messages arrive checked, in their place in the
    order of messages, and a file is a :class:`FileBody` to send as body bytes.
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
        "trailers",
        "waiter",
    )

    #: The response extensions this framing implements (:data:`RESPONSE_EXTENSIONS`): their messages
    #: reach the hooks below; the messages of the others are refused as unexpected.
    extensions: ClassVar[frozenset[str]] = frozenset()

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
        #: None unless http.response.start said "trailers": True; then ``DECLARED`` until the body
        #: is complete, and the trailer fields received so far after that.
        self.trailers: list[tuple[bytes, bytes]] | tuple[()] | None = None

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

    def send_early_hint(self, headers: list[tuple[bytes, bytes]]) -> None:
        """Frame a 103 (Early Hints) response with ``headers`` (``link`` fields), before the response
        starts; a framing that cannot (HTTP/1.0) ignores it. Only called with :data:`EARLY_HINT`
        in :attr:`extensions`."""
        raise unexpected_message(EARLY_HINT, "'http.response.start'")

    def send_trailers(self, fields: list[tuple[bytes, bytes]]) -> Awaitable[None] | None:
        """Frame the trailer fields after the body and complete the response, as :meth:`send_last`
        does (a framing that cannot send them, or a client that did not ask for them with ``TE:
        trailers``, gets the response without them). Only called with :data:`TRAILERS` in
        :attr:`extensions`."""
        raise unexpected_message(TRAILERS, "'http.response.body'")

    async def send_file(self, body: FileBody) -> None:
        """Frame ``body.count`` bytes of a file as body bytes with more to follow (the response is
        then completed by :meth:`send_last` or :meth:`send_trailers`), meeting the connection's
        back-pressure. Only called with :data:`PATHSEND` or :data:`ZEROCOPYSEND` in :attr:`extensions`."""
        raise unexpected_message(PATHSEND, "'http.response.body'")

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
                if message_type == EARLY_HINT and EARLY_HINT in self.extensions:
                    self.send_early_hint(early_hint_headers(message, self.conn.server_state.caches))
                    return
                raise unexpected_message(message_type, "'http.response.start'")
            self.start_response(message["status"], message.get("headers", ()))
            self.response_started = True  # after the checks: an invalid start still gets a 500
            self.expect_continue = False
            if "trailers" in message and message["trailers"] and TRAILERS in self.extensions:
                self.trailers = DECLARED  # the last body is followed by trailer messages
        elif not self.response_complete:
            if message_type != "http.response.body" or self.trailers is not None:
                await self.send_extension(message_type, message)
                return
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

    async def send_extension(self, message_type: str, message: dict[str, Any]) -> None:
        """A message other than a body after the response started: a response extension's, in its
        place in the order of messages, or an unexpected one."""
        extensions = self.extensions
        trailers = self.trailers
        if trailers is DECLARED and message_type == "http.response.body":
            waiting = self.send_body(body_bytes(message.get("body", b"")))
            if not message.get("more_body", False):
                self.trailers = []  # the body is complete: the trailer messages come next
            if waiting is not None:
                await waiting
            return
        if message_type == TRAILERS and isinstance(trailers, list):
            trailers += trailer_fields(message, self.conn.server_state.caches)
            if not message.get("more_trailers", False):
                waiting = self.send_trailers(trailers)
                if waiting is not None:
                    await waiting
            return
        if not isinstance(trailers, list) and message_type in extensions:  # the body is not complete
            if message_type == ZEROCOPYSEND:
                await self.send_file_message(zerocopy_body(message), message.get("more_body", False))
                return
            if message_type == PATHSEND:
                if self.bytes_sent:
                    raise RuntimeError(f"'{PATHSEND}' cannot follow body bytes.")
                await self.send_file_message(path_body(message), False)
                return
            if message_type == EARLY_HINT:
                return  # the response head is on its way: too late, and ASGI lets the server ignore it
        expected = f"'{TRAILERS}'" if isinstance(trailers, list) else "'http.response.body'"
        raise unexpected_message(message_type, expected)

    async def send_file_message(self, body: FileBody, more_body: bool) -> None:
        """A file as body bytes (:meth:`send_file`), then the end of the body unless more follows."""
        try:
            await self.send_file(body)
        finally:
            body.close()
        if more_body or self.disconnected:
            return
        if self.trailers is DECLARED:
            self.trailers = []  # the body is complete: the trailer messages come next
            return
        waiting = self.send_last(b"")
        if waiting is not None:
            await waiting

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
