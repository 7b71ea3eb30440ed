"""The composition of the HTTP + WebSocket server: every router (each ComfyUI route also under
`/api`, as ComfyUI registers them), the error handlers, the request guard and the editor's
static files, over one `ServerContext`."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from fastapi import APIRouter, FastAPI
from fastapi.exceptions import RequestValidationError

from flowscope import __version__
from flowscope.server import frontend, websocket
from flowscope.server.context import ServerContext
from flowscope.server.errors import ApiError, api_error_handler, validation_error_handler
from flowscope.server.middleware import RequestGuard
from flowscope.server.routes import files, info, internal, jobs, ops, prompt, users

# ComfyUI registers these twice, as /x and /api/x; the frontend calls the /api form.
ALIASED_ROUTERS: tuple[Callable[[ServerContext], APIRouter], ...] = (
    prompt.router,
    jobs.router,
    files.router,
    users.router,
    info.router,
    websocket.router,
)
# Not aliased: /internal/* (frontend-only in ComfyUI), /healthz, /readyz, /metrics and
# flowscope's own /api/flowscope/* API.
PLAIN_ROUTERS: tuple[Callable[[ServerContext], APIRouter], ...] = (internal.router, ops.router)


def create_app(ctx: ServerContext) -> FastAPI:
    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        # Workers run in threads; the hub needs this loop to hand them messages.
        ctx.hub.attach(asyncio.get_running_loop())
        # Started once the server answers: a worker resuming a long queue would otherwise hold
        # the interpreter while the server starts, delaying the first reply by a second.
        for worker in ctx.workers:
            if not worker.started:
                worker.start()
        try:
            yield
        finally:
            await ctx.hub.close()

    app = FastAPI(
        title="flowscope",
        version=__version__,
        summary="A ComfyUI-compatible workflow server with observability built in.",
        docs_url="/api/flowscope/docs",
        openapi_url="/api/flowscope/openapi.json",
        redoc_url=None,
        lifespan=lifespan,
        # flowscope's own telemetry covers requests (http.request events, /metrics, traces);
        # FastAPI's OpenTelemetry hooks would check the providers on every request, and would
        # double-instrument once our trace exporter configures OpenTelemetry.
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    app.add_exception_handler(ApiError, api_error_handler)
    app.add_exception_handler(RequestValidationError, validation_error_handler)
    for build in ALIASED_ROUTERS:
        routes = build(ctx)
        app.include_router(routes)
        app.include_router(routes, prefix="/api", include_in_schema=False)
    for build in PLAIN_ROUTERS:
        app.include_router(build(ctx))
    frontend.mount(app, ctx)  # last: its static root answers every path no router took
    app.add_middleware(
        RequestGuard,
        max_body_bytes=ctx.settings.max_upload_size,
        cors_origin=ctx.settings.cors_origin,
        bus=ctx.bus,
    )
    app.state.context = ctx
    return app
