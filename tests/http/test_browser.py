"""A real browser against fulmen: headless Chromium loads a page over TLS with ``--http2``, and the
page's own script reports what the browser saw (the protocol of the page, a 20 MiB download over
HTTP/2, a WebSocket round trip); the test reads that verdict.

Chromium is driven through chromedriver's W3C HTTP API with urllib (no Python dependency); both
come from Debian (``chromium``, ``chromium-driver``), installed on demand. Every wait is bounded.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import free_port, run_server, stop_process
from tests.system_tools import require_command

trustme = pytest.importorskip("trustme")

DOWNLOAD_SIZE = 20 * 1024 * 1024
CHUNK = b"x" * (1024 * 1024)
#: How long the page may take for all its checks; the test waits a little longer for its verdict.
PAGE_TIMEOUT_MS = 40_000
CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",  # Chromium refuses to run as root with its sandbox
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--ignore-certificate-errors",
]

PAGE = f"""<!doctype html>
<html><head><title>fulmen</title></head>
<body><pre id="verdict">{{}}</pre>
<script>
const verdict = {{}};
function report(key, value) {{
  verdict[key] = value;
  document.getElementById("verdict").textContent = JSON.stringify(verdict);
}}
function bounded(promise) {{
  const late = new Promise((resolve) => setTimeout(() => resolve("timeout"), {PAGE_TIMEOUT_MS}));
  return Promise.race([promise, late]).catch((error) => "error: " + error);
}}
report("protocol", performance.getEntries()[0].nextHopProtocol);
const download = bounded(fetch("/download").then((response) => response.arrayBuffer())
  .then((body) => body.byteLength));
const echo = bounded(new Promise((resolve, reject) => {{
  const socket = new WebSocket("wss://" + location.host + "/ws");
  socket.onopen = () => socket.send("ping");
  socket.onmessage = (event) => {{ resolve(event.data); socket.close(); }};
  socket.onerror = () => reject("WebSocket error");
}}));
echo.then((value) => report("websocket", value));
download.then((value) => report("download", value));
Promise.all([echo, download]).then(() => report("done", true));
</script></body></html>
""".encode()


#: The ``http_version`` of each WebSocket the page opened: Chromium opens its ``wss://`` on the
#: page's HTTP/2 connection (RFC 8441) when the server allows it.
WEBSOCKET_VERSIONS: list[str] = []


async def browser_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """The page, its 20 MiB download, and a WebSocket that answers "echo: <message>"."""
    if scope["type"] == "websocket":
        WEBSOCKET_VERSIONS.append(scope["http_version"])
        await receive()  # websocket.connect
        await send({"type": "websocket.accept"})
        message = await receive()
        if message["type"] == "websocket.receive":
            await send({"type": "websocket.send", "text": "echo: " + str(message.get("text"))})
            await receive()  # the close
        return
    if scope["type"] != "http":
        return
    if scope["path"] == "/download":
        headers = [(b"content-type", b"application/octet-stream"), (b"content-length", b"%d" % DOWNLOAD_SIZE)]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        for index in range(DOWNLOAD_SIZE // len(CHUNK)):
            more = index < DOWNLOAD_SIZE // len(CHUNK) - 1
            await send({"type": "http.response.body", "body": CHUNK, "more_body": more})
        return
    status, body = (200, PAGE) if scope["path"] == "/" else (404, b"")
    headers = [(b"content-type", b"text/html; charset=utf-8"), (b"content-length", b"%d" % len(body))]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class WebDriver:
    """The few W3C WebDriver calls the test makes, over urllib."""

    def __init__(self, port: int) -> None:
        self.base = f"http://127.0.0.1:{port}"
        self.session = ""

    def call(self, method: str, path: str, payload: Any = None, timeout: float = 30.0) -> Any:
        data = None if payload is None else json.dumps(payload).encode()
        request = urllib.request.Request(self.base + path, data=data, method=method)
        request.add_header("Content-Type", "application/json")
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return json.loads(response.read())["value"]

    def wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError, ValueError):
                if self.call("GET", "/status", timeout=2)["ready"]:
                    return
            time.sleep(0.1)
        raise TimeoutError("chromedriver did not start in time")

    def start_session(self, chromium: str, user_data_dir: Path) -> None:
        options = {"binary": chromium, "args": [*CHROMIUM_ARGS, f"--user-data-dir={user_data_dir}"]}
        capabilities = {"browserName": "chrome", "acceptInsecureCerts": True, "goog:chromeOptions": options}
        self.session = self.call("POST", "/session", {"capabilities": {"alwaysMatch": capabilities}}, 60)[
            "sessionId"
        ]

    def get(self, url: str) -> None:
        self.call("POST", f"/session/{self.session}/url", {"url": url}, 60)

    def script(self, source: str) -> Any:
        return self.call("POST", f"/session/{self.session}/execute/sync", {"script": source, "args": []})

    def quit(self) -> None:
        if self.session:
            with contextlib.suppress(OSError, ValueError):
                self.call("DELETE", f"/session/{self.session}", timeout=10)


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebDriver]:
    chromium = require_command("chromium", "chromium")
    chromedriver = require_command("chromedriver", "chromium-driver")
    port = free_port()
    process = subprocess.Popen(
        [chromedriver, f"--port={port}"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    driver = WebDriver(port)
    try:
        driver.wait_ready(20)
        driver.start_session(chromium, tmp_path_factory.mktemp("chromium-profile"))
        yield driver
    finally:
        driver.quit()
        stop_process(process)


@pytest.fixture(scope="module")
def verdict(browser: WebDriver, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """What the page reported, once it is done (or its own time is up)."""
    directory = tmp_path_factory.mktemp("tls")
    issued = trustme.CA().issue_cert("127.0.0.1")
    certfile, keyfile = directory / "cert.pem", directory / "key.pem"
    issued.cert_chain_pems[0].write_to_path(str(certfile))
    issued.private_key_pem.write_to_path(str(keyfile))
    options = {"ssl_certfile": str(certfile), "ssl_keyfile": str(keyfile), "http2": True}
    with run_server(browser_app, **options) as server:
        browser.get(f"https://127.0.0.1:{server.port}/")
        deadline = time.monotonic() + PAGE_TIMEOUT_MS / 1000 + 20
        result: dict[str, Any] = {}
        while time.monotonic() < deadline and not result.get("done"):
            result = json.loads(browser.script("return document.getElementById('verdict').textContent"))
            time.sleep(0.2)
        # Leave the page before the server stops: a download still running on a loaded machine would
        # otherwise hold the graceful shutdown open past the fixture's bound.
        browser.get("about:blank")
        return result


def test_the_page_comes_over_http2(verdict: dict[str, Any]) -> None:
    assert verdict.get("protocol") == "h2", verdict


def test_a_websocket_from_the_page(verdict: dict[str, Any]) -> None:
    assert verdict.get("websocket") == "echo: ping", verdict


def test_the_websocket_runs_on_the_http2_connection(verdict: dict[str, Any]) -> None:
    assert verdict.get("websocket") == "echo: ping" and WEBSOCKET_VERSIONS == ["2"], verdict


def test_a_20_mib_download_over_http2(verdict: dict[str, Any]) -> None:
    assert verdict.get("download") == DOWNLOAD_SIZE, verdict
