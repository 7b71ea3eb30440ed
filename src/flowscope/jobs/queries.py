"""The store's reads: the history page as JSON text, one entry, and the jobs API's lists.

Each function takes an open connection; `JobStore` opens it (reads never take the write lock).
"""

from __future__ import annotations

from collections.abc import Collection
from typing import TYPE_CHECKING, Any, Literal

import sqlalchemy as sa

from flowscope.jobs import statements as sql
from flowscope.jobs.history import history_object_text
from flowscope.jobs.model import JobRecord, JobState
from flowscope.jobs.rows import RECORD_COLUMNS, job_record, loads
from flowscope.jobs.schema import jobs

if TYPE_CHECKING:
    from flowscope.jobs.rows import AnyRow

SortBy = Literal["created_at", "execution_duration"]


def history_json(connection: sa.Connection, max_items: int | None, offset: int | None) -> str:
    """`{"<id>": entry, ...}` in finish order, with ComfyUI's paging (see JobStore)."""
    query = sql.HISTORY_PAGE
    newest_first = max_items is not None and offset is None
    if newest_first:
        query = query.order_by(jobs.c.history_seq.desc()).limit(max_items)
    else:
        query = query.order_by(jobs.c.history_seq)
        if offset:
            query = query.offset(offset)
        if max_items is not None:
            query = query.limit(max_items)
    rows: list[AnyRow] = list(connection.execute(query))
    if newest_first:
        rows.reverse()
    return history_object_text((row[0], row[1]) for row in rows)


def history_entry(connection: sa.Connection, job_id: str) -> dict[str, Any] | None:
    entry = loads(connection.execute(sql.HISTORY_ENTRY, {"p_job_id": job_id}).scalar())
    return entry if isinstance(entry, dict) else None


def list_jobs(
    connection: sa.Connection,
    states: Collection[JobState] | None,
    workflow_id: str | None,
    sort_by: SortBy,
    descending: bool,
    limit: int | None,
    offset: int,
) -> tuple[list[JobRecord], int]:
    conditions: list[sa.ColumnElement[bool]] = []
    if states is not None:
        conditions.append(jobs.c.state.in_(list(states)))
    if workflow_id is not None:
        conditions.append(jobs.c.workflow_id == workflow_id)
    tie = jobs.c.seq.desc() if descending else jobs.c.seq.asc()
    if sort_by == "created_at":
        created = jobs.c.created_at_ms
        order = [created.desc() if descending else created.asc(), tie]
    elif sort_by == "execution_duration":
        duration = jobs.c.finished_at_ms - jobs.c.started_at_ms
        first = duration.desc() if descending else duration.asc()
        order = [first.nulls_last(), tie]  # jobs that have not run have no duration: last
    else:
        raise ValueError(f"sort_by must be created_at or execution_duration, not {sort_by!r}")
    page = sa.select(*RECORD_COLUMNS).where(*conditions).order_by(*order).offset(offset)
    if limit is not None:
        page = page.limit(limit)
    rows = list(connection.execute(page))
    total = connection.execute(
        sa.select(sa.func.count()).select_from(jobs).where(*conditions)
    ).scalar()
    return [job_record(row) for row in rows], total or 0


def get_job(connection: sa.Connection, job_id: str, with_prompt: bool) -> JobRecord | None:
    columns = RECORD_COLUMNS
    if with_prompt:
        columns = (*columns, jobs.c.prompt, jobs.c.extra_data)
    row = connection.execute(sa.select(*columns).where(jobs.c.job_id == job_id)).first()
    if row is None:
        return None
    return job_record(row, (row[-2], row[-1]) if with_prompt else None)


def queue_rows(connection: sa.Connection) -> tuple[list[AnyRow], list[AnyRow]]:
    """(running rows in start order, pending rows in run order), as QUEUED_COLUMNS."""
    return list(connection.execute(sql.QUEUE_RUNNING)), list(connection.execute(sql.QUEUE_PENDING))


def queue_counts(connection: sa.Connection) -> tuple[int, int]:
    """(pending, running)."""
    counts: dict[str, int] = {state: n for state, n in connection.execute(sql.COUNT_QUEUE)}
    return counts.get("pending", 0), counts.get("running", 0)
