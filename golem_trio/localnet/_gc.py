"""The garbage collector of a process that serves LocalNet.

A served network keeps what it makes (agreements, activities, documents, events) for as long as
it runs, and makes many short-lived objects per request. With CPython's default first threshold
(700 allocations) the collector runs hundreds of times while a thousand instances come up, and
each full collection walks every object the network keeps: at that size about a seventh of the
process's CPU. A process whose job is to serve LocalNet (``golem-trio localnet``, a benchmark's
network process) calls :func:`tune_gc_for_serving` once the network is up. Code that embeds
LocalNet in a process of its own (tests, an app) leaves the collector alone: that process's
collector is its owner's to set.
"""

from __future__ import annotations

import gc

__all__ = ["SERVING_GC_THRESHOLD", "tune_gc_for_serving"]

#: The first generation's threshold while serving (CPython's default is 700).
SERVING_GC_THRESHOLD = 20_000


def tune_gc_for_serving() -> None:
    """Set this process's collector for serving LocalNet: collect the youngest generation every
    :data:`SERVING_GC_THRESHOLD` allocations (the older generations' thresholds stay), and move
    everything alive now (the modules, the network as set up) out of the collector's sight
    (``gc.freeze``): those objects live as long as the process anyway."""
    _first, second, third = gc.get_threshold()
    gc.set_threshold(SERVING_GC_THRESHOLD, second, third)
    gc.freeze()
