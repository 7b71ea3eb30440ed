"""`Worker`: takes jobs from the store and runs them on an executor, one at a time.

The loop: wait for work → claim the next job (leased; a heartbeat thread renews the lease) →
validate the stored prompt again (node packs may have changed) → execute → record the outcome
and the history entry → tell the listener. Nothing that goes wrong in a job stops the worker: an
exception escaping the executor becomes an error in that job's history, and a database error
makes the worker back off and try again (its job's lease then lapses and recovery re-queues it).

A server runs one worker per device, in a child process by default (`flowscope worker --link-fd`,
see worker_process.py) or as a thread of its own (`start`/`stop`); `flowscope worker` runs one in
its own process against the same store (`run_forever`, or `start` and wait). Stopping is graceful:
the running job may finish until the deadline, and is then interrupted and put back in the
queue, so a restart runs it again.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from flowscope.engine import Executor, JobRequest, JobResult
from flowscope.engine.reporting import JobEvents
from flowscope.graph.validation import validate_prompt
from flowscope.jobs import reporting
from flowscope.jobs.handles import WorkerListener
from flowscope.jobs.heartbeat import Heartbeat
from flowscope.jobs.leases import mark_live, mark_stopped
from flowscope.jobs.model import JobOutcome, QueuedJob
from flowscope.jobs.outcomes import crash_outcome, invalid_outcome, result_outcome
from flowscope.jobs.store import JobStore, now_ms
from flowscope.nodes.registry import NodeRegistry
from flowscope.telemetry.bus import EventBus
from flowscope.telemetry.events import Action

# After a database error in the loop: wait this long before trying again.
ERROR_BACKOFF_S = 1.0
# After stop() interrupts the running job: how long to wait for the executor to notice.
INTERRUPT_GRACE_S = 5.0


class Worker:
    def __init__(
        self,
        store: JobStore,
        executor: Executor,
        registry: NodeRegistry,
        *,
        worker_id: str,
        bus: EventBus | None = None,
        listener: WorkerListener | None = None,
        lease_s: float = 30.0,
        idle_wait_s: float = 5.0,
        recover_every_s: float | None = None,
        requeue_on_stop: bool = True,
        unload_models: Callable[[], None] | None = None,
    ) -> None:
        """`recover_every_s` (default: `lease_s`): how often an idle worker re-queues jobs
        whose worker was lost. `requeue_on_stop`: a job interrupted by `stop` goes back to the
        queue (True) or into the history as interrupted. `unload_models` is called for a
        `/free` that asks for it."""
        self.store = store
        self.executor = executor
        self.registry = registry
        self.worker_id = worker_id
        self.bus = bus
        self.listener = listener
        self.lease_s = lease_s
        self.idle_wait_s = idle_wait_s
        self.recover_every_s = lease_s if recover_every_s is None else recover_every_s
        self.requeue_on_stop = requeue_on_stop
        self.unload_models = unload_models
        self.errors = 0  # loop iterations that failed (database errors), for health checks
        self.listener_errors = 0
        self.last_error: BaseException | None = None
        self._lock = threading.Lock()
        self._current: QueuedJob | None = None
        self._next: QueuedJob | None = None  # claimed with the last finish, not yet run
        self._interrupt_requested: str | None = None  # a job id interrupted before it ran
        self._stop_interrupted = False
        self._lease_lost: str | None = None
        self._free_models = False
        self._free_memory = False
        self._stopping = threading.Event()
        self._running = False
        self._last_recovery = float("-inf")
        self._thread: threading.Thread | None = None
        self._heartbeat = Heartbeat(
            lambda job_id: store.renew_lease(worker_id, job_id, lease_s),
            self._lease_was_lost,
            interval_s=lease_s / 3,
            name=f"flowscope-heartbeat-{worker_id}",
        )

    # -- state ----------------------------------------------------------------------------
    @property
    def current_job(self) -> QueuedJob | None:
        return self._current

    @property
    def busy(self) -> bool:
        return self._current is not None

    @property
    def alive(self) -> bool:
        """True while the loop runs (in its thread, or in `run_forever`)."""
        return self._running

    @property
    def started(self) -> bool:
        """`start` was called (the worker may have stopped since)."""
        return self._thread is not None

    # -- control --------------------------------------------------------------------------
    def start(self) -> None:
        """Run the loop in a daemon thread."""
        if self._thread is not None:
            raise RuntimeError(f"worker {self.worker_id} was started already")
        self._running = True  # alive from now on, not from when the thread gets scheduled
        self._thread = threading.Thread(
            target=self.run_forever, name=f"flowscope-worker-{self.worker_id}", daemon=True
        )
        self._thread.start()

    def stop(self, timeout_s: float = 10.0, *, interrupt: bool = False) -> bool:
        """Stop taking jobs; let the running job finish for up to `timeout_s` (not at all with
        `interrupt`), then interrupt it. True when the loop has ended."""
        self._stopping.set()
        self.store.wake_waiters()
        thread = self._thread
        if thread is None or thread is threading.current_thread():
            return not self._running
        thread.join(0.0 if interrupt else timeout_s)
        if thread.is_alive():
            with self._lock:
                current = self._current
                if current is not None:
                    self._stop_interrupted = True
                    self._interrupt_requested = current.job_id
            if current is not None:
                self.executor.interrupt(current.job_id)
            thread.join(INTERRUPT_GRACE_S)
        return not thread.is_alive()

    def interrupt(self, job_id: str | None = None) -> bool:
        """Interrupt the running job (only if it is `job_id`, when given)."""
        with self._lock:
            current = self._current
            if current is None or (job_id is not None and job_id != current.job_id):
                return False
            self._interrupt_requested = current.job_id  # in case it has not started yet
        self.executor.interrupt(current.job_id)
        return True

    def request_free(self, unload_models: bool = False, free_memory: bool = False) -> None:
        """ComfyUI's `/free`, applied between jobs: `free_memory` drops the executor's cache
        and node instances; both unload models."""
        with self._lock:
            self._free_models |= unload_models or free_memory
            self._free_memory |= free_memory
        self.store.wake_waiters()  # an idle worker applies it now

    # -- the loop -------------------------------------------------------------------------
    def run_forever(self) -> None:
        """Take and run jobs until `stop` is called."""
        self._running = True
        mark_live(self.worker_id)
        self._heartbeat.start()
        reporting.worker_event(self.bus, Action.WORKER_STARTED, self.worker_id, "worker started")
        try:
            while not self._stopping.is_set():
                try:
                    self._step()
                except Exception as exc:  # the database is unreachable or locked, say
                    self.errors += 1
                    self.last_error = exc
                    self._stopping.wait(ERROR_BACKOFF_S)
        finally:
            self._give_back_next()
            self._heartbeat.close()
            self.executor.close()  # the event loop this thread ran jobs on
            mark_stopped(self.worker_id)
            self._running = False
            reporting.worker_event(
                self.bus, Action.WORKER_STOPPED, self.worker_id, "worker stopped"
            )

    def _step(self) -> None:
        self._apply_free()
        if time.monotonic() - self._last_recovery >= self.recover_every_s:
            self._last_recovery = time.monotonic()
            self.store.recover()
        if self._stopping.is_set():
            return  # run_forever gives back a job claimed with the last finish
        job, self._next = self._next, None
        if job is None:
            job = self.store.claim_next(self.worker_id, self.lease_s)
        if job is None:
            self._notify(lambda listener: listener.worker_waiting())
            wait_s = min(self.idle_wait_s, self.recover_every_s)
            self.store.wait_for_work(wait_s, wake_when=self._has_requests)
            return
        with self._lock:
            self._current = job
            self._interrupt_requested = None
            self._stop_interrupted = False
            self._lease_lost = None
        try:
            if self._stopping.is_set():  # stopped between the claim and now: give it back
                self.store.release(job.job_id, self.worker_id)
                return
            self._run(job)
        finally:
            with self._lock:
                self._current = None

    def _run(self, job: QueuedJob) -> None:
        self._heartbeat.watch(job.job_id)
        try:
            self._notify(lambda listener: listener.job_started(job))
            started_at_ms = now_ms()
            outcome = self._execute(job, started_at_ms)
        finally:
            self._heartbeat.clear()
        with self._lock:
            stopped_by_us = self._stop_interrupted
            lease_lost = self._lease_lost == job.job_id
        if outcome.state == "interrupted" and lease_lost:
            return  # interrupted because the job was re-queued elsewhere: not its outcome
        if outcome.state == "interrupted" and stopped_by_us and self.requeue_on_stop:
            self.store.release(job.job_id, self.worker_id)
            return
        if self._stopping.is_set():
            finished = self.store.finish(job.job_id, self.worker_id, outcome)
        else:
            # The next job is claimed in the same commit: one write transaction per job.
            finished, self._next = self.store.finish_and_claim(
                job.job_id, self.worker_id, outcome, self.lease_s
            )
        if finished:
            self._notify(lambda listener: listener.job_finished(job, outcome))

    def _give_back_next(self) -> None:
        """Stopping: a job claimed with the last finish goes back to the queue (if that fails,
        its lease runs out and recovery re-queues it)."""
        job, self._next = self._next, None
        if job is None:
            return
        try:
            self.store.release(job.job_id, self.worker_id, "worker stopped before running it")
        except Exception as exc:  # the database is unreachable, say
            self.errors += 1
            self.last_error = exc

    def _execute(self, job: QueuedJob, started_at_ms: int) -> JobOutcome:
        try:
            validation = validate_prompt(job.prompt, self.registry.schema, job.outputs)
            if not validation.ok or not validation.outputs:
                outcome = invalid_outcome(job, validation, self.worker_id, started_at_ms, now_ms())
                self._report_failure(job, outcome, started_at_ms)
                return outcome
            request = JobRequest(
                prompt=validation.prompt,
                outputs=validation.outputs,
                job_id=job.job_id,
                extra_data={**job.extra_data, **job.sensitive},
                workflow_id=job.workflow_id,
                user_id=job.user_id,
                trace_id=job.trace_id,
            )
            if self._interrupt_requested == job.job_id:
                # Interrupted while being validated: the executor never saw it.
                result = self._not_run(job)
            else:
                result = self.executor.execute(request)
            return result_outcome(job, result, self.worker_id, started_at_ms, now_ms())
        except (Exception, SystemExit) as exc:  # a bug in the engine or a node pack's exit()
            outcome = crash_outcome(job, exc, self.worker_id, started_at_ms, now_ms())
            self._report_failure(job, outcome, started_at_ms)
            return outcome

    def _not_run(self, job: QueuedJob) -> JobResult:
        return JobResult(
            job_id=job.job_id,
            status="interrupted",
            error={"prompt_id": job.job_id, "node_id": None, "node_type": None, "executed": []},
        )

    def _report_failure(self, job: QueuedJob, outcome: JobOutcome, started_at_ms: int) -> None:
        """job.failed for a job the engine never reported (invalid, or the executor raised)."""
        if self.bus is None or not self.bus.has_subscribers:
            return
        events = JobEvents(
            self.bus, job.job_id, job.workflow_id, job.user_id, trace_id=job.trace_id
        )
        error = outcome.messages[-1][1]
        duration_ns = (outcome.finished_at_ms - started_at_ms) * 1_000_000
        events.job_finished(Action.JOB_FAILED, duration_ns, {"error": error, "status": "error"})

    def _has_requests(self) -> bool:
        """Something for the loop to do besides jobs: stop, or a /free to apply."""
        return self._stopping.is_set() or self._free_models or self._free_memory

    def _lease_was_lost(self, job_id: str) -> None:
        with self._lock:
            if self._current is None or self._current.job_id != job_id:
                return
            self._lease_lost = job_id
            self._interrupt_requested = job_id  # in case it has not started yet
        self.executor.interrupt(job_id)

    def _apply_free(self) -> None:
        with self._lock:
            models, memory = self._free_models, self._free_memory
            self._free_models = self._free_memory = False
        if memory:
            self.executor.reset()
        if models and self.unload_models is not None:
            self.unload_models()

    def _notify(self, call: Callable[[WorkerListener], None]) -> None:
        if self.listener is None:
            return
        try:
            call(self.listener)
        except Exception as exc:  # a listener must not stop the worker
            self.listener_errors += 1
            self.last_error = exc
