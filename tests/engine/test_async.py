"""Async nodes (spec §3.9): they run concurrently with each other and with synchronous nodes,
and their failures fail the job like any other."""

from __future__ import annotations

import time

from engine_harness import Engine, link, node

from flowscope.telemetry import Action


def test_three_async_sleeps_run_concurrently(engine: Engine) -> None:
    prompt = {}
    for i in range(3):
        prompt[f"s{i}"] = node("Sleep", value=i, seconds=0.3)
        prompt[f"o{i}"] = node("Collect", value=link(f"s{i}"))
    start = time.perf_counter()
    result = engine.run(prompt)
    elapsed = time.perf_counter() - start
    assert result.status == "success"
    assert result.outputs == {f"o{i}": {"value": [i]} for i in range(3)}
    assert 0.3 <= elapsed < 0.75  # sequential would take 0.9 s


def test_synchronous_nodes_run_while_an_async_node_waits(engine: Engine) -> None:
    prompt = {
        "1": node("Sleep", value=1, seconds=0.2),
        "2": node("Collect", value=link("1")),
        "3": node("StubInt", value=3),
        "4": node("AddInt", a=link("3"), b=1),
        "5": node("Collect", value=link("4")),
    }
    result = engine.run(prompt)
    assert result.outputs == {"2": {"value": [1]}, "5": {"value": [4]}}
    events = [(e.action, e.get("node.id")) for e in engine.events.events]
    sleep_started = events.index((Action.NODE_STARTED, "1"))
    sleep_done = events.index((Action.NODE_SUCCEEDED, "1"))
    # Async nodes are picked first, and the others run during the sleep.
    assert sleep_started < events.index((Action.NODE_SUCCEEDED, "5")) < sleep_done
    (record,) = [r for r in result.nodes if r.node_id == "1"]
    assert record.duration_ms >= 190


def test_an_async_node_mapped_over_a_list_runs_its_calls_concurrently(engine: Engine) -> None:
    prompt = {
        "1": node("Range", count=4),
        "2": node("Sleep", value=link("1"), seconds=0.2),
        "3": node("Collect", value=link("2")),
    }
    start = time.perf_counter()
    result = engine.run(prompt)
    assert time.perf_counter() - start < 0.6
    assert result.outputs["3"] == {"value": [0, 1, 2, 3]}


def test_an_async_failure_fails_the_job(engine: Engine) -> None:
    prompt = {
        "1": node("StubInt", value=1),
        "2": node("AsyncFail", value=link("1")),
        "3": node("Collect", value=link("2")),
    }
    result = engine.run(prompt)
    assert result.status == "error"
    assert result.error is not None
    assert result.error["node_id"] == "2"
    assert result.error["exception_type"] == "ValueError"
    assert result.error["exception_message"] == "async boom"
    assert engine.node_ids(Action.NODE_FAILED) == ["2"]


def test_a_failure_elsewhere_cancels_pending_async_work(engine: Engine) -> None:
    prompt = {
        "1": node("Sleep", value=1, seconds=5.0),
        "2": node("Collect", value=link("1")),
        "3": node("Fail", value=1, message="stop"),
        "4": node("Collect", value=link("3")),
    }
    start = time.perf_counter()
    result = engine.run(prompt)
    assert time.perf_counter() - start < 2
    assert result.status == "error"
    assert result.error is not None
    assert result.error["node_id"] == "3"
