"""The engine test harness: validate + execute with an in-memory event subscriber (as the CLI and
server do), and small helpers to write prompts and read what happened."""

from __future__ import annotations

from typing import Any

import testing_nodes

from flowscope.engine import Executor, JobRequest, JobResult
from flowscope.engine.cache import OutputCache
from flowscope.graph.validation import validate_prompt
from flowscope.nodes.registry import NodeRegistry
from flowscope.telemetry import Action, Event, EventBus, InMemorySubscriber


class Engine:
    def __init__(self, cache: OutputCache | None = None, **executor_options: Any) -> None:
        self.registry = NodeRegistry()
        self.registry.register_mappings(
            testing_nodes.NODE_CLASS_MAPPINGS, python_module="tests", builtin=True
        )
        self.bus = EventBus()
        self.events = InMemorySubscriber(self.bus)
        self.executor = Executor(self.registry, bus=self.bus, cache=cache, **executor_options)

    def run(
        self, prompt: dict[str, Any], targets: list[str] | None = None, **request: Any
    ) -> JobResult:
        """Validate (every output must pass) and execute; this job's events replace the last."""
        validation = validate_prompt(prompt, self.registry.schema, targets)
        assert validation.ok, (validation.error, validation.node_errors)
        assert not validation.node_errors, validation.node_errors
        self.events.clear()
        return self.executor.execute(
            JobRequest(prompt=validation.prompt, outputs=validation.outputs, **request)
        )

    def node_ids(self, action: Action) -> list[str]:
        """The node ids of this job's `action` events, in order."""
        return [event.get("node.id") for event in self.events.of(action)]

    def event(self, action: Action, node_id: str) -> Event:
        """This job's only `action` event for `node_id`."""
        (found,) = [e for e in self.events.of(action) if e.get("node.id") == node_id]
        return found

    def succeeded(self) -> list[str]:
        return self.node_ids(Action.NODE_SUCCEEDED)

    def cached(self) -> list[str]:
        return self.node_ids(Action.NODE_CACHED)


def node(class_type: str, /, **inputs: Any) -> dict[str, Any]:
    return {"class_type": class_type, "inputs": inputs}


def link(node_id: str, slot: int = 0) -> list[Any]:
    return [node_id, slot]


def calls(class_type: str) -> list[Any]:
    """The arguments of every call of `class_type` so far (from testing_nodes.CALLS)."""
    return [argument for name, argument in testing_nodes.CALLS if name == class_type]
