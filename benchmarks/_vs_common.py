"""What both drivers of ``bench_vs_yapapi.py`` print: one JSON object a line on standard
output, stamped with the system's monotonic clock (the same in every process of the machine)
and this process's CPU time and resident memory. Standard library only: the yapapi driver
imports it from its own virtualenv."""

from __future__ import annotations

import json
import os
import resource
import sys
import time
from typing import Any

__all__ = ["cpu_seconds", "emit", "rss_bytes"]


def cpu_seconds() -> float:
    """User plus system CPU time of this process so far."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def rss_bytes() -> int:
    """The resident set size of this process now (not the peak)."""
    with open("/proc/self/statm", encoding="ascii") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def emit(event: str, **fields: Any) -> None:
    """One line: ``event``, the time ``t``, ``cpu`` and ``rss``, and ``fields``."""
    line = {"event": event, "t": time.monotonic(), "cpu": cpu_seconds(), "rss": rss_bytes()}
    line.update(fields)
    sys.stdout.write(json.dumps(line) + "\n")
    sys.stdout.flush()
