"""A small app for the info, internal and frontend route tests: those routers, the editor's
static files and a real registry (built-ins plus a custom pack with a web folder, locales and
example workflows), over a `ServerContext` whose job store is absent and whose WebSocket hub
only records what it is given."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path
from typing import Any, cast

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from fastapi.testclient import TestClient

from flowscope.models import ModelFolders
from flowscope.nodes.catalog import load_catalog
from flowscope.server import frontend
from flowscope.server.context import ServerContext
from flowscope.server.errors import ApiError, api_error_handler, validation_error_handler
from flowscope.server.routes import info, internal
from flowscope.server.settings import ServerSettings
from flowscope.storage.directories import Directories
from flowscope.telemetry.bus import EventBus

PACK = "demo_pack"
PACK_SOURCE = """
class DemoNode:
    CATEGORY = "demo"
    RETURN_TYPES = ("INT",)
    FUNCTION = "run"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"value": ("INT", {"default": 1})}}

    def run(self, value):
        return (value,)


NODE_CLASS_MAPPINGS = {"DemoNode": DemoNode}
NODE_DISPLAY_NAME_MAPPINGS = {"DemoNode": "Demo node"}
WEB_DIRECTORY = "./web"
"""


class RecordingHub:
    """Stands in for the WebSocket hub: `send` is all these routes may use."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, Any, str | None]] = []

    def send(self, message_type: str, data: Any, sid: str | None = None) -> None:
        self.sent.append((message_type, data, sid))


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def write_pack(custom_nodes: Path, name: str = PACK) -> Path:
    pack = custom_nodes / name
    write(pack / "__init__.py", textwrap.dedent(PACK_SOURCE))
    write(pack / "web" / "js" / "demo.js", "export const demo = 1;\n")
    write(pack / "web" / "sub" / "other.js", "export const other = 2;\n")
    write(pack / "web" / "style.css", "body {}\n")
    write(pack / "locales" / "en" / "main.json", json.dumps({"demo": {"title": "Demo"}}))
    write(pack / "locales" / "en" / "nodeDefs.json", json.dumps({"DemoNode": {"x": "Demo"}}))
    write(pack / "locales" / "fr" / "main.json", json.dumps({"demo": {"title": "Démo"}}))
    write(pack / "example_workflows" / "first.json", json.dumps({"nodes": [], "links": []}))
    write(pack / "example_workflows" / "second.json", json.dumps({"nodes": [], "links": []}))
    write(pack / "example_workflows" / "notes.txt", "not a workflow")
    return pack


def make_context(base: Path, **settings: Any) -> ServerContext:
    directories = Directories.under(base)
    directories.ensure()
    write_pack(directories.custom_nodes)
    registry, results = load_catalog(directories)
    assert all(result.loaded for result in results), [result.error for result in results]
    return ServerContext(
        settings=ServerSettings(**settings),
        directories=directories,
        registry=registry,
        bus=EventBus(),
        store=cast(Any, None),
        hub=cast(Any, RecordingHub()),
        model_folders=ModelFolders.from_directories(
            directories, ServerSettings(**settings).extra_model_paths
        ),
    )


def make_app(ctx: ServerContext) -> FastAPI:
    app = FastAPI()
    app.add_exception_handler(ApiError, api_error_handler)
    app.add_exception_handler(RequestValidationError, validation_error_handler)
    routes = info.router(ctx)
    app.include_router(routes)
    app.include_router(routes, prefix="/api")
    app.include_router(internal.router(ctx))
    frontend.mount(app, ctx)
    return app


def make_client(base: Path, **settings: Any) -> tuple[TestClient, ServerContext]:
    ctx = make_context(base, **settings)
    return TestClient(make_app(ctx)), ctx


def recorded(ctx: ServerContext) -> list[tuple[str, Any, str | None]]:
    hub = cast(RecordingHub, ctx.hub)
    return hub.sent
