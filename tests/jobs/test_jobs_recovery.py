"""Restart safety: committed jobs survive a killed process, and a lost worker's job is re-queued
once, then failed with a history entry that says why."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from jobs_support import new_job, outcome

from flowscope.jobs import JobStore, make_worker_id
from flowscope.jobs.leases import mark_stopped, parse_worker_id, worker_alive
from flowscope.telemetry import Action, EventBus, InMemorySubscriber

ALIVE = lambda _worker_id: True  # noqa: E731 (only leases decide)


def expire(store: JobStore, worker_id: str = "w") -> str:
    """Claim the next job with a lease that has already run out."""
    job = store.claim_next(worker_id, 0.0)
    assert job is not None
    time.sleep(0.002)
    return job.job_id


def dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def test_expired_lease_requeues_once_then_fails(open_store: Callable[..., JobStore]) -> None:
    bus = EventBus()
    events = InMemorySubscriber(bus)
    store = open_store(bus=bus)
    store.submit(new_job("j", workflow_id="wf"))
    store.submit(new_job("later"))
    expire(store, "w1")
    (first,) = store.recover(ALIVE)
    assert (first.job_id, first.requeued, first.reason) == ("j", True, "lease expired")
    assert "re-queued" in str(first)
    assert [job.job_id for job in store.queue()[1]] == ["j", "later"]  # keeps its place

    assert expire(store, "w2") == "j"
    (second,) = store.recover(ALIVE)
    assert not second.requeued
    record = store.get_job("j")
    assert record is not None and record.state == "error"
    entry = store.history_entry("j")
    assert entry is not None
    assert entry["status"]["status_str"] == "error"
    kind, error = entry["status"]["messages"][-1]
    assert kind == "execution_error"
    assert error["exception_message"] == (
        "the worker running this job died twice (last: worker w2, lease expired); not retried"
    )
    assert [note["worker_id"] for note in entry["flowscope"]["requeued"]] == ["w1"]
    assert store.queue_remaining() == 1
    assert events.actions() == ["job.queued", "job.queued", "job.requeued", "job.failed"]
    failed = events.of(Action.JOB_FAILED)[0]
    assert failed.get("workflow.id") == "wf"
    assert failed.get("error.message") == error["exception_message"]


def test_requeued_job_that_then_succeeds_says_so_in_its_history(store: JobStore) -> None:
    store.submit(new_job("j"))
    expire(store, "w1")
    store.recover(ALIVE)
    job = store.claim_next("w2", 30)
    assert job is not None and job.attempts == 2
    store.finish("j", "w2", outcome())
    entry = store.history_entry("j")
    assert entry is not None and entry["status"]["status_str"] == "success"
    (note,) = entry["flowscope"]["requeued"]
    assert note["worker_id"] == "w1" and note["reason"] == "lease expired"


def test_live_lease_is_left_alone(store: JobStore) -> None:
    store.submit(new_job())
    store.claim_next("w", 30)
    assert store.recover(ALIVE) == []
    assert store.recover(lambda _worker_id: False)[0].reason == "worker died"


def test_finish_after_a_requeue_still_records_the_real_result(store: JobStore) -> None:
    store.submit(new_job("j"))
    expire(store, "slow")
    store.recover(ALIVE)
    assert store.finish("j", "slow", outcome())  # nobody had taken it again
    assert store.queue_remaining() == 0
    store.submit(new_job("k"))
    expire(store, "slow")
    store.recover(ALIVE)
    assert store.claim_next("fast", 30) is not None
    assert not store.finish("k", "slow", outcome())  # now it is someone else's


def test_dead_process_on_this_host_is_detected_without_waiting_for_the_lease(
    store: JobStore,
) -> None:
    gone = make_worker_id(0, pid=dead_pid())
    store.submit(new_job("j"))
    store.claim_next(gone, 3600)
    (recovered,) = store.recover()
    assert (recovered.job_id, recovered.reason, recovered.requeued) == ("j", "worker died", True)


def test_liveness_rules() -> None:
    here = make_worker_id(5)
    assert parse_worker_id(here) == (socket.gethostname(), os.getpid(), "5")
    assert parse_worker_id("gpu-box:42:1") == ("gpu-box", 42, "1")
    assert parse_worker_id("not-a-worker-id") is None
    assert parse_worker_id("host:notapid:0") is None
    assert worker_alive("another-host:1:0")  # other hosts: the lease decides
    assert worker_alive("free-form id")
    assert worker_alive(make_worker_id(0, pid=os.getppid()))  # a live process here
    assert not worker_alive(make_worker_id(0, pid=dead_pid()))
    assert not worker_alive(here)  # this process, but no such worker here: a predecessor's


def test_an_exited_process_not_reaped_yet_counts_as_dead() -> None:
    # A worker process whose server was killed: it exits, and nobody may ever reap it.
    process = subprocess.Popen(["true"])
    try:
        deadline = time.monotonic() + 10
        while Path(f"/proc/{process.pid}/stat").read_text().rpartition(")")[2].split()[0] != "Z":
            assert time.monotonic() < deadline
            time.sleep(0.01)
        assert not worker_alive(make_worker_id(0, pid=process.pid))
    finally:
        process.wait()


def test_this_processes_stopped_worker_counts_as_dead(store: JobStore) -> None:
    mine = make_worker_id(77)
    store.submit(new_job())
    store.claim_next(mine, 3600)  # claiming marks the worker as live here
    assert store.recover() == []
    mark_stopped(mine)
    assert [job.reason for job in store.recover()] == ["worker died"]


_CHILD = textwrap.dedent(
    """
    import sys, time, uuid
    from flowscope.jobs import JobStore, NewJob, make_worker_id
    store = JobStore(sys.argv[1])
    if sys.argv[2] == "claim":
        store.submit(NewJob("claimed", {}, ["1"]))
        job = store.claim_next(make_worker_id(0), 3600)
        print(job.job_id, flush=True)
        time.sleep(60)
    while True:
        job = store.submit(NewJob(str(uuid.uuid4()), {"1": {"inputs": {}}}, ["1"]))
        print(job.job_id, flush=True)
    """
)


def _killed_child(db_url: str, mode: str, lines: int) -> list[str]:
    """Run the child until it has printed `lines` ids, SIGKILL it, and return what it printed."""
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[2] / "src")}
    child = subprocess.Popen(
        [sys.executable, "-c", _CHILD, db_url, mode],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert child.stdout is not None
    printed = [child.stdout.readline().strip() for _ in range(lines)]
    child.send_signal(signal.SIGKILL)
    child.wait()
    printed += [line.strip() for line in child.stdout.read().splitlines()]
    return [job_id for job_id in printed if job_id]


@pytest.mark.slow
def test_jobs_acknowledged_before_a_kill_are_all_there(
    db_url: str, open_store: Callable[..., JobStore]
) -> None:
    open_store().close()  # the schema exists before the child starts
    acknowledged = _killed_child(db_url, "submit", 200)
    store = open_store()
    _, pending = store.queue()
    stored = {job.job_id for job in pending}
    assert len(acknowledged) >= 200
    assert set(acknowledged) <= stored


@pytest.mark.slow
def test_job_of_a_killed_server_is_requeued_on_restart(
    db_url: str, open_store: Callable[..., JobStore]
) -> None:
    open_store().close()
    assert _killed_child(db_url, "claim", 1) == ["claimed"]
    store = open_store()
    assert store.queue()[0][0].job_id == "claimed"  # still marked running
    (recovered,) = store.recover()  # the lease has an hour left: the dead pid tells
    assert recovered.reason == "worker died" and recovered.requeued
    job = store.claim_next("w", 30)
    assert job is not None and job.job_id == "claimed" and job.attempts == 2
