"""The job's events (telemetry spec §1-2): actions in order, shared fields, durations, input and
output previews, failures, a robust bus, and peak memory per node."""

from __future__ import annotations

import re
from typing import Any

from engine_harness import Engine, link, node

from flowscope.engine import Executor
from flowscope.engine.job import JobRequest
from flowscope.telemetry import Action, Event, EventBus, InMemorySubscriber, Level


def _chain() -> dict[str, Any]:
    return {
        "1": node("StubInt", value=1),
        "2": node("AddInt", a=link("1"), b=2),
        "3": node("Collect", value=link("2")),
    }


def test_actions_come_in_order(engine: Engine) -> None:
    engine.run(_chain())
    assert engine.events.actions() == [
        "job.started",
        "node.started",
        "node.succeeded",
        "node.started",
        "node.succeeded",
        "node.started",
        "node.succeeded",
        "job.succeeded",
    ]
    engine.run(_chain())
    assert engine.events.actions() == [
        "job.started",
        "node.cached",
        "node.cached",
        "node.cached",
        "job.succeeded",
    ]


def test_every_event_carries_the_job_and_a_sequence(engine: Engine) -> None:
    engine.run(_chain(), job_id="j-1", workflow_id="wf-8a2f1e9b", user_id="ada")
    events = engine.events.events
    assert [e.get("event.sequence") for e in events] == list(range(1, len(events) + 1))
    for event in events:
        assert event.get("job.id") == "j-1"
        assert event.get("workflow.id") == "wf-8a2f1e9b"
        assert event.get("user.id") == "ada"
    assert [e.time_ns for e in events] == sorted(e.time_ns for e in events)
    engine.run(_chain(), job_id="j-2")
    assert engine.events.events[0].get("event.sequence") == 1  # per job
    assert engine.events.events[0].get("workflow.id") is None


def test_job_events(engine: Engine) -> None:
    engine.run(_chain())
    (started,) = engine.events.of(Action.JOB_STARTED)
    assert started.get("job.nodes_total") == 3
    assert started.get("job.nodes_cached") == 0
    (finished,) = engine.events.of(Action.JOB_SUCCEEDED)
    assert finished.get("event.outcome") == "success"
    assert isinstance(finished.get("event.duration"), int)
    assert finished.get("event.duration") > 0
    assert finished.level is Level.INFO


def test_succeeded_nodes_carry_durations_and_summaries(engine: Engine) -> None:
    result = engine.run(_chain())
    succeeded = engine.events.of(Action.NODE_SUCCEEDED)
    assert [e.get("node.id") for e in succeeded] == ["1", "2", "3"]
    for event in succeeded:
        duration = event.get("event.duration")
        assert isinstance(duration, int)
        assert duration > 0
        assert event.get("node.duration_ms") == duration / 1e6
        assert event.get("node.cached") is False
        assert event.get("event.outcome") == "success"
    add = succeeded[1]
    assert add.get("node.type") == "AddInt"
    assert add.get("node.inputs") == {"b": 2}  # constants only: the link is left out
    assert add.get("node.outputs") == {"0": 3}
    assert add.detail is not None
    assert add.detail["real_node_id"] == "2"
    assert succeeded[2].detail is not None
    assert succeeded[2].detail["ui"] == {"value": [3]}
    durations = {r.node_id: r.duration_ms for r in result.nodes}
    assert durations == {e.get("node.id"): e.get("node.duration_ms") for e in succeeded}


def test_cached_nodes_say_so(engine: Engine) -> None:
    engine.run(_chain())
    engine.run(_chain())
    cached = engine.events.of(Action.NODE_CACHED)
    assert [e.get("node.id") for e in cached] == ["1", "2", "3"]
    assert all(e.get("node.cached") is True for e in cached)
    assert cached[-1].detail is not None
    assert cached[-1].detail["ui"] == {"value": [3]}


def _prompted(text: str) -> dict[str, Any]:
    return {
        "1": node("MakeImage", size=8),
        "2": node(
            "Prompted",
            text=text,
            seed=42,
            api_key="sk-123",
            auth_token="tok",
            user_password="hunter2",
            secret_sauce="ketchup",
            image=link("1"),
        ),
        "3": node("Collect", value=link("2", 0)),
        "4": node("Collect", value=link("2", 1)),
    }


def test_node_inputs_drop_secrets_and_cut_long_strings(engine: Engine) -> None:
    engine.run(_prompted("a castle on a hill, " * 30))
    event = engine.event(Action.NODE_SUCCEEDED, "2")
    inputs = event.get("node.inputs")
    assert set(inputs) == {"text", "seed"}
    assert inputs["seed"] == 42
    assert len(inputs["text"]) == 201
    assert inputs["text"].endswith("…")
    assert "hunter2" not in repr(event.fields)
    assert "sk-123" not in repr(event.fields)


def test_node_inputs_show_list_constants_unwrapped(engine: Engine) -> None:
    engine.run({"1": node("Collect", value={"__value__": [1, 2]})})
    assert engine.event(Action.NODE_SUCCEEDED, "1").get("node.inputs") == {"value": [1, 2]}


def test_node_outputs_summarise_tensors(engine: Engine) -> None:
    engine.run(_prompted("short"))
    event = engine.event(Action.NODE_SUCCEEDED, "1")
    assert event.get("node.outputs") == {
        "0": "Tensor(shape=[1, 8, 8, 3], dtype=torch.float32, device=cpu)"
    }
    prompted = engine.event(Action.NODE_SUCCEEDED, "2")
    assert prompted.get("node.outputs")["0"] == "short"


def test_node_outputs_of_lists_give_a_count_and_the_first_item(engine: Engine) -> None:
    engine.run({"1": node("Range", count=4), "2": node("Collect", value=link("1"))})
    event = engine.event(Action.NODE_SUCCEEDED, "1")
    assert event.get("node.outputs") == {"0": {"items": 4, "first": 0}}


def test_failed_nodes_carry_the_error(engine: Engine) -> None:
    engine.run({"1": node("Fail", value=1, message="kaput"), "2": node("Collect", value=link("1"))})
    assert engine.events.actions() == ["job.started", "node.started", "node.failed", "job.failed"]
    (failed,) = engine.events.of(Action.NODE_FAILED)
    assert failed.level is Level.ERROR
    assert failed.get("error.type") == "ValueError"
    assert failed.get("error.message") == "kaput"
    assert re.search(
        r'File ".*testing_nodes.py", line \d+, in fail', failed.get("error.stack_trace")
    )
    assert isinstance(failed.get("event.duration"), int)
    assert failed.get("node.inputs") == {"value": 1, "message": "kaput"}
    # Only failures are at error level.
    assert [e.action for e in engine.events.events if e.level is Level.ERROR] == [
        Action.NODE_FAILED,
        Action.JOB_FAILED,
    ]


def test_expanded_and_blocked_nodes_have_their_own_actions(engine: Engine) -> None:
    engine.run(
        {
            "1": node("StubInt", value=1),
            "2": node("Repeat", value=link("1"), times=1),
            "3": node("Gate", value=link("2"), open=False, message="closed"),
            "4": node("Collect", value=link("3")),
        }
    )
    assert engine.node_ids(Action.NODE_EXPANDED) == ["2"]
    assert engine.node_ids(Action.NODE_BLOCKED) == ["4"]


def test_the_bus_survives_a_subscriber_that_raises(engine: Engine) -> None:
    def broken(event: Event) -> None:
        raise RuntimeError("sink down")

    engine.bus.subscribe(broken)
    result = engine.run(_chain())
    assert result.status == "success"
    assert engine.bus.subscriber_errors == len(engine.events.events) == 8
    assert engine.events.actions()[-1] == "job.succeeded"


def test_subscribers_can_pick_actions() -> None:
    bus = EventBus()
    succeeded_only = InMemorySubscriber(bus, actions=[Action.NODE_SUCCEEDED])
    engine = Engine()
    engine.bus.subscribe(bus.emit)
    engine.run(_chain())
    assert succeeded_only.actions() == ["node.succeeded"] * 3


def test_no_subscriber_no_events_and_the_job_still_runs() -> None:
    engine = Engine()
    executor = Executor(engine.registry)  # no bus at all
    result = executor.execute(JobRequest(prompt=_chain(), outputs=["3"]))
    assert result.status == "success"
    assert result.outputs == {"3": {"value": [3]}}


def test_events_render_as_ecs_documents(engine: Engine) -> None:
    engine.run(_chain(), job_id="j-1")
    document = engine.events.of(Action.NODE_SUCCEEDED)[0].to_ecs()
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", document["@timestamp"])
    assert document["event.action"] == "node.succeeded"
    assert document["log.level"] == "info"
    assert document["job.id"] == "j-1"


def test_peak_memory_is_measured_around_a_node_that_allocates(engine: Engine) -> None:
    assert engine.executor.memory_probe.rss_supported
    prompt = {
        "1": node("StubInt", value=1),
        "2": node("Allocate", value=link("1"), megabytes=0),
        "3": node("Allocate", value=link("2"), megabytes=200),
        "4": node("Collect", value=link("3")),
    }
    result = engine.run(prompt)
    peaks = {
        e.get("node.id"): e.get("process.memory.peak_bytes")
        for e in engine.events.of(Action.NODE_SUCCEEDED)
    }
    assert peaks["2"] is not None
    assert peaks["3"] is not None
    assert peaks["3"] - peaks["2"] >= 150 * 1024 * 1024
    records = {r.node_id: r.memory_peak_bytes for r in result.nodes}
    assert records["3"] == peaks["3"]
    assert peaks["1"] is None  # too quick to be worth measuring
