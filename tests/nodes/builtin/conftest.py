"""Fixtures for the built-in node pack: node classes bound to a fresh data directory."""

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from flowscope.nodes.builtin import builtin_nodes
from flowscope.storage.directories import Directories

RunNode = Callable[..., Any]


@pytest.fixture
def directories(tmp_path: Path) -> Directories:
    dirs = Directories.under(tmp_path / "data")
    dirs.ensure()
    return dirs


@pytest.fixture
def nodes(directories: Directories) -> dict[str, type]:
    """NODE_CLASS_MAPPINGS of the built-in pack, bound to `directories`."""
    return builtin_nodes(directories)[0]


@pytest.fixture
def run(nodes: dict[str, type]) -> RunNode:
    """Call a node as the engine does: a new instance, then FUNCTION with keyword inputs."""

    def call(class_type: str, **inputs: Any) -> Any:
        cls = nodes[class_type]
        return getattr(cls(), cls.FUNCTION)(**inputs)  # type: ignore[attr-defined]

    return call
