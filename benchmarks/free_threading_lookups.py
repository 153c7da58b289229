"""The cost of one dict lookup from a thread, by who filled the dict (free-threaded Python).

Why fulmen's hot-path caches belong to each server rather than to the process: a lookup with a key
equal to, but not the same object as, a key another thread created can leave the lock-free path.
Prints nanoseconds per ``dict.get`` from a new thread::

    .venv-ft/bin/python benchmarks/free_threading_lookups.py
"""

from __future__ import annotations

import sys
import threading
import time

LOOKUPS = 20_000


def per_lookup_ns(table: dict[object, object], make_key: object) -> float:
    """Nanoseconds per lookup, from a new thread, of a key made in that thread."""
    result: list[float] = []

    def run() -> None:
        key = make_key() if callable(make_key) else make_key
        get = table.get
        start = time.perf_counter()
        for _ in range(LOOKUPS):
            get(key)
        result.append((time.perf_counter() - start) * 1e9 / LOOKUPS)

    thread = threading.Thread(target=run)
    thread.start()
    thread.join()
    return result[0]


def main() -> None:
    # Keys made at run time (not constants of this script, which may be immortal).
    filled_here = {bytes(bytearray(b"content-length: ")): 1, "".join(["content-", "type"]): 2}
    bytes_key = next(key for key in filled_here if isinstance(key, bytes))
    cases = [
        ("filled by another thread, the same key object", filled_here, bytes_key),
        ("filled by another thread, equal bytes key", filled_here, lambda: bytes(bytearray(bytes_key))),
        ("filled by another thread, equal str key", filled_here, lambda: "".join(["content-", "type"])),
    ]
    for label, table, key in cases:
        print(f"{label:50} {per_lookup_ns(table, key):9.0f} ns")
    own: list[float] = []

    def fill_and_look_up() -> None:
        table = {bytes(bytearray(b"content-length: ")): 1}
        own.append(per_lookup_ns_here(table, bytes(bytearray(b"content-length: "))))

    thread = threading.Thread(target=fill_and_look_up)
    thread.start()
    thread.join()
    print(f"{'filled by the looking-up thread, equal bytes key':50} {own[0]:9.0f} ns")
    gil = getattr(sys, "_is_gil_enabled", lambda: True)()
    print(f"({sys.version.split()[0]}, GIL {'on' if gil else 'off'})")


def per_lookup_ns_here(table: dict[object, object], key: object) -> float:
    get = table.get
    start = time.perf_counter()
    for _ in range(LOOKUPS):
        get(key)
    return (time.perf_counter() - start) * 1e9 / LOOKUPS


if __name__ == "__main__":
    main()
