"""What every connection protocol of a server starts from, whatever it speaks (HTTP/1.1, HTTP/2,
WebSocket): the loaded configuration and application, the loop, and the server's shared state."""

from __future__ import annotations

import abc
import asyncio
import logging
from typing import TYPE_CHECKING, Any

from fulmen.http.flow_control import FlowControl

if TYPE_CHECKING:
    from fulmen.config import Config
    from fulmen.middleware.proxy_headers import TrustedHosts
    from fulmen.server import ServerState

access_logger = logging.getLogger("fulmen.access")


class ServerProtocol(asyncio.Protocol, metaclass=abc.ABCMeta):
    """Constructed as uvicorn's protocols are: ``cls(config, server_state, app_state, _loop)``."""

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
        return {
            "type": "http",
            "asgi": self.asgi,
            "http_version": http_version,
            "server": self.server,
            "client": self.client,
            "scheme": self.scheme,
            "method": method,
            "root_path": self.root_path,
            "path": self.root_path + path,
            "raw_path": self.root_path_bytes + raw_path if self.root_path_bytes else raw_path,
            "query_string": query,
            "headers": headers,
            "state": self.app_state.copy(),
            "extensions": {},
        }

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


def transport_address(transport: asyncio.BaseTransport, name: str) -> tuple[str, int] | None:
    """The ``sockname`` or ``peername`` of a TCP transport as (host, port); None for a UNIX socket."""
    address = transport.get_extra_info(name)
    if isinstance(address, tuple) and len(address) >= 2:
        return (str(address[0]), int(address[1]))
    return None
