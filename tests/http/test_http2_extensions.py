"""The ASGI response extensions over HTTP/2 (trailers, early hints, pathsend, zerocopysend), against a
real server: the h2 client library (which reports trailers and informational responses) and httpx."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from tests import apps
from tests.conftest import run_server

pytest.importorskip("h2")

import h2.events
from h2.settings import SettingCodes

from tests.http.h2_helpers import RawH2, h2_client


@pytest.fixture(scope="module")
def big_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("files") / "big.bin"
    path.write_bytes(os.urandom(3 * 1024 * 1024 + 7))
    return path


def exchange(
    path: str, kind: type, request_headers: list[tuple[bytes, bytes]] | None = None
) -> tuple[dict[bytes, bytes], bytes, list[Any]]:
    """The response to ``path`` from the extensions app, and its stream's events of ``kind``."""
    with run_server(apps.response_extensions, http2=True) as server:
        client = RawH2(server.port)
        stream_id = client.request(path, headers=request_headers)
        headers, body = client.response(stream_id)
        events = client.of(kind, stream_id)
        client.close()
    return headers, body, events


def test_extensions_listed_in_the_scope() -> None:
    with run_server(apps.response_extensions, http2=True) as server, h2_client() as client:
        response = client.get(server.url + "/extensions")
    assert response.http_version == "HTTP/2"
    assert response.json() == sorted(
        [
            "http.response.early_hint",
            "http.response.pathsend",
            "http.response.trailers",
            "http.response.zerocopysend",
        ]
    )


@pytest.mark.parametrize("path", ["/trailers", "/trailers/length"])
def test_trailers_in_a_last_headers_frame(path: str) -> None:
    headers, body, trailers = exchange(path, h2.events.TrailersReceived, [(b"te", b"trailers")])
    assert headers[b":status"] == b"200" and body == b"abcd"
    assert [dict(t.headers) for t in trailers] == [{b"x-checksum": b"abcd", b"x-count": b"4"}]


def test_no_trailers_without_te_trailers() -> None:
    headers, body, trailers = exchange("/trailers", h2.events.TrailersReceived)
    assert body == b"abcd" and trailers == []


def test_early_hints_come_before_the_response() -> None:
    headers, body, hints = exchange("/early-hint", h2.events.InformationalResponseReceived)
    assert [[value for name, value in h.headers if name == b"link"] for h in hints] == [
        [b"</style.css>; rel=preload; as=style", b"</app.js>; rel=preload; as=script"]
    ]
    assert headers[b":status"] == b"200" and body == b"ok"


@pytest.mark.parametrize("path", ["/pathsend", "/pathsend/length"])
def test_pathsend_through_a_small_window(path: str, big_file: Path) -> None:
    with run_server(apps.response_extensions, http2=True) as server:
        client = RawH2(server.port, settings={SettingCodes.INITIAL_WINDOW_SIZE: 4096})
        headers, body = client.response(client.request(f"{path}?{big_file}"), timeout=30)
        client.close()
    assert headers[b":status"] == b"200" and body == big_file.read_bytes()


def test_zerocopysend_with_offsets(big_file: Path) -> None:
    data = big_file.read_bytes()
    with run_server(apps.response_extensions, http2=True) as server, h2_client() as client:
        response = client.get(f"{server.url}/zerocopysend?{big_file}")
    assert response.content == data[3:13] + data[1:4] + b"END"


def test_pathsend_to_head_sends_no_body(big_file: Path) -> None:
    with run_server(apps.response_extensions, http2=True) as server, h2_client() as client:
        response = client.head(f"{server.url}/pathsend/length?{big_file}")
    assert response.status_code == 200 and response.content == b""
    assert response.headers["content-length"] == str(big_file.stat().st_size)
