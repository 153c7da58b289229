"""Applications of the free-threading benchmark (``make bench-ft``).

``cpu_bound``  about 1-2 ms of pure Python per request (the time depends on the interpreter: the
               benchmark reports it), then a short text answer: what parallel workers are for.
``big_state``  the plaintext answer from an application that holds about 50 MB of Python objects
               (strings in a list, as caches, lookup tables and loaded models are), built at import:
               every process worker has its own copy, thread workers share one.
"""

from __future__ import annotations

from typing import Any

from benchmarks.apps import PLAINTEXT_BODY, Receive, Scope, Send, _lifespan, _reply

#: Iterations of the pure-Python loop per request.
CPU_ITERATIONS = 25_000
#: Strings of 48 characters: about 96 bytes each with the object header, plus 8 in the list.
BIG_STATE_ITEMS = 500_000
_TEXT = [(b"content-type", b"text/plain; charset=utf-8")]


def burn(iterations: int = CPU_ITERATIONS) -> int:
    """Pure Python arithmetic: no C call that would let go of the GIL on a normal build."""
    total = 0
    for i in range(iterations):
        total = (total + i * i) % 1_000_003
    return total


async def cpu_bound(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] == "lifespan":
        await _lifespan(receive, send)
        return
    await _reply(send, b"%d" % burn(), _TEXT)


BIG_STATE: list[Any] = [f"{i:048d}" for i in range(BIG_STATE_ITEMS)]


async def big_state(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] == "lifespan":
        await _lifespan(receive, send)
        return
    await _reply(send, PLAINTEXT_BODY, _TEXT)
