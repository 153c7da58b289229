"""What ``X-Forwarded-For``/``X-Forwarded-Proto`` and RFC 7239 ``Forwarded`` mean, from known proxies.

Only a request whose direct peer is in ``--forwarded-allow-ips`` is rewritten. In a chain of
proxies the client is the right-most address that is not itself a trusted proxy, so a client cannot
forge its address by sending the header itself. The HTTP protocols apply this while they read a
request head; :class:`fulmen.middleware.proxy_headers.ProxyHeadersMiddleware` applies it for
applications served by another server.
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
        #: What forwarding headers mean (see :func:`resolve_forwarding`), by their names and values.
        self.resolved: dict[tuple[tuple[bytes, bytes], ...], tuple[tuple[str, int] | None, str | None]] = {}
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


#: The forwarding headers, lower-cased, as the connection finds them among a request's headers.
FORWARDING_HEADERS = frozenset({b"forwarded", b"x-forwarded-for", b"x-forwarded-proto"})
_SCHEMES = frozenset({"http", "https", "ws", "wss"})
#: Forwarding headers of at most this many bytes in all have their meaning cached (see ``resolve``).
_CACHED_SIZE = 512


def resolve_forwarding(
    trusted: TrustedHosts, headers: tuple[tuple[bytes, bytes], ...]
) -> tuple[tuple[str, int] | None, str | None]:
    """The client and scheme that a trusted peer's forwarding headers (in request order) give.

    A proxy sends the same headers for every request of a client's connection, so their meaning is
    cached (bounded in entries and in key size): parsing them per request cost as much as the rest of
    the request's headers together.
    """
    cache = trusted.resolved
    result = cache.get(headers)
    if result is not None:
        return result
    forwarded = [value for name, value in headers if name == b"forwarded"]
    proto: str | None = None
    client: tuple[str, int] | None = None
    if forwarded:
        elements = parse_forwarded(",".join(value.decode("latin-1") for value in forwarded))
        client = trusted.client_from_chain([element["for"] for element in elements if "for" in element])
        protos = [element["proto"] for element in elements if "proto" in element]
        proto = protos[-1] if protos else None
    else:
        forwarded_proto = [value for name, value in headers if name == b"x-forwarded-proto"]
        forwarded_for = [value for name, value in headers if name == b"x-forwarded-for"]
        if forwarded_proto:
            proto = b",".join(forwarded_proto).decode("latin-1").split(",")[-1].strip()
        if forwarded_for:
            text = b",".join(forwarded_for).decode("latin-1")
            client = trusted.client_from_chain([item.strip() for item in text.split(",") if item.strip()])
    if proto:
        proto = proto.lower()
        if proto not in _SCHEMES:
            proto = None
    result = (client if client is not None and client[0] else None, proto or None)
    if len(cache) < 4096 and sum(len(value) for _, value in headers) <= _CACHED_SIZE:
        cache[headers] = result
    return result


def apply_forwarding(
    scope: dict[str, Any], trusted: TrustedHosts, headers: tuple[tuple[bytes, bytes], ...]
) -> None:
    """Rewrite ``client`` and ``scheme`` from the forwarding headers of a request whose peer is trusted."""
    resolved = trusted.resolved.get(headers)  # resolve_forwarding()'s cache, without the call
    client, proto = resolve_forwarding(trusted, headers) if resolved is None else resolved
    if proto is not None:
        if scope["type"] == "websocket":
            proto = proto.replace("http", "ws")
        scope["scheme"] = proto
    if client is not None:
        scope["client"] = client


def rewrite_from_headers(scope: dict[str, Any], trusted: TrustedHosts) -> None:
    """Find the forwarding headers in ``scope["headers"]`` and apply them (see :func:`apply_forwarding`)."""
    headers = scope["headers"]
    present = dict(headers)  # built in C: most requests carry none of the three headers
    if FORWARDING_HEADERS.isdisjoint(present):
        return
    apply_forwarding(
        scope, trusted, tuple((name, value) for name, value in headers if name in FORWARDING_HEADERS)
    )
