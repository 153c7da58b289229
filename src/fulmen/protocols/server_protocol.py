"""What every connection protocol of a server starts from, whatever it speaks (HTTP/1.1, HTTP/2,
WebSocket): the loaded configuration and application, the loop, the server's shared state, the
application's tasks, flow control, the idle timer, and the two calls the server makes at shutdown."""

from __future__ import annotations

import abc
import asyncio
import contextvars
import logging
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any, ClassVar

from fulmen.access_log import client_text
from fulmen.protocols.flow_control import FlowControl
from fulmen.protocols.response_rules import ASGIExchange, scope_extensions, service_unavailable

if TYPE_CHECKING:
    from fulmen.config import Config
    from fulmen.forwarding import TrustedHosts
    from fulmen.metrics.recorder import WorkerMetrics
    from fulmen.server import ServerState

access_logger = logging.getLogger("fulmen.access")
#: The name of every application task: CPython before 3.12 formats a unique name for each unnamed task.
TASK_NAME = "fulmen-app"
Task = asyncio.Task


class ServerProtocol(asyncio.Protocol, metaclass=abc.ABCMeta):
    """Constructed as uvicorn's protocols are: ``cls(config, server_state, app_state, _loop)``."""

    #: The ASGI response extensions this protocol frames, listed in every scope it makes.
    response_extensions: ClassVar[tuple[str, ...]] = ()

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
        "connections",
        "flow",
        "idle_deadline",
        "idle_timer",
        "limit_concurrency",
        "loop",
        "metrics",
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
        "timed",
        "timeout_keep_alive",
        "transport",
        "trusted_peer",
    )

    #: Counted among the open WebSockets by ``--metrics-bind`` (the WebSocket session says True).
    is_websocket: ClassVar[bool] = False

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
        self.connections = server_state.connections
        # Without a task factory on the loop, tasks are made directly: create_task() only adds a call.
        self.plain_tasks = self.loop.get_task_factory() is None and not self.reset_contextvars
        # Decided once per connection: the access line is only built when it is logged.
        self.access_log = bool(config.access_log) and access_logger.hasHandlers()
        #: --metrics-bind: the server's counters, else None (then nothing is counted).
        self.metrics: WorkerMetrics | None = getattr(server_state, "metrics", None)
        #: Whether a request's start time is taken: for its access line or its duration's histogram.
        self.timed = self.access_log or self.metrics is not None
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
        self.timeout_keep_alive = float(config.timeout_keep_alive)  # float + float: a specialized add
        # Idle connections are closed lazily: the end of a request only moves the deadline, and the
        # one timer re-arms itself for the rest, instead of a timer made and cancelled per request.
        self.idle_timer: asyncio.TimerHandle | None = None
        self.idle_deadline = 0.0
        self.setup()

    def setup(self) -> None:
        """What a protocol adds to the shared state, at construction (subclasses extend this rather
        than repeat the constructor's uvicorn-style signature)."""

    def make_scope_template(self) -> dict[str, Any]:
        """What the scopes of this connection's requests share (see :class:`ASGIExchange`), with the
        response extensions the protocol frames (one ``extensions`` dict for the connection)."""
        template: dict[str, Any] = {
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
        if self.response_extensions:
            template["extensions"] = scope_extensions(self.response_extensions)
        return template

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
        exchange removes its task from ``ServerState.tasks`` when it ends (``call_app``)."""
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
        """Take a transport: the server counts this connection, and flow control watches the transport."""
        self.connections.add(self)
        self.transport = transport  # type: ignore[assignment]
        self.flow = FlowControl(self.transport)

    def read_addresses(self) -> None:
        """The connection's addresses, TLS, and whether the peer is a trusted proxy (for a new socket)."""
        transport = self.transport
        self.server = transport_address(transport, "sockname")
        self.client = transport_address(transport, "peername")
        if self.proxy_trust is not None:
            self.trusted_peer = (self.client[0] if self.client else None) in self.proxy_trust
        self.scheme = "https" if transport.get_extra_info("sslcontext") else "http"
        self.scope_template = self.make_scope_template()

    def detach(self) -> None:
        """The connection is gone, or handed to another protocol: the server stops counting it here."""
        self.connections.discard(self)
        self.cancel_idle()

    def connection_lost(self, exc: Exception | None) -> None:
        """The end of the connection; a subclass first tells its exchanges they are disconnected, then
        calls this: a ``send()`` waiting for the transport then returns to an application that
        already sees the disconnect (else a loop that sends until it does would never yield)."""
        self.detach()
        if self.flow is not None:
            self.flow.resume_writing()

    # -- flow control: the transport's buffer

    def pause_writing(self) -> None:
        self.flow.pause_writing()

    def resume_writing(self) -> None:
        self.flow.resume_writing()

    # -- the idle timer

    def start_idle(self, timeout: float | None = None) -> None:
        """Close the connection once it has been idle for ``timeout`` (``--timeout-keep-alive``)."""
        if timeout is None:
            timeout = self.timeout_keep_alive
        deadline = self.loop.time() + timeout
        timer = self.idle_timer
        if timer is not None and deadline < self.idle_deadline:
            timer.cancel()  # an earlier deadline: the lazy timer would fire too late
            timer = None
        self.idle_deadline = deadline
        if timer is None:
            self.idle_timer = self.loop.call_later(timeout, self.on_idle_timeout)

    def cancel_idle(self) -> None:
        if self.idle_timer is not None:
            self.idle_timer.cancel()
            self.idle_timer = None

    def on_idle_timeout(self) -> None:
        self.idle_timer = None
        if self.busy() or self.transport.is_closing():
            return  # the end of the work in flight starts a new idle period
        remaining = self.idle_deadline - self.loop.time()
        if remaining > 0:
            self.idle_timer = self.loop.call_later(remaining, self.on_idle_timeout)
        else:
            self.close_idle()

    def busy(self) -> bool:
        """True while the connection has work in flight: the idle timer then leaves it open."""
        return False

    def close_idle(self) -> None:
        """Close a connection idle for too long."""
        self.transport.close()

    # -- shutdown: the server calls these on every connection it counts

    @abc.abstractmethod
    def shutdown(self) -> None:
        """Graceful shutdown: finish what is in flight, take nothing new, then close."""

    @abc.abstractmethod
    def stop_keep_alive(self) -> None:
        """Serve no request after the ones in flight (``--limit-max-requests`` reached), then close."""


def transport_address(transport: asyncio.BaseTransport, name: str) -> tuple[str, int] | None:
    """The ``sockname`` or ``peername`` of a TCP transport as (host, port); None for a UNIX socket."""
    address = transport.get_extra_info(name)
    if isinstance(address, tuple) and len(address) >= 2:
        return (str(address[0]), int(address[1]))
    return None
