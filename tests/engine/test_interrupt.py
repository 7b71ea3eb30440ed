"""Interrupt (spec §3.6): set from another thread, it lands between nodes, between list items,
and inside progress updates; it targets one job; the next job starts clean."""

from __future__ import annotations

import threading
import time
from typing import Any

import testing_nodes
from engine_harness import Engine, calls, link, node

from flowscope.telemetry import Action

JOB = "job-1"


def interrupt_from_another_thread(engine: Engine, job_id: str | None = JOB) -> bool:
    """Call `executor.interrupt` from a second thread (as the server's handler does) and wait."""
    answer: list[bool] = []
    thread = threading.Thread(target=lambda: answer.append(engine.executor.interrupt(job_id)))
    thread.start()
    thread.join()
    return answer[0]


def _hooked_chain() -> dict[str, dict[str, Any]]:
    return {
        "1": node("StubInt", value=1),
        "2": node("Hook", value=link("1"), name="hook"),
        "3": node("AddInt", a=link("2"), b=1),
        "4": node("Collect", value=link("3")),
    }


def test_an_interrupt_lands_before_the_next_node(engine: Engine) -> None:
    answers: list[bool] = []
    testing_nodes.HOOKS["hook"] = lambda _: answers.append(interrupt_from_another_thread(engine))
    result = engine.run(_hooked_chain(), job_id=JOB)
    assert answers == [True]
    assert result.status == "interrupted"
    assert calls("AddInt") == []
    assert calls("Collect") == []
    assert result.error is not None
    assert set(result.error) == {"prompt_id", "node_id", "node_type", "executed", "timestamp"}
    assert result.error["prompt_id"] == JOB
    assert result.error["node_id"] == "3"
    assert result.error["node_type"] == "AddInt"
    assert result.error["executed"] == ["1", "2"]
    assert abs(result.error["timestamp"] - time.time() * 1000) < 60_000
    assert engine.events.actions()[-1] == "job.interrupted"
    (event,) = engine.events.of(Action.JOB_INTERRUPTED)
    assert event.get("job.id") == JOB
    assert event.get("event.outcome") == "failure"
    assert engine.events.of(Action.NODE_FAILED) == []


def test_an_interrupt_lands_between_list_items(engine: Engine) -> None:
    def hook(value: int) -> None:
        if value == 1:
            interrupt_from_another_thread(engine)

    testing_nodes.HOOKS["hook"] = hook
    prompt = {
        "1": node("Range", count=5),
        "2": node("Hook", value=link("1"), name="hook"),
        "3": node("Collect", value=link("2")),
    }
    result = engine.run(prompt, job_id=JOB)
    assert result.status == "interrupted"
    assert calls("Hook") == [0, 1]
    assert result.error is not None
    assert result.error["node_id"] == "2"
    assert result.error["node_type"] == "Hook"


def test_an_interrupt_lands_inside_progress_updates(engine: Engine) -> None:
    started = threading.Event()
    testing_nodes.HOOKS["started"] = lambda _: started.set()

    def interrupter() -> None:
        started.wait(10)
        engine.executor.interrupt(JOB)

    thread = threading.Thread(target=interrupter)
    thread.start()
    prompt = {"1": node("UntilInterrupted", seconds=10.0), "2": node("Collect", value=link("1"))}
    begin = time.perf_counter()
    result = engine.run(prompt, job_id=JOB)
    thread.join()
    assert result.status == "interrupted"
    assert time.perf_counter() - begin < 5
    assert result.error is not None
    assert result.error["node_id"] == "1"
    assert result.error["node_type"] == "UntilInterrupted"


def test_an_interrupt_names_the_running_node_not_a_waiting_lazy_one(engine: Engine) -> None:
    testing_nodes.HOOKS["hook"] = lambda _: interrupt_from_another_thread(engine)
    prompt = {
        "1": node("StubInt", value=1),
        "2": node("Hook", value=link("1"), name="hook"),
        "3": node("AddInt", a=link("2"), b=1),
        "4": node("LazyAsk", ask="a", a=link("3")),
        "5": node("Collect", value=link("4")),
    }
    result = engine.run(prompt, job_id=JOB)
    assert result.status == "interrupted"
    assert result.error is not None
    assert result.error["node_id"] == "3"  # node 4 had started, and waits for 3


def test_an_async_node_can_be_interrupted(engine: Engine) -> None:
    def interrupter() -> None:
        deadline = time.monotonic() + 10
        while engine.executor.running_job_id != JOB and time.monotonic() < deadline:
            time.sleep(0.001)
        time.sleep(0.02)
        engine.executor.interrupt(JOB)

    thread = threading.Thread(target=interrupter)
    thread.start()
    prompt = {"1": node("AsyncCheck", value=1), "2": node("Collect", value=link("1"))}
    result = engine.run(prompt, job_id=JOB)
    thread.join()
    assert result.status == "interrupted"
    assert calls("Collect") == []


def test_an_interrupt_stops_async_nodes_that_never_check_for_it(engine: Engine) -> None:
    def interrupter() -> None:
        deadline = time.monotonic() + 10
        while engine.executor.running_job_id != JOB and time.monotonic() < deadline:
            time.sleep(0.001)
        time.sleep(0.05)
        engine.executor.interrupt(JOB)

    thread = threading.Thread(target=interrupter)
    thread.start()
    prompt = {"1": node("Sleep", value=1, seconds=5.0), "2": node("Collect", value=link("1"))}
    start = time.monotonic()
    result = engine.run(prompt, job_id=JOB)
    elapsed = time.monotonic() - start
    thread.join()
    assert result.status == "interrupted"
    assert elapsed < 2.0  # the 5 s sleep was cancelled, not waited out
    assert calls("Collect") == []


def test_interrupting_another_job_does_nothing(engine: Engine) -> None:
    answers: list[bool] = []
    testing_nodes.HOOKS["hook"] = lambda _: answers.append(
        interrupt_from_another_thread(engine, "some-other-job")
    )
    result = engine.run(_hooked_chain(), job_id=JOB)
    assert answers == [False]
    assert result.status == "success"
    assert result.outputs["4"] == {"value": [2]}


def test_interrupt_without_a_running_job_does_nothing(engine: Engine) -> None:
    assert engine.executor.interrupt() is False
    assert engine.executor.interrupt(JOB) is False
    assert engine.run(_hooked_chain(), job_id=JOB).status == "success"


def test_an_interrupt_nobody_saw_does_not_leak_into_the_next_job(engine: Engine) -> None:
    # The interrupt arrives while the last node runs: nothing checks the flag after it.
    answers: list[bool] = []
    testing_nodes.HOOKS["last"] = lambda _: answers.append(interrupt_from_another_thread(engine))
    last = {"1": node("StubInt", value=1), "2": node("HookOutput", value=link("1"), name="last")}
    first = engine.run(last, job_id=JOB)
    assert answers == [True]
    assert first.status == "success"
    assert engine.executor.interrupt_flag.is_set  # set, but too late for that job
    testing_nodes.HOOKS.clear()
    second = engine.run(_hooked_chain(), job_id="job-2")
    assert second.status == "success"
    assert second.outputs["4"] == {"value": [2]}
    assert not engine.executor.interrupt_flag.is_set


def test_completed_nodes_stay_cached_after_an_interrupt(engine: Engine) -> None:
    testing_nodes.HOOKS["hook"] = lambda _: interrupt_from_another_thread(engine)
    assert engine.run(_hooked_chain(), job_id=JOB).status == "interrupted"
    testing_nodes.HOOKS.clear()
    result = engine.run(_hooked_chain(), job_id="job-2")
    assert result.status == "success"
    assert sorted(engine.cached()) == ["1", "2"]
    assert calls("Hook") == [1]
