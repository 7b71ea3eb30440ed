"""ComfyUI's `/internal/*` routes, which only the editor uses and which are not aliased under
`/api`: the terminal panel's logs, the model folder paths and the recent files of a folder."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request, Response

from flowscope.server.context import ServerContext
from flowscope.server.errors import ApiError, read_json_object
from flowscope.server.log_ring import LogRing, terminal_size
from flowscope.storage.directories import FILE_TYPES

PREFIX = "/internal"


def router(ctx: ServerContext, log_ring: LogRing | None = None) -> APIRouter:
    """`log_ring`: the ring to serve; by default one is created and subscribed to `ctx.bus`."""
    routes = APIRouter(prefix=PREFIX, tags=["internal"], include_in_schema=False)
    folders = ctx.model_folders
    if log_ring is None:
        log_ring = LogRing(send=ctx.hub.send)
        log_ring.attach(ctx.bus)
    ring = log_ring

    @routes.get("/logs")
    async def get_logs() -> str:
        return ring.text()

    @routes.get("/logs/raw")
    async def get_raw_logs() -> dict[str, Any]:
        return {"entries": ring.entries(), "size": terminal_size()}

    @routes.patch("/logs/subscribe")
    async def subscribe_logs(request: Request) -> Response:
        body = await read_json_object(request)
        client_id = body.get("clientId")
        enabled = body.get("enabled")
        if not isinstance(client_id, str) or not client_id:
            raise ApiError(400, "clientId must be the WebSocket client id (a string)")
        if not isinstance(enabled, bool):
            raise ApiError(400, "enabled must be true or false")
        if enabled:
            ring.subscribe(client_id)
        else:
            ring.unsubscribe(client_id)
        return Response(status_code=200)

    @routes.get("/folder_paths")
    async def get_folder_paths() -> dict[str, list[str]]:
        return folders.as_dict()

    @routes.get("/files/{directory_type}")
    def get_files(directory_type: str) -> list[str]:
        if directory_type not in FILE_TYPES:
            raise ApiError(
                400,
                f"invalid directory type {directory_type!r}; expected one of "
                + ", ".join(FILE_TYPES),
            )
        folder = ctx.directories.for_type(directory_type)
        return newest_first(folder)

    return routes


def newest_first(folder: Path) -> list[str]:
    """The names of the files directly in `folder`, most recently modified first."""
    files: list[tuple[float, str]] = []
    try:
        with os.scandir(folder) as listing:
            for entry in listing:
                if entry.name.startswith("."):
                    continue  # hidden files, e.g. an upload being written
                try:
                    if entry.is_file():
                        files.append((entry.stat().st_mtime, entry.name))
                except OSError:
                    continue  # removed while listing
    except FileNotFoundError:
        return []
    return [name for _mtime, name in sorted(files, key=lambda item: -item[0])]
