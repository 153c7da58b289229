"""Proxy headers (X-Forwarded-*, RFC 7239 Forwarded), root_path, and the server/date/custom headers."""

from __future__ import annotations

import email.utils
import signal
import socket
import time
from typing import Any

import httpx
import pytest

from fulmen.forwarding import TrustedHosts, parse_forwarded, parse_host_port
from tests import apps
from tests.conftest import free_port, run_server


def _scope(server: Any, headers: dict[str, str] | list[tuple[str, str]]) -> dict[str, Any]:
    response = httpx.get(server.url + "/", headers=headers, timeout=5)
    return dict(response.json())


@pytest.fixture(scope="module")
def default_server() -> Any:
    with run_server(apps.scope_json) as server:
        yield server


def test_x_forwarded_for_and_proto_from_loopback(default_server: Any) -> None:
    scope = _scope(default_server, {"X-Forwarded-For": "203.0.113.7", "X-Forwarded-Proto": "https"})
    assert scope["client"] == ["203.0.113.7", 0]
    assert scope["scheme"] == "https"


def test_x_forwarded_for_with_port(default_server: Any) -> None:
    assert _scope(default_server, {"X-Forwarded-For": "203.0.113.7:4711"})["client"] == ["203.0.113.7", 4711]
    assert _scope(default_server, {"X-Forwarded-For": "[2001:db8::7]:4711"})["client"] == [
        "2001:db8::7",
        4711,
    ]


def test_chain_takes_the_first_untrusted_from_the_right(default_server: Any) -> None:
    # The client forged "6.6.6.6"; the trusted proxy (127.0.0.1) appended the real address.
    scope = _scope(default_server, {"X-Forwarded-For": "6.6.6.6, 198.51.100.1, 127.0.0.1"})
    assert scope["client"][0] == "198.51.100.1"


def test_repeated_x_forwarded_for_headers_are_joined(default_server: Any) -> None:
    scope = _scope(default_server, [("X-Forwarded-For", "6.6.6.6"), ("X-Forwarded-For", "198.51.100.2")])
    assert scope["client"][0] == "198.51.100.2"


def test_invalid_proto_is_ignored(default_server: Any) -> None:
    assert _scope(default_server, {"X-Forwarded-Proto": "gopher"})["scheme"] == "http"


def test_rfc7239_forwarded(default_server: Any) -> None:
    scope = _scope(default_server, {"Forwarded": "for=192.0.2.60;proto=https;by=203.0.113.43"})
    assert scope["client"] == ["192.0.2.60", 0]
    assert scope["scheme"] == "https"
    scope = _scope(default_server, {"Forwarded": 'for="[2001:db8:cafe::17]:4711"'})
    assert scope["client"] == ["2001:db8:cafe::17", 4711]
    scope = _scope(default_server, {"Forwarded": "for=6.6.6.6, for=192.0.2.43;proto=http"})
    assert scope["client"][0] == "192.0.2.43"


def test_untrusted_peer_is_not_rewritten() -> None:
    with run_server(apps.scope_json, forwarded_allow_ips="10.0.0.1") as server:
        scope = _scope(
            server,
            {"X-Forwarded-For": "203.0.113.7", "X-Forwarded-Proto": "https", "Forwarded": "for=1.2.3.4"},
        )
        assert scope["client"][0] == "127.0.0.1"
        assert scope["scheme"] == "http"


def test_trusted_network() -> None:
    with run_server(apps.scope_json, forwarded_allow_ips="10.0.0.0/8, 127.0.0.0/8") as server:
        scope = _scope(server, {"X-Forwarded-For": "203.0.113.7, 10.1.2.3"})
        assert scope["client"][0] == "203.0.113.7"


def test_trust_everything() -> None:
    with run_server(apps.scope_json, forwarded_allow_ips="*") as server:
        scope = _scope(server, {"X-Forwarded-For": "203.0.113.7, 198.51.100.1"})
        assert scope["client"][0] == "203.0.113.7"


def test_no_proxy_headers() -> None:
    with run_server(apps.scope_json, proxy_headers=False) as server:
        scope = _scope(server, {"X-Forwarded-For": "203.0.113.7", "X-Forwarded-Proto": "https"})
        assert scope["client"][0] == "127.0.0.1" and scope["scheme"] == "http"


def test_trusted_hosts_unit() -> None:
    trusted = TrustedHosts("127.0.0.1, ::1, 10.0.0.0/8, /tmp/proxy.sock")
    assert "127.0.0.1" in trusted and "::1" in trusted and "10.9.9.9" in trusted
    assert "/tmp/proxy.sock" in trusted
    assert "11.0.0.1" not in trusted and None not in trusted and "" not in trusted
    assert "anything" in TrustedHosts("*") and "x" in TrustedHosts(["*"])
    assert parse_host_port("1.2.3.4:80") == ("1.2.3.4", 80)
    assert parse_host_port("2001:db8::1") == ("2001:db8::1", 0)
    assert parse_forwarded('for="_hidden";proto=HTTPS') == [{"for": "_hidden", "proto": "HTTPS"}]


def test_cli_forwarded_allow_ips_and_access_log(cli: Any) -> None:
    port = free_port()
    process = cli("tests.apps:hello", "--port", str(port), "--forwarded-allow-ips", "127.0.0.1")
    assert process.wait_for("Fulmen running on"), process.output
    httpx.get(f"http://127.0.0.1:{port}/", headers={"X-Forwarded-For": "203.0.113.9"}, timeout=5)
    assert process.wait_for('203.0.113.9:0 - "GET / HTTP/1.1" 200 OK', timeout=5), process.output
    process.process.send_signal(signal.SIGTERM)
    process.wait(10)


def test_forwarded_allow_ips_from_environment(cli: Any) -> None:
    port = free_port()
    process = cli("tests.apps:hello", "--port", str(port), env={"FORWARDED_ALLOW_IPS": "10.0.0.1"})
    assert process.wait_for("Fulmen running on"), process.output
    httpx.get(f"http://127.0.0.1:{port}/", headers={"X-Forwarded-For": "203.0.113.9"}, timeout=5)
    assert process.wait_for("127.0.0.1:", timeout=5)
    assert "203.0.113.9" not in process.output


def test_root_path() -> None:
    with run_server(apps.scope_json, root_path="/mounted") as server:
        scope = httpx.get(server.url + "/items/1?x=2", timeout=5).json()
        assert scope["root_path"] == "/mounted"
        assert scope["path"] == "/mounted/items/1"
        assert scope["raw_path"] == "/mounted/items/1"


def test_server_and_date_headers() -> None:
    with run_server(apps.hello) as server:
        response = httpx.get(server.url, timeout=5)
        assert response.headers["server"] == "fulmen"
        date = email.utils.parsedate_to_datetime(response.headers["date"])
        assert abs(date.timestamp() - time.time()) < 3
        assert response.headers["date"].endswith(" GMT")


def test_no_server_and_no_date_header() -> None:
    with run_server(apps.hello, server_header=False, date_header=False) as server:
        response = httpx.get(server.url, timeout=5)
        assert "server" not in response.headers and "date" not in response.headers


def test_custom_headers_repeatable_and_override_server() -> None:
    with run_server(apps.hello, headers=[("X-One", "1"), ("X-Two", "2"), ("Server", "custom")]) as server:
        response = httpx.get(server.url, timeout=5)
        assert response.headers["x-one"] == "1" and response.headers["x-two"] == "2"
        assert response.headers.get_list("server") == ["custom"]


def test_app_headers_win_over_defaults() -> None:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        headers = [(b"server", b"my-app"), (b"date", b"Thu, 01 Jan 1970 00:00:00 GMT")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": b""})

    with run_server(app) as server:
        response = httpx.get(server.url, timeout=5)
        assert response.headers.get_list("server") == ["my-app"]
        assert response.headers.get_list("date") == ["Thu, 01 Jan 1970 00:00:00 GMT"]


def test_cli_headers(cli: Any) -> None:
    port = free_port()
    process = cli(
        "tests.apps:hello",
        "--port",
        str(port),
        "--header",
        "X-A:1",
        "--header",
        "X-B: two",
        "--no-server-header",
        "--no-date-header",
    )
    assert process.wait_for("Fulmen running on"), process.output
    response = httpx.get(f"http://127.0.0.1:{port}/", timeout=5)
    assert response.headers["x-a"] == "1" and response.headers["x-b"] == "two"
    assert "server" not in response.headers and "date" not in response.headers


def test_date_is_computed_once_a_second() -> None:
    with run_server(apps.hello) as server:
        state = server.server.server_state
        seen = set()
        deadline = time.monotonic() + 2.5
        while time.monotonic() < deadline:
            seen.add(dict(state.default_headers)[b"date"])
            time.sleep(0.05)
        assert 2 <= len(seen) <= 4


def test_websocket_handshake_behind_a_proxy(http_impl: str) -> None:
    """Forwarding headers apply to WebSocket handshakes too: https becomes wss, the client is rewritten."""
    seen: list[dict[str, Any]] = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        seen.append({"scheme": scope["scheme"], "client": list(scope["client"])})
        await receive()
        await send({"type": "websocket.close", "code": 1000})

    with run_server(app, http=http_impl, forwarded_allow_ips="127.0.0.1") as server:
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
            sock.sendall(
                b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
                b"X-Forwarded-Proto: https\r\nX-Forwarded-For: 203.0.113.7\r\n\r\n"
            )
            assert sock.recv(1024).startswith(b"HTTP/1.1 403")
    assert seen and seen[0]["scheme"] == "wss"
    assert seen[0]["client"][0] == "203.0.113.7"
