"""Saving an uploaded file under ComfyUI's naming rules: without `overwrite`, an existing name is
reused when its bytes hash the same, otherwise the upload becomes `name (1).ext`, `name (2).ext`...
Files appear whole (written beside, then linked or renamed) and two uploads racing for one name
never overwrite each other."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, cast

from flowscope.storage.atomic_files import (
    discard,
    publish_no_clobber,
    temp_path_beside,
)
from flowscope.storage.directories import PathEscapeError, safe_join
from flowscope.storage.file_refs import check_plain_name

if TYPE_CHECKING:
    from _hashlib import HASH, HASHXOF

CHUNK = 1024 * 1024
# Variable-length digests (shake_*) need a length; any fixed one compares equally well.
_SHAKE_DIGEST_BYTES = 64


def new_hasher(name: str) -> HASH:
    """A hashlib object for `--default-hashing-function` (`sha256`, `sha1`, `md5`, ...);
    ValueError naming the choices when hashlib does not know `name`."""
    try:
        return hashlib.new(name, usedforsecurity=False)
    except (ValueError, TypeError) as exc:
        choices = ", ".join(sorted(hashlib.algorithms_available))
        raise ValueError(f"unknown hashing function {name!r}; expected one of {choices}") from exc


def digest_of(hasher: HASH) -> bytes:
    if hasher.name.startswith("shake_"):
        return cast("HASHXOF", hasher).digest(_SHAKE_DIGEST_BYTES)
    return hasher.digest()


@dataclass(frozen=True)
class SavedUpload:
    name: str  # the file name it was saved (or found) under
    path: Path
    reused: bool  # an identical file already had this name; nothing was written


def numbered_name(filename: str, index: int) -> str:
    """ComfyUI's `name (i).ext` (the extension as `os.path.splitext` sees it)."""
    if index == 0:
        return filename
    stem, ext = os.path.splitext(filename)
    return f"{stem} ({index}){ext}"


def save_upload(
    folder: Path,
    filename: str,
    source: BinaryIO,
    *,
    overwrite: bool = False,
    hash_name: str = "sha256",
) -> SavedUpload:
    """Save `source` (read to its end) as `filename` in `folder` (created if missing; the caller
    has already kept it inside its root). FileRefError for a name that is not a plain file name,
    PathEscapeError when an existing entry of that name is a symlink out of `folder`."""
    check_plain_name(filename)
    folder.mkdir(parents=True, exist_ok=True)
    temp = temp_path_beside(folder / filename)
    try:
        size, digest = _copy_hashing(source, temp, hash_name)
        if overwrite:
            target = _inside(folder, filename)
            os.replace(temp, target)
            return SavedUpload(filename, target, reused=False)
        index = 0
        while True:
            name = numbered_name(filename, index)
            target = _inside(folder, name)
            try:
                publish_no_clobber(temp, target)
            except FileExistsError:
                if _has_content(target, size, digest, hash_name):
                    return SavedUpload(name, target, reused=True)
                index += 1
                continue
            return SavedUpload(name, target, reused=False)
    finally:
        discard(temp)


def _inside(folder: Path, name: str) -> Path:
    try:
        return safe_join(folder, name)
    except PathEscapeError as exc:
        raise PathEscapeError(f"{name!r} is a link that leads out of the upload folder") from exc


def _copy_hashing(source: BinaryIO, temp: Path, hash_name: str) -> tuple[int, bytes]:
    hasher = new_hasher(hash_name)
    size = 0
    with open(temp, "xb") as out:
        while chunk := source.read(CHUNK):
            hasher.update(chunk)
            out.write(chunk)
            size += len(chunk)
    return size, digest_of(hasher)


def _has_content(path: Path, size: int, digest: bytes, hash_name: str) -> bool:
    try:
        if not path.is_file() or path.stat().st_size != size:
            return False  # a different size cannot hash the same: skip reading it
        hasher = new_hasher(hash_name)
        with open(path, "rb") as handle:
            while chunk := handle.read(CHUNK):
                hasher.update(chunk)
    except OSError:
        return False
    return digest_of(hasher) == digest
