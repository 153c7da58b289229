"""``ProxyHeadersMiddleware``: the forwarding headers of trusted proxies, as ASGI middleware.

The rules are :mod:`fulmen.forwarding`'s; fulmen's own protocols apply them while they read the
request head, so this middleware is for applications served by another server.
"""

from __future__ import annotations

from typing import Any

from fulmen.forwarding import TrustedHosts, rewrite_from_headers


class ProxyHeadersMiddleware:
    """Rewrites ``client`` and ``scheme`` of the scopes whose peer is one of ``trusted_hosts``."""

    def __init__(self, app: Any, trusted_hosts: str | list[str] = "127.0.0.1") -> None:
        self.app = app
        self.trusted = TrustedHosts(trusted_hosts)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> Any:
        if scope["type"] in ("http", "websocket"):
            client = scope.get("client")
            peer = client[0] if client else None
            if peer in self.trusted:
                self.rewrite(scope)
        return await self.app(scope, receive, send)

    def rewrite(self, scope: dict[str, Any]) -> None:
        rewrite_from_headers(scope, self.trusted)
