"""How soon a crashed worker may be replaced.

A worker that crashes again and again (a bad deploy, a dependency that is down) must not turn the
supervisor into a fork bomb that floods the logs: each worker slot gets an exponential backoff and at
most a fixed number of restarts in a sliding window.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field

#: Sliding window, and the most restarts of one slot allowed inside it.
WINDOW = 60.0
MAX_RESTARTS = 5
#: First delay after a crash; it doubles with every further crash, up to the maximum.
FIRST_BACKOFF = 0.5
MAX_BACKOFF = 30.0


@dataclass
class RestartBudget:
    """Restart bookkeeping of one worker slot."""

    window: float = WINDOW
    max_restarts: int = MAX_RESTARTS
    first_backoff: float = FIRST_BACKOFF
    max_backoff: float = MAX_BACKOFF
    restarts: deque[float] = field(default_factory=deque)
    streak: int = 0

    def _forget_old(self, now: float) -> None:
        while self.restarts and now - self.restarts[0] >= self.window:
            self.restarts.popleft()

    def on_crash(self, uptime: float, now: float | None = None) -> float:
        """Record a crash of a worker that ran ``uptime`` seconds; return the delay before its restart.

        A worker that stayed up for a whole window ends the streak, so that an occasional crash in a
        long-running server is retried quickly.
        """
        now = time.monotonic() if now is None else now
        self._forget_old(now)
        if uptime >= self.window:
            self.streak = 0
        delay = min(self.max_backoff, self.first_backoff * 2.0**self.streak)
        if len(self.restarts) >= self.max_restarts:
            delay = max(delay, self.restarts[0] + self.window - now)
        self.streak += 1
        return delay

    def record_restart(self, now: float | None = None) -> None:
        self.restarts.append(time.monotonic() if now is None else now)

    def recent_restarts(self, now: float | None = None) -> int:
        """Restarts inside the current window."""
        self._forget_old(time.monotonic() if now is None else now)
        return len(self.restarts)

    def exhausted(self, now: float | None = None) -> bool:
        """Whether the window's restarts are used up (the next restart waits for the window to slide)."""
        return self.recent_restarts(now) >= self.max_restarts
