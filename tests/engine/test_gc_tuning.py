from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from flowscope.engine.gc_tuning import FULL_COLLECTION_INTERVAL, tune_collector


@pytest.fixture
def restored_collector() -> Iterator[None]:
    thresholds = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*thresholds)


@pytest.mark.usefixtures("restored_collector")
def test_tuning_freezes_start_up_objects_and_spaces_out_full_collections() -> None:
    young, middle, _ = gc.get_threshold()
    tune_collector()
    assert gc.get_freeze_count() > 0
    assert gc.get_threshold() == (young, middle, FULL_COLLECTION_INTERVAL)


@pytest.mark.usefixtures("restored_collector")
def test_young_cycles_are_still_collected_after_tuning() -> None:
    tune_collector()

    class Node:
        partner: object = None

    a, b = Node(), Node()
    a.partner, b.partner = b, a
    del a, b
    assert gc.collect(0) + gc.collect(1) >= 2
