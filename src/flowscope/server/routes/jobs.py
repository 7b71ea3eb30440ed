"""The jobs API of newer ComfyUI (`/jobs`, spec §4.6), which the current editor uses for its
queue and history panels."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Request

from flowscope.jobs.model import JobState
from flowscope.server.context import ServerContext
from flowscope.server.errors import ApiError, read_json_object
from flowscope.server.job_views import STATES_OF_STATUS, job_detail, job_summary

MAX_LIMIT = 1000


def router(ctx: ServerContext) -> APIRouter:
    routes = APIRouter(tags=["jobs"])
    store = ctx.store

    @routes.get("/jobs")
    def list_jobs(
        status: str | None = None,
        workflow_id: str | None = None,
        sort_by: Literal["created_at", "execution_duration"] = "created_at",
        sort_order: Literal["asc", "desc"] = "desc",
        limit: int | None = None,
        offset: int = 0,
    ) -> dict[str, Any]:
        states = _states(status)
        if limit is not None and not 0 <= limit <= MAX_LIMIT:
            raise ApiError(400, f"limit must be between 0 and {MAX_LIMIT}")
        if offset < 0:
            raise ApiError(400, "offset must not be negative")
        records, total = store.list_jobs(
            states,
            workflow_id,
            sort_by,
            descending=sort_order == "desc",
            limit=limit,
            offset=offset,
        )
        shown = len(records)
        return {
            "jobs": [job_summary(record) for record in records],
            "pagination": {
                "offset": offset,
                "limit": limit if limit is not None else shown,
                "total": total,
                "has_more": offset + shown < total,
            },
        }

    @routes.get("/jobs/{job_id}")
    def get_job(job_id: str) -> dict[str, Any]:
        record = store.get_job(job_id, with_prompt=True)
        if record is None:
            raise ApiError(404, f"no job {job_id!r}", type="not_found")
        return job_detail(record)

    @routes.post("/jobs/cancel")
    async def cancel_many(request: Request) -> dict[str, Any]:
        body = await read_json_object(request)
        job_ids = body.get("job_ids")
        if not isinstance(job_ids, list) or not all(isinstance(i, str) for i in job_ids):
            raise ApiError(400, "job_ids must be a list of job ids")
        cancelled = [job_id for job_id in job_ids if _cancel(ctx, job_id)]
        return {"cancelled": bool(cancelled), "job_ids": cancelled}

    @routes.post("/jobs/{job_id}/cancel")
    def cancel_one(job_id: str) -> dict[str, Any]:
        return {"cancelled": _cancel(ctx, job_id)}

    return routes


def _cancel(ctx: ServerContext, job_id: str) -> bool:
    """Pending: removed from the queue; running: interrupted; finished or unknown: nothing."""
    if ctx.store.cancel_pending([job_id]):
        ctx.hub.broadcast_status()
        return True
    return any(worker.interrupt(job_id) for worker in ctx.workers)


def _states(status: str | None) -> list[JobState] | None:
    if not status:
        return None
    states: list[JobState] = []
    for name in status.split(","):
        name = name.strip()
        if name not in STATES_OF_STATUS:
            known = ", ".join(STATES_OF_STATUS)
            raise ApiError(400, f"unknown job status {name!r}; expected some of {known}")
        states.extend(STATES_OF_STATUS[name])
    return states
