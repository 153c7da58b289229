"""Trusts ``X-Forwarded-For``/``X-Forwarded-Proto`` and RFC 7239 ``Forwarded`` from known proxies.

Only a request whose direct peer is in ``--forwarded-allow-ips`` is rewritten. In a chain of
proxies the client is the right-most address that is not itself a trusted proxy, so a client cannot
forge its address by sending the header itself.
"""

from __future__ import annotations

import ipaddress
from typing import Any

_Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class TrustedHosts:
    """Addresses, networks and literals (such as a UNIX socket path) trusted as proxies."""

    def __init__(self, trusted_hosts: str | list[str]) -> None:
        if isinstance(trusted_hosts, str):
            items = [item.strip() for item in trusted_hosts.split(",")]
        else:
            items = [str(item).strip() for item in trusted_hosts]
        self.always = "*" in items
        self.addresses: set[ipaddress.IPv4Address | ipaddress.IPv6Address] = set()
        self.networks: list[_Network] = []
        self.literals: set[str] = set()
        self._decisions: dict[str, bool] = {}
        for item in items:
            if not item or item == "*":
                continue
            try:
                if "/" in item:
                    self.networks.append(ipaddress.ip_network(item, strict=False))
                else:
                    self.addresses.add(ipaddress.ip_address(item))
            except ValueError:
                self.literals.add(item)

    def __contains__(self, host: str | None) -> bool:
        if self.always:
            return True
        if not host:
            return False
        known = self._decisions.get(host)
        if known is not None:
            return known
        trusted = self._decide(host)
        if len(self._decisions) < 4096:  # peers repeat; parsing an address per request is costly
            self._decisions[host] = trusted
        return trusted

    def _decide(self, host: str) -> bool:
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            return host in self.literals
        if address in self.addresses:
            return True
        return any(address in network for network in self.networks)

    def client_from_chain(self, nodes: list[str]) -> tuple[str, int] | None:
        """The right-most node that is not a trusted proxy (the left-most if all are trusted)."""
        if not nodes:
            return None
        if self.always:
            return parse_host_port(nodes[0])
        for node in reversed(nodes):
            host, port = parse_host_port(node)
            if host not in self:
                return host, port
        return parse_host_port(nodes[0])


def _unquote(value: str) -> str:
    value = value.strip()
    if len(value) >= 2 and value[0] == value[-1] == '"':
        value = value[1:-1].replace('\\"', '"')
    return value


def parse_host_port(node: str) -> tuple[str, int]:
    """``192.0.2.1``, ``192.0.2.1:80``, ``[2001:db8::1]:80`` or a bare IPv6 address: host and port (0)."""
    node = node.strip()
    if node.startswith("["):
        end = node.find("]")
        if end < 0:
            return node, 0
        host, rest = node[1:end], node[end + 1 :]
        if rest.startswith(":") and rest[1:].isdigit():
            return host, int(rest[1:])
        return host, 0
    if node.count(":") == 1:
        host, _, port = node.partition(":")
        if port.isdigit():
            return host, int(port)
        return node, 0
    return node, 0


def parse_forwarded(value: str) -> list[dict[str, str]]:
    """The elements of a ``Forwarded`` header, each a dict of lower-cased parameter names."""
    elements = []
    for element in value.split(","):
        params: dict[str, str] = {}
        for pair in element.split(";"):
            name, sep, param = pair.partition("=")
            if sep:
                params[name.strip().lower()] = _unquote(param)
        if params:
            elements.append(params)
    return elements


def apply_forwarding(
    scope: dict[str, Any],
    trusted: TrustedHosts,
    forwarded: list[bytes],
    forwarded_for: list[bytes],
    forwarded_proto: list[bytes],
) -> None:
    """Rewrite ``client`` and ``scheme`` from the forwarding headers of a request whose peer is trusted."""
    proto: str | None = None
    client: tuple[str, int] | None = None
    if forwarded:
        elements = parse_forwarded(",".join(value.decode("latin-1") for value in forwarded))
        client = trusted.client_from_chain([element["for"] for element in elements if "for" in element])
        protos = [element["proto"] for element in elements if "proto" in element]
        proto = protos[-1] if protos else None
    else:
        if forwarded_proto:
            proto = b",".join(forwarded_proto).decode("latin-1").split(",")[-1].strip()
        if forwarded_for:
            text = b",".join(forwarded_for).decode("latin-1")
            client = trusted.client_from_chain([item.strip() for item in text.split(",") if item.strip()])

    if proto:
        proto = proto.lower()
        if proto in ("http", "https", "ws", "wss"):
            if scope["type"] == "websocket":
                proto = proto.replace("http", "ws")
            scope["scheme"] = proto
    if client is not None and client[0]:
        scope["client"] = client


def rewrite_from_headers(scope: dict[str, Any], trusted: TrustedHosts) -> None:
    """Find the forwarding headers in ``scope["headers"]`` and apply them (see :func:`apply_forwarding`)."""
    headers = scope["headers"]
    present = dict(headers)  # built in C: most requests carry none of the three headers
    if (
        b"forwarded" not in present
        and b"x-forwarded-for" not in present
        and b"x-forwarded-proto" not in present
    ):
        return
    found: dict[bytes, list[bytes]] = {b"forwarded": [], b"x-forwarded-for": [], b"x-forwarded-proto": []}
    for name, value in headers:
        values = found.get(name)
        if values is not None:
            values.append(value)
    apply_forwarding(
        scope, trusted, found[b"forwarded"], found[b"x-forwarded-for"], found[b"x-forwarded-proto"]
    )


class ProxyHeadersMiddleware:
    """The same rewriting as ASGI middleware, for applications served by another server.

    fulmen's own protocols do not use it: they apply the forwarding headers while they read the
    request head (see ``HTTPConnection.on_request``), which costs nothing per request extra.
    """

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
