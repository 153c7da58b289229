"""The per-request cost of fulmen's HTTP/1.1 hot path, without sockets or a load generator.

Feeds whole requests to 64 protocol instances on an in-memory transport and runs the event loop
between batches, so what is measured is the server's own work per request: parsing, scope,
application task, response head and body, keep-alive bookkeeping; no system calls. It is the tool
behind the profile in docs/performance.md, not a comparison with other servers (run.py does that).

Time per request (best of several rounds); ``--server uvicorn`` runs uvicorn's protocols in the
same harness::

    .venv/bin/python benchmarks/hotpath.py plaintext
    .venv/bin/python benchmarks/hotpath.py headers --http h11 --loop asyncio

Instructions per request, repeatable to a few in 70,000 whatever else the machine does
(valgrind's callgrind counts instructions; two runs of different lengths cancel start-up)::

    .venv/bin/python benchmarks/hotpath.py plaintext --instructions

The same over HTTP/2 in cleartext (``--http2``: each connection gets the preface, then one HEADERS
frame per request, its header block the one h2load repeats once the HPACK table holds its fields)::

    .venv/bin/python benchmarks/hotpath.py plaintext --http2 --instructions
    .venv/bin/python benchmarks/hotpath.py plaintext --http2 --streams 16 --instructions   # as h2load -m16

A profile of where the time goes (py-spy, if installed)::

    py-spy record -r 1000 -o profile.svg -- .venv/bin/python benchmarks/hotpath.py plaintext -n 300000
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import logging
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import apps

CONNECTIONS = 64

_BROWSER_HEADERS = (
    b"User-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0\r\n"
    b"Accept: text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8\r\n"
    b"Accept-Language: en-GB,en;q=0.7,fr;q=0.3\r\n"
    b"Accept-Encoding: gzip, deflate, br, zstd\r\n"
    b"Referer: https://www.example.org/articles/2024/benchmarks?page=2\r\n"
    b"Connection: keep-alive\r\n"
    b"Cookie: session=8f2b6c1d9e4a7f30; theme=dark; consent=1; ab_bucket=17\r\n"
    b"Upgrade-Insecure-Requests: 1\r\n"
    b"Sec-Fetch-Dest: document\r\n"
    b"Sec-Fetch-Mode: navigate\r\n"
    b"Sec-Fetch-Site: same-origin\r\n"
    b"Sec-Fetch-User: ?1\r\n"
    b"Priority: u=0, i\r\n"
    b"Cache-Control: max-age=0\r\n"
    b"DNT: 1\r\n"
    b"Pragma: no-cache\r\n"
    b'If-None-Match: "5d8c72a5edda8"\r\n'
    b"X-Requested-With: XMLHttpRequest\r\n"
    b"X-Forwarded-For: 203.0.113.7\r\n"
)
_HOST = b"Host: 127.0.0.1:8080\r\n"
#: The same requests as the wrk workloads of run.py (benchmarks/wrk/*.lua).
WORKLOADS: dict[str, tuple[Any, bytes]] = {
    "plaintext": (apps.plaintext, b"GET / HTTP/1.1\r\n" + _HOST + b"\r\n"),
    "json": (apps.json_app, b"GET / HTTP/1.1\r\n" + _HOST + b"\r\n"),
    "headers": (apps.headers, b"GET / HTTP/1.1\r\n" + _HOST + _BROWSER_HEADERS + b"\r\n"),
    "echo": (
        apps.echo,
        b"POST / HTTP/1.1\r\n" + _HOST + b"Content-Length: 16384\r\n\r\n" + b"x" * 16384,
    ),
    "stream": (apps.stream, b"GET / HTTP/1.1\r\n" + _HOST + b"\r\n"),
    # Imported only when measured, so that the other workloads run without FastAPI loaded.
    "fastapi": ("benchmarks.fastapi_app", b"GET / HTTP/1.1\r\n" + _HOST + b"\r\n"),
}


class MemoryTransport(asyncio.Transport):
    """Takes what the server writes and counts it: no socket, no system call."""

    def __init__(self) -> None:
        super().__init__()
        self.writes = 0
        self.closing = False
        self.protocol: Any = None

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"sockname": ("127.0.0.1", 8080), "peername": ("127.0.0.1", 50000)}.get(name, default)

    def write(self, data: Any) -> None:
        self.writes += 1

    def is_closing(self) -> bool:
        return self.closing

    def close(self) -> None:
        self.closing = True

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        self.protocol = protocol  # the HTTP/2 hand-over

    def get_write_buffer_size(self) -> int:
        return 0


def measure(
    server: str,
    workload: str,
    http: str,
    loop_name: str,
    requests: int,
    rounds: int,
    access_log: bool = False,
    metrics: bool = False,
    http2: bool = False,
    streams: int = 1,
) -> float:
    """Microseconds per request, the best of ``rounds`` runs of ``requests`` requests.

    With ``access_log``, each server writes its access log as set up by default, to ``/dev/null``;
    ``metrics`` counts as ``--metrics-bind`` makes fulmen count.
    """
    if server == "uvicorn":  # the same harness around uvicorn's protocols, for comparison
        from uvicorn.config import Config
        from uvicorn.server import ServerState
    else:
        from fulmen.config import Config  # type: ignore[assignment]
        from fulmen.server import ServerState  # type: ignore[assignment]

    app, request = WORKLOADS[workload]
    if isinstance(app, str):
        app = importlib.import_module(app).app
    level = "info" if access_log else "warning"
    options: dict[str, Any] = {"http2": True} if http2 else {}
    config = Config(
        app=app, http=http, loop=loop_name, access_log=access_log, log_level=level, lifespan="off", **options
    )
    config.load()
    if access_log:
        for name in ("fulmen.access", "uvicorn.access"):
            for handler in logging.getLogger(name).handlers:
                if isinstance(handler, logging.StreamHandler):
                    handler.setStream(open(os.devnull, "w"))
    loop = uvloop_or_asyncio(loop_name)
    asyncio.set_event_loop(loop)
    state = ServerState()
    state.default_headers = [(b"date", b"Fri, 27 Nov 2026 12:00:00 GMT"), (b"server", server.encode())]
    if metrics:
        from fulmen.metrics.recorder import WorkerMetrics

        state.metrics = WorkerMetrics()  # type: ignore[union-attr]

    async def drive() -> float:
        if access_log and server == "fulmen":  # as Server.startup() sets it up
            from fulmen.access_log import AccessLogBuffer

            state.access_buffer = AccessLogBuffer.refresh(None, loop)  # type: ignore[attr-defined]
        protocols = []
        for _ in range(CONNECTIONS):
            protocol = config.http_protocol_class(  # type: ignore[call-arg]
                config=config, server_state=state, app_state={}, _loop=loop
            )
            transport = MemoryTransport()
            protocol.connection_made(transport)
            protocols.append((protocol, transport))
        batches = max(1, requests // CONNECTIONS)
        if http2:
            return await drive_http2(protocols, request, requests, streams)
        best = float("inf")
        for _ in range(rounds):
            started = time.perf_counter()
            for _ in range(batches):
                for protocol, _transport in protocols:
                    protocol.data_received(request)
                await asyncio.sleep(0)  # the request tasks run
                await asyncio.sleep(0)  # the corked writes are flushed
            best = min(best, time.perf_counter() - started)
        answered = sum(transport.writes for _, transport in protocols)
        if answered < batches * CONNECTIONS * rounds:
            raise SystemExit(f"only {answered} writes for {batches * CONNECTIONS * rounds} requests")
        return best / (batches * CONNECTIONS) * 1e6

    try:
        return loop.run_until_complete(drive())
    finally:
        loop.close()


async def drive_http2(
    protocols: list[tuple[Any, MemoryTransport]], request: bytes, requests: int, streams: int
) -> float:
    """``drive`` over HTTP/2: the frames of every batch are made first, then fed as the HTTP/1.1
    requests are, ``streams`` requests per connection per loop turn (h2load's ``-m``); one round."""
    from hpack import Encoder

    from fulmen.http.h2_frames import PREFACE, settings_frame, window_update_frame

    batches = max(1, requests // (len(protocols) * streams))
    head = request.split(b"\r\n\r\n", 1)[0].split(b"\r\n")
    method, target, _ = head[0].split(b" ")
    fields = [
        (b":method", method),
        (b":scheme", b"http"),
        (b":authority", b"127.0.0.1:8080"),
        (b":path", target),
    ]
    fields += [
        (name.strip().lower(), value.strip())
        for name, _, value in (line.partition(b":") for line in head[1:])
    ]
    fields = [field for field in fields if field[0] not in (b"host", b"connection")]
    feeds = []
    for protocol, transport in protocols:
        protocol.data_received(PREFACE + settings_frame({}) + window_update_frame(0, 2**31 - 65536))
        encoder = Encoder()
        blocks = [encoder.encode(fields), encoder.encode(fields)]  # the second: table references only
        frames = []
        for index in range(batches * streams):
            block = blocks[min(index, 1)]
            frames.append(
                len(block).to_bytes(3, "big") + b"\x01\x05" + (2 * index + 1).to_bytes(4, "big") + block
            )
        feeds.append(
            (transport.protocol, [b"".join(frames[i : i + streams]) for i in range(0, len(frames), streams)])
        )
    await asyncio.sleep(0)
    started = time.perf_counter()
    for index in range(batches):
        for protocol, frames in feeds:
            protocol.data_received(frames[index])
        await asyncio.sleep(0)  # the request tasks run
        await asyncio.sleep(0)  # the frames are flushed
    elapsed = time.perf_counter() - started
    answered = feeds[0][0].server_state.completed_requests  # the server state all connections share
    total = batches * len(feeds) * streams
    if answered < total:
        raise SystemExit(f"only {answered} responses for {total} requests")
    return elapsed / total * 1e6


def uvloop_or_asyncio(name: str) -> asyncio.AbstractEventLoop:
    if name == "uvloop":
        import uvloop

        return uvloop.new_event_loop()
    return asyncio.new_event_loop()


def count_instructions(argv: list[str], workload: str) -> int:
    """Instructions per request under callgrind: the difference of a short and a long run."""
    if shutil.which("valgrind") is None:
        raise SystemExit("--instructions needs valgrind (Debian package valgrind)")
    counts = []
    for requests in (6400, 25600):
        command = ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", sys.executable]
        command += [__file__, *argv, "-n", str(requests), "--rounds", "1"]
        output = subprocess.run(command, capture_output=True, text=True, check=True).stderr
        match = re.search(r"Collected : (\d+)", output)
        if match is None:
            raise SystemExit(output[-2000:])
        counts.append(int(match.group(1)))
    return round((counts[1] - counts[0]) / (25600 - 6400))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("workload", choices=sorted(WORKLOADS))
    parser.add_argument("--server", default="fulmen", choices=["fulmen", "uvicorn"])
    parser.add_argument("--http", default="httptools", choices=["httptools", "h11"])
    parser.add_argument("--loop", default="uvloop", choices=["uvloop", "asyncio"])
    parser.add_argument("-n", "--requests", type=int, default=100_000, help="requests per round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--instructions", action="store_true", help="count instructions with callgrind")
    parser.add_argument("--access-log", action="store_true", help="access log on (written to /dev/null)")
    parser.add_argument("--metrics", action="store_true", help="count as --metrics-bind does (fulmen)")
    parser.add_argument("--http2", action="store_true", help="HTTP/2 with prior knowledge (fulmen)")
    parser.add_argument(
        "--streams", type=int, default=1, help="with --http2: requests per connection per turn"
    )
    args = parser.parse_args()
    access = ", access log" if args.access_log else ""
    counting = "+metrics" if args.metrics else ""
    label = f"{args.server}{counting} {args.workload} ({args.http}, {args.loop}{access})"
    if args.http2:
        label = f"{args.server}{counting} {args.workload} (HTTP/2, {args.loop}{access})"
    if args.instructions:
        argv = [args.workload, "--server", args.server, "--http", args.http, "--loop", args.loop]
        argv += ["--access-log"] if args.access_log else []
        argv += ["--metrics"] if args.metrics else []
        argv += ["--http2", "--streams", str(args.streams)] if args.http2 else []
        print(f"{label}: {count_instructions(argv, args.workload):,} instructions/request")
        return
    micros = measure(
        args.server,
        args.workload,
        args.http,
        args.loop,
        args.requests,
        args.rounds,
        args.access_log,
        args.metrics,
        args.http2,
        args.streams,
    )
    print(f"{label}: {micros:.2f} us/request")


if __name__ == "__main__":
    main()
