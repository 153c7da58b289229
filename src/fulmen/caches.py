"""What the hot path remembers between requests: parsed request targets, method names, checked
response header names, lines and values, Content-Length values (and, in the access log's buffer,
quoted paths).

One set per server (``ServerState.caches``, made by the thread that serves), not one per process:
on free-threaded Python each thread worker then looks up keys it stored itself. A dict lookup with
an equal but not identical key, in a dict whose matching key another thread created, leaves the
lock-free path (CPython 3.13t cannot take a reference to that key without the dict's lock) and costs
tens of microseconds: with one cache per process, two thread workers answered fewer requests than
one (``benchmarks/free_threading_lookups.py`` measures it). Every cache is bounded and emptied when
full, so that the keys in use now come back in.

It sits below every module that fills these caches (the access log, the response rules, HTTP/1.1
and HTTP/2) and imports nothing of fulmen.
"""

from __future__ import annotations

from typing import TypeVar

K = TypeVar("K", bytes, str)
V = TypeVar("V")

#: Entries per cache, and the longest key worth caching (longer ones are rare and costly to hash).
MAX_ENTRIES = 1024
MAX_KEY_SIZE = 256


class HTTPCaches:
    """The caches of one server; every one maps what the peer or the application sent to what it means."""

    __slots__ = (
        "content_lengths",
        "h2_fields",
        "h2_heads",
        "header_lines",
        "header_names",
        "header_values",
        "methods",
        "targets",
    )

    def __init__(self) -> None:
        #: Request target -> (decoded path, raw path, query).
        self.targets: dict[bytes, tuple[str, bytes, bytes]] = {}
        #: Request method as the parser gives it -> as the scope shows it.
        self.methods: dict[bytes, str] = {}
        #: Response header name as the application gave it -> checked, lower-case.
        self.header_names: dict[bytes, bytes] = {}
        #: Response header name as the application gave it -> the start of its HTTP/1.1 line
        #: ("name: ") and, for a header the server acts on (Content-Length, Connection...), its
        #: lower-case name: one lookup per header.
        self.header_lines: dict[bytes, tuple[bytes, bytes | None]] = {}
        #: Response header values already checked (no CR, LF or NUL).
        self.header_values: set[bytes] = set()
        #: Response Content-Length values already parsed.
        self.content_lengths: dict[bytes, int] = {}
        #: HTTP/2: a response field (name, value) -> its HPACK bytes.
        self.h2_fields: dict[tuple[bytes, bytes], bytes] = {}
        #: HTTP/2: (status, *headers) of a response start -> the head checked and encoded.
        self.h2_heads: dict[tuple[object, ...], tuple[int, bytes, int, frozenset[bytes]]] = {}


def remember(cache: dict[K, V], key: K, value: V) -> None:
    """Store ``key`` in a bounded cache (emptied when full), if it is short enough to be worth it."""
    if len(key) <= MAX_KEY_SIZE:
        if len(cache) >= MAX_ENTRIES:
            cache.clear()
        cache[key] = value
