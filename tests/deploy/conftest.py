"""Deploy-test fixtures: one real engine run, written by the real JSON-lines sink, shared by the
tests that check the collectors' paths and the index templates against it."""

from __future__ import annotations

import pytest
import torch
from deploy_documents import WrittenLog, write_flowscope_log

torch.set_num_threads(1)


@pytest.fixture(scope="session")
def written_log(tmp_path_factory: pytest.TempPathFactory) -> WrittenLog:
    return write_flowscope_log(tmp_path_factory.mktemp("flowscope-base"))
