"""Engine test fixtures: a fresh Engine, and a clean testing node pack for every test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import testing_nodes
import torch
from engine_harness import Engine

torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _reset_testing_nodes() -> Iterator[None]:
    """Every test starts with an empty call log and no hooks or fingerprints."""
    for state in (testing_nodes.CALLS, testing_nodes.HOOKS, testing_nodes.FINGERPRINTS):
        state.clear()
    yield
    for state in (testing_nodes.CALLS, testing_nodes.HOOKS, testing_nodes.FINGERPRINTS):
        state.clear()


@pytest.fixture
def engine() -> Engine:
    return Engine()
