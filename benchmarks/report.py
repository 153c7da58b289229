"""Render a results file written by ``run.py --json`` as a Markdown table (and optionally a chart).

Usage::

    python benchmarks/report.py benchmarks/results/httptools-uvloop.json
    python benchmarks/report.py results.json --chart ratios.png

The table is what docs/performance.md shows: per workload and server, the
median throughput over the rounds with its min..max, the median p50/p99
latency, the peak RSS and the ratio to the baseline.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.chart import draw_ratio_chart


def _ms(v: float | None) -> str:
    return "–" if v is None else (f"{v:.2f}" if v < 10 else f"{v:.1f}")


def round_ratios(doc: dict[str, Any]) -> dict[tuple[str, int, str], list[float]]:
    """Each server's req/s over the baseline's in the same round: the spread of the ratio itself
    (two medians can hide that the machine slowed down for one round of both servers)."""
    baseline = doc["config"]["baseline"]
    rounds: dict[tuple[str, int, int], dict[str, float]] = {}
    for run in doc["runs"]:
        if run.get("ok") and run.get("requests_per_s"):
            key = (run["workload"], run["connections"], run["round"])
            rounds.setdefault(key, {})[run["server"]] = run["requests_per_s"]
    ratios: dict[tuple[str, int, str], list[float]] = {}
    for (workload, connections, _), by_server in sorted(rounds.items()):
        base = by_server.get(baseline)
        for server, rps in by_server.items():
            if base:
                ratios.setdefault((workload, connections, server), []).append(rps / base)
    return ratios


def markdown(doc: dict[str, Any]) -> str:
    cfg = doc["config"]
    machine = doc["machine"]
    git = doc["git"]
    pkgs = ", ".join(f"{k} {v}" for k, v in machine["packages"].items() if v)
    conns = ", ".join(map(str, cfg["connections"]))
    lines = [
        f"`--http {cfg['http']} --loop {cfg['loop']} --workers {cfg['workers']}`"
        f"{', access log on' if cfg.get('access_log') else ''}, "
        f"{cfg['rounds']} rounds x {cfg['duration']} s, {conns} connections; "
        f"git {str(git['revision'])[:10]}{' (dirty)' if git['dirty'] else ''}; "
        f"{machine['cpu_model']} ({machine['cpu_count']} CPUs), Python {machine['python']}; {pkgs}.",
        "",
        "| workload | server | req/s (median) | min..max | p50 ms | p99 ms | peak RSS MiB | server CPU | "
        f"vs {cfg['baseline']} | ratio per round |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    per_round = round_ratios(doc)
    for s in doc["summary"]:
        name = s["workload"] if len(cfg["connections"]) == 1 else f"{s['workload']} c{s['connections']}"
        if s["workload"].startswith("websocket"):
            name += " (msg/s)"
        if not s["rounds_ok"]:
            lines.append(f"| {name} | {s['server']} | failed | | | | | | | |")
            continue
        ratio = "–" if s["ratio"] is None else f"**{s['ratio']:.2f}x**"
        paired = per_round.get((s["workload"], s["connections"], s["server"]), [])
        spread = f"{min(paired):.2f}..{max(paired):.2f}" if paired and s["server"] != cfg["baseline"] else "–"
        flag = " *" if s.get("noisy_rounds") else ""
        cells = [
            name,
            s["server"],
            f"{s['median_rps']:,.0f}{flag}",
            f"{s['min_rps']:,.0f}..{s['max_rps']:,.0f}",
            _ms(s["p50_ms"]),
            _ms(s["p99_ms"]),
            f"{s['peak_rss_mib']:.1f}",
            f"{s['server_cpu_pct']:.0f}%",
            ratio,
            spread,
        ]
        lines.append("| " + " | ".join(cells) + " |")
    if any(s.get("noisy_rounds") for s in doc["summary"]):
        lines += ["", "\\* some rounds were disturbed by other processes on the machine, even after retries."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("results", help="a JSON file written by run.py --json")
    parser.add_argument("--chart", metavar="OUT.png", help="also draw the ratio chart")
    args = parser.parse_args(argv)
    doc = json.loads(Path(args.results).read_text())
    print(markdown(doc))
    if args.chart:
        cfg = doc["config"]
        groups: list[tuple[str, int]] = []
        for s in doc["summary"]:
            if (s["workload"], s["connections"]) not in groups:
                groups.append((s["workload"], s["connections"]))
        servers = sorted({s["server"] for s in doc["summary"]}, key=lambda n: (n != cfg["baseline"], n))
        series = [
            (
                name,
                [
                    next(
                        (
                            x["ratio"]
                            for x in doc["summary"]
                            if (x["workload"], x["connections"], x["server"]) == (w, c, name)
                        ),
                        None,
                    )
                    for w, c in groups
                ],
            )
            for name in servers
        ]
        title = f"req/s ratio vs {cfg['baseline']} ({cfg['http']}, {cfg['loop']}, {cfg['workers']} worker(s))"
        draw_ratio_chart(args.chart, [f"{w} c{c}" for w, c in groups], series, title)
        print(f"\nchart written to {args.chart}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
