"""ComfyUI's per-user routes (spec §4.1, §4.4): `/users`, `/settings`, `/userdata` and
`/v2/userdata`. The user is the `Comfy-User` header under `--multi-user`, `default` otherwise;
every path stays inside that user's folder."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import unquote_to_bytes

from fastapi import APIRouter, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from flowscope.server.context import ServerContext
from flowscope.server.errors import ApiError, read_json, read_json_object
from flowscope.server.file_serving import safe_media_type, serve_file
from flowscope.storage.directories import PathEscapeError
from flowscope.storage.user_files import UserFiles, UserPathError
from flowscope.storage.user_settings import SettingsStore
from flowscope.storage.users import DEFAULT_USER, UnknownUserError, UserNameError, UserRegistry

USERDATA_PREFIX = b"/userdata/"
MOVE_SEPARATOR = b"/move/"
USER_CSS = "user.css"


def router(ctx: ServerContext) -> APIRouter:
    routes = APIRouter(tags=["users"])
    registry = UserRegistry(ctx.directories.user, multi_user=ctx.settings.multi_user)
    settings = SettingsStore()

    def user_root(request: Request, *, unknown_status: int = 401) -> Path:
        try:
            return registry.root(registry.resolve(request.headers.get("comfy-user")))
        except UnknownUserError as exc:
            raise ApiError(
                unknown_status,
                f"{exc.args[0]}; pick a user from GET /users (Comfy-User header)",
                type="unknown_user",
            ) from exc

    def user_files(request: Request, *, unknown_status: int = 401) -> UserFiles:
        return UserFiles(user_root(request, unknown_status=unknown_status))

    @routes.get("/users")
    def users() -> dict[str, Any]:
        if registry.multi_user:
            return {"storage": "server", "users": registry.users()}
        return {"storage": "server", "migrated": registry.root(DEFAULT_USER).exists()}

    @routes.post("/users")
    async def add_user(request: Request) -> JSONResponse:
        """`{"username": "..."}` → the new user id; ComfyUI's `{"error": "..."}` on a bad name."""
        body = await read_json_object(request)
        username = body.get("username")
        if not isinstance(username, str):
            raise ApiError(400, "username must be a string").with_body(
                {"error": "username must be a string"}
            )
        try:
            user_id = await run_in_threadpool(registry.add, username)
        except UserNameError as exc:
            raise ApiError(400, str(exc)).with_body({"error": str(exc)}) from exc
        return JSONResponse(user_id)

    @routes.get("/settings")
    def get_settings(request: Request) -> dict[str, Any]:
        return settings.read(user_root(request))

    @routes.get("/settings/{setting_id:path}")
    def get_setting(request: Request, setting_id: str) -> JSONResponse:
        return JSONResponse(settings.get(user_root(request), setting_id))

    @routes.post("/settings")
    async def post_settings(request: Request) -> Response:
        root = user_root(request)
        values = await read_json_object(request, what="settings object")
        await run_in_threadpool(settings.update, root, values)
        return Response(status_code=200)

    @routes.post("/settings/{setting_id:path}")
    async def post_setting(request: Request, setting_id: str) -> Response:
        root = user_root(request)
        if not setting_id:
            raise ApiError(400, "the setting id is missing from the path")
        value = await read_json(request, what="setting value")
        await run_in_threadpool(settings.update, root, {setting_id: value})
        return Response(status_code=200)

    @routes.get("/userdata")
    def list_userdata(request: Request) -> list[Any]:
        """The files in `dir` (`recurse`, `full_info`, `split` as in ComfyUI)."""
        query = request.query_params
        directory = query.get("dir", "")
        if not directory:
            raise ApiError(400, "Directory not provided: the dir query parameter is required")
        files = user_files(request)
        recurse = query.get("recurse", "").lower() == "true"
        full_info = query.get("full_info", "").lower() == "true"
        split = query.get("split", "").lower() == "true"
        with _path_errors():
            try:
                folder = files.resolve(directory)
                found = files.list_files(directory, recurse=recurse)
            except FileNotFoundError as exc:
                raise ApiError(
                    404, f"Directory not found: {directory!r}", type="not_found"
                ) from exc
            except NotADirectoryError as exc:
                raise ApiError(400, f"{directory!r} is a file, not a directory") from exc
        results: list[Any] = []
        for path in found:
            if full_info:
                try:
                    results.append(files.info(path, folder))
                except OSError:
                    continue  # removed while listing
                continue
            relative = path.relative_to(folder).as_posix()
            results.append([relative, *relative.split("/")] if split else relative)
        return results

    @routes.get("/v2/userdata")
    def list_userdata_v2(request: Request) -> list[dict[str, Any]]:
        """Every folder and file under `path`, folders first; 403 for an unknown user."""
        files = user_files(request, unknown_status=403)
        path = request.query_params.get("path", "")
        with _path_errors(escape_status=400):
            try:
                return files.entries(path)
            except FileNotFoundError as exc:
                raise ApiError(
                    404, f"Requested path not found: {path!r}", type="not_found"
                ) from exc
            except NotADirectoryError as exc:
                raise ApiError(400, f"Requested path is not a directory: {path!r}") from exc

    @routes.get("/userdata/{file:path}")
    async def get_userdata(request: Request, file: str) -> Response:
        """The raw file; the name is URL-encoded as one segment (`workflows%2Fa.json`)."""
        files = user_files(request)
        relative = _userdata_path(request, file)
        with _path_errors():
            path = files.resolve_entry(relative)
        try:
            info = os.stat(path)
        except OSError as exc:
            raise ApiError(404, f"{relative!r} was not found", type="not_found") from exc
        if not stat.S_ISREG(info.st_mode):
            raise ApiError(400, f"{relative!r} is a directory, not a file")
        if path == files.real_root / USER_CSS:
            media_type, disposition = "text/css", "inline"
        else:
            # Never rendered in this origin: uploaded markup or script must not run here.
            media_type, disposition = safe_media_type(path.name), "attachment"
        headers = {"Content-Disposition": disposition}
        return await serve_file(request, path, info, media_type=media_type, headers=headers)

    @routes.post("/userdata/{file:path}")
    async def post_userdata(request: Request, file: str) -> JSONResponse:
        """Store the raw body at `file` (`overwrite`, default true; `full_info`), or, for
        `/userdata/{file}/move/{dest}`, rename `file` to `dest`. 409 when the target exists
        and `overwrite=false`."""
        files = user_files(request)
        source, destination = _userdata_move(request, file)
        query = request.query_params
        overwrite = query.get("overwrite", "true") != "false"
        full_info = query.get("full_info", "false").lower() == "true"
        if destination is None:
            body = await request.body()
            written = await run_in_threadpool(_write, files, source, body, overwrite)
        else:
            written = await run_in_threadpool(_move, files, source, destination, overwrite)
        if full_info:
            return JSONResponse(files.info(written))
        return JSONResponse(files.relative(written))

    @routes.delete("/userdata/{file:path}")
    def delete_userdata(request: Request, file: str) -> Response:
        files = user_files(request)
        relative = _userdata_path(request, file)
        with _path_errors():
            try:
                files.delete(relative)
            except FileNotFoundError as exc:
                raise ApiError(404, f"{relative!r} was not found", type="not_found") from exc
            except IsADirectoryError as exc:
                raise ApiError(400, f"{relative!r} is a directory, not a file") from exc
        return Response(status_code=204)

    return routes


@contextmanager
def _path_errors(escape_status: int = 403) -> Iterator[None]:
    try:
        yield
    except UserPathError as exc:
        raise ApiError(400, str(exc), type="invalid_path") from exc
    except PathEscapeError as exc:
        raise ApiError(escape_status, str(exc), type="forbidden_path") from exc


def _write(files: UserFiles, relative: str, body: bytes, overwrite: bool) -> Path:
    with _path_errors():
        try:
            return files.write(relative, body, overwrite=overwrite)
        except FileExistsError as exc:
            raise ApiError(409, f"{relative!r} already exists", type="exists") from exc
        except IsADirectoryError as exc:
            raise ApiError(409, f"{relative!r} is a directory", type="exists") from exc
        except OSError as exc:
            raise ApiError(400, f"could not save {relative!r}: {exc.strerror or exc}") from exc


def _move(files: UserFiles, source: str, destination: str, overwrite: bool) -> Path:
    with _path_errors():
        try:
            return files.move(source, destination, overwrite=overwrite)
        except FileNotFoundError as exc:
            raise ApiError(404, f"{source!r} was not found", type="not_found") from exc
        except FileExistsError as exc:
            raise ApiError(409, f"{destination!r} already exists", type="exists") from exc
        except IsADirectoryError as exc:
            raise ApiError(409, f"{destination!r} is a directory", type="exists") from exc
        except OSError as exc:
            raise ApiError(
                400, f"could not move {source!r} to {destination!r}: {exc.strerror or exc}"
            ) from exc


def _raw_tail(request: Request) -> bytes | None:
    """What follows `/userdata/` in the undecoded request path. The route's own parameter
    has `%2F` already turned into `/`, which would make `a%2Fmove%2Fb` look like a move."""
    raw = request.scope.get("raw_path")
    if not isinstance(raw, bytes):
        return None
    raw = raw.split(b"?", 1)[0]
    start = raw.find(USERDATA_PREFIX)
    return None if start < 0 else raw[start + len(USERDATA_PREFIX) :]


def _decode(raw: bytes) -> str:
    try:
        return unquote_to_bytes(raw).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ApiError(
            400, "the path is not valid UTF-8 once decoded", type="invalid_path"
        ) from exc


def _userdata_path(request: Request, decoded: str) -> str:
    tail = _raw_tail(request)
    relative = decoded if tail is None else _decode(tail)
    if not relative:
        raise ApiError(400, "the file name is missing from the path", type="invalid_path")
    return relative


def _userdata_move(request: Request, decoded: str) -> tuple[str, str | None]:
    """(file, dest) for `/userdata/{file}/move/{dest}`, (file, None) for a plain write."""
    tail = _raw_tail(request)
    if tail is None:
        source, separator, destination = decoded.partition("/move/")
    else:
        raw_source, raw_separator, raw_destination = tail.partition(MOVE_SEPARATOR)
        source, separator = _decode(raw_source), raw_separator.decode()
        destination = _decode(raw_destination)
    if not source:
        raise ApiError(400, "the file name is missing from the path", type="invalid_path")
    if not separator:
        return source, None
    if not destination:
        raise ApiError(400, "the destination is missing from the path", type="invalid_path")
    return source, destination
