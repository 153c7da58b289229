"""The ASGI response extensions over HTTP/1.1 (trailers, early hints, pathsend, zerocopysend), against
real servers on loopback: httpx, curl and raw sockets, on both parsers and both loops."""

from __future__ import annotations

import os
import socket
import ssl
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests import apps
from tests.conftest import read_response, recv_until, recv_until_closed, run_server
from tests.system_tools import require_command

EXTENSIONS = [
    "http.response.early_hint",
    "http.response.pathsend",
    "http.response.trailers",
    "http.response.zerocopysend",
]


@pytest.fixture(scope="module")
def big_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """3 MiB and a few bytes of random data: many reads, many sendfile rounds."""
    path = tmp_path_factory.mktemp("files") / "big.bin"
    path.write_bytes(os.urandom(3 * 1024 * 1024 + 7))
    return path


def request(sock: socket.socket, target: str, *headers: str, version: str = "1.1") -> None:
    lines = [f"GET {target} HTTP/{version}", "Host: x", *headers, "", ""]
    sock.sendall("\r\n".join(lines).encode())


def test_extensions_listed_in_the_scope(http_impl: str) -> None:
    with run_server(apps.response_extensions, http=http_impl) as server:
        assert httpx.get(server.url + "/extensions").json() == EXTENSIONS


# -- trailers


def test_trailers_after_the_last_chunk_with_curl(http_impl: str) -> None:
    curl = require_command("curl", "curl")
    with run_server(apps.response_extensions, http=http_impl) as server:
        result = subprocess.run(
            [curl, "-s", "--raw", "-H", "TE: trailers", server.url + "/trailers"],
            capture_output=True,
            timeout=10,
        )
    assert result.stdout == b"2\r\nab\r\n2\r\ncd\r\n0\r\nx-checksum: abcd\r\nx-count: 4\r\n\r\n"


def test_trailers_only_for_clients_that_ask(http_impl: str) -> None:
    with run_server(apps.response_extensions, http=http_impl) as server, server.connect() as sock:
        request(sock, "/trailers", "TE: gzip, trailers;q=1")
        raw = recv_until(sock, b"x-count: 4\r\n\r\n")
        assert raw.endswith(b"\r\n\r\n2\r\nab\r\n2\r\ncd\r\n0\r\nx-checksum: abcd\r\nx-count: 4\r\n\r\n")
        request(sock, "/trailers")  # no TE: the body ends without them, on the same connection
        raw = recv_until(sock, b"0\r\n\r\n")
        assert raw.endswith(b"\r\n\r\n2\r\nab\r\n2\r\ncd\r\n0\r\n\r\n") and b"x-checksum: abcd" not in raw
        request(sock, "/trailers/length", "TE: trailers")  # framed by length: no place for them
        status, headers, body = read_response(sock)
        assert status == 200 and headers[b"content-length"] == b"4" and body == b"abcd"
        sock.settimeout(0.3)
        with pytest.raises(socket.timeout):
            sock.recv(1)  # nothing after the body


def test_trailers_read_by_httpx(http_impl: str) -> None:
    with run_server(apps.response_extensions, http=http_impl) as server:
        response = httpx.get(server.url + "/trailers", headers={"TE": "trailers"})
        assert response.status_code == 200 and response.text == "abcd"


def test_a_body_after_the_last_one_cuts_a_response_with_trailers(http_impl: str) -> None:
    with run_server(apps.response_extensions, http=http_impl) as server, server.connect() as sock:
        request(sock, "/body-after-trailers", "TE: trailers")
        data, closed = recv_until_closed(sock)
        assert closed and data.startswith(b"HTTP/1.1 200 ") and not data.endswith(b"0\r\n\r\n")


# -- early hints


def test_early_hints_before_the_response(http_impl: str) -> None:
    with run_server(apps.response_extensions, http=http_impl) as server, server.connect() as sock:
        request(sock, "/early-hint")
        data = recv_until(sock, b"ok")
        hint, _, final = data.partition(b"\r\n\r\n")
        assert hint == (
            b"HTTP/1.1 103 Early Hints\r\n"
            b"link: </style.css>; rel=preload; as=style\r\nlink: </app.js>; rel=preload; as=script"
        )
        assert final.startswith(b"HTTP/1.1 200 OK\r\n") and final.endswith(b"\r\n\r\nok")
        assert b"late.css" not in data
        request(sock, "/early-hint", version="1.0")  # HTTP/1.0 has no informational responses
        data, _ = recv_until_closed(sock)
        assert data.startswith(b"HTTP/1.1 200 OK\r\n") and b"103" not in data


def test_early_hints_with_curl_and_httpx(http_impl: str) -> None:
    curl = require_command("curl", "curl")
    with run_server(apps.response_extensions, http=http_impl) as server:
        result = subprocess.run(
            [curl, "-s", "-i", server.url + "/early-hint"], capture_output=True, timeout=10
        )
        assert result.stdout.startswith(b"HTTP/1.1 103 Early Hints\r\n") and result.stdout.endswith(
            b"\r\n\r\nok"
        )
        response = httpx.get(server.url + "/early-hint")
        assert response.status_code == 200 and response.text == "ok"


# -- pathsend and zerocopysend


def test_pathsend(http_impl: str, loop_impl: str, big_file: Path) -> None:
    """asyncio's loop sends the file with os.sendfile; uvloop's in reads."""
    data = big_file.read_bytes()
    with run_server(apps.response_extensions, http=http_impl, loop=loop_impl) as server:
        with httpx.Client(base_url=server.url) as client:
            for path in ("/pathsend", "/pathsend/length"):
                response = client.get(f"{path}?{big_file}")
                assert response.status_code == 200 and response.content == data
            assert response.headers["content-length"] == str(len(data))
            head = client.head(f"/pathsend/length?{big_file}")
            assert head.headers["content-length"] == str(len(data)) and head.content == b""
            assert client.get("/extensions").status_code == 200  # the connection goes on


def test_pathsend_to_a_slow_reader(loop_impl: str, big_file: Path) -> None:
    """The file goes out as the client reads it (the transport's back-pressure), not all at once."""
    data = big_file.read_bytes()
    with run_server(apps.response_extensions, loop=loop_impl) as server, server.connect() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16384)
        sock.sendall(f"GET /pathsend/length?{big_file} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        time.sleep(0.5)  # the server fills the socket's buffers and waits
        status, _, body = read_response(sock, timeout=20)
        assert status == 200 and body == data


def test_pathsend_over_tls(cert_files: tuple[str, str, str], big_file: Path) -> None:
    certfile, keyfile, cafile = cert_files
    options = {"ssl_certfile": certfile, "ssl_keyfile": keyfile}
    with run_server(apps.response_extensions, **options) as server:
        context = ssl.create_default_context(cafile=cafile)
        url = f"https://127.0.0.1:{server.port}/pathsend?{big_file}"
        response = httpx.get(url, verify=context, timeout=10)
        assert response.content == big_file.read_bytes()


def test_zerocopysend(http_impl: str, loop_impl: str, big_file: Path) -> None:
    data = big_file.read_bytes()
    with run_server(apps.response_extensions, http=http_impl, loop=loop_impl) as server:
        response = httpx.get(f"{server.url}/zerocopysend?{big_file}")
        assert response.content == data[3:13] + data[1:4] + b"END"


@pytest.mark.parametrize(
    "target", ["/pathsend-after-body?{file}", "/pathsend?relative/path", "/pathsend?/no/such"]
)
def test_pathsend_misuse_cuts_the_response(http_impl: str, big_file: Path, target: str) -> None:
    with run_server(apps.response_extensions, http=http_impl) as server, server.connect() as sock:
        request(sock, target.format(file=big_file))
        data, closed = recv_until_closed(sock)
        assert closed and data.startswith(b"HTTP/1.1 200 ") and not data.endswith(b"0\r\n\r\n")


def test_client_gone_during_pathsend(loop_impl: str, big_file: Path) -> None:
    with run_server(apps.response_extensions, loop=loop_impl) as server:
        for _ in range(3):
            with server.connect() as sock:
                request(sock, f"/pathsend?{big_file}")
                recv_until(sock, b"\r\n\r\n")
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        assert httpx.get(server.url + "/extensions").status_code == 200
        assert wait_for_no_tasks(server)


def wait_for_no_tasks(server: Any, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while server.server.server_state.tasks:
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


@pytest.fixture(scope="module")
def cert_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str, str]:
    trustme = pytest.importorskip("trustme")
    ca = trustme.CA()
    directory = tmp_path_factory.mktemp("tls")
    cert = ca.issue_cert("127.0.0.1", "localhost")
    certfile, keyfile, cafile = directory / "cert.pem", directory / "key.pem", directory / "ca.pem"
    cert.private_key_and_cert_chain_pem.write_to_path(str(certfile))
    cert.private_key_pem.write_to_path(str(keyfile))
    ca.cert_pem.write_to_path(str(cafile))
    return str(certfile), str(keyfile), str(cafile)
