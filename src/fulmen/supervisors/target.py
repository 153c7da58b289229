"""What a worker runs.

The usual target is ``Server(config).run``, a bound method built once by the caller. A spawned
process gets its own copy of that server by unpickling; thread workers share the process, so each
thread gets a fresh ``Server`` (its own state and stop flags) on the same class. Any other callable is
used as given.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


def server_of(target: Callable[..., Any]) -> Any | None:
    """The server whose ``run`` method ``target`` is, or None for any other callable."""
    owner = getattr(target, "__self__", None)
    if owner is None or getattr(target, "__name__", None) != "run":
        return None
    if not all(hasattr(owner, name) for name in ("config", "should_exit", "started")):
        return None
    return owner


def fresh_server(target: Callable[..., Any], config: Any | None = None) -> Any | None:
    """A new server of the same class as ``target``'s, on ``config`` (default: the same config)."""
    owner = server_of(target)
    if owner is None:
        return None
    try:
        return type(owner)(owner.config if config is None else config)
    except TypeError:  # a subclass with a different constructor: run the given server itself
        return owner
