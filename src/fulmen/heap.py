"""The C heap of a server process: keep glibc from giving the top of the heap back to the kernel
after every loop turn.

glibc's ``malloc`` returns free memory at the top of its heap to the kernel once more than
128 KiB (``M_TRIM_THRESHOLD``) is free there. A server whose loop turns each allocate and free a
few MiB of request and response buffers (64 connections with 16 KiB bodies) can then shrink the
heap at the end of every turn and grow it again in the next, taking a page fault for every 4 KiB:
measured here, the kernel time per request doubled (7.5 to 14.8 µs) in about one server start in
three, depending on what else happened to sit at the top of the heap. uvicorn shows the same.

glibc raises the threshold by itself the first time a program frees a block it had to ``mmap``
(more than 128 KiB): the mmap threshold becomes that block's size and the trim threshold twice that
(``mallopt(3)``, "dynamic mmap threshold"). fulmen frees one 4 MiB block at startup, so the
thresholds are 4 and 8 MiB from the start instead of after the first large request. Settings made
with ``MALLOC_TRIM_THRESHOLD_`` and the like turn the adjustment off in glibc, so they win; other C
libraries ignore it (the block is allocated zeroed, untouched, and freed at once).
"""

from __future__ import annotations

_BLOCK = 4 << 20
_done = False


def settle_heap_thresholds() -> None:
    """Allocate and free one 4 MiB block, once per process (see the module's docstring)."""
    global _done
    if not _done:
        _done = True
        block = bytes(_BLOCK)  # calloc: mapped, never touched
        del block
