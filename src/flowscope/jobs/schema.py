"""The job store's tables (SQLAlchemy Core), portable between SQLite and PostgreSQL.

One row per job, from submission to history: the queue is the pending and running rows, the
history is the finished rows in `history_seq` order. The migrations in `migrations/versions`
create exactly these tables; `HEAD_REVISION` names the newest one (a test keeps them in step).
"""

from __future__ import annotations

import sqlalchemy as sa

HEAD_REVISION = "0001"
VERSION_TABLE = "flowscope_jobs_version"
QUEUE_NUMBER = "queue_number"  # the job_counters row behind ComfyUI's priority counter

metadata = sa.MetaData()

# SQLite only makes an INTEGER PRIMARY KEY an alias of the rowid (and so autoincrementing).
_BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

jobs = sa.Table(
    "jobs",
    metadata,
    # Submission order: the queue's tie-break and the jobs API's creation order.
    sa.Column("seq", _BigId, primary_key=True, autoincrement=True),
    sa.Column("job_id", sa.String(255), nullable=False),
    sa.Column("number", sa.Float, nullable=False),  # ComfyUI's priority: lowest runs first
    sa.Column("state", sa.String(16), nullable=False),
    # JSON text. `prompt` and `sensitive` are cleared when the job finishes: the history entry
    # carries the prompt, and secrets are not kept past the run.
    sa.Column("prompt", sa.Text, nullable=True),
    sa.Column("outputs", sa.Text, nullable=False),
    sa.Column("extra_data", sa.Text, nullable=False),
    sa.Column("sensitive", sa.Text, nullable=True),
    sa.Column("user_id", sa.String(255), nullable=True),
    sa.Column("workflow_id", sa.String(255), nullable=True),
    sa.Column("trace_id", sa.String(64), nullable=True),
    sa.Column("created_at_ms", sa.BigInteger, nullable=False),
    sa.Column("started_at_ms", sa.BigInteger, nullable=True),
    sa.Column("finished_at_ms", sa.BigInteger, nullable=True),
    sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
    sa.Column("worker_id", sa.String(255), nullable=True),
    sa.Column("lease_expires_at_ms", sa.BigInteger, nullable=True),
    # Finish order (ComfyUI's history is in insertion order); set for every finished job,
    # cancelled ones included, so a history cap counts them too.
    sa.Column("history_seq", sa.BigInteger, nullable=True),
    # ComfyUI's history entry as JSON text, served without parsing; NULL for cancelled jobs.
    sa.Column("history", sa.Text, nullable=True),
    # JSON list of what happened to the job outside a normal run (re-queued after a lost worker).
    sa.Column("notes", sa.Text, nullable=True),
    sa.Index("ux_jobs_job_id", "job_id", unique=True),
    sa.Index("ix_jobs_queue", "state", "number", "seq"),
    sa.Index("ux_jobs_history_seq", "history_seq", unique=True),
    sa.Index("ix_jobs_workflow_id", "workflow_id"),
    sa.Index("ix_jobs_created_at_ms", "created_at_ms"),
)

job_counters = sa.Table(
    "job_counters",
    metadata,
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("value", sa.BigInteger, nullable=False),
)
