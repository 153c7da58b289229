"""The Autobahn|Testsuite WebSocket fuzzing suite against fulmen, on both engines (``make autobahn``).

``wstest`` (the ``autobahntestsuite`` package) runs on Python 2.7 only: this script makes it a
virtualenv of its own in ``.venv-autobahn`` the first time (with pyenv's 2.7 when there is no
``python2.7`` on the PATH, installing it with pyenv if needed), starts one fulmen per engine
(``--ws websockets`` and ``--ws wsproto``) serving an echo app, runs the fuzzing client over the
cases asked for (all by default, the compression groups 12 and 13 included), and prints a summary.
It fails when any case is FAILED, NON-STRICT, UNIMPLEMENTED or closes the wrong way; OK and
INFORMATIONAL pass.

    python tools/autobahn.py                    # every case, both engines (about 20 minutes)
    python tools/autobahn.py --cases 1.*,5.*,6.4.*,12.1.*   # a subset
    python tools/autobahn.py --ws wsproto

The reports are written to ``.autobahn/reports`` (index.html for a browser).
"""

from __future__ import annotations

import argparse
import collections
import glob
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VENV = ROOT / ".venv-autobahn"
WORK = ROOT / ".autobahn"
WSTEST = VENV / "bin" / "wstest"
PYTHON2_VERSION = "2.7.18"
PASSING = {"OK", "INFORMATIONAL"}


def say(message: str) -> None:
    print(f"autobahn: {message}", file=sys.stderr, flush=True)


def run(command: list[str], timeout: float, **options: object) -> None:
    say(" ".join(command))
    subprocess.run(command, check=True, timeout=timeout, **options)  # type: ignore[call-overload]


def find_python2() -> str:
    """A Python 2.7 interpreter: pyenv's, else one on the PATH (pyenv's shim answers there even when
    no 2.7 is selected, so each is tried), else one installed with pyenv."""
    home = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv"))
    candidates = sorted(glob.glob(str(home / "versions" / "2.7*" / "bin" / "python2.7")), reverse=True)
    on_path = shutil.which("python2.7")
    if on_path:
        candidates.append(on_path)
    for candidate in candidates:
        probe = subprocess.run([candidate, "-c", "import sys"], capture_output=True, timeout=60)
        if probe.returncode == 0:
            return candidate
    pyenv = shutil.which("pyenv") or str(home / "bin" / "pyenv")
    if not os.path.exists(pyenv):
        raise SystemExit("autobahn: wstest needs Python 2.7: install it (e.g. with pyenv) and run again")
    run([pyenv, "install", "--skip-existing", PYTHON2_VERSION], timeout=1800)
    return str(home / "versions" / PYTHON2_VERSION / "bin" / "python2.7")


def ensure_wstest() -> None:
    """``.venv-autobahn`` with ``wstest``, made with a virtualenv release that still supports 2.7."""
    if WSTEST.exists():
        return
    python2 = find_python2()
    tools = VENV.with_name(".venv-autobahn-tools")
    run([python2, "-m", "pip", "install", "--quiet", "--target", str(tools), "virtualenv<20.22"], timeout=600)
    env = dict(os.environ, PYTHONPATH=str(tools))
    run([python2, "-m", "virtualenv", "--quiet", str(VENV)], timeout=300, env=env)
    run([str(VENV / "bin" / "pip"), "install", "--quiet", "autobahntestsuite"], timeout=1200)
    shutil.rmtree(tools, ignore_errors=True)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_server(engine: str, log_path: Path) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    command = [
        sys.executable, "-m", "fulmen", "benchmarks.apps:websocket",
        "--host", "127.0.0.1", "--port", str(port), "--ws", engine, "--log-level", "warning",
    ]  # fmt: skip
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT / "src"), str(ROOT)]))
    log = open(log_path, "wb")
    process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return process, port
        except OSError:
            if process.poll() is not None:
                break
            time.sleep(0.1)
    process.kill()
    raise SystemExit(f"autobahn: fulmen --ws {engine} did not start: {log_path.read_text()[-800:]}")


def summarize(reports: Path, agents: list[str]) -> bool:
    """Print each engine's counts of results; True when every case passed."""
    index = json.loads((reports / "index.json").read_text())
    passed = True
    for agent in agents:
        cases = index.get(agent, {})
        counts: collections.Counter[str] = collections.Counter()
        bad: list[str] = []
        for case, result in sorted(cases.items(), key=lambda item: [int(p) for p in item[0].split(".")]):
            behaviour, closing = result["behavior"], result["behaviorClose"]
            counts[behaviour] += 1
            if behaviour not in PASSING or closing not in PASSING:
                bad.append(f"{case} {behaviour}/{closing}")
        summary = ", ".join(f"{count} {name}" for name, count in sorted(counts.items()))
        print(f"{agent}: {len(cases)} cases: {summary}")
        for line in bad:
            print(f"    {line}")
        passed = passed and bool(cases) and not bad
    return passed


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--cases", default="*", help="comma list of case patterns (default: every case)")
    parser.add_argument("--ws", default="websockets,wsproto", help="engines, comma list")
    parser.add_argument("--timeout", type=float, default=3600, help="seconds allowed for wstest")
    args = parser.parse_args()

    ensure_wstest()
    reports = WORK / "reports"
    shutil.rmtree(reports, ignore_errors=True)
    reports.mkdir(parents=True)
    servers: list[subprocess.Popen[bytes]] = []
    agents: list[str] = []
    spec_servers = []
    try:
        for engine in args.ws.split(","):
            process, port = start_server(engine, WORK / f"fulmen-{engine}.log")
            servers.append(process)
            agent = f"fulmen-{engine}"
            agents.append(agent)
            spec_servers.append({"agent": agent, "url": f"ws://127.0.0.1:{port}"})
        spec = {
            "outdir": str(reports),
            "servers": spec_servers,
            "cases": args.cases.split(","),
            "exclude-cases": [],
            "exclude-agent-cases": {},
        }
        spec_path = WORK / "fuzzingclient.json"
        spec_path.write_text(json.dumps(spec, indent=2))
        with open(WORK / "wstest.log", "wb") as log:
            run(
                [str(WSTEST), "-m", "fuzzingclient", "-s", str(spec_path)],
                timeout=args.timeout,
                cwd=WORK,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
    finally:
        for process in servers:
            process.terminate()
        for process in servers:
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
    ok = summarize(reports, agents)
    print(f"reports: {reports / 'index.html'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
