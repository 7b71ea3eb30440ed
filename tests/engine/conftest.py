from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import testing_nodes
import torch

from flowscope.engine import Executor, JobRequest, JobResult
from flowscope.engine.cache import OutputCache
from flowscope.graph.validation import validate_prompt
from flowscope.nodes.registry import NodeRegistry
from flowscope.telemetry import EventBus, InMemorySubscriber

torch.set_num_threads(1)


class Engine:
    """Validate + execute with an in-memory event subscriber, as the CLI and server do."""

    def __init__(self, cache: OutputCache | None = None) -> None:
        self.registry = NodeRegistry()
        self.registry.register_mappings(
            testing_nodes.NODE_CLASS_MAPPINGS, python_module="tests", builtin=True
        )
        self.bus = EventBus()
        self.events = InMemorySubscriber(self.bus)
        self.executor = Executor(self.registry, bus=self.bus, cache=cache)

    def run(self, prompt: dict[str, Any], **request: Any) -> JobResult:
        validation = validate_prompt(prompt, self.registry.schema)
        assert validation.ok, (validation.error, validation.node_errors)
        self.events.clear()
        return self.executor.execute(
            JobRequest(prompt=validation.prompt, outputs=validation.outputs, **request)
        )


@pytest.fixture
def engine() -> Iterator[Engine]:
    testing_nodes.CALLS.clear()
    yield Engine()
    testing_nodes.CALLS.clear()


@pytest.fixture
def calls() -> list[tuple[str, Any]]:
    return testing_nodes.CALLS
