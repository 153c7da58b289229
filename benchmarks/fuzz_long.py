"""The fuzz properties of ``tests/test_fuzz_*.py``, run for longer and with fresh random seeds.

Servers run in this process on loopback (one per HTTP parser, one per WebSocket engine). Batches of
hypothesis examples are run round-robin over the targets until ``--count`` cases or ``--seconds``
have passed. A failing property is shrunk by hypothesis and recorded as a finding (the run goes on);
parser disagreements on the same bytes (the differential target) are recorded separately, grouped
by what each parser answered.

    .venv/bin/python benchmarks/fuzz_long.py --seconds 600
    .venv/bin/python benchmarks/fuzz_long.py --count 20000 --targets http,differential

Exit status: 0 when nothing was found, 1 otherwise. The last line is the summary.
"""

from __future__ import annotations

import argparse
import json
import logging
import random
import struct
import sys
import time
import traceback
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from hypothesis import HealthCheck, Phase, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from tests.conftest import run_server  # noqa: E402
from tests.fuzzing import (  # noqa: E402
    BINARY,
    CLOSE,
    TEXT,
    ErrorLog,
    Finding,
    FuzzApp,
    Outcome,
    check_outcome,
    check_pipeline,
    encode_messages,
    http_exchange,
    mutate,
    mutations,
    pipelines,
    probe_http,
    probe_ws,
    random_keys,
    split,
    split_points,
    ws_data_messages,
    ws_exchange,
    ws_frame,
    ws_messages,
)


class Run:
    def __init__(self) -> None:
        self.cases: Counter[str] = Counter()
        self.findings: list[dict[str, str]] = []
        self.differences: Counter[str] = Counter()
        self.difference_examples: dict[str, str] = {}
        self.log = ErrorLog().install()

    def health(self, check: Any) -> None:
        errors = self.log.take()
        if errors:
            raise Finding(f"the server logged errors: {errors}")
        check()
        errors = self.log.take()
        if errors:
            raise Finding(f"the server logged errors: {errors}")


def summary(outcome: Outcome) -> tuple[Any, ...]:
    """What a parser made of some bytes: the statuses, and the requests the app saw (complete ones)."""
    statuses = tuple(r.status for r in outcome.responses if r.status >= 200)
    requests = tuple((c.method, c.path, c.query, c.body) for c in outcome.calls if c.state == "done")
    return statuses, requests


def http_targets(run: Run, impl: str, port: int, app: FuzzApp) -> dict[str, Any]:
    def health() -> None:
        run.health(lambda: probe_http(port, app))

    @given(pipeline=pipelines(), data=st.data())
    def valid(pipeline: Any, data: Any) -> None:
        run.cases[f"http/{impl}/valid"] += 1
        raw = b"".join(r.encode() for r in pipeline)
        pieces = split(raw, data.draw(split_points(len(raw))))
        check_pipeline(http_exchange(port, pieces, app, expect=len(pipeline)), pipeline)
        health()

    @given(pipeline=pipelines(max_requests=3, allow_head=False), ops=mutations(), data=st.data())
    def mutated(pipeline: Any, ops: Any, data: Any) -> None:
        run.cases[f"http/{impl}/mutated"] += 1
        raw = mutate(b"".join(r.encode() for r in pipeline), ops)
        check_outcome(http_exchange(port, split(raw, data.draw(split_points(len(raw)))), app))
        health()

    @given(garbage=st.binary(max_size=500))
    def random_bytes(garbage: bytes) -> None:
        run.cases[f"http/{impl}/random"] += 1
        check_outcome(http_exchange(port, [garbage], app))
        health()

    return {f"http/{impl}/valid": valid, f"http/{impl}/mutated": mutated, f"http/{impl}/random": random_bytes}


def differential_target(run: Run, servers: dict[str, Any], apps: dict[str, FuzzApp]) -> Any:
    @given(pipeline=pipelines(max_requests=3, allow_head=False), ops=mutations())
    def differential(pipeline: Any, ops: Any) -> None:
        run.cases["http/differential"] += 1
        raw = mutate(b"".join(r.encode() for r in pipeline), ops)
        results = {}
        for impl in ("httptools", "h11"):
            outcome = http_exchange(servers[impl].port, [raw], apps[impl])
            check_outcome(outcome)
            results[impl] = summary(outcome)
        if results["httptools"] != results["h11"]:
            key = f"httptools {results['httptools'][0]} vs h11 {results['h11'][0]}"
            run.differences[key] += 1
            if key not in run.difference_examples or len(raw) < len(run.difference_examples[key]):
                run.difference_examples[key] = repr(raw[:300])

    return differential


def ws_targets(run: Run, engine: str, port: int) -> dict[str, Any]:
    @given(
        messages=st.lists(ws_messages(), max_size=5), seed=st.binary(min_size=4, max_size=4), data=st.data()
    )
    def ws_valid(messages: Any, seed: bytes, data: Any) -> None:
        run.cases[f"ws/{engine}/valid"] += 1
        keys = random_keys(seed)
        raw = encode_messages(messages, keys, close=False)
        close = ws_frame(CLOSE, struct.pack("!H", 1000), key=next(keys))
        pieces = split(raw, data.draw(split_points(len(raw))))
        outcome = ws_exchange(
            port, pieces, until_close=True, expect_messages=len(messages), close_frame=close
        )
        expected = [(TEXT if m.text else BINARY, m.payload) for m in messages]
        if ws_data_messages(outcome.frames) != expected:
            raise Finding("WebSocket messages not echoed exactly once, in order")
        run.health(lambda: probe_ws(port))

    @given(
        messages=st.lists(ws_messages(), min_size=1, max_size=3),
        seed=st.binary(min_size=4, max_size=4),
        ops=mutations(),
        data=st.data(),
    )
    def ws_mutated(messages: Any, seed: bytes, ops: Any, data: Any) -> None:
        run.cases[f"ws/{engine}/mutated"] += 1
        raw = mutate(encode_messages(messages, random_keys(seed)), ops)
        ws_exchange(port, split(raw, data.draw(split_points(len(raw)))), until_close=False)
        run.health(lambda: probe_ws(port))

    return {f"ws/{engine}/valid": ws_valid, f"ws/{engine}/mutated": ws_mutated}


def make_targets(
    run: Run, servers: dict[str, Any], apps: dict[str, FuzzApp], wanted: set[str]
) -> dict[str, Any]:
    """Fresh hypothesis tests (each batch needs its own, to take its own settings and seed)."""
    targets: dict[str, Any] = {}
    if "http" in wanted:
        for impl in ("httptools", "h11"):
            targets.update(http_targets(run, impl, servers[impl].port, apps[impl]))
    if "differential" in wanted:
        targets["http/differential"] = differential_target(run, servers, apps)
    if "ws" in wanted:
        for engine in ("websockets", "wsproto"):
            targets.update(ws_targets(run, engine, servers[engine].port))
    return targets


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--count", type=int, help="stop after this many cases")
    parser.add_argument("--seconds", type=float, help="stop after this many seconds (default 60)")
    parser.add_argument("--batch", type=int, default=100, help="examples per hypothesis run")
    parser.add_argument("--targets", default="http,differential,ws", help="http, differential, ws")
    parser.add_argument("--seed", type=int, help="seed of the first batch (random by default)")
    parser.add_argument("--json", type=Path, help="write the figures to this file")
    args = parser.parse_args(argv)
    if args.count is None and args.seconds is None:
        args.seconds = 60.0
    wanted = set(args.targets.split(","))
    logging.getLogger("fulmen.error").setLevel(logging.ERROR)

    run = Run()
    apps: dict[str, FuzzApp] = {}
    contexts = []
    servers: dict[str, Any] = {}
    if wanted & {"http", "differential"}:
        for impl in ("httptools", "h11"):
            apps[impl] = FuzzApp()
            contexts.append(run_server(apps[impl], http=impl, ws="none"))
            servers[impl] = contexts[-1].__enter__()
    if "ws" in wanted:
        for engine in ("websockets", "wsproto"):
            contexts.append(
                run_server(
                    FuzzApp(),
                    ws=engine,
                    ws_ping_interval=None,
                    ws_max_size=100_000,
                    ws_per_message_deflate=False,
                )
            )
            servers[engine] = contexts[-1].__enter__()
    rng = random.Random(args.seed)
    started = time.monotonic()
    batches = 0
    try:
        while True:
            for name in make_targets(run, servers, apps, wanted):
                test = make_targets(run, servers, apps, wanted)[name]
                total = sum(run.cases.values())
                if (args.count is not None and total >= args.count) or (
                    args.seconds is not None and time.monotonic() - started >= args.seconds
                ):
                    raise StopIteration
                seed = rng.getrandbits(64)
                configured = settings(
                    max_examples=args.batch,
                    deadline=None,
                    database=None,
                    derandomize=False,
                    phases=[Phase.generate, Phase.shrink],
                    suppress_health_check=list(HealthCheck),
                    print_blob=True,
                )(test)
                try:
                    configured._hypothesis_internal_use_seed = seed
                    configured()
                except Exception as exc:  # a finding: hypothesis shrank it
                    text = "".join(traceback.format_exception_only(type(exc), exc)).strip()
                    run.findings.append({"target": name, "seed": str(seed), "error": text[:4000]})
                    print(f"FINDING in {name} (seed {seed}):\n{text[:2000]}\n", flush=True)
                batches += 1
            print(f"  {sum(run.cases.values()):,} cases, {time.monotonic() - started:.0f} s", flush=True)
    except StopIteration:
        pass
    finally:
        for context in reversed(contexts):
            context.__exit__(None, None, None)
        run.log.uninstall()

    elapsed = time.monotonic() - started
    total = sum(run.cases.values())
    report = {
        "cases": total,
        "seconds": round(elapsed, 1),
        "per_target": dict(sorted(run.cases.items())),
        "findings": run.findings,
        "differences": dict(run.differences.most_common()),
        "difference_examples": run.difference_examples,
    }
    if run.differences:
        print("Parser differences (httptools vs h11 on the same bytes):")
        for key, count in run.differences.most_common():
            print(f"  {count:5} x {key}; e.g. {run.difference_examples[key]}")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    print(
        f"fuzz_long: {total:,} cases in {elapsed:.0f} s "
        f"({', '.join(f'{name} {count}' for name, count in sorted(run.cases.items()))}); "
        f"{len(run.findings)} findings, {sum(run.differences.values())} parser differences"
    )
    return 1 if run.findings else 0


if __name__ == "__main__":
    sys.exit(main())
