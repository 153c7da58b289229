"""The C heap's thresholds, raised at startup (fulmen.heap), checked in a fresh process."""

from __future__ import annotations

import subprocess
import sys
import sysconfig
import textwrap

import pytest

from tests.conftest import ROOT

_PROBE = textwrap.dedent(
    """
    import ctypes, sys
    try:
        mallinfo2 = ctypes.CDLL(None).mallinfo2  # glibc 2.33 and later
    except (OSError, AttributeError):
        sys.exit(77)
    class Info(ctypes.Structure):
        _fields_ = [(name, ctypes.c_size_t) for name in (
            "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks",
            "fordblks", "keepcost")]
    mallinfo2.restype = Info
    kept = []
    def mapped(size):
        # Kept, not freed: freeing a mapped block is what raises glibc's thresholds.
        before = mallinfo2().hblks
        kept.append(bytearray(size))
        return mallinfo2().hblks > before
    from fulmen.heap import settle_heap_thresholds
    print(mapped(2 << 20), end=" ")
    settle_heap_thresholds()
    print(mapped(2 << 20))
    """
)


def test_a_2_mib_block_comes_from_the_heap_after_startup() -> None:
    """By default glibc maps every block over 128 KiB on its own (and gives heap memory back as
    soon as 128 KiB is free at its top); after settle_heap_thresholds() both thresholds are MiBs."""
    if sysconfig.get_config_var("Py_GIL_DISABLED"):
        pytest.skip("free-threaded build: Python's objects come from mimalloc, not glibc's malloc")
    result = subprocess.run(
        [sys.executable, "-c", _PROBE], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    if result.returncode == 77:
        pytest.skip("not glibc with mallinfo2: nothing to check")
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["True", "False"]
