"""HTTP/2 flow control: responses never stall, whatever windows the client gives. Real clients on
loopback (h2, httpx, curl, h2load) and raw frames for exact windows; every read has a deadline."""

from __future__ import annotations

import asyncio
import hashlib
import subprocess
from typing import Any

import httpx
import pytest

from tests.conftest import run_server
from tests.system_tools import require_command

pytest.importorskip("h2")
trustme = pytest.importorskip("trustme")

import h2.events  # noqa: E402
from h2.settings import SettingCodes  # noqa: E402
from hyperframe.frame import DataFrame, HeadersFrame, SettingsFrame, WindowUpdateFrame  # noqa: E402

from tests.http.h2_helpers import FrameReader, RawH2, h2_client, raw_connect, request_frame  # noqa: E402

FIVE_MIB = bytes(range(256)) * (5 * 1024 * 4)


def sized_app(size: int) -> Any:
    """Answers ``size`` bytes (or ``?n`` bytes), in 64 KiB body messages."""
    body = (bytes(range(256)) * (size // 256 + 1))[:size]

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        data = body[: int(scope["query_string"])] if scope["query_string"] else body
        headers = [(b"content-length", b"%d" % len(data))]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        for start in range(0, len(data), 65536):
            await send({"type": "http.response.body", "body": data[start : start + 65536], "more_body": True})
        await send({"type": "http.response.body", "body": b""})

    return app


def data_of(frames: list[Any], stream_id: int = 1) -> int:
    return sum(len(f.data) for f in frames if isinstance(f, DataFrame) and f.stream_id == stream_id)


def ended(frames: list[Any], stream_id: int = 1) -> bool:
    return any(
        isinstance(f, (DataFrame, HeadersFrame)) and f.stream_id == stream_id and "END_STREAM" in f.flags
        for f in frames
    )


def test_small_stream_window_then_connection_window() -> None:
    """4 KiB stream window: 4 KiB arrive and nothing more; a stream WINDOW_UPDATE lets the rest up to
    the connection's 64 KiB through; the connection's WINDOW_UPDATE lets the whole body end."""
    size = 200_000
    with run_server(sized_app(size), http2=True) as server:
        sock = raw_connect(server.port, {SettingCodes.INITIAL_WINDOW_SIZE: 4096})
        reader = FrameReader(sock)
        sock.sendall(request_frame(1))
        reader.until(lambda fs: data_of(fs) >= 4096)
        assert data_of(reader.within(0.3)) == 4096
        sock.sendall(WindowUpdateFrame(1, window_increment=size).serialize())
        reader.until(lambda fs: data_of(fs) >= 65535)
        frames = reader.within(0.3)
        assert data_of(frames) == 65535 and not ended(frames)  # the connection's window is spent
        sock.sendall(WindowUpdateFrame(0, window_increment=size).serialize())
        assert data_of(reader.until(ended)) == size
        sock.close()


def test_initial_window_size_changes_resume_sending_even_from_negative() -> None:
    """RFC 9113 section 6.9.2: a new SETTINGS_INITIAL_WINDOW_SIZE moves every open stream's window by
    the difference, below zero too; sending resumes once it is positive again."""
    with run_server(sized_app(100_000), http2=True) as server:
        sock = raw_connect(server.port, {SettingCodes.INITIAL_WINDOW_SIZE: 8192})
        reader = FrameReader(sock)
        sock.sendall(request_frame(1))
        reader.until(lambda fs: data_of(fs) >= 8192)
        assert data_of(reader.within(0.3)) == 8192
        sock.sendall(SettingsFrame(0, settings={SettingCodes.INITIAL_WINDOW_SIZE: 0}).serialize())
        assert data_of(reader.within(0.3)) == 8192  # the window is -8192 now
        sock.sendall(SettingsFrame(0, settings={SettingCodes.INITIAL_WINDOW_SIZE: 20_000}).serialize())
        reader.until(lambda fs: data_of(fs) >= 20_000)
        assert data_of(reader.within(0.3)) == 20_000  # 8192 + (20000 - 8192)
        sock.sendall(SettingsFrame(0, settings={SettingCodes.INITIAL_WINDOW_SIZE: 200_000}).serialize())
        sock.sendall(WindowUpdateFrame(0, window_increment=100_000).serialize())
        assert data_of(reader.until(ended)) == 100_000
        sock.close()


def test_five_mib_through_a_4096_byte_window_with_h2() -> None:
    """The h2 client library with a 4 KiB stream window, acknowledging as it reads."""
    with run_server(sized_app(len(FIVE_MIB)), http2=True) as server:
        client = RawH2(server.port, settings={SettingCodes.INITIAL_WINDOW_SIZE: 4096})
        headers, body = client.response(client.request("/"), timeout=30)
        client.close()
    assert headers[b":status"] == b"200" and body == FIVE_MIB


def test_streams_share_the_connection_window() -> None:
    """Two large responses under a small connection window: both make progress, neither waits for the
    other to end."""
    with run_server(sized_app(1_000_000), http2=True) as server:
        client = RawH2(server.port, settings={SettingCodes.INITIAL_WINDOW_SIZE: 16384})
        first = client.request("/")
        second = client.request("/")
        seen: list[int] = []

        def both_going(events: list[Any]) -> bool:
            for event in events[len(seen) :]:
                seen.append(event.stream_id if isinstance(event, h2.events.DataReceived) else 0)
                if isinstance(event, h2.events.DataReceived):
                    client.conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
            return first in seen and second in seen

        client.read_until(both_going, timeout=10)
        assert first in seen and second in seen
        # Neither stream had its whole body before the other's first DATA frame.
        data = [s for s in seen if s]
        assert data.index(second) * 16384 < 1_000_000 and data.index(first) * 16384 < 1_000_000
        for stream_id in (first, second):
            assert len(client.response(stream_id, timeout=20)[1]) == 1_000_000
        client.close()


def _tls_files(tmp_path: Any) -> tuple[dict[str, str], Any]:
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    certfile, keyfile, cafile = tmp_path / "cert.pem", tmp_path / "key.pem", tmp_path / "ca.pem"
    cert.cert_chain_pems[0].write_to_path(str(certfile))
    cert.private_key_pem.write_to_path(str(keyfile))
    ca.cert_pem.write_to_path(str(cafile))
    return {"ssl_certfile": str(certfile), "ssl_keyfile": str(keyfile)}, cafile


def test_five_mib_over_tls_with_httpx_and_curl(tmp_path: Any) -> None:
    options, cafile = _tls_files(tmp_path)
    curl = require_command("curl", "curl")
    with run_server(sized_app(len(FIVE_MIB)), http2=True, **options) as server:
        url = f"https://127.0.0.1:{server.port}/"
        with httpx.Client(http2=True, verify=str(cafile), timeout=30) as client:
            response = client.get(url)
        assert response.http_version == "HTTP/2" and response.content == FIVE_MIB
        result = subprocess.run(
            [curl, "-sS", "--http2", "--cacert", str(cafile), "-o", "-", "-w", "%{http_version}", url],
            capture_output=True,
            timeout=30,
        )
    assert result.returncode == 0, result.stderr
    assert result.stdout[:-1] == FIVE_MIB and result.stdout[-1:] == b"2"


def test_curl_prior_knowledge_downloads_in_full() -> None:
    curl = require_command("curl", "curl")
    with run_server(sized_app(len(FIVE_MIB)), http2=True) as server:
        result = subprocess.run(
            [curl, "-sS", "--http2-prior-knowledge", "-o", "-", "-w", "%{http_version}", server.url + "/"],
            capture_output=True,
            timeout=30,
        )
    assert result.returncode == 0, result.stderr
    assert hashlib.sha256(result.stdout[:-1]).digest() == hashlib.sha256(FIVE_MIB).digest()
    assert result.stdout[-1:] == b"2"


@pytest.mark.parametrize("window_bits", [12, 16])
def test_h2load_with_small_windows_has_no_failures(window_bits: int) -> None:
    """h2load, 4 connections x 8 streams, 100 KiB responses, stream windows of 4 KiB and 64 KiB."""
    h2load = require_command("h2load", "nghttp2-client")
    with run_server(sized_app(100_000), http2=True) as server:
        result = subprocess.run(
            [h2load, "-n", "400", "-c", "4", "-m", "8", "-w", str(window_bits), "-W", "16", server.url + "/"],
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert "400 succeeded, 0 failed, 0 errored, 0 timeout" in result.stdout, result.stdout


def test_upload_under_flow_control_with_httpx() -> None:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        digest = hashlib.sha256()
        more = True
        while more:
            message = await receive()
            digest.update(message.get("body", b""))
            more = message.get("more_body", False)
            await asyncio.sleep(0)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": digest.hexdigest().encode()})

    with run_server(app, http2=True) as server, h2_client() as client:
        response = client.post(server.url, content=FIVE_MIB)
    assert response.text == hashlib.sha256(FIVE_MIB).hexdigest()
