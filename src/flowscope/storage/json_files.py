"""Small JSON-object files that the server owns (`users.json`, `comfy.settings.json`): written
atomically, and read tolerantly: a damaged file counts as empty but is kept as a `.bad` copy."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from flowscope.storage.atomic_files import write_bytes_atomic

BAD_SUFFIX = ".bad"


def read_json_object(path: Path) -> dict[str, Any]:
    """The object stored at `path`; `{}` when the file is missing. A file that is not a JSON
    object is copied to `<name>.bad` (or `.bad.1`, ...) first, so nothing a user saved is lost
    when the next write replaces it."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return {}
    try:
        value = json.loads(raw)
    except ValueError:  # JSONDecodeError and UnicodeDecodeError
        value = None
    if isinstance(value, dict):
        return value
    preserve_bad_copy(path, raw)
    return {}


def write_json_object(path: Path, value: dict[str, Any]) -> None:
    """Replace `path` with `value` (indented like ComfyUI's), durably and in one step."""
    data = json.dumps(value, indent=4, ensure_ascii=False).encode("utf-8")
    write_bytes_atomic(path, data, durable=True)


def preserve_bad_copy(path: Path, raw: bytes) -> Path:
    """Keep `raw` (the damaged content of `path`) beside it; an identical copy is not repeated."""
    candidate = path.with_name(path.name + BAD_SUFFIX)
    index = 0
    while os.path.lexists(candidate):
        if candidate.is_file() and _same_bytes(candidate, raw):
            return candidate
        index += 1
        candidate = path.with_name(f"{path.name}{BAD_SUFFIX}.{index}")
    write_bytes_atomic(candidate, raw, durable=True)
    return candidate


def _same_bytes(path: Path, raw: bytes) -> bool:
    try:
        return path.stat().st_size == len(raw) and path.read_bytes() == raw
    except OSError:
        return False
