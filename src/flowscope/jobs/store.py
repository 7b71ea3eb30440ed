"""`JobStore`: the durable queue and history (SQLite by default; portable SQL for PostgreSQL).

Thread-safe and synchronous. Every write of this process goes through one write lock (so
in-process writers never wait on SQLite's busy handler, which sleeps in milliseconds) and one
transaction; other processes (`flowscope worker`) are serialized by the database itself.

- The queue: pending rows in ComfyUI's priority order (lowest `number` first, then submission
  order); `claim_next` moves the first to running under a lease that the worker renews.
- The history: finished rows in finish order, each holding its ComfyUI entry as JSON text, which
  `history_json` concatenates without parsing.
- Recovery: running jobs whose worker was lost go back to the queue once (recovery.py).
- Events: job.queued on submit, job.cancelled on cancel, job.requeued / job.failed on recovery,
  when a bus is given (the store emits them itself; there is no wrapper).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from flowscope.jobs import queries, reporting
from flowscope.jobs import statements as sql
from flowscope.jobs.counts import QueueCounts, Wake
from flowscope.jobs.database import (
    Checkpointer,
    SQLiteSynchronous,
    Writer,
    create_store_engine,
    is_sqlite,
)
from flowscope.jobs.history import entry_text
from flowscope.jobs.leases import mark_live, worker_alive
from flowscope.jobs.migrate import upgrade_schema
from flowscope.jobs.model import (
    FINISHED_STATES,
    JobOutcome,
    JobRecord,
    JobState,
    NewJob,
    QueuedJob,
)
from flowscope.jobs.queries import SortBy
from flowscope.jobs.recovery import RecoveredJob, recover_lost, requeue_note
from flowscope.jobs.rows import dumps, loads, queue_item_json, queued_job
from flowscope.jobs.runner import Runner
from flowscope.jobs.schema import jobs
from flowscope.jobs.submits import (
    BatchWriter,
    PendingSubmit,
    SubmitQueue,
    pending_submit,
    queued_result,
)
from flowscope.telemetry.bus import EventBus

if TYPE_CHECKING:
    from flowscope.jobs.rows import AnyRow

# How stale the in-memory queue counts may get before a recount (other processes' changes).
COUNTS_TTL_S = 1.0
_ID_CHUNK = 500  # ids per IN (...) list: well under every database's parameter limit
_FINISHED = tuple(sorted(FINISHED_STATES))
_OUTCOME_STATES = frozenset({"success", "error", "interrupted"})


def now_ms() -> int:
    return time.time_ns() // 1_000_000


class JobStore:
    def __init__(
        self,
        url: str,
        *,
        bus: EventBus | None = None,
        max_history: int | None = None,
        poll_interval_s: float = 0.25,
        synchronous: SQLiteSynchronous = "NORMAL",
        busy_timeout_s: float = 30.0,
    ) -> None:
        """Open (and create or migrate) the store at a SQLAlchemy `url`.

        `max_history`: keep at most this many finished jobs (ComfyUI keeps 10,000); None keeps
        all. `poll_interval_s`: how often an idle `wait_for_work` looks for jobs queued by other
        processes (this process's submits wake it at once). `synchronous`: see
        `database.create_store_engine`.
        """
        if max_history is not None and max_history < 1:
            raise ValueError("max_history must be at least 1 (or None to keep everything)")
        self._engine = create_store_engine(
            url, synchronous=synchronous, busy_timeout_s=busy_timeout_s
        )
        try:
            upgrade_schema(self._engine)
        except BaseException:
            self._engine.dispose()
            raise
        self.bus = bus
        self.max_history = max_history
        self.poll_interval_s = poll_interval_s
        self._writer = Writer(self._engine)
        self._checkpointer: Checkpointer | None = None
        if is_sqlite(self._engine):
            self._checkpointer = Checkpointer(self._engine)
            self._checkpointer.start()
        self._submits = SubmitQueue()
        self._run = Runner(self._engine.dialect)
        self._batches = BatchWriter(self._run)
        self._counts = QueueCounts()
        self._closed = False
        with self._writer.lock:
            self._recount()

    @classmethod
    def open(cls, url: str, **options: Any) -> JobStore:
        return cls(url, **options)

    @property
    def url(self) -> str:
        """The database URL, password hidden."""
        return self._engine.url.render_as_string(hide_password=True)

    def close(self) -> None:
        """Wake every waiting worker and release the connections; the store is unusable after."""
        if self._closed:
            return
        self._closed = True
        self._counts.wake_all()
        self._writer.close()
        if self._checkpointer is not None:
            self._checkpointer.close()
        self._engine.dispose()

    def __enter__(self) -> JobStore:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    # -- submitting ---------------------------------------------------------------------
    def submit(self, job: NewJob) -> QueuedJob:
        """Store the job (committed before this returns) and queue it; raises
        `DuplicateJobError` when the id is taken. Concurrent calls share commits."""
        self._check_open()
        item = pending_submit(job)
        self._submits.put(item)
        with self._writer.lock:
            if not item.done:
                self._commit_submits(self._submits.take_all())
        if item.error is not None:
            raise item.error
        assert item.result is not None
        result = item.result
        if self.bus is not None and self.bus.has_subscribers:
            fields = reporting.job_fields(
                result.job_id, result.workflow_id, result.user_id, result.trace_id
            )
            reporting.job_queued(self.bus, fields, result.number)
        return result

    def submit_many(self, jobs: Sequence[NewJob]) -> list[QueuedJob | BaseException]:
        """Store several jobs in one commit (for a caller that batches submissions itself);
        each result is the queued job or the error for that job (e.g. `DuplicateJobError`)."""
        self._check_open()
        items = [pending_submit(job) for job in jobs]
        for item in items:
            self._submits.put(item)
        with self._writer.lock:
            if not all(item.done for item in items):
                # A failed commit marks every item with its error: reported per job below.
                with contextlib.suppress(Exception):
                    self._commit_submits(self._submits.take_all())
        results: list[QueuedJob | BaseException] = []
        for item in items:
            if item.error is not None:
                results.append(item.error)
                continue
            assert item.result is not None
            results.append(item.result)
            if self.bus is not None and self.bus.has_subscribers:
                result = item.result
                fields = reporting.job_fields(
                    result.job_id, result.workflow_id, result.user_id, result.trace_id
                )
                reporting.job_queued(self.bus, fields, result.number)
        return results

    def _commit_submits(self, batch: list[PendingSubmit]) -> None:
        try:
            try:
                with self._writer.transaction() as connection:
                    accepted = self._batches.commit(connection, batch, check_duplicates=False)
            except sa.exc.IntegrityError:
                # Someone reused an id: find which, and commit the rest.
                with self._writer.transaction() as connection:
                    accepted = self._batches.commit(connection, batch, check_duplicates=True)
        except BaseException as exc:
            for item in batch:
                item.error, item.done = exc, True
            raise
        for item in accepted:
            item.result = queued_result(item)
        for item in batch:
            item.done = True
        self._counts.add(pending=len(accepted))

    # -- claiming and running -------------------------------------------------------------
    def claim_next(self, worker_id: str, lease_s: float) -> QueuedJob | None:
        """Move the first pending job to running for `worker_id`, leased for `lease_s`."""
        self._check_open()
        mark_live(worker_id)
        with self._writer.lock:
            with self._writer.transaction() as connection:
                row = self._claim_in(connection, worker_id, lease_s)
            return self._claimed(row)

    def _claim_in(
        self, connection: sa.Connection, worker_id: str, lease_s: float
    ) -> Sequence[Any] | None:
        now = now_ms()
        values = {
            "p_worker_id": worker_id,
            "p_now": now,
            "p_lease_until": now + int(lease_s * 1000),
        }
        if self._run.returning:
            row: Sequence[Any] | None = self._run.execute(
                connection, sql.CLAIM_FIRST, values
            ).fetchone()
            return row
        return self._claim_in_two_steps(connection, values)

    def _claimed(self, row: Sequence[Any] | None) -> QueuedJob | None:
        """The counts after a committed claim (call with the write lock held), and its job."""
        if row is None:
            self._counts.no_pending()
            return None
        self._counts.add(pending=-1, running=1)
        return queued_job(row)

    def _claim_in_two_steps(
        self, connection: sa.Connection, values: dict[str, Any]
    ) -> Sequence[Any] | None:
        """The claim for databases without UPDATE ... RETURNING: find, then claim."""
        while True:
            row = connection.execute(sql.FIRST_PENDING).first()
            if row is None:
                return None
            claimed = connection.execute(sql.CLAIM, {"p_job_id": row.job_id, **values})
            if claimed.rowcount == 1:  # else another process took it: try the next
                return connection.execute(sql.QUEUED_BY_ID, {"p_job_id": row.job_id}).first()

    def wait_for_work(
        self, timeout_s: float, *, wake_when: Callable[[], bool] | None = None
    ) -> bool:
        """True as soon as jobs may be pending: at once after a submit in this process, within
        `poll_interval_s` after one in another process. False on timeout, on `wake_waiters`,
        or once `wake_when()` is true (a worker's own flags: stop, /free), checked so that a
        flag set just before `wake_waiters` is never missed."""
        deadline = time.monotonic() + timeout_s
        while not self._closed:
            remaining = deadline - time.monotonic()
            slice_s = min(max(remaining, 0.0), self.poll_interval_s)
            wake = self._counts.wait(slice_s, wake_when)
            if wake is Wake.WORK:
                return True
            if wake is Wake.WOKEN or remaining <= self.poll_interval_s:
                return False
            with self._writer.lock:
                self._recount()  # another process may have queued or re-queued jobs
        return False

    def wake_waiters(self) -> None:
        """Make every `wait_for_work` return now (a worker stopping, a /free to apply)."""
        self._counts.wake_all()

    def renew_lease(self, worker_id: str, job_id: str, lease_s: float) -> bool:
        """Extend the lease (the heartbeat); False when the job is no longer this worker's."""
        self._check_open()
        values = {
            "p_job_id": job_id,
            "p_worker_id": worker_id,
            "p_lease_until": now_ms() + int(lease_s * 1000),
        }
        with self._writer.lock, self._writer.transaction() as connection:
            return self._run.execute(connection, sql.RENEW, values).rowcount == 1

    def release(self, job_id: str, worker_id: str, reason: str = "worker stopped") -> bool:
        """Put a running job back in its place in the queue, its attempt not counted (its
        worker is stopping, not failing); False when the job is not this worker's."""
        self._check_open()
        with self._writer.lock:
            with self._writer.transaction() as connection:
                row = connection.execute(
                    sql.RUNNING_OF_WORKER, {"p_job_id": job_id, "p_worker_id": worker_id}
                ).first()
                if row is None:
                    return False
                notes = [*loads(row.notes, []), requeue_note(worker_id, reason, now_ms())]
                connection.execute(
                    sql.REQUEUE,
                    {"p_job_id": job_id, "p_attempts": -1, "p_notes": dumps(notes)},
                )
            self._counts.add(pending=1, running=-1)
        fields = reporting.job_fields(job_id, row.workflow_id, row.user_id, row.trace_id)
        reporting.job_requeued(self.bus, fields, worker_id, reason)
        return True

    def finish(self, job_id: str, worker_id: str, outcome: JobOutcome) -> bool:
        """Record the outcome and the history entry in one transaction.

        Returns False (and records nothing) when the job is no longer this worker's: finished
        already, cancelled, or claimed by another worker after this one lost its lease. A job
        re-queued but not claimed again is still recorded: the result is real.
        """
        _check_outcome(outcome)
        self._check_open()
        with self._writer.lock:
            with self._writer.transaction() as connection:
                state = self._finish_in(connection, job_id, worker_id, outcome)
            self._finished(state)
        return state is not None

    def finish_and_claim(
        self, job_id: str, worker_id: str, outcome: JobOutcome, lease_s: float
    ) -> tuple[bool, QueuedJob | None]:
        """`finish`, then `claim_next`, in one transaction: a worker running jobs back to back
        commits (and takes the write lock, which submits wait for) once per job, not twice.
        Returns what `finish` and `claim_next` would."""
        _check_outcome(outcome)
        self._check_open()
        mark_live(worker_id)
        with self._writer.lock:
            with self._writer.transaction() as connection:
                state = self._finish_in(connection, job_id, worker_id, outcome)
                row = self._claim_in(connection, worker_id, lease_s)
            self._finished(state)
            return state is not None, self._claimed(row)

    def _finish_in(
        self, connection: sa.Connection, job_id: str, worker_id: str, outcome: JobOutcome
    ) -> str | None:
        """Write the outcome; the state the job was in, or None when it is not this worker's
        to finish (nothing written)."""
        found = self._run.execute(connection, sql.FINISH_READ, {"p_job_id": job_id}).fetchone()
        if found is None:
            return None
        number, prompt, extra_data, outputs, state, owner, notes = found
        if not (state == "pending" or (state == "running" and owner == worker_id)):
            return None
        text = entry_text(
            number=number,
            job_id=job_id,
            prompt_json=prompt or "{}",
            extra_data_json=extra_data,
            outputs_json=outputs,
            outcome=outcome,
            notes=loads(notes),
        )
        self._write_finished(connection, job_id, state, outcome, text, notes)
        return str(state)

    def _finished(self, state: str | None) -> None:
        """The counts after a committed finish (call with the write lock held)."""
        if state == "running":
            self._counts.add(running=-1)
        elif state is not None:
            self._counts.add(pending=-1)

    def _write_finished(
        self,
        connection: sa.Connection,
        job_id: str,
        from_state: str,
        outcome: JobOutcome,
        history: str,
        notes: str | None,
    ) -> None:
        """Move one job to its finished state at the end of the history; apply the cap."""
        self._run.execute(
            connection,
            sql.WRITE_FINISHED,
            {
                "p_job_id": job_id,
                "p_from_state": from_state,
                "p_state": outcome.state,
                "p_history": history,
                "p_started_at_ms": outcome.started_at_ms,
                "p_finished_at_ms": outcome.finished_at_ms,
                "p_notes": notes,
            },
        )
        self._cap_history(connection)

    def _cap_history(self, connection: sa.Connection) -> None:
        if self.max_history is None:
            return
        oldest_kept = connection.execute(
            sa.select(jobs.c.history_seq)
            .where(jobs.c.history_seq.is_not(None))
            .order_by(jobs.c.history_seq.desc())
            .offset(self.max_history - 1)
            .limit(1)
        ).scalar()
        if oldest_kept is not None:
            connection.execute(jobs.delete().where(jobs.c.history_seq < oldest_kept))

    # -- the queue ----------------------------------------------------------------------
    def queue(self) -> tuple[list[QueuedJob], list[QueuedJob]]:
        """(running jobs in start order, pending jobs in run order)."""
        running, pending = self._queue_rows()
        return [queued_job(row) for row in running], [queued_job(row) for row in pending]

    def queue_json(self) -> str:
        """`GET /queue`'s body as JSON text, built from the stored JSON without parsing it."""
        running, pending = self._queue_rows()
        running_text = ",".join(queue_item_json(row) for row in running)
        pending_text = ",".join(queue_item_json(row) for row in pending)
        return f'{{"queue_running":[{running_text}],"queue_pending":[{pending_text}]}}'

    def _queue_rows(self) -> tuple[list[AnyRow], list[AnyRow]]:
        with self._engine.connect() as connection:
            return queries.queue_rows(connection)

    def queue_remaining(self) -> int:
        """Pending + running jobs, without a query (recounted at most every COUNTS_TTL_S)."""
        counts = self._counts
        stale = time.monotonic() - counts.counted_at > COUNTS_TTL_S
        # Never wait for the write lock here (this runs on status broadcasts): a busy lock
        # means a recount can wait for the next call.
        if stale and not self._closed and self._writer.lock.acquire(blocking=False):
            try:
                self._recount()
            finally:
                self._writer.lock.release()
        return counts.remaining

    def recount_soon(self) -> None:
        """Another process changed the queue and told this one (a worker process finished a
        job): the next `queue_remaining` counts again instead of trusting the counts for up to
        COUNTS_TTL_S."""
        self._counts.mark_stale()

    def _recount(self) -> None:
        """Count from the database; call with the write lock held, so that no write of this
        process lands between the count and its use."""
        with self._engine.connect() as connection:
            pending, running = queries.queue_counts(connection)
        self._counts.replace(pending, running)

    def cancel_pending(self, job_ids: Iterable[str]) -> list[str]:
        """Cancel these jobs if they are still pending; returns the ids cancelled. Cancelled
        jobs leave the queue and, as in ComfyUI, never enter `history_json`; the jobs API lists
        them as cancelled."""
        ids = list(dict.fromkeys(job_ids))
        cancelled: list[AnyRow] = []
        for chunk in _chunks(ids):
            cancelled += self._cancel_where(jobs.c.job_id.in_(chunk))
        return self._report_cancelled(cancelled)

    def clear_pending(self) -> list[str]:
        """Cancel every pending job (`POST /queue {"clear": true}`)."""
        return self._report_cancelled(self._cancel_where(sa.true()))

    def _cancel_where(self, condition: sa.ColumnElement[bool]) -> list[AnyRow]:
        self._check_open()
        pending = (
            sa.select(jobs.c.job_id, jobs.c.workflow_id, jobs.c.user_id, jobs.c.trace_id)
            .where(jobs.c.state == "pending", condition)
            .order_by(jobs.c.number, jobs.c.seq)
            .with_for_update()
        )
        with self._writer.lock:
            with self._writer.transaction() as connection:
                rows = list(connection.execute(pending))
                if rows:
                    first, now = _next_history_seq(connection), now_ms()
                    connection.execute(
                        sql.CANCEL,
                        [
                            {"p_job_id": row.job_id, "p_now": now, "p_history_seq": seq}
                            for seq, row in enumerate(rows, start=first)
                        ],
                    )
                    self._cap_history(connection)
            self._counts.add(pending=-len(rows))
        return rows

    def _report_cancelled(self, rows: list[AnyRow]) -> list[str]:
        for row in rows:
            fields = reporting.job_fields(row.job_id, row.workflow_id, row.user_id, row.trace_id)
            reporting.job_cancelled(self.bus, fields)
        return [row.job_id for row in rows]

    # -- the history --------------------------------------------------------------------
    def history_json(self, max_items: int | None = None, offset: int | None = None) -> str:
        """`GET /history`'s body as JSON text (`{"<id>": entry, ...}` in finish order), joined
        from the stored entries without parsing them.

        ComfyUI's paging: with `max_items` and no `offset`, the last `max_items` entries;
        `offset` skips entries from the start. (`max_items=0` gives nothing, where ComfyUI
        gives one entry when an offset is also given.)
        """
        with self._engine.connect() as connection:
            return queries.history_json(connection, max_items, offset)

    def history_entry(self, job_id: str) -> dict[str, Any] | None:
        """One job's ComfyUI history entry, or None (not finished, cancelled, or unknown)."""
        with self._engine.connect() as connection:
            return queries.history_entry(connection, job_id)

    def delete_history(self, job_ids: Iterable[str]) -> None:
        """Forget these finished jobs (queued and running ones are left alone)."""
        for chunk in _chunks(list(dict.fromkeys(job_ids))):
            self._delete_finished(jobs.c.job_id.in_(chunk))

    def clear_history(self) -> None:
        """Forget every finished job."""
        self._delete_finished(sa.true())

    def _delete_finished(self, condition: sa.ColumnElement[bool]) -> None:
        self._check_open()
        with self._writer.lock, self._writer.transaction() as connection:
            connection.execute(jobs.delete().where(jobs.c.state.in_(_FINISHED), condition))

    # -- the jobs API -------------------------------------------------------------------
    def list_jobs(
        self,
        states: Collection[JobState] | None = None,
        workflow_id: str | None = None,
        sort_by: SortBy = "created_at",
        descending: bool = True,
        limit: int | None = None,
        offset: int = 0,
    ) -> tuple[list[JobRecord], int]:
        """One page of jobs in any state (newest first by default), and how many match."""
        with self._engine.connect() as connection:
            return queries.list_jobs(
                connection, states, workflow_id, sort_by, descending, limit, offset
            )

    def get_job(self, job_id: str, *, with_prompt: bool = False) -> JobRecord | None:
        """One job in any state; `with_prompt` adds its prompt and extra_data."""
        with self._engine.connect() as connection:
            return queries.get_job(connection, job_id, with_prompt)

    # -- recovery -----------------------------------------------------------------------
    def recover(self, is_worker_alive: Callable[[str], bool] | None = None) -> list[RecoveredJob]:
        """Deal with running jobs whose worker was lost (its lease expired, or
        `is_worker_alive` says it is dead; by default `leases.worker_alive`): each goes back to
        the queue once, and is failed with a clear history entry after that."""
        self._check_open()
        with self._writer.lock:
            with self._writer.transaction() as connection:
                recovered = recover_lost(
                    connection, is_worker_alive or worker_alive, now_ms(), self._write_finished
                )
            requeued = sum(1 for item in recovered if item.failure is None)
            self._counts.add(pending=requeued, running=-len(recovered))
        for item in recovered:
            row = item.row
            fields = reporting.job_fields(row.job_id, row.workflow_id, row.user_id, row.trace_id)
            if item.failure is None:
                reporting.job_requeued(self.bus, fields, item.job.worker_id, item.job.reason)
            else:
                error = item.failure.messages[-1][1]
                reporting.job_lost(self.bus, fields, item.job.worker_id, error)
        return [item.job for item in recovered]

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError(f"the job store at {self.url} is closed")


def _next_history_seq(connection: sa.Connection) -> int:
    return (connection.execute(sql.LAST_HISTORY_SEQ).scalar() or 0) + 1


def _chunks(ids: list[str]) -> Iterator[list[str]]:
    for start in range(0, len(ids), _ID_CHUNK):
        yield ids[start : start + _ID_CHUNK]


def _check_outcome(outcome: JobOutcome) -> None:
    if outcome.state not in _OUTCOME_STATES:
        raise ValueError(f"a job finishes as success, error or interrupted, not {outcome.state}")
