"""HTTP/2 benchmark: h2load against fulmen, granian and hypercorn, interleaved.

One command (``make bench-h2``)::

    python benchmarks/h2.py                # 5 rounds, about 7 minutes
    python benchmarks/h2.py --quick        # 1 round of 3 s: a smoke check

Workloads, each with 16 connections of 16 concurrent streams (``h2load -c16 -m16 -t1``) on the
``plaintext`` app, one worker per server:

``h2c``     HTTP/2 in cleartext with prior knowledge; with a ``fulmen-h1`` row: the same h2load in
            HTTP/1.1 (``--h1``) against fulmen without ``--http2``, fulmen's own HTTP/1.1 on the same
            harness
``h2-tls``  HTTP/2 over TLS (ALPN ``h2``), with a self-signed certificate made for the run

granian and hypercorn come from ``benchmarks/.venv-peers``, a virtual environment of their own
(``make bench-h2`` creates it), so the project's environment stays as it is; fulmen runs from the
project's ``.venv``. Starting, pinning, sampling, retries, the table and the chart are ``run.py``'s;
this file only says how the servers start and how h2load loads them. Ratios are to granian.
"""

from __future__ import annotations

import argparse
import contextlib
import re
import shutil
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from benchmarks import apps, run  # noqa: E402

SERVERS = ("fulmen", "granian", "hypercorn", "fulmen-h1")
WORKLOADS = ("h2c", "h2-tls")
#: h2load's concurrency: connections, and streams in flight on each.
CONNECTIONS = 16
STREAMS = 16
PEERS_PYTHON = BENCH_DIR / ".venv-peers" / "bin" / "python"
APP = "benchmarks.apps:plaintext"


def applies(server: str, workload: str) -> bool:
    """fulmen's HTTP/1.1 row belongs to the cleartext group only."""
    return server != "fulmen-h1" or workload == "h2c"


def server_command(server: str, workload: str, port: int, certificate: tuple[str, str]) -> list[str]:
    tls = workload == "h2-tls"
    certfile, keyfile = certificate
    host, port_text = run.HOST, str(port)
    if server in ("fulmen", "fulmen-h1"):
        command = [sys.executable, "-m", "fulmen", APP, "--host", host, "--port", port_text]
        command += ["--http", "httptools", "--loop", "uvloop", "--workers", "1"]
        command += ["--no-access-log", "--log-level", "warning"]
        if server == "fulmen":
            command.append("--http2")
        if tls:
            command += ["--ssl-certfile", certfile, "--ssl-keyfile", keyfile]
    elif server == "granian":
        command = [
            str(PEERS_PYTHON),
            "-m",
            "granian",
            "--interface",
            "asgi",
            "--host",
            host,
            "--port",
            port_text,
        ]
        command += ["--workers", "1", "--loop", "uvloop", "--http", "2", "--log-level", "warning"]
        if tls:
            command += ["--ssl-certificate", certfile, "--ssl-keyfile", keyfile]
        command.append(APP)
    elif server == "hypercorn":
        command = [str(PEERS_PYTHON), "-m", "hypercorn", APP, "--bind", f"{host}:{port_text}"]
        command += ["--workers", "1", "--worker-class", "uvloop", "--log-level", "warning"]
        if tls:
            command += ["--certfile", certfile, "--keyfile", keyfile]
    else:
        raise ValueError(f"unknown server {server!r}")
    return command


def accepts_connections(port: int) -> bool:
    """Whether something listens on ``port`` (an HTTP/2-only or TLS server does not answer plain HTTP/1.1)."""
    with socket.create_connection((run.HOST, port), timeout=1.0):
        return True


def h2load(
    server: str, workload: str, port: int, seconds: float, cfg: run.Config | None, requests: int = 0
) -> str:
    """h2load's output for a timed run (``seconds``, pinned as ``cfg`` says), or for ``requests``
    requests on one connection."""
    scheme = "https" if workload == "h2-tls" else "http"
    command = [*(run._client_prefix(cfg) if cfg is not None else []), "h2load", "-t1"]
    if requests:
        command += ["-c1", f"-m{STREAMS}", f"-n{requests}"]
    else:
        command += [f"-c{CONNECTIONS}", f"-m{STREAMS}", f"-D{seconds:g}"]
    if server == "fulmen-h1":
        command.append("--h1")
    command.append(f"{scheme}://{run.HOST}:{port}/")
    result = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 60)
    if result.returncode != 0:
        raise RuntimeError(
            f"h2load failed ({result.returncode}): {(result.stderr or result.stdout).strip()[-400:]}"
        )
    return result.stdout


def parse_h2load(output: str) -> dict[str, Any]:
    """Throughput and failures from h2load's summary (it gives no latency percentiles)."""
    out: dict[str, Any] = {"requests_per_s": 0.0, "requests": 0, "socket_errors": 0, "non_2xx": 0}
    match = re.search(r"finished in [\d.]+m?s, ([\d.]+) req/s", output)
    if match:
        out["requests_per_s"] = float(match.group(1))
    match = re.search(r"requests: .* (\d+) succeeded, (\d+) failed, (\d+) errored, (\d+) timeout", output)
    if match:
        succeeded, failed, errored, timeout = (int(group) for group in match.groups())
        out["requests"] = succeeded
        out["socket_errors"] = failed + errored + timeout
    match = re.search(r"status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx", output)
    if match:
        out["non_2xx"] = sum(int(group) for group in match.groups()[1:])
    if out["requests"] == 0:
        raise RuntimeError(f"h2load completed no request: {output.strip()[-400:]}")
    return out


def harness(certificate: tuple[str, str]) -> run.Harness:
    """The h2load family of ``run.Harness``, with one certificate for the whole run."""

    @contextlib.contextmanager
    def start(server: str, workload: str, cfg: run.Config) -> Iterator[tuple[subprocess.Popen[bytes], int]]:
        port = run.free_port()
        command = server_command(server, workload, port, certificate)
        if cfg.pin:
            command = ["taskset", "-c", str(cfg.server_cpu), *command]
        with run.running_process(command, port, accepts_connections) as proc:
            yield proc, port

    def drive(
        server: str, workload: str, port: int, connections: int, seconds: int, cfg: run.Config
    ) -> dict[str, Any]:
        return parse_h2load(h2load(server, workload, port, seconds, cfg))

    return run.Harness(start, validate, drive, applies)


def validate(server: str, workload: str, port: int) -> None:
    """The right bodies, over the protocol the workload is about (h2load checks statuses only)."""
    output = h2load(server, workload, port, 0, None, requests=STREAMS)
    data = parse_h2load(output)
    protocol = "http/1.1" if server == "fulmen-h1" else "h2c" if workload == "h2c" else "h2"
    if data["requests"] != STREAMS or data["non_2xx"] or f"Application protocol: {protocol}" not in output:
        raise RuntimeError(f"wrong answers for {workload}: {output.strip()[-400:]}")
    expected = len(apps.PLAINTEXT_BODY) * STREAMS
    match = re.search(r"^traffic: .*\((\d+)\) data$", output, re.M)
    if not match or int(match.group(1)) != expected:
        raise RuntimeError(f"{workload}: expected {expected} bytes of bodies: {output.strip()[-400:]}")


def make_certificate(directory: str) -> tuple[str, str]:
    """A certificate for 127.0.0.1 from a throwaway CA (trustme, a dev dependency; h2load does not
    verify it)."""
    import trustme

    issued = trustme.CA().issue_cert("127.0.0.1")
    certfile, keyfile = f"{directory}/cert.pem", f"{directory}/key.pem"
    for pem in issued.cert_chain_pems:
        pem.write_to_path(certfile, append=True)
    issued.private_key_pem.write_to_path(keyfile)
    return certfile, keyfile


def http2_over_http1(summaries: list[run.Summary]) -> list[str]:
    """The line under the table: fulmen's HTTP/2 against its own HTTP/1.1 on the same harness."""
    rates = {(s.workload, s.server): s.median_rps for s in summaries if s.rounds_ok}
    h1 = rates.get(("h2c", "fulmen-h1"))
    lines = []
    for workload in WORKLOADS:
        h2 = rates.get((workload, "fulmen"))
        if h1 and h2:
            lines.append(
                f"fulmen {workload} over fulmen's own HTTP/1.1 (h2load --h1, cleartext): {h2 / h1:.2f}x"
            )
    hypercorn, fulmen = rates.get(("h2c", "hypercorn")), rates.get(("h2c", "fulmen"))
    if hypercorn and fulmen:
        lines.append(f"fulmen h2c over hypercorn h2c: {fulmen / hypercorn:.1f}x")
    return lines


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="benchmarks/h2.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--servers", default=",".join(SERVERS), help="comma list; default: %(default)s")
    parser.add_argument("--workloads", default=",".join(WORKLOADS), help="comma list; default: %(default)s")
    parser.add_argument("--rounds", type=int, help="interleaved rounds (default 5, --quick 1)")
    parser.add_argument("--duration", type=int, help="seconds per measured run (default 6, --quick 3)")
    parser.add_argument("--warmup", type=int, help="seconds of load before each run (default 2, --quick 1)")
    parser.add_argument(
        "--json", dest="json_path", metavar="OUT.json", help="results file (and chart beside it)"
    )
    parser.add_argument("--no-pin", action="store_true", help="do not pin server and client with taskset")
    parser.add_argument("--quick", action="store_true", help="smoke check: 1 round of 3 s")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    ns = parse_args(argv)
    servers, workloads = run._csv(ns.servers), run._csv(ns.workloads)
    for name, known in ((servers, SERVERS), (workloads, WORKLOADS)):
        unknown = [item for item in name if item not in known]
        if unknown:
            raise SystemExit(f"unknown {', '.join(unknown)}; choose among {', '.join(known)}")
    if shutil.which("h2load") is None:
        raise SystemExit(
            "error: h2load is missing (Debian: apt-get install nghttp2-client; make bench-h2 does it)"
        )
    if any(server in ("granian", "hypercorn") for server in servers) and not PEERS_PYTHON.exists():
        raise SystemExit(f"error: {PEERS_PYTHON} is missing (make bench-h2 creates it)")
    args = ["--servers", "fulmen", "--workloads", "plaintext", "--connections", str(CONNECTIONS)]
    for option in ("rounds", "duration", "warmup"):
        if getattr(ns, option) is not None:
            args += [f"--{option}", str(getattr(ns, option))]
    args += ["--quick"] * ns.quick + ["--no-pin"] * ns.no_pin
    if ns.json_path:
        args += ["--json", ns.json_path]
    cfg = run.build_config(run.parse_args(args))
    cfg.servers, cfg.workloads, cfg.baseline = servers, workloads, "granian"
    with tempfile.TemporaryDirectory() as directory:
        return run.run_plan(cfg, harness(make_certificate(directory)), http2_over_http1)


if __name__ == "__main__":
    sys.exit(main())
