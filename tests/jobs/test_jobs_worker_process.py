"""`WorkerProcess`: a real `flowscope worker` child on a real store runs the jobs, and the
server's side gets its reports (listener, events on its bus), wakes it, interrupts it, frees its
memory, stops it, and starts it again when it dies."""

from __future__ import annotations

import os
import shutil
import signal
import statistics
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from jobs_support import new_job

from flowscope.jobs import JobOutcome, JobStore, QueuedJob, WorkerProcess
from flowscope.jobs.worker_process import WakeRule
from flowscope.telemetry import Action, EventBus, InMemorySubscriber

pytestmark = pytest.mark.slow

SUPPORT = Path(__file__).parents[1] / "support"
WAIT_S = 60.0  # a child loads torch (the SD pack) before it takes jobs


def node(class_type: str, /, **inputs: Any) -> dict[str, Any]:
    return {"class_type": class_type, "inputs": inputs}


def chain(value: int) -> dict[str, Any]:
    return {"1": node("StubInt", value=value), "2": node("Collect", value=["1", 0])}


class Recorder:
    def __init__(self) -> None:
        self.started: dict[str, float] = {}
        self.finished: dict[str, tuple[QueuedJob, JobOutcome]] = {}
        self._cond = threading.Condition()

    def job_started(self, job: QueuedJob) -> None:
        with self._cond:
            self.started[job.job_id] = time.perf_counter()
            self._cond.notify_all()

    def job_finished(self, job: QueuedJob, outcome: JobOutcome) -> None:
        with self._cond:
            self.finished[job.job_id] = (job, outcome)
            self._cond.notify_all()

    def wait_started(self, job_id: str, timeout_s: float = WAIT_S) -> None:
        with self._cond:
            assert self._cond.wait_for(lambda: job_id in self.started, timeout_s), job_id

    def wait_finished(self, job_id: str, timeout_s: float = WAIT_S) -> JobOutcome:
        with self._cond:
            assert self._cond.wait_for(lambda: job_id in self.finished, timeout_s), job_id
            return self.finished[job_id][1]


class Rig:
    """A server's side of one worker process: its store, bus and listener."""

    def __init__(self, base: Path) -> None:
        (base / "custom_nodes").mkdir(parents=True, exist_ok=True)
        shutil.copy(SUPPORT / "testing_nodes.py", base / "custom_nodes" / "testing_nodes.py")
        url = f"sqlite:///{base / 'flowscope.db'}"
        self.bus = EventBus()
        self.events = InMemorySubscriber(self.bus)
        self.store = JobStore(url, bus=self.bus)
        self.listener = Recorder()
        command = [sys.executable, "-m", "flowscope.cli", "worker"]
        command += ["--base-directory", str(base), "--database-url", url, "--no-logstore"]
        self.process = WorkerProcess(command)
        self.process.attach(self.bus, self.store, self.listener)

    def start(self) -> Rig:
        self.process.start()
        deadline = time.monotonic() + WAIT_S
        while not self.process.alive:
            assert time.monotonic() < deadline, "the worker process did not come up"
            time.sleep(0.02)
        return self

    def submit(self, prompt: dict[str, Any], **fields: Any) -> str:
        return self.store.submit(new_job(prompt=prompt, outputs=["2"], **fields)).job_id

    def close(self) -> None:
        self.process.stop(5.0, interrupt=True)
        self.store.close()


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rig]:
    """One worker process for the tests that leave it running."""
    running = Rig(tmp_path_factory.mktemp("worker-process")).start()
    yield running
    running.close()


def test_jobs_run_in_the_child_and_report_to_the_server(rig: Rig) -> None:
    job_id = rig.submit(chain(7), extra_data={"client_id": "me"})
    outcome = rig.listener.wait_finished(job_id)
    assert outcome.state == "success"
    assert outcome.outputs["2"]["value"] == [7]
    entry = rig.store.history_entry(job_id)
    assert entry is not None
    assert entry["flowscope"]["worker_id"] == rig.process.worker_id
    assert entry["flowscope"]["worker_id"].split(":")[1] == str(rig.process.pid)
    job, _ = rig.listener.finished[job_id]
    assert job.extra_data == {"client_id": "me"}  # what the server needs to address messages
    # The child's events arrive on the server's bus, in the order the engine emitted them.
    mine = [e.action for e in rig.events.events if e.get("job.id") == job_id]
    assert mine[0] is Action.JOB_QUEUED  # the server's own store
    assert mine[1] is Action.JOB_STARTED
    assert mine[-1] is Action.JOB_SUCCEEDED
    assert mine.count(Action.NODE_STARTED) == 2
    # Each of the child's events arrives with its id (the server's pipeline keeps it).
    theirs = [e for e in rig.events.events if e.get("job.id") == job_id][1:]
    assert all(e.get("event.id") for e in theirs)
    assert len({e.get("event.id") for e in theirs}) == len(theirs)
    assert rig.process.current_job is None
    assert rig.store.queue_remaining() == 0  # recounted at the child's word, not a second later


def test_a_queued_job_wakes_the_idle_child(rig: Rig) -> None:
    rig.listener.wait_finished(rig.submit(chain(0)))
    delays = []
    for value in range(1, 6):
        time.sleep(0.3)  # idle: the child waits for work
        sent = time.perf_counter()
        job_id = rig.submit(chain(value))
        rig.listener.wait_finished(job_id)
        delays.append(rig.listener.started[job_id] - sent)
    # Polling alone (every 0.25 s) would start a job 125 ms after its submit on average.
    assert statistics.median(delays) < 0.06, delays


def test_a_busy_child_is_not_woken_for_each_submit(rig: Rig) -> None:
    sleeper = rig.submit(
        {"1": node("Sleep", value=1, seconds=0.5), "2": node("Collect", value=["1", 0])}
    )
    rig.listener.wait_started(sleeper)
    before = rig.process.wakes_sent
    burst = [rig.submit(chain(value)) for value in range(20)]
    for job_id in burst:
        assert rig.listener.wait_finished(job_id).state == "success"
    # At most one, answering the child's `Waiting` after the burst: it may have come after
    # the child's last empty claim (WakeRule); not one per submit.
    assert rig.process.wakes_sent - before <= 1


def test_wake_rule() -> None:
    rule = WakeRule()
    assert rule.queued() is False  # a new child claims by itself
    assert rule.waiting() is True  # but its empty claim may have missed that job: wake it
    assert rule.waiting() is False  # nothing queued since: it waits
    assert rule.queued() is True  # a waiting child is woken...
    assert rule.queued() is False  # ...once: it claims until the queue is empty
    assert rule.waiting() is True  # the job queued after the wake may have missed its claims
    assert rule.waiting() is False
    rule.reset()  # a new child
    assert rule.queued() is False


def test_interrupt_reaches_the_running_job(rig: Rig) -> None:
    job_id = rig.submit(
        {"1": node("UntilInterrupted", seconds=30.0), "2": node("Collect", value=["1", 0])}
    )
    rig.listener.wait_started(job_id)
    assert rig.process.interrupt("someone-else") is False
    assert rig.process.interrupt(job_id) is True
    assert rig.listener.wait_finished(job_id, timeout_s=10).state == "interrupted"


def test_free_memory_drops_the_childs_cache(rig: Rig) -> None:
    def cached(job_id: str) -> list[str]:
        outcome = rig.listener.wait_finished(job_id)
        kinds = dict((kind, data) for kind, data in outcome.messages)
        return sorted(kinds["execution_cached"]["nodes"])

    assert cached(rig.submit(chain(41))) == []
    assert cached(rig.submit(chain(41))) == ["1", "2"]
    rig.process.request_free(free_memory=True)
    assert cached(rig.submit(chain(41))) == []


def test_stop_lets_the_running_job_finish(tmp_path: Path) -> None:
    rig = Rig(tmp_path).start()
    try:
        job_id = rig.submit(
            {"1": node("Sleep", value=3, seconds=1.0), "2": node("Collect", value=["1", 0])}
        )
        rig.listener.wait_started(job_id)
        assert rig.process.stop(10.0) is True
        assert rig.process.last_exit_code == 0
        assert rig.listener.wait_finished(job_id, timeout_s=1).state == "success"
        assert not rig.process.alive
        stopped = [e for e in rig.events.events if e.action is Action.WORKER_STOPPED]
        assert [e.level.value for e in stopped] == ["info"]  # its own, graceful stop
    finally:
        rig.close()


def test_a_child_that_dies_is_started_again_and_its_job_runs_again(tmp_path: Path) -> None:
    rig = Rig(tmp_path).start()
    try:
        job_id = rig.submit(
            {"1": node("Sleep", value=5, seconds=2.0), "2": node("Collect", value=["1", 0])}
        )
        rig.listener.wait_started(job_id)
        first_pid = rig.process.pid
        assert first_pid is not None
        os.kill(first_pid, signal.SIGKILL)
        outcome = rig.listener.wait_finished(job_id)
        assert outcome.state == "success"
        assert rig.process.restarts == 1
        assert rig.process.pid != first_pid
        assert rig.process.last_exit_code == -signal.SIGKILL
        entry = rig.store.history_entry(job_id)
        assert entry is not None and entry["flowscope"]["attempts"] == 2
        lost = [
            e
            for e in rig.events.events
            if e.action is Action.WORKER_STOPPED and e.level.value == "error"
        ]
        assert len(lost) == 1 and str(first_pid) in lost[0].get("worker.id")
    finally:
        rig.close()
