"""How jobs live in rows: JSON text columns, and rows back into `QueuedJob` / `JobRecord`."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, cast

import orjson
import sqlalchemy as sa

from flowscope.jobs.model import JobRecord, JobState, QueuedJob
from flowscope.jobs.schema import jobs

if TYPE_CHECKING:
    from typing import TypeAlias

    AnyRow: TypeAlias = sa.Row[*tuple[Any, ...]]  # a row of any width

_encoder = json.JSONEncoder(separators=(",", ":"))
_lenient_encoder = json.JSONEncoder(separators=(",", ":"), default=repr)

# The columns a QueuedJob is built from, in a fixed order.
QUEUED_COLUMNS: tuple[sa.Column[Any], ...] = (
    jobs.c.number,
    jobs.c.job_id,
    jobs.c.prompt,
    jobs.c.extra_data,
    jobs.c.outputs,
    jobs.c.sensitive,
    jobs.c.state,
    jobs.c.created_at_ms,
    jobs.c.attempts,
    jobs.c.user_id,
    jobs.c.workflow_id,
    jobs.c.trace_id,
    jobs.c.worker_id,
)
RECORD_COLUMNS: tuple[sa.Column[Any], ...] = (
    jobs.c.job_id,
    jobs.c.state,
    jobs.c.number,
    jobs.c.created_at_ms,
    jobs.c.started_at_ms,
    jobs.c.finished_at_ms,
    jobs.c.workflow_id,
    jobs.c.user_id,
    jobs.c.history,
)


def dumps(value: Any) -> str:
    """Compact JSON of what a client sent (a prompt, its extra data). Through orjson, a fifth
    of the standard encoder's cost (three per submitted job); what orjson refuses (lone
    surrogates, integers beyond 64 bits, non-string keys) or may write differently (`null`
    stands for NaN too, which the standard encoder keeps as `NaN`) takes the standard encoder,
    ASCII-only, so that any text a client sent can be stored and served."""
    try:
        data = orjson.dumps(value)
    except TypeError:  # orjson.JSONEncodeError is a TypeError
        return _encoder.encode(value)
    return _encoder.encode(value) if b"null" in data else data.decode()


def dumps_lenient(value: Any) -> str:
    """Like `dumps`, but an object JSON cannot hold (a node's odd UI value) becomes its repr
    instead of failing the write of a finished job."""
    return _lenient_encoder.encode(value)


def loads(text: str | None, default: Any = None) -> Any:
    return default if text is None else json.loads(text)


def priority(number: float) -> float:
    """ComfyUI's counter numbers are ints on the wire (`"number": 12`); keep them so."""
    return int(number) if float(number).is_integer() else number


def queued_job(row: Sequence[Any]) -> QueuedJob:
    """A QueuedJob from a row of QUEUED_COLUMNS."""
    return QueuedJob(
        number=priority(row[0]),
        job_id=row[1],
        prompt=loads(row[2], {}),
        extra_data=loads(row[3], {}),
        outputs=loads(row[4], []),
        sensitive=loads(row[5], {}),
        state=cast(JobState, row[6]),
        created_at_ms=row[7],
        attempts=row[8],
        user_id=row[9],
        workflow_id=row[10],
        trace_id=row[11],
        worker_id=row[12],
    )


def queue_item_json(row: Sequence[Any]) -> str:
    """ComfyUI's queue tuple as JSON text, from a row of QUEUED_COLUMNS, without parsing."""
    return f"[{dumps(priority(row[0]))},{dumps(row[1])},{row[2] or '{}'},{row[3]},{row[4]}]"


def job_record(row: Sequence[Any], extra: Sequence[Any] | None = None) -> JobRecord:
    """A JobRecord from a row of RECORD_COLUMNS; `extra` = (prompt, extra_data) text for
    detail views (a finished job's prompt lives in its history entry)."""
    history = loads(row[8])
    prompt = extra_data = None
    if extra is not None:
        queue_tuple = history.get("prompt") if isinstance(history, dict) else None
        if isinstance(queue_tuple, list) and len(queue_tuple) >= 4:
            prompt, extra_data = queue_tuple[2], queue_tuple[3]
        else:
            prompt, extra_data = loads(extra[0]), loads(extra[1])
    return JobRecord(
        job_id=row[0],
        state=cast(JobState, row[1]),
        number=priority(row[2]),
        created_at_ms=row[3],
        started_at_ms=row[4],
        finished_at_ms=row[5],
        workflow_id=row[6],
        user_id=row[7],
        history=history,
        prompt=prompt,
        extra_data=extra_data,
    )
