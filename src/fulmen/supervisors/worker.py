"""The worker handle: what a supervisor needs from one worker, process or thread.

The supervision policy lives in :mod:`fulmen.supervisors.pool`; the handles only know how to start,
probe and stop their own kind of worker.
"""

from __future__ import annotations

import abc
import time
from collections.abc import Callable
from typing import ClassVar


class Worker(abc.ABC):
    """One worker. ``health`` never blocks, so one stuck worker cannot stall the supervision of the others."""

    kind: ClassVar[str] = "worker"

    def __init__(self) -> None:
        self.started_at: float | None = None

    @property
    @abc.abstractmethod
    def pid(self) -> int | None:
        """Process id, or native thread id, once started."""

    @property
    @abc.abstractmethod
    def exitcode(self) -> int | None:
        """Exit status once the worker has ended (negative: killed by that signal)."""

    @abc.abstractmethod
    def start(self) -> None: ...

    @abc.abstractmethod
    def is_running(self) -> bool:
        """Whether the process or thread exists, healthy or not."""

    @abc.abstractmethod
    def health(self, timeout: float) -> str | None:
        """Why the worker is unhealthy, or None if it is fine (or still starting). Does not block."""

    @abc.abstractmethod
    def is_ready(self) -> bool:
        """Whether the worker is serving. Does not block."""

    @abc.abstractmethod
    def terminate(self) -> None:
        """Ask for a graceful stop."""

    @abc.abstractmethod
    def kill(self) -> None:
        """Stop as forcefully as the kind of worker allows."""

    @abc.abstractmethod
    def join(self, timeout: float | None = None) -> None: ...

    def is_alive(self, timeout: float = 5) -> bool:
        """Whether the worker runs and is healthy."""
        return self.is_running() and self.health(timeout) is None

    @property
    def uptime(self) -> float:
        return 0.0 if self.started_at is None else time.monotonic() - self.started_at

    @property
    def name(self) -> str:
        return f"{self.kind} [{self.pid}]"

    def wait_until_ready(self, timeout: float, should_stop: Callable[[], bool] = lambda: False) -> bool:
        """Wait until the worker serves; False if it ends, ``should_stop()`` or time runs out."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if should_stop() or not self.is_running():
                return False
            if self.is_ready():
                return True
            time.sleep(0.05)
        return False
