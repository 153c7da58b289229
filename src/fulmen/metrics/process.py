"""CPU time, resident memory and start time of the current process, from the standard library."""

from __future__ import annotations

import os
import resource
import sys
import time

_PAGE_SIZE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
#: When this process started serving, in seconds since the epoch (taken when metrics are first set up).
START_TIME = time.time()


def cpu_seconds() -> float:
    """User and system CPU time of the whole process (every thread)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def resident_bytes() -> int:
    """Resident memory now (Linux: ``/proc/self/statm``); elsewhere the peak, which is all there is."""
    try:
        with open("/proc/self/statm", "rb") as statm:
            return int(statm.read().split()[1]) * _PAGE_SIZE
    except (OSError, IndexError, ValueError):
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak if sys.platform == "darwin" else peak * 1024
