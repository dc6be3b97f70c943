"""The collector's settings for a process that serves LocalNet."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from golem_trio.localnet import SERVING_GC_THRESHOLD, tune_gc_for_serving


@pytest.fixture
def restored_gc() -> Iterator[None]:
    threshold = gc.get_threshold()
    try:
        yield
    finally:
        gc.unfreeze()
        gc.set_threshold(*threshold)


@pytest.mark.usefixtures("restored_gc")
def test_serving_collects_the_young_less_often_and_freezes_what_lives() -> None:
    gc.unfreeze()
    _first, second, third = gc.get_threshold()
    kept = [object() for _ in range(100)]
    tune_gc_for_serving()
    assert gc.get_threshold() == (SERVING_GC_THRESHOLD, second, third)
    assert gc.get_freeze_count() >= len(kept)
