"""The composition of the HTTP + WebSocket server: every router (each ComfyUI route also under
`/api`, as ComfyUI registers them), the error handlers, the request guard and the editor's
static files, over one `ServerContext`."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from fastapi import APIRouter, FastAPI
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from starlette.routing import Route

from flowscope import __version__
from flowscope.server import frontend, websocket
from flowscope.server.context import ServerContext
from flowscope.server.errors import ApiError, api_error_handler, validation_error_handler
from flowscope.server.hot_routes import Endpoint, HotRoutes
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
# Answered without FastAPI's router (hot_routes.py), at both paths; plain Starlette routes.
HOT_REQUESTS = frozenset({("POST", "/prompt")})


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
    hot: dict[tuple[str, str], Endpoint] = {}
    for build in ALIASED_ROUTERS:
        routes = build(ctx)
        hot.update(_hot_endpoints(routes))
        app.include_router(routes)
        app.include_router(routes, prefix="/api", include_in_schema=False)
    for build in PLAIN_ROUTERS:
        app.include_router(build(ctx))
    frontend.mount(app, ctx)  # last: its static root answers every path no router took
    # Inside the request guard (added after it, so outer): guarded, limited and logged alike.
    app.add_middleware(HotRoutes, endpoints=hot, exception_handlers=app.exception_handlers)
    app.add_middleware(
        RequestGuard,
        max_body_bytes=ctx.settings.max_upload_size,
        cors_origin=ctx.settings.cors_origin,
        bus=ctx.bus,
    )
    app.state.context = ctx
    return app


def _hot_endpoints(routes: APIRouter) -> dict[tuple[str, str], Endpoint]:
    found: dict[tuple[str, str], Endpoint] = {}
    for route in routes.routes:
        if not isinstance(route, Route) or isinstance(route, APIRoute):
            continue  # an APIRoute's endpoint takes its parameters, not the request
        for method in route.methods or ():
            if (method, route.path) in HOT_REQUESTS:
                found[(method, route.path)] = found[(method, f"/api{route.path}")] = route.endpoint
    return found
