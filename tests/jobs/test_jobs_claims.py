"""Claims, leases and waiting for work: each job runs once, and an idle worker wakes fast."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from jobs_support import new_job, outcome

from flowscope.jobs import JobStore


def test_two_stores_racing_never_claim_a_job_twice(open_store: Callable[..., JobStore]) -> None:
    first, second = open_store(), open_store()
    job_ids = {first.submit(new_job()).job_id for _ in range(150)}
    claimed: dict[str, list[str]] = {"a": [], "b": []}

    start = threading.Barrier(2)

    def drain(store: JobStore, name: str) -> None:
        start.wait()
        while (job := store.claim_next(name, 30)) is not None:
            claimed[name].append(job.job_id)
            store.finish(job.job_id, name, outcome())
            time.sleep(0.001)  # "run" the job: the other worker gets its turn

    threads = [
        threading.Thread(target=drain, args=(first, "a")),
        threading.Thread(target=drain, args=(second, "b")),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(claimed["a"] + claimed["b"]) == sorted(job_ids)
    assert claimed["a"] and claimed["b"]  # both really took part


def test_claim_sets_lease_attempts_and_worker(store: JobStore) -> None:
    store.submit(new_job("j"))
    before = time.time_ns() // 1_000_000
    job = store.claim_next("host:1:0", 30)
    assert job is not None
    assert (job.state, job.attempts, job.worker_id) == ("running", 1, "host:1:0")
    record = store.get_job("j")
    assert record is not None and record.state == "running"
    assert record.started_at_ms is not None and record.started_at_ms >= before
    assert store.claim_next("host:1:0", 30) is None


def test_renew_lease_only_for_the_owner_of_a_running_job(store: JobStore) -> None:
    store.submit(new_job("j"))
    assert not store.renew_lease("w", "j", 30)  # still pending
    store.claim_next("w", 30)
    assert store.renew_lease("w", "j", 30)
    assert not store.renew_lease("other", "j", 30)
    store.finish("j", "w", outcome())
    assert not store.renew_lease("w", "j", 30)


def test_idle_waiter_wakes_at_once_on_a_submit(store: JobStore) -> None:
    woke: list[float] = []

    def wait() -> None:
        assert store.claim_next("w", 30) is None
        store.wait_for_work(10.0)
        woke.append(time.perf_counter())

    thread = threading.Thread(target=wait)
    thread.start()
    time.sleep(0.05)  # the waiter is waiting
    submitted = time.perf_counter()
    store.submit(new_job())
    thread.join(5)
    assert woke and woke[0] - submitted < 0.1  # the target is 5 ms; no polling involved


def test_a_submit_between_claim_and_wait_is_not_missed(store: JobStore) -> None:
    assert store.claim_next("w", 30) is None
    store.submit(new_job())
    started = time.perf_counter()
    assert store.wait_for_work(10.0)
    assert time.perf_counter() - started < 0.1


def test_waiter_polls_for_other_processes(open_store: Callable[..., JobStore]) -> None:
    waiter = open_store(poll_interval_s=0.05)
    other = open_store()
    assert waiter.claim_next("w", 30) is None
    timer = threading.Timer(0.1, lambda: other.submit(new_job("far")))
    timer.start()
    started = time.perf_counter()
    assert waiter.wait_for_work(5.0)
    assert time.perf_counter() - started < 1.0
    timer.join()
    job = waiter.claim_next("w", 30)
    assert job is not None and job.job_id == "far"


def test_wait_times_out_or_is_woken(open_store: Callable[..., JobStore]) -> None:
    store = open_store(poll_interval_s=0.02)
    started = time.perf_counter()
    assert not store.wait_for_work(0.1)
    assert 0.09 <= time.perf_counter() - started < 1.0
    threading.Timer(0.05, store.wake_waiters).start()
    started = time.perf_counter()
    assert not store.wait_for_work(5.0)
    assert time.perf_counter() - started < 1.0
