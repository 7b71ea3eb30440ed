"""Node failures (spec §3.7): ComfyUI's execution_error payload field by field, out-of-memory
classification and hook, and the first failure stopping the job."""

from __future__ import annotations

import time
from typing import Any

import pytest
from engine_harness import Engine, calls, link, node

from flowscope.telemetry import Action, Level

PAYLOAD_FIELDS = {
    "prompt_id",
    "node_id",
    "node_type",
    "executed",
    "exception_message",
    "exception_type",
    "traceback",
    "current_inputs",
    "current_outputs",
    "timestamp",
}


def _failing(message: str = "boom") -> dict[str, dict[str, Any]]:
    return {
        "1": node("StubInt", value=1),
        "2": node("AddInt", a=link("1"), b=1),
        "3": node("Fail", value=link("2"), message=message),
        "4": node("Collect", value=link("3")),
    }


def test_the_execution_error_payload(engine: Engine) -> None:
    result = engine.run(_failing("it broke"), job_id="job-7")
    assert result.status == "error"
    error = result.error
    assert error is not None
    assert set(error) == PAYLOAD_FIELDS
    assert error["prompt_id"] == "job-7"
    assert error["node_id"] == "3"
    assert error["node_type"] == "Fail"
    assert error["executed"] == ["1", "2"]
    assert error["exception_message"] == "it broke"
    assert error["exception_type"] == "ValueError"  # built-ins appear bare
    assert isinstance(error["traceback"], list)
    assert all(isinstance(line, str) for line in error["traceback"])
    assert "raise ValueError(message)" in error["traceback"][-1]
    assert error["current_inputs"] == {"value": [2], "message": ["it broke"]}
    assert error["current_outputs"] == []
    assert abs(error["timestamp"] - time.time() * 1000) < 60_000
    assert isinstance(error["timestamp"], int)


def test_current_outputs_lists_what_was_cached_at_the_start(engine: Engine) -> None:
    engine.run({"1": node("StubInt", value=1), "9": node("Collect", value=link("1"))})
    result = engine.run(_failing())
    assert result.error is not None
    assert result.error["current_outputs"] == ["1"]
    assert result.error["executed"] == ["1", "2"]


def test_exception_types_are_qualified(engine: Engine) -> None:
    prompt = {
        "1": node("StubInt", value=1),
        "2": node("ExpandWithId", value=link("1"), node_id="1"),
        "3": node("Collect", value=link("2")),
    }
    result = engine.run(prompt)
    assert result.error is not None
    assert result.error["exception_type"] == "flowscope.engine.dynprompt.DuplicateNodeError"


def test_tensor_inputs_are_summarised_not_printed(engine: Engine) -> None:
    prompt = {
        "1": node("MakeImage", size=64),
        "2": node("Raise", value=link("1"), kind="value", message="bad image"),
        "3": node("Collect", value=link("2")),
    }
    result = engine.run(prompt)
    assert result.error is not None
    (summary,) = result.error["current_inputs"]["value"]
    assert summary == "Tensor(shape=[1, 64, 64, 3], dtype=torch.float32, device=cpu)"
    assert "tensor(" not in str(result.error["current_inputs"])


def test_long_inputs_are_cut_in_the_payload(engine: Engine) -> None:
    result = engine.run(_failing("x" * 5000))
    assert result.error is not None
    (message,) = result.error["current_inputs"]["message"]
    assert len(message) <= 201
    assert message.endswith("…")


def test_the_real_node_id_is_reported_inside_expansions(engine: Engine) -> None:
    prompt = {
        "1": node("StubInt", value=1),
        "8": node("ExpandInto", value=link("1"), class_type="Raise", input_name="value"),
        "9": node("Collect", value=link("8")),
    }
    result = engine.run(prompt)
    assert result.error is not None
    assert result.error["node_id"] == "8"
    assert result.error["node_type"] == "ExpandInto"
    assert result.error["current_inputs"] == {"value": [1]}


def test_the_first_failure_stops_the_job(engine: Engine) -> None:
    prompt = {
        "1": node("StubInt", value=1),
        "2": node("Fail", value=link("1"), message="first"),
        "3": node("Collect", value=link("2")),
        # Independent, and scheduled after the failing branch: it never runs.
        "4": node("StubInt", value=4),
        "5": node("AddInt", a=link("4"), b=1),
        "6": node("Collect", value=link("5")),
    }
    result = engine.run(prompt)
    assert result.status == "error"
    assert calls("StubInt") == [1]
    assert calls("AddInt") == []
    assert engine.node_ids(Action.NODE_FAILED) == ["2"]
    assert engine.events.actions()[-1] == "job.failed"
    assert [r.status for r in result.nodes] == ["succeeded", "failed"]


def test_results_before_a_failure_stay_cached(engine: Engine) -> None:
    engine.run(_failing())
    prompt = _failing()
    prompt["3"] = node("AddInt", a=link("2"), b=10)
    result = engine.run(prompt)
    assert result.status == "success"
    assert sorted(engine.cached()) == ["1", "2"]
    assert result.outputs["4"] == {"value": [12]}


def test_node_failed_event_fields(engine: Engine) -> None:
    engine.run(_failing("it broke"), job_id="job-7")
    (failed,) = engine.events.of(Action.NODE_FAILED)
    assert failed.level is Level.ERROR
    assert failed.get("node.id") == "3"
    assert failed.get("node.type") == "Fail"
    assert failed.get("event.outcome") == "failure"
    assert failed.get("error.type") == "ValueError"
    assert failed.get("error.message") == "it broke"
    assert "raise ValueError(message)" in failed.get("error.stack_trace")
    assert isinstance(failed.get("event.duration"), int)
    assert failed.get("node.duration_ms") == failed.get("event.duration") / 1e6
    assert failed.get("error.code") is None
    assert failed.detail is not None
    assert failed.detail["node_id"] == "3"
    (job_failed,) = engine.events.of(Action.JOB_FAILED)
    assert job_failed.level is Level.ERROR
    assert job_failed.get("error.type") == "ValueError"
    assert job_failed.get("node.id") == "3"


def _oom(kind: str) -> dict[str, dict[str, Any]]:
    return {
        "1": node("StubInt", value=1),
        "2": node("Raise", value=link("1"), kind=kind, message="batch too big"),
        "3": node("Collect", value=link("2")),
    }


@pytest.mark.parametrize(
    ("kind", "exception_type"),
    [("torch_oom", "torch.OutOfMemoryError"), ("cpu_oom", "RuntimeError")],
)
def test_out_of_memory_is_classified_and_the_hook_called(kind: str, exception_type: str) -> None:
    hook_calls: list[str] = []
    engine = Engine(on_out_of_memory=lambda: hook_calls.append(kind))
    result = engine.run(_oom(kind))
    assert result.status == "error"
    assert result.error is not None
    assert result.error["exception_type"] == exception_type
    assert "TIPS" in result.error["exception_message"]
    assert hook_calls == [kind]
    (failed,) = engine.events.of(Action.NODE_FAILED)
    assert failed.get("error.code") == "out_of_memory"
    assert failed.get("error.type") == exception_type


def test_other_errors_are_not_out_of_memory() -> None:
    hook_calls: list[int] = []
    engine = Engine(on_out_of_memory=lambda: hook_calls.append(1))
    result = engine.run(_oom("value"))
    assert result.error is not None
    assert "TIPS" not in result.error["exception_message"]
    assert hook_calls == []
    (failed,) = engine.events.of(Action.NODE_FAILED)
    assert failed.get("error.code") is None
