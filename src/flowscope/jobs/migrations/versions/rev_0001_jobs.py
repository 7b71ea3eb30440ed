"""The job store: jobs (queue and history in one table) and the priority counter.

Revision ID: 0001
Revises:
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision: str | None = None
branch_labels: str | None = None
depends_on: str | None = None

_BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "jobs",
        sa.Column("seq", _BigId, primary_key=True, autoincrement=True),
        sa.Column("job_id", sa.String(255), nullable=False),
        sa.Column("number", sa.Float, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
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
        sa.Column("history_seq", sa.BigInteger, nullable=True),
        sa.Column("history", sa.Text, nullable=True),
        sa.Column("notes", sa.Text, nullable=True),
    )
    op.create_index("ux_jobs_job_id", "jobs", ["job_id"], unique=True)
    op.create_index("ix_jobs_queue", "jobs", ["state", "number", "seq"])
    op.create_index("ux_jobs_history_seq", "jobs", ["history_seq"], unique=True)
    op.create_index("ix_jobs_workflow_id", "jobs", ["workflow_id"])
    op.create_index("ix_jobs_created_at_ms", "jobs", ["created_at_ms"])
    counters = op.create_table(
        "job_counters",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("value", sa.BigInteger, nullable=False),
    )
    op.bulk_insert(counters, [{"name": "queue_number", "value": 0}])


def downgrade() -> None:
    op.drop_table("job_counters")
    op.drop_table("jobs")
