"""Log store test fixtures: a store in a temporary folder, filled with sample documents."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from logstore_samples import sample_documents

from flowscope.logstore import LogStore

torch.set_num_threads(1)  # the sink tests run the real engine


@pytest.fixture
def store(tmp_path: Path) -> Iterator[LogStore]:
    with LogStore(tmp_path / "logstore.db") as opened:
        yield opened


@pytest.fixture
def sample_store(store: LogStore) -> LogStore:
    store.insert(sample_documents())
    return store
