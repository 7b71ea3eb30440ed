"""ComfyUI's queue routes: `/prompt`, `/queue`, `/interrupt`, `/free`, `/history` (spec §4.1)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from flowscope.jobs import reporting
from flowscope.jobs.submits import DuplicateJobError
from flowscope.server.context import ServerContext
from flowscope.server.errors import ApiError, read_json, read_json_object
from flowscope.server.submission import LARGE_PROMPT_NODES, parse_submission, validate_submission

_OK = Response(status_code=200)


def router(ctx: ServerContext) -> APIRouter:
    routes = APIRouter(tags=["queue"])
    store = ctx.store

    @routes.get("/prompt")
    def queue_info() -> dict[str, Any]:
        return {"exec_info": {"queue_remaining": store.queue_remaining()}}

    submitter = ctx.submitter
    if submitter is None:
        raise ValueError("the queue routes need ctx.submitter (build_runtime creates one)")

    async def submit(request: Request) -> Response:
        body = await read_json_object(request)
        headers = request.headers
        prompt, fields = parse_submission(
            body,
            user_id=headers.get("comfy-user") or None,
            traceparent=headers.get("traceparent"),
            usage_source=headers.get("comfy-usage-source"),
        )
        try:
            if isinstance(prompt, dict) and len(prompt) > LARGE_PROMPT_NODES:
                submission = await run_in_threadpool(
                    validate_submission, ctx.registry, prompt, fields
                )
            else:
                submission = validate_submission(ctx.registry, prompt, fields)
        except ApiError as exc:
            _rejected(ctx, fields, exc)
            raise
        try:
            queued = await submitter.submit(submission.job)
        except DuplicateJobError as exc:
            raise ApiError(
                400, str(exc), type="duplicate_prompt_id", extra={"node_errors": {}}
            ) from exc
        ctx.hub.broadcast_status()
        return JSONResponse(
            {
                "prompt_id": queued.job_id,
                "number": queued.number,
                "node_errors": submission.validation.node_errors,
            }
        )

    # A plain Starlette route: the hottest write of the API skips FastAPI's dependency solving
    # (its body is free-form JSON, parsed and checked by `parse_submission`).
    routes.add_route("/prompt", submit, methods=["POST"], include_in_schema=False)

    @routes.get("/queue")
    def queue() -> Response:
        # Built from the stored JSON text: a long queue is not parsed and re-encoded.
        return Response(store.queue_json(), media_type="application/json")

    @routes.post("/queue")
    async def change_queue(request: Request) -> Response:
        body = await read_json_object(request)
        changed = False
        if body.get("clear"):
            changed |= bool(store.clear_pending())
        if "delete" in body:
            changed |= bool(store.cancel_pending(_id_list(body["delete"], "delete")))
        if changed:
            ctx.hub.broadcast_status()
        return _OK

    @routes.post("/interrupt")
    async def interrupt(request: Request) -> Response:
        # ComfyUI accepts an empty body (interrupt whatever runs) or {"prompt_id": ...}.
        job_id = None
        if await request.body():
            body = await read_json(request)
            if isinstance(body, dict) and body.get("prompt_id") is not None:
                job_id = str(body["prompt_id"])
        for worker in ctx.workers:
            worker.interrupt(job_id)
        return _OK

    @routes.post("/free")
    async def free(request: Request) -> Response:
        body = await read_json_object(request)
        for worker in ctx.workers:
            worker.request_free(
                unload_models=bool(body.get("unload_models", False)),
                free_memory=bool(body.get("free_memory", False)),
            )
        return _OK

    @routes.get("/history")
    def history(max_items: int | None = None, offset: int | None = None) -> Response:
        if max_items is not None and max_items < 0:
            raise ApiError(400, "max_items must not be negative", type="invalid_request")
        if offset is not None and offset < 0:
            raise ApiError(400, "offset must not be negative", type="invalid_request")
        # The store keeps each entry as JSON text: no parse and re-encode per request.
        text = store.history_json(max_items=max_items, offset=offset)
        return Response(text, media_type="application/json")

    @routes.get("/history/{prompt_id}")
    def history_entry(prompt_id: str) -> dict[str, Any]:
        entry = store.history_entry(prompt_id)
        return {} if entry is None else {prompt_id: entry}

    @routes.post("/history")
    async def change_history(request: Request) -> Response:
        body = await read_json_object(request)
        if body.get("clear"):
            store.clear_history()
        if "delete" in body:
            store.delete_history(_id_list(body["delete"], "delete"))
        return _OK

    return routes


def _id_list(value: Any, name: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise ApiError(400, f"{name} must be a list of prompt ids", type="invalid_request")
    return value


def _rejected(ctx: ServerContext, fields: dict[str, Any], exc: ApiError) -> None:
    event_fields = reporting.job_fields(
        fields["job_id"], fields.get("workflow_id"), fields.get("user_id"), fields.get("trace_id")
    )
    reporting.job_rejected(ctx.bus, event_fields, exc.type, exc.message)
