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


class ProxyHeadersMiddleware:
    def __init__(self, app: Any, trusted_hosts: str | list[str] = "127.0.0.1") -> None:
        self.app = app
        self.trusted = TrustedHosts(trusted_hosts)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> Any:
        if scope["type"] in ("http", "websocket"):
            client = scope.get("client")
            peer = client[0] if client else None
            if peer in self.trusted:
                self.rewrite(scope)
        return await self.app(scope, receive, send)  # type: ignore[no-any-return]

    def rewrite(self, scope: dict[str, Any]) -> None:
        headers = scope["headers"]
        present = dict(headers)  # built in C: most requests carry none of the three headers
        if (
            b"forwarded" not in present
            and b"x-forwarded-for" not in present
            and (b"x-forwarded-proto" not in present)
        ):
            return
        forwarded = []
        forwarded_for = []
        forwarded_proto = []
        for name, value in headers:
            if name == b"forwarded":
                forwarded.append(value.decode("latin-1"))
            elif name == b"x-forwarded-for":
                forwarded_for.append(value.decode("latin-1"))
            elif name == b"x-forwarded-proto":
                forwarded_proto.append(value.decode("latin-1"))

        proto: str | None = None
        client: tuple[str, int] | None = None
        if forwarded:
            elements = parse_forwarded(",".join(forwarded))
            client = self.trusted.client_from_chain(
                [element["for"] for element in elements if "for" in element]
            )
            protos = [element["proto"] for element in elements if "proto" in element]
            proto = protos[-1] if protos else None
        else:
            if forwarded_proto:
                proto = ",".join(forwarded_proto).split(",")[-1].strip()
            if forwarded_for:
                nodes = [item.strip() for item in ",".join(forwarded_for).split(",") if item.strip()]
                client = self.trusted.client_from_chain(nodes)

        if proto:
            proto = proto.lower()
            if proto in ("http", "https", "ws", "wss"):
                if scope["type"] == "websocket":
                    proto = proto.replace("http", "ws")
                scope["scheme"] = proto
        if client is not None and client[0]:
            scope["client"] = client
