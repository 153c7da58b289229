"""The supervision policy without processes: restart budget, worker selection, reload patterns, filters."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from fulmen import Config
from fulmen.reload_patterns import DEFAULT_EXCLUDES, resolve_reload_patterns
from fulmen.supervisors.budget import RestartBudget
from fulmen.supervisors.entry import worker_mode
from fulmen.supervisors.filefilter import FileFilter
from fulmen.supervisors.heartbeat import Heartbeats, install_heartbeats, stale_after
from fulmen.supervisors.pool import workers_from_config


def test_backoff_doubles_from_half_a_second_up_to_thirty() -> None:
    budget = RestartBudget(max_restarts=100)
    delays = []
    for i in range(10):
        delays.append(budget.on_crash(uptime=0.1, now=i * 100.0 / 100))
        budget.record_restart(now=i * 1.0)
    assert delays[:7] == [0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0]
    assert max(delays) == 30.0


def test_at_most_five_restarts_a_minute() -> None:
    budget = RestartBudget()
    now = 0.0
    for _ in range(5):
        now += budget.on_crash(uptime=0.1, now=now)
        budget.record_restart(now)
    assert budget.exhausted(now)
    delay = budget.on_crash(uptime=0.1, now=now)
    # The sixth restart waits for the first one to leave the 60 s window.
    assert now + delay >= budget.restarts[0] + 60
    assert not budget.exhausted(budget.restarts[0] + 60)


def test_a_worker_that_ran_a_whole_window_resets_the_backoff() -> None:
    budget = RestartBudget()
    for i in range(3):
        budget.on_crash(uptime=0.1, now=float(i))
    assert budget.on_crash(uptime=61.0, now=200.0) == 0.5


def test_workers_default_to_web_concurrency(monkeypatch: pytest.MonkeyPatch) -> None:
    class Options:
        workers = None

    monkeypatch.setenv("WEB_CONCURRENCY", "3")
    assert workers_from_config(Options()) == 3
    monkeypatch.delenv("WEB_CONCURRENCY")
    assert workers_from_config(Options()) == 1
    Options.workers = 4  # type: ignore[assignment]
    assert workers_from_config(Options()) == 4


def test_worker_class_selection(capfd: pytest.CaptureFixture[str]) -> None:
    gil = getattr(sys, "_is_gil_enabled", lambda: True)()
    assert worker_mode(Config("app:app", worker_class="process")) == "process"
    assert worker_mode(Config("app:app", worker_class="auto")) == ("process" if gil else "thread")
    if gil:
        assert worker_mode(Config("app:app", worker_class="thread")) is None
        assert "free-threaded" in capfd.readouterr().err


def test_heartbeats_chain_an_existing_callback_and_restart_after_pickling() -> None:
    import pickle

    calls = []

    class Holder:
        callback_progress = staticmethod(lambda: calls.append(1))

    holder = Holder()
    beats = install_heartbeats(holder)
    assert install_heartbeats(holder) is beats
    beats()
    assert calls == [1] and beats.latest() is not None
    copy = pickle.loads(pickle.dumps(Heartbeats()))
    assert copy.latest() is None
    assert stale_after(1) == 3.0 and stale_after(10) == 10.0


def test_reload_patterns_defaults(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    config = Config("app:app", reload=True)
    assert config.reload_dirs == [tmp_path.resolve()]
    assert config.reload_includes == ["*.py"]
    assert config.reload_excludes == list(DEFAULT_EXCLUDES)
    before = (config.reload_dirs, config.reload_includes, config.reload_excludes)
    resolve_reload_patterns(config)  # idempotent
    assert (config.reload_dirs, config.reload_includes, config.reload_excludes) == before


def test_reload_patterns_merge_user_patterns(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "src" / "inner").mkdir(parents=True)
    (tmp_path / "build").mkdir()
    config = Config(
        "app:app",
        reload=True,
        reload_dirs=["src", "src/inner", "missing"],
        reload_includes=["*.yaml", ".*"],
        reload_excludes=["build", "*_test.py"],
    )
    assert config.reload_dirs == [(tmp_path / "src").resolve()]
    assert config.reload_includes == ["*.py", "*.yaml", ".*"]
    assert ".*" not in config.reload_excludes and "*_test.py" in config.reload_excludes
    assert config.reload_dirs_excludes == [(tmp_path / "build").resolve()]


def test_file_filter(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "tests").mkdir()
    config = Config("app:app", reload=True, reload_includes=["*.yaml", ".env"], reload_excludes=["tests"])
    accept = FileFilter(config)
    root = tmp_path.resolve()
    assert accept(root / "app.py")
    assert accept(root / "pkg" / "settings.yaml")
    assert accept(root / ".env")  # an explicit include beats the default hidden-file exclude
    assert not accept(root / ".hidden.py")
    assert not accept(root / "tests" / "test_app.py")  # an excluded directory
    assert not accept(root / ".venv" / "lib" / "site.py")  # a hidden directory
    assert not accept(root / "notes.txt")
    assert not accept(root / "app.pyc")
    assert accept.is_excluded_dir(root / ".git") and not accept.is_excluded_dir(root / "pkg")


def test_config_pickles_for_spawned_workers() -> None:
    import pickle

    from fulmen import Server

    config = Config("app:app", workers=2)
    target = Server(config).run
    clone = pickle.loads(pickle.dumps(target))
    assert clone.__self__.config.app == "app:app"
    assert os.getpid()  # the clone is usable as a worker target
