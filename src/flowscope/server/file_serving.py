"""Serving files that users supplied: a media type a browser will not run in this origin (no
markup, script or stylesheets), a `Content-Disposition` any name fits, ETag / 304 validation,
and small files answered in one read instead of a stream."""

from __future__ import annotations

import hashlib
import mimetypes
import os
from email.utils import formatdate
from pathlib import Path
from urllib.parse import quote

from fastapi import Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse

from flowscope.server.errors import ApiError

OCTET_STREAM = "application/octet-stream"
# Rendered inline, these could run script in the server's origin (stored XSS); they download.
DANGEROUS_MEDIA_TYPES = frozenset(
    {
        "text/html",
        "text/html-sandboxed",
        "application/xhtml+xml",
        "text/javascript",
        "application/javascript",
        "application/x-javascript",
        "application/ecmascript",
        "text/css",
        "image/svg+xml",
        "application/xml",
        "text/xml",
    }
)
# Smaller files are read in one go: FileResponse's streaming (a thread hop per chunk and a
# disconnect watcher per response) costs more than the bytes of a typical image or workflow.
SMALL_FILE_BYTES = 1024 * 1024


def safe_media_type(name: str) -> str:
    """The media type for a file name, with dangerous ones turned into a download."""
    guessed = mimetypes.guess_type(name)[0] or OCTET_STREAM
    return OCTET_STREAM if guessed in DANGEROUS_MEDIA_TYPES else guessed


def content_disposition(name: str, disposition: str = "") -> str:
    """ComfyUI's `filename="x.png"` (after `disposition`, e.g. `attachment; `, when given); a
    name a header cannot carry as it is gets an ASCII stand-in plus RFC 6266's `filename*`."""
    prefix = f"{disposition}; " if disposition else ""
    if name.isascii() and name.isprintable() and '"' not in name and "\\" not in name:
        return f'{prefix}filename="{name}"'
    fallback = "".join(
        char if char.isascii() and char.isprintable() and char not in '"\\' else "_"
        for char in name
    )
    return f"{prefix}filename=\"{fallback}\"; filename*=UTF-8''{quote(name, safe='')}"


def etag_for(info: os.stat_result) -> str:
    # Starlette's FileResponse formula, so small and streamed answers agree.
    base = f"{info.st_mtime}-{info.st_size}".encode()
    return f'"{hashlib.md5(base, usedforsecurity=False).hexdigest()}"'


async def serve_file(
    request: Request,
    path: Path,
    info: os.stat_result,
    *,
    media_type: str,
    headers: dict[str, str],
) -> Response:
    """The file at `path` (`info` its stat): 304 when the client's copy is current, one read for
    a small file, a FileResponse (ranges and all) for a large one or a range request."""
    headers = {
        **headers,
        "X-Content-Type-Options": "nosniff",
        "ETag": etag_for(info),
        "Last-Modified": formatdate(info.st_mtime, usegmt=True),
    }
    if _matches(request.headers.get("if-none-match"), headers["ETag"]):
        return Response(
            status_code=304,
            headers={"ETag": headers["ETag"], "Last-Modified": headers["Last-Modified"]},
        )
    if info.st_size > SMALL_FILE_BYTES or "range" in request.headers:
        return FileResponse(path, stat_result=info, media_type=media_type, headers=headers)
    try:
        data = await run_in_threadpool(path.read_bytes)
    except OSError as exc:  # removed or replaced since the stat
        raise ApiError(404, f"{path.name!r} was not found", type="not_found") from exc
    return Response(data, media_type=media_type, headers=headers)


def _matches(if_none_match: str | None, etag: str) -> bool:
    if not if_none_match:
        return False
    tags = [tag.strip().removeprefix("W/") for tag in if_none_match.split(",")]
    return "*" in tags or etag in tags
