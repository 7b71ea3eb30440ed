"""Session fixtures for the SD node tests: the tiny SD1 and SDXL worlds (made once each)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch
from sd_world import SDWorld, make_world

from flowscope.models.families import Family


@pytest.fixture(scope="session")
def sd1(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SDWorld]:
    torch.set_num_threads(1)
    world = make_world(tmp_path_factory.mktemp("sd1"), Family.SD1)
    yield world
    world.executor.close()


@pytest.fixture(scope="session")
def sdxl(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SDWorld]:
    torch.set_num_threads(1)
    world = make_world(tmp_path_factory.mktemp("sdxl"), Family.SDXL)
    yield world
    world.executor.close()
