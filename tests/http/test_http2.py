"""HTTP/2 behind --http2: real servers, httpx as an HTTP/2 client (TLS with ALPN, and cleartext with
prior knowledge), and raw frames from h2 (or hand-made) for flow control, limits and malformed input."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import socket
import ssl
import subprocess
import sys
import threading
import time
from typing import Any

import httpx
import pytest

from fulmen import Config
from tests import apps
from tests.conftest import HTTP_IMPLEMENTATIONS, read_response, run_server
from tests.system_tools import require_command

pytest.importorskip("h2")
trustme = pytest.importorskip("trustme")

import h2.config  # noqa: E402
import h2.connection  # noqa: E402
import h2.events  # noqa: E402
from h2.errors import ErrorCodes  # noqa: E402
from h2.settings import SettingCodes  # noqa: E402
from hpack import Encoder  # noqa: E402
from hyperframe.frame import (  # noqa: E402
    DataFrame,
    GoAwayFrame,
    HeadersFrame,
    PingFrame,
    RstStreamFrame,
    SettingsFrame,
    WindowUpdateFrame,
)


async def echo_scope(scope: dict[str, Any], receive: Any, send: Any) -> None:
    body = await apps.read_body(receive)
    data = {
        "http_version": scope["http_version"],
        "method": scope["method"],
        "scheme": scope["scheme"],
        "path": scope["path"],
        "raw_path": scope["raw_path"].decode(),
        "query_string": scope["query_string"].decode(),
        "root_path": scope["root_path"],
        "headers": [[name.decode(), value.decode()] for name, value in scope["headers"]],
        "client": list(scope["client"]),
        "server": list(scope["server"]),
        "body": body.decode(),
    }
    payload = json.dumps(data).encode()
    await send(
        {"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]}
    )
    await send({"type": "http.response.body", "body": payload})


from tests.http.h2_helpers import (  # noqa: E402
    PREFACE,
    FrameReader,
    RawH2,
    frames_until,
    h2_client,
    parse_frames,
    raw_connect,
    read_frames,
    request_frame,
)

# -- basics


@pytest.mark.parametrize("http_impl", HTTP_IMPLEMENTATIONS)
def test_prior_knowledge_and_http11_on_the_same_port(http_impl: str) -> None:
    with (
        run_server(echo_scope, http2=True, http=http_impl, root_path="/api") as server,
        h2_client() as client,
    ):
        response = client.post(
            server.url + "/a%20b?x=1", content=b"ping", headers={"x-test": "1", "cookie": "a=1; b=2"}
        )
        assert response.http_version == "HTTP/2"
        data = response.json()
        assert data["http_version"] == "2" and data["method"] == "POST" and data["scheme"] == "http"
        assert (
            data["path"] == "/api/a b" and data["raw_path"] == "/api/a%20b" and data["query_string"] == "x=1"
        )
        assert data["root_path"] == "/api" and data["body"] == "ping"
        assert data["client"][0] == "127.0.0.1" and data["server"] == ["127.0.0.1", server.port]
        headers = dict(data["headers"])
        assert headers["host"] == f"127.0.0.1:{server.port}" and headers["x-test"] == "1"
        assert data["headers"][0][0] == "host"  # :authority, where HTTP/1.1 has Host
        assert [value for name, value in data["headers"] if name == "cookie"] == ["a=1; b=2"]  # crumbs joined
        assert response.headers["server"] == "fulmen" and "date" in response.headers

        # The same port still serves HTTP/1.1, one request or a keep-alive series, on either parser.
        http11 = httpx.post(server.url + "/plain", content=b"x", timeout=5)
        assert http11.http_version == "HTTP/1.1" and http11.json()["http_version"] == "1.1"
        with server.connect() as sock:
            for _ in range(2):
                sock.sendall(b"GET /k HTTP/1.1\r\nHost: x\r\n\r\n")
                status, _, body = read_response(sock)
                assert status == 200 and json.loads(body)["path"] == "/api/k"
            # A request that starts like the preface ("P") but is not one.
            sock.sendall(b"P")
            time.sleep(0.05)
            sock.sendall(b"OST /p HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nok")
            status, _, body = read_response(sock)
            assert status == 200 and json.loads(body)["body"] == "ok"


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_preface_in_pieces(loop: str) -> None:
    with run_server(apps.hello, http2=True, loop=loop) as server:
        raw = RawH2.__new__(RawH2)
        raw.sock = server.connect()
        raw.conn = h2.connection.H2Connection(
            h2.config.H2Configuration(client_side=True, header_encoding=None)
        )
        raw.conn.initiate_connection()
        raw.events, raw.closed = [], False
        data = raw.conn.data_to_send()
        for piece in (data[:1], data[1:10], data[10:]):
            raw.sock.sendall(piece)
            time.sleep(0.02)
        headers, body = raw.response(raw.request("/"))
        assert headers[b":status"] == b"200" and body == b"Hello, world!"
        raw.close()


def test_tls_alpn_offers_h2_and_http11(tmp_path: Any) -> None:
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    certfile, keyfile = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert.cert_chain_pems[0].write_to_path(str(certfile))
    cert.private_key_pem.write_to_path(str(keyfile))
    context = ssl.create_default_context()
    ca.configure_trust(context)
    options = {"http2": True, "ssl_certfile": str(certfile), "ssl_keyfile": str(keyfile)}
    with run_server(echo_scope, **options) as server:
        url = f"https://127.0.0.1:{server.port}/tls"
        with httpx.Client(http2=True, verify=context, timeout=5) as client:
            responses = [client.get(url) for _ in range(3)]
        assert all(r.http_version == "HTTP/2" and r.json()["scheme"] == "https" for r in responses)
        http11 = httpx.get(url, verify=context, timeout=5)  # no ALPN h2 offered: HTTP/1.1
        assert http11.http_version == "HTTP/1.1" and http11.json()["http_version"] == "1.1"


def test_http2_is_off_by_default_and_costs_nothing_then() -> None:
    config = Config(apps.hello, log_config=None)
    assert config.http2 is False
    config.load()
    loop = asyncio.new_event_loop()
    try:
        protocol = config.http_protocol_class(config=config, server_state=_State(), app_state={}, _loop=loop)  # type: ignore[call-arg]
    finally:
        loop.close()
    assert "data_received" not in vars(protocol)  # the class's own method: no per-connection check
    with run_server(apps.hello) as server, server.connect() as sock:
        sock.sendall(PREFACE)
        status, _, _ = read_response(sock)
        assert status == 400  # the preface is not HTTP/1.1


class _State:
    def __init__(self) -> None:
        self.connections: set[Any] = set()
        self.tasks: set[Any] = set()
        self.default_headers: list[tuple[bytes, bytes]] = []


def test_without_hpack_installed_exits_3(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "hpack", None)
    config = Config(apps.hello, http2=True, log_config=None)
    with pytest.raises(SystemExit) as exc_info:
        config.load()
    assert exc_info.value.code == 3


# -- streams and flow control


def test_many_concurrent_streams_on_one_connection() -> None:
    active = 0
    peak = 0

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        nonlocal active, peak
        active += 1
        peak = max(peak, active)
        await asyncio.sleep(0.2)
        active -= 1
        body = scope["path"].encode()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": body})

    async def main(url: str) -> list[httpx.Response]:
        async with httpx.AsyncClient(http1=False, http2=True, timeout=10) as client:
            return await asyncio.gather(*(client.get(f"{url}/{i}") for i in range(60)))

    with run_server(app, http2=True) as server:
        started = time.monotonic()
        responses = asyncio.run(main(server.url))
        elapsed = time.monotonic() - started
    assert [r.text for r in responses] == [f"/{i}" for i in range(60)]
    assert peak == 60 and elapsed < 3  # concurrent, not one after the other
    assert server.server.server_state.total_requests == 60


def test_large_upload_and_download() -> None:
    big = bytes(range(256)) * 20_000  # 5 MB

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["method"] == "POST":
            body = await apps.read_body(receive)
            payload = b"%d %d" % (len(body), body == big)
        else:
            payload = big
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": payload})

    with run_server(app, http2=True) as server, h2_client() as client:
        assert client.post(server.url, content=big).text == f"{len(big)} 1"
        download = client.get(server.url)
        assert download.http_version == "HTTP/2" and download.content == big


def test_request_data_is_acknowledged_only_as_the_app_reads_it() -> None:
    release = threading.Event()
    received: list[int] = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        while not release.is_set():
            await asyncio.sleep(0.01)
        received.append(len(await apps.read_body(receive)))
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"done"})

    with run_server(app, http2=True) as server:
        client = RawH2(server.port)
        client.read_until(lambda events: bool(client.of(h2.events.RemoteSettingsChanged)))
        stream_id = client.request("/", "POST", end=False)
        payload = b"x" * 1_000_000
        sent = 0
        deadline = time.monotonic() + 2
        while sent < len(payload) and time.monotonic() < deadline:
            window = min(
                client.conn.local_flow_control_window(stream_id), client.conn.max_outbound_frame_size
            )
            if window <= 0:
                client.read_until(lambda events: False, timeout=0.3)
                if client.conn.local_flow_control_window(stream_id) <= 0:
                    break  # no WINDOW_UPDATE came
                continue
            client.conn.send_data(stream_id, payload[sent : sent + window])
            sent += window
            client.flush()
        # The server buffers at most its stream window while the application reads nothing.
        assert 0 < sent <= 256 * 1024
        release.set()
        while sent < len(payload) and time.monotonic() < deadline + 5:
            window = min(
                client.conn.local_flow_control_window(stream_id), client.conn.max_outbound_frame_size
            )
            if window <= 0:
                client.read_until(lambda events: False, timeout=0.05)
                continue
            client.conn.send_data(stream_id, payload[sent : sent + window])
            sent += window
            client.flush()
        client.conn.end_stream(stream_id)
        client.flush()
        headers, body = client.response(stream_id)
        assert headers[b":status"] == b"200" and body == b"done" and received == [len(payload)]
        client.close()


def test_response_waits_for_the_client_window() -> None:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await send(
            {"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"200000")]}
        )
        for _ in range(4):
            await send({"type": "http.response.body", "body": b"y" * 50_000, "more_body": True})
        await send({"type": "http.response.body", "body": b""})

    with run_server(app, http2=True) as server:
        client = RawH2(server.port, settings={SettingCodes.INITIAL_WINDOW_SIZE: 1000})
        stream_id = client.request("/")
        client.read_until(lambda events: False, timeout=0.3)  # nothing acknowledged: the window stays shut
        early = sum(len(e.data) for e in client.of(h2.events.DataReceived, stream_id))
        assert early <= 1000
        client.conn.increment_flow_control_window(200_000, stream_id=stream_id)
        client.flush()
        headers, body = client.response(stream_id)
        assert headers[b":status"] == b"200" and len(body) == 200_000
        client.close()


def test_streaming_response_arrives_in_pieces() -> None:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await send(
            {"type": "http.response.start", "status": 200, "headers": [(b"transfer-encoding", b"chunked")]}
        )
        for i in range(5):
            await send({"type": "http.response.body", "body": b"part%d;" % i, "more_body": True})
            await asyncio.sleep(0.05)
        await send({"type": "http.response.body", "body": b""})

    with run_server(app, http2=True) as server, h2_client() as client:
        with client.stream("GET", server.url) as response:
            assert "transfer-encoding" not in response.headers  # an HTTP/1.1 header, dropped
            pieces = list(response.iter_raw())
    assert b"".join(pieces) == b"part0;part1;part2;part3;part4;" and len(pieces) >= 3


def test_head_204_and_304_have_no_body() -> None:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        status = int(scope["path"][1:] or 200)
        await send({"type": "http.response.start", "status": status, "headers": [(b"content-length", b"5")]})
        await send({"type": "http.response.body", "body": b"hello" if status == 200 else b""})

    with run_server(app, http2=True) as server, h2_client() as client:
        head = client.head(server.url + "/")
        assert head.status_code == 200 and head.headers["content-length"] == "5" and head.content == b""
        assert client.get(server.url + "/").content == b"hello"
        for status in (204, 304):
            response = client.get(f"{server.url}/{status}")
            assert response.status_code == status and response.content == b""


def test_expect_100_continue_and_access_log(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="fulmen.access")
    with run_server(apps.echo, http2=True) as server:
        client = RawH2(server.port)
        stream_id = client.request("/up?q=1", "POST", [(b"expect", b"100-continue")], end=False)
        client.read_until(lambda events: bool(client.of(h2.events.InformationalResponseReceived)))
        client.conn.send_data(stream_id, b"body", end_stream=True)
        client.flush()
        headers, body = client.response(stream_id)
        assert body == b"body"
        client.close()
    assert any('"POST /up?q=1 HTTP/2" 200' in record.getMessage() for record in caplog.records)


# -- errors and limits


def test_app_exception_before_and_after_the_response_started(caplog: pytest.LogCaptureFixture) -> None:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["path"] == "/after":
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b"partial", "more_body": True})
        elif scope["path"] == "/ok":
            await apps.hello(scope, receive, send)
            return
        raise RuntimeError("boom")

    with run_server(app, http2=True) as server:
        client = RawH2(server.port)
        before = client.request("/before")
        headers, body = client.response(before)
        assert headers[b":status"] == b"500" and body == b"Internal Server Error"
        after = client.request("/after")
        client.response(after)
        resets = client.of(h2.events.StreamReset, after)
        assert resets and resets[0].error_code == ErrorCodes.INTERNAL_ERROR
        # The connection goes on serving other streams.
        headers, body = client.response(client.request("/ok"))
        assert headers[b":status"] == b"200" and body == b"Hello, world!"
        client.close()
    assert sum("Exception in ASGI application" in r.getMessage() for r in caplog.records) == 2


def test_client_reset_is_a_disconnect() -> None:
    seen: list[str] = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        message = await receive()
        while message.get("more_body"):
            message = await receive()
        seen.append(message["type"])

    with run_server(app, http2=True) as server:
        client = RawH2(server.port)
        stream_id = client.request("/", "POST", end=False)
        client.conn.reset_stream(stream_id, ErrorCodes.CANCEL)
        client.flush()
        deadline = time.monotonic() + 5
        while not seen and time.monotonic() < deadline:
            time.sleep(0.01)
        assert seen == ["http.disconnect"]
        client.close()


def test_limit_concurrency_answers_503() -> None:
    release = threading.Event()

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        while not release.is_set():
            await asyncio.sleep(0.01)
        await apps.hello(scope, receive, send)

    with run_server(app, http2=True, limit_concurrency=1) as server:
        client = RawH2(server.port)
        first = client.request("/1")
        time.sleep(0.1)
        headers, body = client.response(client.request("/2"))
        assert headers[b":status"] == b"503" and body == b"Service Unavailable"
        release.set()
        headers, _ = client.response(first)
        assert headers[b":status"] == b"200"
        client.close()


def test_header_limits_answer_431_and_the_connection_goes_on() -> None:
    with run_server(
        apps.hello, http2=True, h11_max_incomplete_event_size=4096, limit_request_headers=10
    ) as server:
        client = RawH2(server.port)
        headers, _ = client.response(client.request("/", headers=[(b"x-big", b"a" * 5000)]))
        assert headers[b":status"] == b"431"
        many = [(b"x-%d" % i, b"v") for i in range(11)]
        headers, _ = client.response(client.request("/", headers=many))
        assert headers[b":status"] == b"431"
        headers, body = client.response(client.request("/"))
        assert headers[b":status"] == b"200" and body == b"Hello, world!"
        client.close()


def test_header_block_past_twice_the_limit_closes_the_connection() -> None:
    with run_server(apps.hello, http2=True, h11_max_incomplete_event_size=4096) as server:
        client = RawH2(server.port)
        client.request("/", headers=[(b"x-big", b"b" * 70_000)])  # in CONTINUATION frames
        client.read_until(lambda events: client.goaway() is not None)
        assert client.goaway() is not None and client.goaway().error_code == ErrorCodes.ENHANCE_YOUR_CALM
        client.close()


def _raw_connection(port: int) -> tuple[socket.socket, RawH2]:
    """A socket that has sent the preface and SETTINGS, plus an h2 client to read the answers with."""
    client = RawH2(port)
    client.read_until(lambda events: bool(client.of(h2.events.RemoteSettingsChanged)))
    return client.sock, client


def _headers_frame(headers: list[tuple[bytes, bytes]]) -> bytes:
    block = Encoder().encode([(b":method", b"GET"), (b":scheme", b"http"), (b":authority", b"t"), *headers])
    return HeadersFrame(1, block, flags=["END_HEADERS", "END_STREAM"]).serialize()  # type: ignore[no-any-return]


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        (b"\x00\x00\x01\x00\x00\x00\x00\x00\x00x", ErrorCodes.PROTOCOL_ERROR),  # DATA on stream 0
        (
            SettingsFrame(0, settings={SettingCodes.INITIAL_WINDOW_SIZE: 2**31}).serialize(),
            ErrorCodes.FLOW_CONTROL_ERROR,
        ),
        (b"\x00\x80\x00\x00\x00\x00\x00\x00\x01" + b"x" * 32768, ErrorCodes.FRAME_SIZE_ERROR),  # over 16 KiB
        (
            HeadersFrame(1, b"\xff\xff\xff\xff", flags=["END_HEADERS"]).serialize(),
            ErrorCodes.COMPRESSION_ERROR,
        ),
    ],
    ids=["data-on-stream-0", "window-too-large", "frame-too-large", "bad-hpack"],
)
def test_malformed_input_closes_the_connection_with_goaway(frame: bytes, code: ErrorCodes) -> None:
    with run_server(apps.hello, http2=True) as server:
        sock, client = _raw_connection(server.port)
        sock.sendall(frame)
        client.read_until(lambda events: client.goaway() is not None)
        goaway = client.goaway()
        assert goaway is not None and goaway.error_code == code
        client.read_until(lambda events: False, timeout=2)
        assert client.closed
        client.close()
        with h2_client() as other:  # the server keeps serving
            assert other.get(server.url).text == "Hello, world!"


@pytest.mark.parametrize(
    "headers",
    [
        [],  # no :path
        [(b":path", b"/"), (b"connection", b"keep-alive")],
        [(b":path", b"/"), (b"X-Upper", b"1")],
    ],
    ids=["missing-path", "connection-header", "upper-case-name"],
)
def test_malformed_request_resets_its_stream(headers: list[tuple[bytes, bytes]]) -> None:
    """RFC 9113 section 8.1.1: a malformed request is a stream error; the connection goes on."""
    with run_server(apps.hello, http2=True) as server, server.connect() as sock:
        sock.sendall(PREFACE + SettingsFrame(0).serialize() + _headers_frame(headers))
        frames, _ = read_frames(sock, timeout=1)
        resets = [f for f in frames if isinstance(f, RstStreamFrame)]
        assert [(f.stream_id, f.error_code) for f in resets] == [(1, ErrorCodes.PROTOCOL_ERROR)]
        assert not any(isinstance(f, GoAwayFrame) for f in frames)


def test_continuation_without_headers_is_a_protocol_error() -> None:
    with run_server(apps.hello, http2=True) as server, server.connect() as sock:
        # SETTINGS, then a CONTINUATION frame on its own.
        sock.sendall(PREFACE + SettingsFrame(0).serialize() + b"\x00\x00\x00\x09\x00\x00\x00\x00\x01")
        frames, closed = read_frames(sock, timeout=2)
        goaways = [f for f in frames if isinstance(f, GoAwayFrame)]
        assert closed and [f.error_code for f in goaways] == [ErrorCodes.PROTOCOL_ERROR]


# -- timeouts and shutdown


def test_idle_connection_gets_goaway_after_keep_alive_timeout() -> None:
    with run_server(apps.hello, http2=True, timeout_keep_alive=0.3) as server:
        client = RawH2(server.port)
        headers, _ = client.response(client.request("/"))
        started = time.monotonic()
        client.read_until(lambda events: False, timeout=3)
        assert client.closed and 0.2 < time.monotonic() - started < 2
        assert client.goaway() is not None and client.goaway().error_code == ErrorCodes.NO_ERROR
        client.close()


def test_graceful_shutdown_finishes_streams_in_flight() -> None:
    """RFC 9113 section 6.8: GOAWAY with the largest stream id, a PING, and once it is answered the
    GOAWAY naming the last stream served; a stream the client opened in between is served too."""

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await asyncio.sleep(0.3)
        await apps.hello(scope, receive, send)

    def request(stream_id: int) -> bytes:
        block = Encoder().encode(
            [(b":method", b"GET"), (b":scheme", b"http"), (b":authority", b"t"), (b":path", b"/")]
        )
        return HeadersFrame(stream_id, block, flags=["END_HEADERS", "END_STREAM"]).serialize()  # type: ignore[no-any-return]

    with run_server(app, http2=True) as server, server.connect() as sock:
        sock.sendall(PREFACE + SettingsFrame(0).serialize() + request(1))
        time.sleep(0.1)
        server.server.should_exit = True
        frames = frames_until(
            sock, lambda fs: any(isinstance(f, PingFrame) and "ACK" not in f.flags for f in fs)
        )
        first = [f for f in frames if isinstance(f, GoAwayFrame)]
        assert [(f.last_stream_id, f.error_code) for f in first] == [(2**31 - 1, 0)]
        ping = next(f for f in frames if isinstance(f, PingFrame) and "ACK" not in f.flags)
        sock.sendall(request(3) + PingFrame(0, ping.opaque_data, flags=["ACK"]).serialize())
        frames, closed = read_frames(sock, timeout=5)
    kinds = [type(frame) for frame in frames]
    assert closed and kinds.count(GoAwayFrame) == 1
    goaway = frames[kinds.index(GoAwayFrame)]
    assert goaway.last_stream_id == 3 and goaway.error_code == 0
    for stream_id in (1, 3):
        data = [f for f in frames if isinstance(f, DataFrame) and f.stream_id == stream_id]
        assert b"".join(f.data for f in data) == b"Hello, world!" and "END_STREAM" in data[-1].flags


def test_graceful_shutdown_is_bounded() -> None:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await asyncio.sleep(60)

    with run_server(app, http2=True, timeout_graceful_shutdown=0.5) as server:
        client = RawH2(server.port)
        client.request("/")
        time.sleep(0.1)
        started = time.monotonic()
        server.stop(timeout=5)
        assert time.monotonic() - started < 3
        _, closed = read_frames(client.sock, timeout=2)
        assert closed
        client.close()


def test_graceful_shutdown_lets_a_large_response_finish() -> None:
    """A 1 MiB response in flight when the server stops arrives whole before the connection closes."""
    size = 1 << 20

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        for _ in range(16):
            await send({"type": "http.response.body", "body": b"z" * (size // 16), "more_body": True})
            await asyncio.sleep(0.02)
        await send({"type": "http.response.body", "body": b""})

    with run_server(app, http2=True, timeout_graceful_shutdown=10) as server:
        sock = raw_connect(server.port, {SettingCodes.INITIAL_WINDOW_SIZE: 2**31 - 1})
        sock.sendall(WindowUpdateFrame(0, window_increment=2**31 - 65536).serialize() + request_frame(1))
        reader = FrameReader(sock)
        reader.until(lambda fs: any(isinstance(f, DataFrame) for f in fs))
        server.server.should_exit = True
        reader.until(lambda fs: any(isinstance(f, PingFrame) and "ACK" not in f.flags for f in fs))
        ping = next(f for f in reader.frames if isinstance(f, PingFrame) and "ACK" not in f.flags)
        sock.sendall(PingFrame(0, ping.opaque_data, flags=["ACK"]).serialize())
        frames = reader.within(5)
        sock.close()
    assert reader.closed
    assert sum(len(f.data) for f in frames if isinstance(f, DataFrame)) == size
    assert "END_STREAM" in [f for f in frames if isinstance(f, DataFrame)][-1].flags
    assert [f.last_stream_id for f in frames if isinstance(f, GoAwayFrame)] == [2**31 - 1, 1]


def test_limit_max_requests_refuses_the_streams_beyond() -> None:
    with run_server(apps.hello, http2=True, limit_max_requests=3) as server:
        sock = raw_connect(server.port)
        sock.sendall(b"".join(request_frame(stream_id) for stream_id in (1, 3, 5, 7, 9)))
        reader = FrameReader(sock)
        frames = reader.within(3)
        sock.close()
        server.thread.join(5)
        assert not server.thread.is_alive()
    served = {f.stream_id for f in frames if isinstance(f, DataFrame) and "END_STREAM" in f.flags}
    refused = {f.stream_id for f in frames if isinstance(f, RstStreamFrame) and f.error_code == 7}
    assert served == {1, 3, 5} and refused == {7, 9} and reader.closed
    assert [f.last_stream_id for f in frames if isinstance(f, GoAwayFrame)] == [9]


# -- Upgrade: h2c


def _upgrade_request(settings: bytes = b"", extra: bytes = b"") -> bytes:
    encoded = base64.urlsafe_b64encode(settings).rstrip(b"=")
    return (
        b"GET /up?x=1 HTTP/1.1\r\nHost: t\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\n"
        b"HTTP2-Settings: " + encoded + b"\r\n" + extra + b"\r\n"
    )


@pytest.mark.parametrize("http_impl", HTTP_IMPLEMENTATIONS)
def test_h2c_upgrade_serves_the_request_as_stream_1(http_impl: str) -> None:
    with run_server(echo_scope, http2=True, http=http_impl) as server, server.connect() as sock:
        settings = SettingsFrame(0, settings={SettingCodes.INITIAL_WINDOW_SIZE: 100_000}).serialize()[9:]
        sock.sendall(_upgrade_request(settings) + PREFACE + SettingsFrame(0).serialize())
        data = b""
        while b"\r\n\r\n" not in data:
            data += sock.recv(65536)
        head, _, rest = data.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 101 ") and b"upgrade: h2c" in head.lower()
        reader = FrameReader(sock)
        reader.frames, reader.rest = parse_frames(rest)
        frames = reader.until(
            lambda fs: any(isinstance(f, DataFrame) and "END_STREAM" in f.flags for f in fs)
        )
        body = json.loads(b"".join(f.data for f in frames if isinstance(f, DataFrame) and f.stream_id == 1))
        assert body["http_version"] == "2" and body["path"] == "/up" and body["query_string"] == "x=1"
        # The connection goes on in HTTP/2.
        sock.sendall(request_frame(3, path=b"/next"))
        frames = reader.until(lambda fs: any(isinstance(f, DataFrame) and f.stream_id == 3 for f in fs))
        assert not any(isinstance(f, GoAwayFrame) for f in frames)


def test_h2c_upgrade_with_curl() -> None:
    curl = require_command("curl", "curl")
    with run_server(echo_scope, http2=True) as server:
        result = subprocess.run(
            [curl, "-sS", "--http2", "-o", "-", "-w", "\n%{http_version}", server.url + "/c"],
            capture_output=True,
            timeout=10,
        )
    body, _, version = result.stdout.rpartition(b"\n")
    assert result.returncode == 0 and version == b"2" and json.loads(body)["http_version"] == "2"


@pytest.mark.parametrize(
    "request_bytes",
    [
        _upgrade_request(extra=b"Content-Length: 2\r\n") + b"ok",  # a body: served in HTTP/1.1
        _upgrade_request().replace(b"HTTP2-Settings: \r\n", b""),  # no HTTP2-Settings
        _upgrade_request(b"12345"),  # settings not a multiple of 6 bytes
    ],
    ids=["with-body", "no-settings", "bad-settings"],
)
def test_h2c_upgrade_not_possible_is_served_in_http11(request_bytes: bytes) -> None:
    with run_server(echo_scope, http2=True) as server, server.connect() as sock:
        sock.sendall(request_bytes)
        status, _, body = read_response(sock)
    assert status == 200 and json.loads(body)["http_version"] == "1.1"


def test_h2c_upgrade_needs_http2() -> None:
    with run_server(echo_scope) as server, server.connect() as sock:
        sock.sendall(_upgrade_request(b""))
        status, _, body = read_response(sock)
    assert status == 200 and json.loads(body)["http_version"] == "1.1"


def test_forwarding_headers_from_a_trusted_proxy() -> None:
    with run_server(echo_scope, http2=True, forwarded_allow_ips="127.0.0.1") as server, h2_client() as client:
        forwarded = client.get(
            server.url, headers={"x-forwarded-for": "203.0.113.7", "x-forwarded-proto": "https"}
        )
        plain = client.get(server.url)
    assert forwarded.json()["client"][0] == "203.0.113.7" and forwarded.json()["scheme"] == "https"
    assert plain.json()["client"][0] == "127.0.0.1" and plain.json()["scheme"] == "http"
