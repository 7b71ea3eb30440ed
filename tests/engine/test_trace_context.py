"""Trace context on events: one trace per job, the job as root span, a span per node."""

from __future__ import annotations

import re
from typing import Any

import pytest
from engine_harness import Engine, link, node

from flowscope.engine import Executor, JobRequest
from flowscope.graph.validation import validate_prompt
from flowscope.telemetry import Action, EventBus, InMemorySubscriber

HEX32 = re.compile(r"^[0-9a-f]{32}$")
HEX16 = re.compile(r"^[0-9a-f]{16}$")

PROMPT = {
    "1": node("StubInt", value=3),
    "2": node("AddInt", a=link("1"), b=4),
    "3": node("Collect", value=link("2")),
}


def test_every_event_of_a_job_shares_one_trace_and_each_node_has_its_span(engine: Engine) -> None:
    engine.run(PROMPT)
    events = engine.events.events
    trace_ids = {e.get("trace.id") for e in events}
    assert len(trace_ids) == 1 and HEX32.match(trace_ids.pop() or "")
    job_span = events[0].get("transaction.id")
    assert HEX16.match(job_span)
    assert all(e.get("transaction.id") == job_span for e in events)
    for event in events:
        if event.action.value.startswith("job."):
            assert event.get("span.id") == job_span
    spans: dict[str, set[str]] = {}
    for event in events:
        if event.action.value.startswith("node."):
            spans.setdefault(event.get("node.id"), set()).add(event.get("span.id"))
    assert set(spans) == {"1", "2", "3"}
    assert all(len(ids) == 1 for ids in spans.values())  # started and succeeded share the span
    all_spans = {next(iter(ids)) for ids in spans.values()}
    assert len(all_spans) == 3 and job_span not in all_spans


def test_a_given_trace_id_is_joined_and_each_job_gets_a_new_one_otherwise(engine: Engine) -> None:
    engine.run(PROMPT, trace_id="0af7651916cd43dd8448eb211c80319c")
    assert {e.get("trace.id") for e in engine.events.events} == {"0af7651916cd43dd8448eb211c80319c"}
    engine.run(PROMPT)
    first = engine.events.events[0].get("trace.id")
    engine.run(PROMPT)
    assert engine.events.events[0].get("trace.id") != first


class Echo:
    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {"required": {"text": ("STRING",), "api_key": ("STRING",)}}

    RETURN_TYPES = ("STRING",)
    FUNCTION = "run"

    def run(self, text: str, api_key: str) -> tuple[str]:
        return (text,)


def _inputs_logged(log_inputs: Any) -> Any:
    engine = Engine()
    engine.registry.register_mappings({"Echo": Echo}, python_module="tests", builtin=True)
    bus = EventBus()
    events = InMemorySubscriber(bus)
    executor = Executor(engine.registry, bus=bus, log_inputs=log_inputs)
    prompt = {
        "1": node("Echo", text="x" * 500, api_key="sk-123"),
        "2": node("Collect", value=link("1")),
    }
    validation = validate_prompt(prompt, engine.registry.schema)
    assert validation.ok, validation.node_errors
    executor.execute(JobRequest(prompt=validation.prompt, outputs=validation.outputs))
    succeeded = [e for e in events.of(Action.NODE_SUCCEEDED) if e.get("node.id") == "1"]
    return succeeded[0].get("node.inputs", "absent")


def test_log_inputs_policies() -> None:
    assert _inputs_logged("none") == "absent"
    preview = _inputs_logged("preview")
    assert preview == {"text": "x" * 200 + "…"}  # cut, and the secret-looking key dropped
    assert _inputs_logged("full") == {"text": "x" * 500}  # whole, still without the secret


def test_an_unknown_log_inputs_policy_is_refused() -> None:
    with pytest.raises(ValueError, match="log_inputs must be one of none, preview, full"):
        Executor(Engine().registry, log_inputs="everything")  # type: ignore[arg-type]
