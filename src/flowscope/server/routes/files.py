"""ComfyUI's file routes (spec §4.1, §5.3, §5.4): `/view` serves a file of input/output/temp (or a
preview / single channel of it), `/upload/image` stores an upload, `/upload/mask` merges a mask's
alpha into an earlier image and stores the result."""

from __future__ import annotations

import io
import json
import os
import stat
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from fastapi import APIRouter, Request, Response
from fastapi.concurrency import run_in_threadpool
from starlette.datastructures import FormData, UploadFile
from starlette.exceptions import HTTPException
from starlette.formparsers import MultiPartException

from flowscope.server.context import ServerContext
from flowscope.server.errors import ApiError
from flowscope.server.file_serving import content_disposition, safe_media_type, serve_file
from flowscope.storage.directories import FileType, PathEscapeError
from flowscope.storage.file_refs import (
    FileRefError,
    parse_file_type,
    resolve_file,
    resolve_folder,
)
from flowscope.storage.image_variants import (
    ImageVariantError,
    VariantCache,
    variant_request,
)
from flowscope.storage.masks import MaskError, merge_mask_alpha
from flowscope.storage.uploads import SavedUpload, new_hasher, save_upload

OVERWRITE_VALUES = frozenset({"true", "1"})


@dataclass(frozen=True)
class UploadFields:
    file: UploadFile
    filename: str
    kind: FileType
    subfolder: str
    overwrite: bool


def router(ctx: ServerContext) -> APIRouter:
    routes = APIRouter(tags=["files"])
    directories = ctx.directories
    hash_name = ctx.settings.default_hashing_function
    new_hasher(hash_name)  # an unknown --default-hashing-function fails at start-up
    variants = VariantCache()

    @routes.api_route("/view", methods=["GET", "HEAD"])
    async def view(request: Request) -> Response:
        """A file by ComfyUI reference (`filename`, `type`, `subfolder`); with `preview`
        (`webp;90`, `jpeg;80`) a converted copy, with `channel=rgb|a` one channel as PNG."""
        query = request.query_params
        filename = query.get("filename")
        if filename is None:
            raise ApiError(400, "the filename query parameter is required", type="invalid_filename")
        with _reference_errors():
            path = resolve_file(
                directories, filename, query.get("type"), query.get("subfolder", "")
            )
        info = _regular_file(path)
        if info is None:
            raise ApiError(404, f"{filename!r} was not found", type="not_found")
        disposition = content_disposition(path.name)
        wanted = variant_request(query.get("preview"), query.get("channel"))
        if wanted.kind is None:
            media_type = safe_media_type(path.name)
            headers = {"Content-Disposition": disposition}
            return await serve_file(request, path, info, media_type=media_type, headers=headers)
        try:
            variant = await run_in_threadpool(variants.get_or_make, path, info, wanted)
        except ImageVariantError as exc:
            raise ApiError(400, str(exc), type="not_an_image") from exc
        return Response(
            variant.data,
            media_type=variant.media_type,
            headers={"Content-Disposition": disposition},
        )

    @routes.post("/upload/image")
    async def upload_image(request: Request) -> dict[str, str]:
        """Multipart `image` (+ `type`, `subfolder`, `overwrite`): saved under ComfyUI's naming
        (an identical file keeps its name, a different one becomes `name (1).ext`)."""
        async with _multipart(request) as form:
            fields = _upload_fields(form)
            folder = _upload_folder(ctx, fields)
            saved = await run_in_threadpool(_save, folder, fields, fields.file.file, hash_name)
        return _upload_reply(fields, saved)

    @routes.post("/upload/mask")
    async def upload_mask(request: Request) -> dict[str, str]:
        """Multipart `image` (the mask) and `original_ref` (JSON `{filename, subfolder, type}`):
        the original with the mask's alpha, saved like `/upload/image`."""
        async with _multipart(request) as form:
            fields = _upload_fields(form)
            original = _original_image(ctx, form)
            folder = _upload_folder(ctx, fields)

            def merge_and_save() -> SavedUpload:
                merged = merge_mask_alpha(original, fields.file.file)
                return _save(folder, fields, io.BytesIO(merged), hash_name)

            try:
                saved = await run_in_threadpool(merge_and_save)
            except (ImageVariantError, MaskError) as exc:
                raise ApiError(400, str(exc), type="invalid_mask") from exc
        return _upload_reply(fields, saved)

    return routes


@contextmanager
def _reference_errors(escape_status: int = 403) -> Iterator[None]:
    try:
        yield
    except FileRefError as exc:
        raise ApiError(400, str(exc), type="invalid_filename") from exc
    except PathEscapeError as exc:
        raise ApiError(escape_status, str(exc), type="forbidden_path") from exc


def _regular_file(path: Path) -> os.stat_result | None:
    try:
        info = os.stat(path)
    except (OSError, ValueError):
        return None
    return info if stat.S_ISREG(info.st_mode) else None


@asynccontextmanager
async def _multipart(request: Request) -> AsyncIterator[FormData]:
    """The multipart form; its spooled files are closed when the block ends."""
    try:
        form = await request.form()
    except (HTTPException, MultiPartException) as exc:
        detail = getattr(exc, "detail", None) or getattr(exc, "message", None) or str(exc)
        raise ApiError(
            400, f"the multipart body could not be parsed: {detail}", type="invalid_multipart"
        ) from exc
    try:
        yield form
    finally:
        await form.close()


def _text_field(form: FormData, name: str, default: str = "") -> str:
    value = form.get(name)
    if value is None:
        return default
    if not isinstance(value, str):
        raise ApiError(400, f"the {name} field must be text, not a file", type="invalid_field")
    return value


def _upload_fields(form: FormData) -> UploadFields:
    image = form.get("image")
    if not isinstance(image, UploadFile):
        raise ApiError(
            400,
            "the image field (a file) is missing; send multipart/form-data with an image part",
            type="missing_image",
        )
    if not image.filename:
        raise ApiError(400, "the uploaded image has no file name", type="invalid_filename")
    try:
        kind = parse_file_type(_text_field(form, "type"), "input")
    except FileRefError as exc:
        raise ApiError(400, str(exc), type="invalid_type") from exc
    return UploadFields(
        file=image,
        filename=image.filename,
        kind=kind,
        subfolder=_text_field(form, "subfolder"),
        overwrite=_text_field(form, "overwrite").lower() in OVERWRITE_VALUES,
    )


def _upload_folder(ctx: ServerContext, fields: UploadFields) -> Path:
    # ComfyUI answers 400 (not 403) when an upload's subfolder leaves its folder.
    with _reference_errors(escape_status=400):
        return resolve_folder(ctx.directories, fields.kind, fields.subfolder)


def _original_image(ctx: ServerContext, form: FormData) -> Path:
    raw = _text_field(form, "original_ref")
    if not raw:
        raise ApiError(400, "the original_ref field is missing", type="invalid_original_ref")
    try:
        ref: Any = json.loads(raw)
    except ValueError as exc:
        raise ApiError(
            400, f"original_ref is not valid JSON: {exc}", type="invalid_original_ref"
        ) from exc
    if not isinstance(ref, dict) or not isinstance(ref.get("filename"), str):
        raise ApiError(
            400,
            'original_ref must be a JSON object like {"filename": "x.png", "subfolder": "", '
            '"type": "input"}',
            type="invalid_original_ref",
        )
    subfolder, kind = ref.get("subfolder") or "", ref.get("type")
    if not isinstance(subfolder, str) or not (kind is None or isinstance(kind, str)):
        raise ApiError(
            400, "original_ref subfolder and type must be strings", type="invalid_original_ref"
        )
    with _reference_errors():
        path = resolve_file(ctx.directories, ref["filename"], kind, subfolder)
    if _regular_file(path) is None:
        raise ApiError(
            404, f"the original image {ref['filename']!r} was not found", type="not_found"
        )
    return path


def _save(folder: Path, fields: UploadFields, source: BinaryIO, hash_name: str) -> SavedUpload:
    try:
        return save_upload(
            folder, fields.filename, source, overwrite=fields.overwrite, hash_name=hash_name
        )
    except FileRefError as exc:
        raise ApiError(400, str(exc), type="invalid_filename") from exc
    except PathEscapeError as exc:
        raise ApiError(400, str(exc), type="forbidden_path") from exc
    except OSError as exc:
        raise ApiError(
            400,
            f"could not save {fields.filename!r}: {exc.strerror or exc}",
            type="upload_failed",
        ) from exc


def _upload_reply(fields: UploadFields, saved: SavedUpload) -> dict[str, str]:
    return {"name": saved.name, "subfolder": fields.subfolder, "type": fields.kind}
