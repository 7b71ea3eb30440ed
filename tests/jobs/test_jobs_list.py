"""The jobs API's reads: filters by state and workflow, both sort keys, paging, one job."""

from __future__ import annotations

import pytest
from jobs_support import PROMPT, new_job, outcome

from flowscope.jobs import JobStore


@pytest.fixture
def mixed(store: JobStore) -> JobStore:
    """done-fast (1 ms), done-slow (9 ms, wf2), failed (5 ms), running, cancelled, pending."""
    for job_id, workflow in [
        ("done-fast", "wf1"),
        ("done-slow", "wf2"),
        ("failed", "wf1"),
        ("running", "wf1"),
        ("cancelled", "wf1"),
        ("pending", "wf2"),
    ]:
        store.submit(new_job(job_id, workflow_id=workflow, extra_data={"client_id": job_id}))
    for job_id, state, duration in [
        ("done-fast", "success", 1),
        ("done-slow", "success", 9),
        ("failed", "error", 5),
    ]:
        job = store.claim_next("w", 30)
        assert job is not None and job.job_id == job_id
        store.finish(job_id, "w", outcome(state, started_at_ms=100, finished_at_ms=100 + duration))
    store.claim_next("w", 30)
    store.cancel_pending(["cancelled"])
    return store


def ids(page: tuple[list, int]) -> list[str]:
    return [record.job_id for record in page[0]]


def test_default_is_every_job_newest_first(mixed: JobStore) -> None:
    records, total = mixed.list_jobs()
    assert total == 6
    assert [r.job_id for r in records] == [
        "pending",
        "cancelled",
        "running",
        "failed",
        "done-slow",
        "done-fast",
    ]
    states = {r.job_id: r.state for r in records}
    assert states == {
        "pending": "pending",
        "cancelled": "cancelled",
        "running": "running",
        "failed": "error",
        "done-slow": "success",
        "done-fast": "success",
    }


def test_filters(mixed: JobStore) -> None:
    assert ids(mixed.list_jobs(["success"])) == ["done-slow", "done-fast"]
    assert ids(mixed.list_jobs(["pending", "running"])) == ["pending", "running"]
    assert ids(mixed.list_jobs(workflow_id="wf2")) == ["pending", "done-slow"]
    assert ids(mixed.list_jobs(["success"], "wf1")) == ["done-fast"]
    assert mixed.list_jobs(["interrupted"]) == ([], 0)


def test_sort_by_duration_puts_jobs_that_did_not_run_last(mixed: JobStore) -> None:
    slowest = ids(mixed.list_jobs(sort_by="execution_duration"))
    assert slowest[:3] == ["done-slow", "failed", "done-fast"]
    assert set(slowest[3:]) == {"running", "cancelled", "pending"}
    fastest = ids(mixed.list_jobs(sort_by="execution_duration", descending=False))
    assert fastest[:3] == ["done-fast", "failed", "done-slow"]
    with pytest.raises(ValueError, match="sort_by"):
        mixed.list_jobs(sort_by="name")  # type: ignore[arg-type]


def test_paging_reports_the_total(mixed: JobStore) -> None:
    first = mixed.list_jobs(limit=2)
    second = mixed.list_jobs(limit=2, offset=2)
    last = mixed.list_jobs(limit=2, offset=5)
    assert (ids(first), first[1]) == (["pending", "cancelled"], 6)
    assert ids(second) == ["running", "failed"]
    assert (ids(last), last[1]) == (["done-fast"], 6)
    assert mixed.list_jobs(descending=False, limit=1)[0][0].job_id == "done-fast"


def test_records_carry_times_and_history(mixed: JobStore) -> None:
    (done,), _ = mixed.list_jobs(["success"], "wf1")
    assert (done.started_at_ms, done.finished_at_ms) == (100, 101)
    assert done.history is not None and done.history["status"]["status_str"] == "success"
    assert done.prompt is None and done.extra_data is None  # only in the detail view
    (pending,), _ = mixed.list_jobs(["pending"])
    assert pending.history is None and pending.started_at_ms is None


def test_get_job_with_prompt_in_every_state(mixed: JobStore) -> None:
    for job_id in ("done-fast", "running", "cancelled", "pending"):
        record = mixed.get_job(job_id, with_prompt=True)
        assert record is not None
        assert record.prompt == PROMPT
        assert record.extra_data == {"client_id": job_id}
    bare = mixed.get_job("pending")
    assert bare is not None and bare.prompt is None and bare.number == 5
    assert mixed.get_job("nope") is None
