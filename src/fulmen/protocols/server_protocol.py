"""What every connection protocol of a server starts from, whatever it speaks (HTTP/1.1, HTTP/2,
WebSocket): the loaded configuration and application, the loop, and the server's shared state."""

from __future__ import annotations

import abc
import asyncio
import contextvars
import logging
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any

from fulmen.access_log import client_text
from fulmen.protocols.exchange import ASGIExchange, service_unavailable
from fulmen.protocols.flow_control import FlowControl

if TYPE_CHECKING:
    from fulmen.config import Config
    from fulmen.forwarding import TrustedHosts
    from fulmen.server import ServerState

access_logger = logging.getLogger("fulmen.access")
#: The name of every application task: CPython before 3.12 formats a unique name for each unnamed task.
TASK_NAME = "fulmen-app"
Task = asyncio.Task


class ServerProtocol(asyncio.Protocol, metaclass=abc.ABCMeta):
    """Constructed as uvicorn's protocols are: ``cls(config, server_state, app_state, _loop)``."""

    # Slots: the hot path reads and writes these on every request (a slot is faster than a
    # dict entry, and these classes have more attributes than an instance dict keeps compact).
    __slots__ = (
        "__dict__",
        "__weakref__",
        "access_log",
        "app",
        "app_state",
        "asgi",
        "client",
        "config",
        "flow",
        "limit_concurrency",
        "loop",
        "plain_tasks",
        "proxy_trust",
        "reset_contextvars",
        "root_path",
        "root_path_bytes",
        "scheme",
        "scope_template",
        "server",
        "server_state",
        "tasks",
        "transport",
        "trusted_peer",
    )

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        if not config.loaded:
            config.load()
        self.config = config
        self.app = config.loaded_app
        self.loop = _loop or asyncio.get_event_loop()
        self.server_state = server_state
        self.app_state = app_state
        self.limit_concurrency: int | None = config.limit_concurrency
        self.reset_contextvars = bool(config.reset_contextvars)
        self.tasks = server_state.tasks
        # Without a task factory on the loop, tasks are made directly: create_task() only adds a call.
        self.plain_tasks = self.loop.get_task_factory() is None and not self.reset_contextvars
        # Decided once per connection: the access line is only built when it is logged.
        self.access_log = bool(config.access_log) and access_logger.hasHandlers()
        self.proxy_trust: TrustedHosts | None = getattr(config, "proxy_trust", None)
        self.trusted_peer = False  # the peer is in --forwarded-allow-ips: its forwarding headers count
        self.transport: asyncio.Transport = None  # type: ignore[assignment]
        self.flow: FlowControl = None  # type: ignore[assignment]
        self.server: tuple[str, int] | None = None
        self.client: tuple[str, int] | None = None
        self.scheme = "http"
        self.root_path: str = config.root_path
        self.root_path_bytes = self.root_path.encode("ascii")
        self.asgi = {"version": config.asgi_version, "spec_version": "2.4"}
        self.scope_template = self.make_scope_template()
        self.setup()

    def setup(self) -> None:
        """What a protocol adds to the shared state, at construction (subclasses extend this rather
        than repeat the constructor's uvicorn-style signature)."""

    def http_scope(
        self,
        http_version: str,
        method: str,
        path: str,
        raw_path: bytes,
        query: bytes,
        headers: list[tuple[bytes, bytes]],
    ) -> dict[str, Any]:
        """The ASGI scope of an HTTP request on this connection (``path`` already decoded)."""
        # A copy of the connection's template (a C-level clone) and the keys that vary: cheaper than
        # building a 13-key dict, with the keys in the same order.
        scope = self.scope_template.copy()
        scope["http_version"] = http_version
        scope["method"] = method
        scope["path"] = self.root_path + path
        scope["raw_path"] = self.root_path_bytes + raw_path if self.root_path_bytes else raw_path
        scope["query_string"] = query
        scope["headers"] = headers
        scope["state"] = self.app_state.copy()
        return scope

    def make_scope_template(self) -> dict[str, Any]:
        """What the scopes of this connection's requests share (see :meth:`http_scope`)."""
        return {
            "type": "http",
            "asgi": self.asgi,
            "http_version": "1.1",
            "server": self.server,
            "client": self.client,
            "scheme": self.scheme,
            "method": "GET",
            "root_path": self.root_path,
            "path": "",
            "raw_path": b"",
            "query_string": b"",
            "headers": [],
            "state": {},
        }

    def new_task(self, coroutine: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        """Run an application coroutine as a task of its own, in a copy of the current context (a fresh,
        empty one with --reset-contextvars); the task is kept in ``ServerState.tasks``."""
        if self.plain_tasks:
            task = Task(coroutine, loop=self.loop, name=TASK_NAME)
        elif self.reset_contextvars:
            task = contextvars.Context().run(self.loop.create_task, coroutine)
        else:
            task = self.loop.create_task(coroutine)
        self.tasks.add(task)
        return task

    def start_exchange(self, exchange: ASGIExchange) -> None:
        """Start an HTTP request's application (a 503 answer when over ``--limit-concurrency``); the
        exchange removes its task from ``ServerState.tasks`` when it ends (``app_done``)."""
        app = self.app
        if self.limit_concurrency is not None and len(self.tasks) >= self.limit_concurrency:
            app = service_unavailable
        else:  # ServerState.count_request(), inline: this is once per request
            state = self.server_state
            state.total_requests += 1
            if state.total_requests == state.max_requests:
                state.request_limit_reached()
        coroutine = exchange.call_app(app)
        if self.plain_tasks:  # new_task(), without a call on the hot path
            task: asyncio.Task[None] = Task(coroutine, loop=self.loop, name=TASK_NAME)
            self.tasks.add(task)
            exchange.task = task
        else:
            exchange.task = self.new_task(coroutine)

    @property
    def client_text(self) -> str:
        """The peer's address, for log lines."""
        return client_text(self.client)

    def attach(self, transport: asyncio.BaseTransport) -> None:
        """Take a new connection: addresses, TLS, flow control, and whether the peer is a trusted proxy."""
        self.server_state.connections.add(self)
        self.transport = transport  # type: ignore[assignment]
        self.flow = FlowControl(self.transport)
        self.server = transport_address(transport, "sockname")
        self.client = transport_address(transport, "peername")
        if self.proxy_trust is not None:
            self.trusted_peer = (self.client[0] if self.client else None) in self.proxy_trust
        self.scheme = "https" if transport.get_extra_info("sslcontext") else "http"
        self.scope_template = self.make_scope_template()


def transport_address(transport: asyncio.BaseTransport, name: str) -> tuple[str, int] | None:
    """The ``sockname`` or ``peername`` of a TCP transport as (host, port); None for a UNIX socket."""
    address = transport.get_extra_info(name)
    if isinstance(address, tuple) and len(address) >= 2:
        return (str(address[0]), int(address[1]))
    return None
