"""Operations: `/healthz` (alive), `/readyz` (a worker is up and the queue has room),
`/metrics` (Prometheus / OpenMetrics), and the telemetry query API over the local log store
(`/api/flowscope/logs`, `/api/flowscope/jobs/{id}/timeline`, `/api/flowscope/stats/nodes`)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

from flowscope.server.context import ServerContext
from flowscope.server.errors import ApiError
from flowscope.telemetry.metrics_http import wants_openmetrics

MAX_LOG_LIMIT = 10_000


def router(ctx: ServerContext) -> APIRouter:
    routes = APIRouter(tags=["operations"])

    @routes.get("/healthz")
    def healthz() -> dict[str, Any]:
        return {"status": "ok", "uptime_s": round(time.time() - ctx.started_at, 3)}

    @routes.get("/readyz")
    def readyz() -> JSONResponse:
        problems = []
        alive = sum(1 for worker in ctx.workers if worker.alive)
        if ctx.settings.workers > 0 and alive == 0:
            problems.append("no worker is running")
        depth = ctx.store.queue_remaining()
        if depth >= ctx.settings.ready_max_queue:
            problems.append(f"{depth} jobs queued (limit {ctx.settings.ready_max_queue})")
        body = {
            "status": "ready" if not problems else "not ready",
            "workers": alive,
            "queue_remaining": depth,
            "problems": problems,
        }
        return JSONResponse(body, status_code=200 if not problems else 503)

    @routes.get("/metrics")
    def metrics(request: Request) -> Response:
        if ctx.telemetry is None:
            raise ApiError(404, "metrics are off in this process", type="not_found")
        ctx.telemetry.metrics.set_queue_depth(ctx.store.queue_remaining())
        body, content_type = ctx.telemetry.metrics.render(
            wants_openmetrics(request.headers.get("accept"))
        )
        return Response(body, media_type=content_type)

    @routes.get("/api/flowscope/logs")
    def logs(
        q: str = "",
        since: str | None = None,
        until: str | None = None,
        limit: int = 100,
        oldest_first: bool = False,
    ) -> dict[str, Any]:
        """Events matching a KQL query (e.g. `job.id:abc AND level:error`), newest first."""
        from flowscope.logstore import KQLError

        if not 0 < limit <= MAX_LOG_LIMIT:
            raise ApiError(400, f"limit must be between 1 and {MAX_LOG_LIMIT}")
        window = _window(since, until)
        with _store(ctx) as store:
            try:
                documents = store.search(
                    q, since=window[0], until=window[1], limit=limit, oldest_first=oldest_first
                )
                total = store.count(q, since=window[0], until=window[1])
            except KQLError as exc:
                raise ApiError(
                    400,
                    exc.message,
                    type="invalid_query",
                    details=str(exc),
                    extra={"position": exc.position},
                ) from exc
        return {"query": q, "total": total, "events": documents}

    @routes.get("/api/flowscope/jobs/{job_id}/timeline")
    def timeline(job_id: str) -> dict[str, Any]:
        from flowscope.logstore import AmbiguousJobError, job_timeline, resolve_job_id

        with _store(ctx) as store:
            try:
                resolved = resolve_job_id(store, job_id)
            except AmbiguousJobError as exc:
                raise ApiError(400, str(exc), type="ambiguous_job_id") from exc
            found = job_timeline(store, resolved) if resolved is not None else None
        if found is None:
            raise ApiError(404, f"no events for job {job_id!r}", type="not_found")
        return found.to_dict()

    @routes.get("/api/flowscope/stats/nodes")
    def node_stats(since: str | None = "1d", until: str | None = None) -> dict[str, Any]:
        from flowscope.logstore import node_stats as compute

        window = _window(since, until)
        with _store(ctx) as store:
            stats = compute(store, since=window[0], until=window[1])
        return {"since": since, "until": until, "nodes": [s.to_dict() for s in stats]}

    return routes


def _window(since: str | None, until: str | None) -> tuple[int | None, int | None]:
    from flowscope.logstore import DateError, parse_since

    now = time.time_ns()
    try:
        return (
            parse_since(since, now) if since else None,
            parse_since(until, now) if until else None,
        )
    except DateError as exc:
        raise ApiError(400, str(exc), type="invalid_time") from exc


@contextmanager
def _store(ctx: ServerContext) -> Iterator[Any]:
    from flowscope.logstore import LogStore

    if ctx.logstore_path is None or not ctx.logstore_path.exists():
        raise ApiError(
            404,
            "the local log store is off or empty",
            type="not_found",
            details="start the server with the log store on (the default) and run a job",
        )
    store = LogStore(ctx.logstore_path, create=False)
    try:
        yield store
    finally:
        store.close()
