"""Small WebSocket load generator: N connections, each echoing small messages.

Every connection runs a closed loop (send one message, wait for the echo, repeat)
until the deadline.  The result is printed as one JSON object on stdout::

    {"messages": ..., "seconds": ..., "messages_per_s": ..., "p50_ms": ..., "p99_ms": ...,
     "connections": ..., "errors": ...}

Usage::

    python benchmarks/ws_client.py ws://127.0.0.1:8000/ --connections 64 --duration 10

Everything is bounded: connecting, each receive, and the whole run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from dataclasses import dataclass, field

try:
    from websockets.asyncio.client import connect
except ImportError:  # pragma: no cover - websockets < 13
    print("ws_client: the 'websockets' package (>= 13) is required", file=sys.stderr)
    raise SystemExit(2) from None


@dataclass
class Stats:
    latencies: list[float] = field(default_factory=list)
    errors: int = 0
    connected: int = 0
    mismatches: int = 0


async def _connection(url: str, payload: str, start_at: float, deadline: float, stats: Stats) -> None:
    try:
        async with connect(
            url,
            compression=None,
            open_timeout=5,
            close_timeout=2,
            ping_interval=None,
            max_queue=4,
        ) as ws:
            stats.connected += 1
            # Wait until every connection is open so the measured window is all steady state.
            await asyncio.sleep(max(0.0, start_at - time.monotonic()))
            perf = time.perf_counter
            record = stats.latencies.append
            while time.monotonic() < deadline:
                sent = perf()
                await ws.send(payload)
                reply = await asyncio.wait_for(ws.recv(), timeout=5)
                record(perf() - sent)
                if reply != payload:
                    stats.mismatches += 1
    except Exception:  # any failure (refused, reset, timeout) counts as one error
        stats.errors += 1


def _percentile(sorted_values: list[float], pct: float) -> float:
    if not sorted_values:
        return 0.0
    index = min(len(sorted_values) - 1, max(0, round(pct / 100 * (len(sorted_values) - 1))))
    return sorted_values[index]


async def run(url: str, connections: int, duration: float, size: int, ramp: float) -> dict[str, float | int]:
    stats = Stats()
    payload = ("m" * size)[:size]
    start_at = time.monotonic() + ramp
    deadline = start_at + duration
    tasks = [
        asyncio.create_task(_connection(url, payload, start_at, deadline, stats)) for _ in range(connections)
    ]
    # Hard bound: the run, the ramp-up and a grace period for the close handshakes.
    done, pending = await asyncio.wait(tasks, timeout=ramp + duration + 10)
    for task in pending:
        task.cancel()
    if pending:
        await asyncio.wait(pending, timeout=5)
    elapsed = duration
    lat = sorted(stats.latencies)
    return {
        "messages": len(lat),
        "seconds": elapsed,
        "messages_per_s": len(lat) / elapsed if elapsed > 0 else 0.0,
        "p50_ms": _percentile(lat, 50) * 1000,
        "p99_ms": _percentile(lat, 99) * 1000,
        "connections": stats.connected,
        "errors": stats.errors + len(pending),
        "mismatches": stats.mismatches,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("url")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--size", type=int, default=32, help="message size in bytes (default 32)")
    parser.add_argument("--ramp", type=float, default=1.0, help="seconds allowed for all connections to open")
    parser.add_argument("--no-uvloop", action="store_true", help="use the default asyncio loop")
    args = parser.parse_args(argv)

    coro = run(args.url, args.connections, args.duration, args.size, args.ramp)
    result: dict[str, float | int]
    if not args.no_uvloop:
        try:
            import uvloop
        except ImportError:
            result = asyncio.run(coro)
        else:
            result = uvloop.run(coro)
    else:
        result = asyncio.run(coro)
    print(json.dumps(result))
    return 0 if result["messages"] > 0 else 1


if __name__ == "__main__":
    sys.exit(main())
