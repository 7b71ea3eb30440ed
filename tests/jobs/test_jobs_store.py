"""JobStore: submitting, ComfyUI's priority order, durability, cancelling, the queue views."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable

import pytest
from jobs_support import PROMPT, new_job, outcome, run_job

from flowscope.jobs import DuplicateJobError, JobStore
from flowscope.telemetry import Action, EventBus, InMemorySubscriber


def claim_order(store: JobStore) -> list[str]:
    order = []
    while (job := store.claim_next("w", 30)) is not None:
        order.append(job.job_id)
    return order


def test_numbers_follow_comfyui_counter_front_and_explicit(store: JobStore) -> None:
    a = store.submit(new_job("a"))
    b = store.submit(new_job("b"))
    c = store.submit(new_job("c", front=True))
    d = store.submit(new_job("d", number=0.5))  # explicit: the counter does not move
    e = store.submit(new_job("e"))
    assert [a.number, b.number, c.number, d.number, e.number] == [0, 1, -2, 0.5, 3]
    assert claim_order(store) == ["c", "a", "d", "b", "e"]


def test_equal_numbers_run_in_submission_order(store: JobStore) -> None:
    for job_id in ("x", "y", "z"):
        store.submit(new_job(job_id, number=7))
    store.submit(new_job("first"))  # counter 0
    assert claim_order(store) == ["first", "x", "y", "z"]


def test_counter_keeps_increasing_across_reopen(open_store: Callable[..., JobStore]) -> None:
    first = open_store()
    assert first.submit(new_job()).number == 0
    assert first.submit(new_job()).number == 1
    first.close()
    second = open_store()
    assert second.submit(new_job()).number == 2
    assert second.submit(new_job(front=True)).number == -3


def test_submitted_job_is_visible_to_another_store_at_once(
    open_store: Callable[..., JobStore],
) -> None:
    writer, reader = open_store(), open_store()
    queued = writer.submit(
        new_job(
            "j1",
            extra_data={"client_id": "c1"},
            sensitive={"api_key_comfy_org": "secret"},
            user_id="u1",
            workflow_id="wf1",
        )
    )
    running, pending = reader.queue()
    assert running == []
    assert [job.job_id for job in pending] == ["j1"]
    stored = pending[0]
    assert stored.prompt == PROMPT
    assert stored.extra_data == {"client_id": "c1"}
    assert stored.sensitive == {"api_key_comfy_org": "secret"}
    assert (stored.user_id, stored.workflow_id, stored.trace_id) == ("u1", "wf1", queued.trace_id)
    assert queued.trace_id is not None and len(queued.trace_id) == 32


def test_duplicate_job_id_is_refused_and_others_in_the_batch_commit(store: JobStore) -> None:
    store.submit(new_job("same"))
    with pytest.raises(DuplicateJobError, match="same"):
        store.submit(new_job("same"))
    assert store.submit(new_job("other")).job_id == "other"
    assert [job.job_id for job in store.queue()[1]] == ["same", "other"]


def test_concurrent_submits_all_land_with_distinct_numbers(store: JobStore) -> None:
    results = []
    lock = threading.Lock()

    def submit_many() -> None:
        for _ in range(50):
            queued = store.submit(new_job())
            with lock:
                results.append(queued)

    threads = [threading.Thread(target=submit_many) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    numbers = sorted(job.number for job in results)
    assert numbers == list(range(400))
    assert store.queue_remaining() == 400
    _, pending = store.queue()
    assert {job.job_id for job in pending} == {job.job_id for job in results}


def test_queue_views_agree(store: JobStore) -> None:
    store.submit(new_job("a", extra_data={"client_id": "c"}, sensitive={"token": "t"}))
    store.submit(new_job("b", number=2.5))
    store.claim_next("w", 30)
    running, pending = store.queue()
    assert [job.state for job in running] == ["running"]
    assert running[0].worker_id == "w" and running[0].attempts == 1
    expected = {
        "queue_running": [job.queue_item() for job in running],
        "queue_pending": [job.queue_item() for job in pending],
    }
    assert json.loads(store.queue_json()) == expected
    assert expected["queue_running"][0] == [0, "a", PROMPT, {"client_id": "c"}, ["1"]]
    assert "token" not in store.queue_json()  # secrets never leave through the queue
    assert store.queue_remaining() == 2


def test_cancel_pending_only(store: JobStore) -> None:
    for job_id in ("run", "p1", "p2", "p3"):
        store.submit(new_job(job_id))
    store.claim_next("w", 30)
    assert store.cancel_pending(["p2", "run", "nope", "p2"]) == ["p2"]
    assert store.cancel_pending(["p2"]) == []  # idempotent
    assert [job.job_id for job in store.queue()[1]] == ["p1", "p3"]
    assert store.clear_pending() == ["p1", "p3"]
    assert store.queue()[1] == []
    assert store.queue_remaining() == 1
    record = store.get_job("p2")
    assert record is not None and record.state == "cancelled" and record.history is None
    assert store.history_json() == "{}"  # cancelled jobs never enter the ComfyUI history


def test_queue_remaining_counts_pending_and_running(store: JobStore) -> None:
    assert store.queue_remaining() == 0
    for _ in range(3):
        store.submit(new_job())
    job = store.claim_next("w", 30)
    assert job is not None
    assert store.queue_remaining() == 3
    store.finish(job.job_id, "w", outcome())
    assert store.queue_remaining() == 2


def test_queue_remaining_sees_other_processes_after_a_while(
    open_store: Callable[..., JobStore], monkeypatch: pytest.MonkeyPatch
) -> None:
    import flowscope.jobs.store as store_module

    watcher, other = open_store(), open_store()
    assert watcher.queue_remaining() == 0
    other.submit(new_job())
    monkeypatch.setattr(store_module, "COUNTS_TTL_S", 0.0)
    assert watcher.queue_remaining() == 1


def test_events_for_queued_and_cancelled_jobs(open_store: Callable[..., JobStore]) -> None:
    bus = EventBus()
    events = InMemorySubscriber(bus)
    store = open_store(bus=bus)
    queued = store.submit(new_job("j", user_id="u", workflow_id="wf"))
    store.cancel_pending(["j"])
    assert events.actions() == ["job.queued", "job.cancelled"]
    for event in events.events:
        assert event.get("job.id") == "j"
        assert event.get("user.id") == "u"
        assert event.get("workflow.id") == "wf"
        assert event.get("trace.id") == queued.trace_id
    assert events.of(Action.JOB_QUEUED)[0].get("job.priority") == 0


def test_finish_records_once_and_only_for_the_owner(store: JobStore) -> None:
    store.submit(new_job("j"))
    assert store.claim_next("w1", 30) is not None
    assert not store.finish("j", "someone-else", outcome())
    assert store.finish("j", "w1", outcome())
    assert not store.finish("j", "w1", outcome())  # already finished
    assert not store.finish("unknown", "w1", outcome())
    with pytest.raises(ValueError, match="success, error or interrupted"):
        store.finish("j", "w1", outcome("cancelled"))


def test_finish_and_claim_records_the_job_and_claims_the_next_in_order(store: JobStore) -> None:
    for job_id in ("a", "b"):
        store.submit(new_job(job_id))
    store.submit(new_job("front", front=True))
    first = store.claim_next("w1", 30)
    assert first is not None and first.job_id == "front"
    finished, following = store.finish_and_claim("front", "w1", outcome(), 30)
    assert finished and following is not None
    assert (following.job_id, following.state, following.worker_id) == ("a", "running", "w1")
    assert store.history_entry("front") is not None
    assert store.queue_remaining() == 2  # "a" running, "b" pending
    finished, following = store.finish_and_claim("a", "w1", outcome(), 30)
    assert finished and following is not None and following.job_id == "b"
    finished, following = store.finish_and_claim("b", "w1", outcome(), 30)
    assert finished and following is None
    assert store.queue_remaining() == 0
    assert all(store.history_entry(job_id) is not None for job_id in ("a", "b"))


def test_finish_and_claim_claims_even_when_the_job_was_not_ours(store: JobStore) -> None:
    store.submit(new_job("j"))
    store.submit(new_job("k"))
    assert store.claim_next("w1", 30) is not None
    finished, following = store.finish_and_claim("j", "someone-else", outcome(), 30)
    assert not finished  # nothing recorded for "j"
    assert following is not None and following.job_id == "k"
    assert store.history_entry("j") is None
    with pytest.raises(ValueError, match="success, error or interrupted"):
        store.finish_and_claim("j", "w1", outcome("cancelled"), 30)


def test_finished_job_drops_prompt_and_secrets_but_history_keeps_the_prompt(
    store: JobStore,
) -> None:
    store.submit(new_job("j", sensitive={"auth_token_comfy_org": "s3cret"}))
    run_job(store, "j")
    record = store.get_job("j", with_prompt=True)
    assert record is not None and record.prompt == PROMPT
    assert "s3cret" not in store.history_json()


def test_release_puts_the_job_back_without_counting_the_attempt(store: JobStore) -> None:
    store.submit(new_job("j"))
    store.submit(new_job("k"))
    assert store.claim_next("w", 30) is not None
    assert not store.release("j", "other")
    assert store.release("j", "w")
    again = store.claim_next("w", 30)
    assert again is not None and again.job_id == "j" and again.attempts == 1


def test_closed_store_refuses_work(db_url: str) -> None:
    store = JobStore(db_url)
    store.close()
    store.close()  # idempotent
    with pytest.raises(RuntimeError, match="closed"):
        store.submit(new_job())
    assert not store.wait_for_work(1.0)


def test_in_memory_database_is_refused() -> None:
    with pytest.raises(ValueError, match="database file"):
        JobStore("sqlite://")


def test_portable_statements_behave_the_same(
    store: JobStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without UPDATE ... RETURNING and the SQLite driver shortcut (older SQLite, and the path
    other databases take), numbers, order and claims are the same."""
    monkeypatch.setattr(store._engine.dialect, "update_returning", False)
    monkeypatch.setattr(store._run, "direct", False)
    assert [store.submit(new_job(i)).number for i in ("a", "b")] == [0, 1]
    assert store.submit(new_job("c", front=True)).number == -2
    with pytest.raises(DuplicateJobError):
        store.submit(new_job("a"))
    job = store.claim_next("w", 30)
    assert job is not None
    assert (job.job_id, job.state, job.attempts, job.worker_id) == ("c", "running", 1, "w")
    finished, following = store.finish_and_claim("c", "w", outcome(), 30)
    assert finished and following is not None and following.job_id == "a"
    assert claim_order(store) == ["b"]
