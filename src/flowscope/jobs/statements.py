"""The store's SQL, built once as Core statements with bind parameters (`p_*`).

Building a statement costs more than SQLite takes to run it, so the hot ones (claim, renew,
finish, count) are module constants; SQLAlchemy then also reuses their compiled form.
"""

from __future__ import annotations

import sqlalchemy as sa

from flowscope.jobs.rows import QUEUED_COLUMNS
from flowscope.jobs.schema import jobs

c = jobs.c


def p(name: str) -> sa.BindParameter[object]:
    return sa.bindparam(name)


# -- the queue ----------------------------------------------------------------------------
_CLAIMED = {
    "state": "running",
    "worker_id": p("p_worker_id"),
    "attempts": c.attempts + 1,
    "started_at_ms": p("p_now"),
    "lease_expires_at_ms": p("p_lease_until"),
}
_FIRST_PENDING_SEQ = (
    sa.select(c.seq)
    .where(c.state == "pending")
    .order_by(c.number, c.seq)
    .limit(1)
    .with_for_update(skip_locked=True)  # PostgreSQL: workers never wait on each other's claim
    .scalar_subquery()
)
# The first pending job, claimed and returned in one statement (the classic queue UPDATE).
CLAIM_FIRST = (
    jobs.update()
    .where(c.seq == _FIRST_PENDING_SEQ, c.state == "pending")
    .values(**_CLAIMED)
    .returning(*QUEUED_COLUMNS)
)
# The same in two steps, for databases without UPDATE ... RETURNING.
FIRST_PENDING = (
    sa.select(*QUEUED_COLUMNS)
    .where(c.state == "pending")
    .order_by(c.number, c.seq)
    .limit(1)
    .with_for_update(skip_locked=True)
)
QUEUED_BY_ID = sa.select(*QUEUED_COLUMNS).where(c.job_id == p("p_job_id"))
CLAIM = jobs.update().where(c.job_id == p("p_job_id"), c.state == "pending").values(**_CLAIMED)
RENEW = (
    jobs.update()
    .where(c.job_id == p("p_job_id"), c.worker_id == p("p_worker_id"), c.state == "running")
    .values(lease_expires_at_ms=p("p_lease_until"))
)
RUNNING_OF_WORKER = (
    sa.select(c.notes, c.workflow_id, c.user_id, c.trace_id)
    .where(c.job_id == p("p_job_id"), c.worker_id == p("p_worker_id"), c.state == "running")
    .with_for_update()
)
# Back to pending in its old place; `p_attempts` is -1 for a release (a stopping worker's job
# is not a failed attempt), 0 for a lost worker's job.
REQUEUE = (
    jobs.update()
    .where(c.job_id == p("p_job_id"), c.state == "running")
    .values(
        state="pending",
        worker_id=None,
        lease_expires_at_ms=None,
        started_at_ms=None,
        attempts=c.attempts + p("p_attempts"),
        notes=p("p_notes"),
    )
)
RUNNING = (
    sa.select(
        c.job_id,
        c.worker_id,
        c.lease_expires_at_ms,
        c.attempts,
        c.started_at_ms,
        c.notes,
        c.workflow_id,
        c.user_id,
        c.trace_id,
    )
    .where(c.state == "running")
    .with_for_update()
)
QUEUE_RUNNING = (
    sa.select(*QUEUED_COLUMNS).where(c.state == "running").order_by(c.started_at_ms, c.seq)
)
QUEUE_PENDING = sa.select(*QUEUED_COLUMNS).where(c.state == "pending").order_by(c.number, c.seq)
COUNT_QUEUE = (
    sa.select(c.state, sa.func.count()).where(c.state.in_(("pending", "running"))).group_by(c.state)
)

# -- finishing ----------------------------------------------------------------------------
FINISH_READ = (
    sa.select(c.number, c.prompt, c.extra_data, c.outputs, c.state, c.worker_id, c.notes)
    .where(c.job_id == p("p_job_id"))
    .with_for_update()
)
LAST_HISTORY_SEQ = sa.select(sa.func.max(c.history_seq))
_finished = jobs.alias("finished")
_NEXT_HISTORY_SEQ = sa.select(
    sa.func.coalesce(sa.func.max(_finished.c.history_seq), 0) + 1
).scalar_subquery()
# A finished job goes to the end of the history, and drops its prompt (the history entry
# carries it) and its secrets.
WRITE_FINISHED = (
    jobs.update()
    .where(c.job_id == p("p_job_id"), c.state == p("p_from_state"))
    .values(
        state=p("p_state"),
        history=p("p_history"),
        history_seq=_NEXT_HISTORY_SEQ,
        started_at_ms=p("p_started_at_ms"),
        finished_at_ms=p("p_finished_at_ms"),
        notes=p("p_notes"),
        prompt=None,
        sensitive=None,
        lease_expires_at_ms=None,
    )
)
CANCEL = (
    jobs.update()
    .where(c.job_id == p("p_job_id"), c.state == "pending")
    .values(
        state="cancelled",
        finished_at_ms=p("p_now"),
        history_seq=p("p_history_seq"),
        sensitive=None,
    )
)

# -- the history --------------------------------------------------------------------------
HISTORY_ENTRY = sa.select(c.history).where(c.job_id == p("p_job_id"))
HISTORY_PAGE = sa.select(c.job_id, c.history).where(c.history.is_not(None))
