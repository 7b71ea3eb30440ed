"""Job store fixtures: stores on a real SQLite file in the test's folder."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from flowscope.jobs import JobStore


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'flowscope.db'}"


@pytest.fixture
def open_store(db_url: str) -> Iterator[Callable[..., JobStore]]:
    """Opens stores on the test's database file (several may be open at once); closes them."""
    opened: list[JobStore] = []

    def open_(**options: Any) -> JobStore:
        store = JobStore(db_url, **options)
        opened.append(store)
        return store

    yield open_
    for store in opened:
        store.close()


@pytest.fixture
def store(open_store: Callable[..., JobStore]) -> JobStore:
    return open_store()
