"""The same ambiguous requests sent to both parsers: they must give the same answer (RFC 9112),
and never serve a second request hidden inside the first."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests import apps
from tests.conftest import recv_all, run_server

BODY = b"POST /first HTTP/1.1\r\nHost: x\r\n"
SMUGGLED = b"GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n"

# name: (request, expected status line start, number of responses)
CASES: dict[str, tuple[bytes, bytes, int]] = {
    "bare-lf-line-ends": (b"GET /first HTTP/1.1\nHost: x\n\n", b"HTTP/1.1 400", 1),
    "bare-lf-in-header": (b"GET /first HTTP/1.1\r\nHost: x\nX: y\r\n\r\n", b"HTTP/1.1 400", 1),
    "obs-fold": (b"GET /first HTTP/1.1\r\nHost: x\r\nX: a\r\n b\r\n\r\n", b"HTTP/1.1 400", 1),
    "obs-fold-tab": (b"GET /first HTTP/1.1\r\nHost: x\r\nX: a\r\n\tb\r\n\r\n", b"HTTP/1.1 400", 1),
    "obs-fold-first-header": (b"GET /first HTTP/1.1\r\n Host: x\r\n\r\n", b"HTTP/1.1 400", 1),
    # As many bare CRs as bare LFs: the CR and LF counts agree, and the head is still refused.
    "bare-cr-and-bare-lf": (
        b"GET /first HTTP/1.1\r\nHost: x\r\nX: a\rb\r\nY: c\nZ: d\r\n\r\n",
        b"HTTP/1.1 400",
        1,
    ),
    "cr-cr-lf": (b"GET /first HTTP/1.1\r\nHost: x\r\nX: a\r\r\n\r\n", b"HTTP/1.1 400", 1),
    "nul-in-header": (b"GET /first HTTP/1.1\r\nHost: x\r\nX: a\x00b\r\n\r\n", b"HTTP/1.1 400", 1),
    "cr-in-header": (b"GET /first HTTP/1.1\r\nHost: x\r\nX: a\rb\r\n\r\n", b"HTTP/1.1 400", 1),
    "space-before-colon": (b"GET /first HTTP/1.1\r\nHost: x\r\nX : a\r\n\r\n", b"HTTP/1.1 400", 1),
    "empty-header-name": (b"GET /first HTTP/1.1\r\nHost: x\r\n: v\r\n\r\n", b"HTTP/1.1 400", 1),
    "two-hosts": (b"GET /first HTTP/1.1\r\nHost: x\r\nHost: y\r\n\r\n", b"HTTP/1.1 400", 1),
    "cl-plus-sign": (BODY + b"Content-Length: +5\r\n\r\nhello" + SMUGGLED, b"HTTP/1.1 400", 1),
    "cl-list": (BODY + b"Content-Length: 5, 5\r\n\r\nhello" + SMUGGLED, b"HTTP/1.1 400", 1),
    "cl-and-te": (
        BODY + b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + SMUGGLED,
        b"HTTP/1.1 400",
        1,
    ),
    "te-chunked-identity": (
        BODY + b"Transfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n" + SMUGGLED,
        b"HTTP/1.1 400",
        1,
    ),
    "te-xchunked": (BODY + b"Transfer-Encoding: xchunked\r\n\r\n0\r\n\r\n" + SMUGGLED, b"HTTP/1.1 400", 1),
    "te-http10": (
        b"POST /first HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + SMUGGLED,
        b"HTTP/1.1 400",
        1,
    ),
    "chunk-size-overflow": (
        BODY + b"Transfer-Encoding: chunked\r\n\r\nFFFFFFFFFFFFFFFFFFFF\r\nhello\r\n0\r\n\r\n",
        b"HTTP/1.1 400",
        1,
    ),
    "chunk-bad-hex": (
        BODY + b"Transfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n" + SMUGGLED,
        b"HTTP/1.1 400",
        1,
    ),
    "chunk-missing-crlf": (
        BODY + b"Transfer-Encoding: chunked\r\n\r\n5\r\nhelloXX0\r\n\r\n" + SMUGGLED,
        b"HTTP/1.1 400",
        1,
    ),
    "space-in-target": (b"GET /a b HTTP/1.1\r\nHost: x\r\n\r\n", b"HTTP/1.1 400", 1),
    "non-ascii-target": (b"GET /\xc3\xa9 HTTP/1.1\r\nHost: x\r\n\r\n", b"HTTP/1.1 400", 1),
    "after-connection-close": (
        b"GET /first HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n" + SMUGGLED,
        b"HTTP/1.1 200",
        1,
    ),
    "chunk-extension": (
        BODY + b"Connection: close\r\nTransfer-Encoding: chunked\r\n\r\n5;ext=1\r\nhello\r\n0\r\n\r\n",
        b"HTTP/1.1 200",
        1,
    ),
    "trailers": (
        BODY + b"Connection: close\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\nX-T: 1\r\n\r\n",
        b"HTTP/1.1 200",
        1,
    ),
    # Found by the fuzzers (tests/test_fuzz_http.py): h11 alone accepted these, llhttp rejects them.
    "cl-duplicate-same-value": (
        BODY + b"Content-Length: 5\r\nContent-Length: 5\r\n\r\nhello" + SMUGGLED,
        b"HTTP/1.1 400",
        1,
    ),
    "cl-trailing-space": (BODY + b"Content-Length: 5 \r\n\r\nhello" + SMUGGLED, b"HTTP/1.1 400", 1),
    "ctl-in-header": (b"GET /first HTTP/1.1\r\nHost: x\r\nX: a\x01b\r\n\r\n", b"HTTP/1.1 400", 1),
    "del-in-header": (b"GET /first HTTP/1.1\r\nHost: x\r\nX: a\x7fb\r\n\r\n", b"HTTP/1.1 400", 1),
    "chunk-extension-nul": (
        BODY + b"Transfer-Encoding: chunked\r\n\r\n5;a=\x00\r\nhello\r\n0\r\n\r\n" + SMUGGLED,
        b"HTTP/1.1 400",
        1,
    ),
    "chunk-extension-cr": (
        BODY + b"Transfer-Encoding: chunked\r\n\r\n5;a=\rb\r\nhello\r\n0\r\n\r\n" + SMUGGLED,
        b"HTTP/1.1 400",
        1,
    ),
    "chunk-extension-space": (
        BODY + b"Transfer-Encoding: chunked\r\n\r\n5;a=b c\r\nhello\r\n0\r\n\r\n" + SMUGGLED,
        b"HTTP/1.1 400",
        1,
    ),
    "chunk-size-2-64": (
        BODY + b"Transfer-Encoding: chunked\r\n\r\n10000000000000000\r\nhello\r\n0\r\n\r\n" + SMUGGLED,
        b"HTTP/1.1 400",
        1,
    ),
    "trailer-content-length": (
        BODY + b"Transfer-Encoding: chunked\r\n\r\n0\r\nContent-Length: 5\r\n\r\nhello" + SMUGGLED,
        b"HTTP/1.1 400",
        1,
    ),
    "trailer-transfer-encoding": (
        BODY + b"Transfer-Encoding: chunked\r\n\r\n0\r\nTransfer-Encoding: chunked\r\n\r\n" + SMUGGLED,
        b"HTTP/1.1 400",
        1,
    ),
    "trailer-obs-fold": (
        BODY + b"Transfer-Encoding: chunked\r\n\r\n0\r\nX: a\r\n b\r\n\r\n" + SMUGGLED,
        b"HTTP/1.1 400",
        1,
    ),
    "after-connection-close-with-body": (
        BODY + b"Connection: close\r\nContent-Length: 5\r\n\r\nhello" + SMUGGLED,
        b"HTTP/1.1 200",
        1,
    ),
    "http10-after-close": (b"GET /first HTTP/1.0\r\n\r\n" + SMUGGLED, b"HTTP/1.1 200", 1),
    "http10-keep-alive-pipeline": (
        b"GET /first HTTP/1.0\r\nConnection: keep-alive\r\n\r\nGET /second HTTP/1.0\r\n\r\n" + SMUGGLED,
        b"HTTP/1.1 200",
        2,
    ),
}


@pytest.fixture(scope="module", params=["httptools", "h11"])
def server(request: pytest.FixtureRequest) -> Any:
    seen: list[str] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        seen.append(scope["path"])
        await apps.echo(scope, receive, send)

    with run_server(app, http=request.param) as running:
        running.seen = seen  # type: ignore[attr-defined]
        yield running


@pytest.mark.parametrize("name", list(CASES))
def test_both_parsers_agree(server: Any, name: str) -> None:
    request, expected, count = CASES[name]
    server.seen.clear()
    with server.connect() as sock:
        sock.sendall(request)
        response = recv_all(sock, timeout=3)
    assert response.startswith(expected), response[:200]
    assert response.count(b"HTTP/1.1 ") == count
    assert "/smuggled" not in server.seen
    assert httpx.get(server.url).status_code == 200
