"""A small FastAPI app around chosen routers over real folders in tmp_path, for route tests that
need no job store, worker or WebSocket hub."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

from fastapi import APIRouter, FastAPI
from fastapi.exceptions import RequestValidationError
from fastapi.testclient import TestClient
from server_harness import serve_app

from flowscope.models import ModelFolders
from flowscope.nodes.registry import NodeRegistry
from flowscope.server.context import ServerContext
from flowscope.server.errors import ApiError, api_error_handler, validation_error_handler
from flowscope.server.settings import ServerSettings
from flowscope.storage.directories import Directories
from flowscope.telemetry.bus import EventBus


def make_context(base: Path, **settings: Any) -> ServerContext:
    directories = Directories.under(base)
    directories.ensure()
    return ServerContext(
        settings=ServerSettings(**settings),
        directories=directories,
        registry=NodeRegistry(),
        bus=EventBus(),
        store=cast(Any, None),  # these routes never touch the queue
        hub=cast(Any, None),
        model_folders=ModelFolders.from_directories(directories),
    )


def make_app(ctx: ServerContext, *builders: Callable[[ServerContext], APIRouter]) -> FastAPI:
    """Every router at `/x` and `/api/x`, as `flowscope.server.app` registers them."""
    app = FastAPI()
    app.add_exception_handler(ApiError, api_error_handler)
    app.add_exception_handler(RequestValidationError, validation_error_handler)
    for build in builders:
        routes = build(ctx)
        app.include_router(routes)
        app.include_router(routes, prefix="/api")
    return app


def make_client(ctx: ServerContext, *builders: Callable[[ServerContext], APIRouter]) -> TestClient:
    return TestClient(make_app(ctx, *builders))


served = serve_app  # a real uvicorn on 127.0.0.1 (a free port), yielding its base URL
