"""Thread workers on free-threaded Python: the GIL stays off in the workers, the automatic worker class
falls back to processes when the application turns the GIL back on, and thread workers under load
keep the shared module-level caches right.

Most tests need a free-threaded interpreter (``make test-ft``) and are skipped elsewhere; under
``make test-ft`` (``FULMEN_TEST_FREE_THREADED=1``) a missing free-threaded build fails them instead,
so that run cannot pass by skipping. The load test runs on every interpreter.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import threading
from pathlib import Path

import pytest

from tests.supervisors.support import env_for, free_port, fulmen, request

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals and /proc")

FREE_THREADED = sysconfig.get_config_var("Py_GIL_DISABLED") == 1
REQUIRED = os.environ.get("FULMEN_TEST_FREE_THREADED") == "1"


def gil_enabled() -> bool:
    return bool(getattr(sys, "_is_gil_enabled", lambda: True)())


@pytest.fixture
def free_threaded() -> None:
    """Skip (or, under ``make test-ft``, fail) unless this is a free-threaded interpreter, GIL off."""
    if REQUIRED:
        assert FREE_THREADED, f"make test-ft runs on {sys.executable}, which is not a free-threaded build"
        assert not gil_enabled(), "the GIL is on in the test process (PYTHON_GIL=1, or -X gil=1?)"
    elif not FREE_THREADED or gil_enabled():
        pytest.skip("needs a free-threaded Python with the GIL off (make test-ft)")


GIL_APP = '''
import os, sys, threading

async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    gil = getattr(sys, "_is_gil_enabled", lambda: True)()
    thread = threading.current_thread()
    body = f"{gil} {os.getpid()} {threading.get_native_id()} {thread.name}".encode()
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
'''


def answers(port: int, clients: int = 4, each: int = 25) -> list[str]:
    """The bodies of ``clients * each`` requests sent by ``clients`` threads at once."""
    bodies: list[str] = []
    errors: list[str] = []

    def client() -> None:
        for _ in range(each):
            try:
                status, body = request(port, "/", timeout=10)
            except OSError as exc:
                errors.append(repr(exc))
                continue
            if status != 200:
                errors.append(f"status {status}")
            bodies.append(body)

    threads = [threading.Thread(target=client) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not errors, errors[:5]
    return bodies


def test_thread_workers_serve_with_the_gil_off(tmp_path: Path, free_threaded: None) -> None:
    """The default command (``--workers 2``, worker class auto, httptools and uvloop when installed)
    serves from two threads of one process, and in each the GIL is off."""
    (tmp_path / "app.py").write_text(GIL_APP)
    with fulmen(tmp_path, "--workers", "2") as server:
        server.wait_serving(30)
        assert server.wait_log("with 2 thread workers", 5), server.output()
        bodies = answers(server.port)
        gil = {body.split()[0] for body in bodies}
        pids = {int(body.split()[1]) for body in bodies}
        names = {body.split()[3] for body in bodies}
        assert gil == {"False"}, server.output()
        assert pids == {server.pid}
        assert names == {"fulmen-worker"}
        # Both threads answer (the kernel hands connections to whichever listener's loop accepts).
        for _ in range(5):
            threads = {body.split()[2] for body in bodies}
            if len(threads) == 2:
                break
            bodies += answers(server.port)
        assert len(threads) == 2, bodies[:10]
        assert "GIL" not in server.output()  # no warning: nothing turned it back on
        assert server.stop() == 0


def test_every_dependency_keeps_the_gil_off(free_threaded: None) -> None:
    """Importing every module fulmen may load (parsers, loops, WebSocket engines, reloaders, HTTP/2,
    config files) leaves the GIL off: a dependency built without free-threading support turns it on."""
    modules = ["httptools", "uvloop", "websockets", "wsproto", "h11", "hpack", "watchfiles", "dotenv", "yaml"]
    code = (
        "import importlib, sys, warnings\n"
        "warnings.simplefilter('error', RuntimeWarning)\n"
        f"for name in {modules!r}:\n"
        "    importlib.import_module(name)\n"
        "print(sys._is_gil_enabled())\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHON_GIL"}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=env)
    assert proc.returncode == 0 and proc.stdout.strip() == "False", proc.stdout + proc.stderr


# -- an extension module that turns the GIL back on

GIL_EXTENSION_SOURCE = """
#include <Python.h>

/* Single-phase initialisation and no Py_mod_gil slot: a free-threaded CPython turns the GIL on. */
static struct PyModuleDef definition = {PyModuleDef_HEAD_INIT, "fulmen_gil_probe", NULL, -1, NULL};

PyMODINIT_FUNC PyInit_fulmen_gil_probe(void) { return PyModule_Create(&definition); }
"""


def gil_extension() -> Path:
    """A directory holding ``fulmen_gil_probe``, compiled once per interpreter (cached)."""
    include = sysconfig.get_paths()["include"]
    key = hashlib.sha256(f"{sys.version}{include}{GIL_EXTENSION_SOURCE}".encode()).hexdigest()[:16]
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    directory = cache / "fulmen" / "test-extensions" / key
    module = directory / f"fulmen_gil_probe{sysconfig.get_config_var('EXT_SUFFIX')}"
    if module.exists():
        return directory
    compiler = shutil.which(str(sysconfig.get_config_var("CC") or "cc").split()[0]) or shutil.which("cc")
    if compiler is None:
        pytest.fail("no C compiler to build the test extension (apt-get install build-essential)")
    directory.mkdir(parents=True, exist_ok=True)
    source = directory / "fulmen_gil_probe.c"
    source.write_text(GIL_EXTENSION_SOURCE)
    partial = module.with_suffix(f".{os.getpid()}.tmp")
    subprocess.run(
        [compiler, "-shared", "-fPIC", "-O0", f"-I{include}", str(source), "-o", str(partial)],
        check=True, timeout=120,
    )
    partial.replace(module)
    return directory


GIL_TURNING_APP = "import fulmen_gil_probe  # noqa: F401\n" + GIL_APP


def gil_turning_app(tmp_path: Path) -> dict[str, str]:
    (tmp_path / "app.py").write_text(GIL_TURNING_APP)
    env = env_for(tmp_path)
    env["PYTHONPATH"] += os.pathsep + str(gil_extension())
    env.pop("PYTHON_GIL", None)  # PYTHON_GIL=0 would keep the GIL off whatever is imported
    return env


def gil_lines(output: str) -> list[str]:
    """fulmen's lines about the GIL (not CPython's own warning, which each process worker prints as it
    imports the module)."""
    return [line for line in output.splitlines() if "GIL" in line and "RuntimeWarning" not in line]


def test_auto_workers_fall_back_to_processes_when_the_app_turns_the_gil_on(
    tmp_path: Path, free_threaded: None
) -> None:
    env = gil_turning_app(tmp_path)
    with fulmen(tmp_path, "--workers", "2", env=env) as server:
        server.wait_serving(60)
        assert server.wait_log("with 2 process workers", 5), server.output()
        lines = gil_lines(server.output())
        assert len(lines) == 1, server.output()
        assert "turned the GIL back on (module 'fulmen_gil_probe'" in lines[0], lines
        assert "using process workers" in lines[0], lines
        bodies = answers(server.port, clients=2, each=10)
        pids = {int(body.split()[1]) for body in bodies}
        assert server.pid not in pids and pids <= server.worker_pids(), (pids, server.output())
        assert server.stop() == 0


def test_thread_workers_asked_for_stop_when_the_app_turns_the_gil_on(
    tmp_path: Path, free_threaded: None
) -> None:
    env = gil_turning_app(tmp_path)
    proc = subprocess.run(
        [sys.executable, "-m", "fulmen", "app:app", "--workers", "2", "--worker-class", "thread",
         "--port", str(free_port())],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60,
    )
    output = proc.stdout + proc.stderr
    assert proc.returncode == 3, output
    lines = gil_lines(output)
    assert len(lines) == 1, output
    assert "--worker-class thread: loading the application turned the GIL back on" in lines[0], lines
    assert "module 'fulmen_gil_probe'" in lines[0] and "PYTHON_GIL=0" in lines[0], lines
    assert "Started parent process" not in output


# -- thread workers under load: the module-level caches they share

LOAD_APP = '''
async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    # Echo the request target through response headers whose names and values vary with it, so that
    # the header-name, header-value and Content-Length caches churn along with the target caches.
    path, query = scope["path"], scope["query_string"]
    n = int(query.split(b"=")[1])
    body = (path + "?" + query.decode()).encode() + b"." * (n % 97)
    headers = [
        (f"x-echo-{n % 300}".encode(), path.encode()),
        (b"x-query", query),
        (b"content-length", str(len(body)).encode()),
    ]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})
'''

LOAD_SCRIPT = """
import sys
from fulmen import Config, Server
from fulmen.supervisors import Multithread

config = Config(app="app:app", port=int(sys.argv[1]), workers=4, http=sys.argv[2])
sock = config.bind_socket()
Multithread(config, target=Server(config).run, sockets=[sock]).run()
"""

#: More distinct targets than the parsed-target (1,024) and quoted-path (1,024) caches hold, so that
#: they are emptied and refilled while other threads read them.
DISTINCT_TARGETS = 2500
ACCESS_LINE = re.compile(r'^INFO: +127\.0\.0\.1:\d+ - "GET (/p/(\d+)/%C3%A9\?n=(\d+)) HTTP/1\.1" 200 OK$')


def hammer(port: int, start: int, count: int, failures: list[str]) -> None:
    """``count`` keep-alive requests on one connection, each checked against what it asked for."""
    import socket

    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        reader = sock.makefile("rb")
        for i in range(start, start + count):
            n = i % DISTINCT_TARGETS
            target = f"/p/{n}/%C3%A9?n={n}"
            sock.sendall(f"GET {target} HTTP/1.1\r\nHost: t\r\n\r\n".encode())
            status = reader.readline()
            headers = {}
            while (line := reader.readline()) not in (b"\r\n", b""):
                name, _, value = line.decode("latin-1").partition(":")
                headers[name.lower()] = value.strip()
            body = reader.read(int(headers.get("content-length", "0")))
            expected_body = f"/p/{n}/é?n={n}".encode() + b"." * (n % 97)
            if (
                not status.startswith(b"HTTP/1.1 200 ")
                or body != expected_body
                or headers.get(f"x-echo-{n % 300}") != f"/p/{n}/é".encode().decode("latin-1")
                or headers.get("x-query") != f"n={n}"
            ):
                failures.append(f"{target}: {status!r} {headers} {body[:60]!r}")
                return


@pytest.mark.parametrize("http", ["httptools", "h11"])
def test_thread_workers_under_load_answer_every_request_right(tmp_path: Path, http: str) -> None:
    """Four thread workers, eight clients, 2,500 distinct targets: every response is the one asked for
    and every access line is whole. On a free-threaded build the workers run in parallel, so the
    caches' check-then-act sequences (``len()`` then insert, ``clear()`` then insert) race for real."""
    (tmp_path / "app.py").write_text(LOAD_APP)
    clients, each = 8, 600
    with fulmen(tmp_path, http, script=LOAD_SCRIPT) as server:
        server.wait_serving(30, path="/p/0/x?n=0")
        failures: list[str] = []
        threads = [
            threading.Thread(target=hammer, args=(server.port, c * each, each, failures))
            for c in range(clients)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(120)
        assert not any(thread.is_alive() for thread in threads), "clients did not finish in 120 s"
        assert not failures, failures[:5]
        assert server.stop() == 0
        lines = [line for line in server.output().splitlines() if '"GET /p/' in line]
        assert len(lines) == clients * each + 1, len(lines)  # and the wait_serving request
        bad = [line for line in lines if not ACCESS_LINE.match(line) and "/p/0/x" not in line]
        assert not bad, bad[:5]
        for line in lines:
            found = ACCESS_LINE.match(line)
            assert found is None or found.group(2) == found.group(3), line
