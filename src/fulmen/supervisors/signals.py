"""Signal plumbing shared by the supervisors.

Python runs signal handlers in the main thread between bytecodes, possibly while that thread holds a
lock inside ``threading.Event.wait``; so handlers here only record the signal (a list append), and
events are set from a helper thread.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable, Iterable
from types import FrameType
from typing import Any

#: Signals a worker pool reacts to, by number, with their short names ("INT", "HUP", ...).
POOL_SIGNALS: dict[int, str] = {
    int(getattr(signal, f"SIG{name}")): name
    for name in ("INT", "TERM", "BREAK", "HUP", "TTIN", "TTOU")
    if hasattr(signal, f"SIG{name}")
}
#: Signals that ask for a graceful stop.
EXIT_SIGNALS: frozenset[int] = frozenset(
    int(getattr(signal, f"SIG{name}")) for name in ("INT", "TERM", "BREAK") if hasattr(signal, f"SIG{name}")
)

Handler = Callable[[int, "FrameType | None"], Any]


def install(signals: Iterable[int], handler: Handler) -> Callable[[], None]:
    """Install ``handler`` for ``signals`` (main thread only) and return a function restoring the old ones.

    Outside the main thread nothing is installed: the embedding program owns signals there.
    """
    if threading.current_thread() is not threading.main_thread():
        return lambda: None
    previous: dict[int, Any] = {}
    for sig in signals:
        try:
            previous[sig] = signal.signal(sig, handler)
        except (OSError, ValueError):  # pragma: no cover - a signal this platform cannot catch
            continue

    def restore() -> None:
        for sig, old in previous.items():
            signal.signal(sig, old if old is not None else signal.SIG_DFL)

    return restore


def set_soon(event: threading.Event) -> None:
    """Set ``event`` from a signal handler without risking a deadlock on the event's own lock."""
    threading.Thread(target=event.set, name="fulmen-signal", daemon=True).start()
