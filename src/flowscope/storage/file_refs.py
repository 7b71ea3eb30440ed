"""ComfyUI file references (`filename` with an optional ` [output]` annotation, `type`,
`subfolder`) resolved to paths that stay inside the input, output or temp folder."""

from __future__ import annotations

import os
from pathlib import Path

from flowscope.storage.directories import (
    FILE_TYPES,
    Directories,
    FileType,
    PathEscapeError,
    safe_join,
    split_annotated_name,
)


class FileRefError(ValueError):
    """A file reference that is malformed in itself (not merely pointing outside its folder)."""


def check_text(value: str, what: str) -> None:
    """Refuse text no file system path can hold: NUL bytes and unpaired surrogates."""
    if "\x00" in value:
        raise FileRefError(f"{what} contains a NUL byte")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise FileRefError(f"{what} is not valid UTF-8 text") from exc


def parse_file_type(value: str | None, default: FileType) -> FileType:
    """`input`, `output` or `temp`; `default` when absent or empty."""
    if not value:
        return default
    for kind in FILE_TYPES:
        if value == kind:
            return kind
    raise FileRefError(f"unknown type {value!r}; expected one of {', '.join(FILE_TYPES)}")


def check_plain_name(name: str, what: str = "filename") -> str:
    """A single file name: no folder part, not `.` or `..`."""
    check_text(name, what)
    if not name:
        raise FileRefError(f"{what} is empty")
    if "/" in name or "\\" in name:
        raise FileRefError(f"{what} {name!r} must be a plain file name, without a folder")
    if name in (".", ".."):
        raise FileRefError(f"{what} {name!r} is not a file name")
    return name


def resolve_folder(directories: Directories, kind: FileType, subfolder: str = "") -> Path:
    """`subfolder` under the folder of `kind`; PathEscapeError when it leaves that folder."""
    check_text(subfolder, "subfolder")
    try:
        return safe_join(directories.for_type(kind), subfolder)
    except PathEscapeError as exc:
        raise PathEscapeError(f"subfolder {subfolder!r} leaves the {kind} folder") from exc


def resolve_file(
    directories: Directories,
    filename: str,
    type_name: str | None = None,
    subfolder: str = "",
    *,
    default: FileType = "output",
) -> Path:
    """The path `/view` (and `/upload/mask`'s `original_ref`) means by a reference, as ComfyUI
    reads it: an annotation (`x.png [input]`) wins over `type_name`, the folder part of the
    name is ignored, and a name that starts with `/` or contains `..` is refused outright
    (FileRefError). PathEscapeError when `subfolder` or a symlink leads out of the folder."""
    check_text(filename, "filename")
    check_text(subfolder, "subfolder")
    plain, annotated = split_annotated_name(filename, default)
    kind = annotated if plain != filename else parse_file_type(type_name, default)
    if not plain:
        raise FileRefError("filename is empty")
    if plain.startswith(("/", "\\")) or ".." in plain:
        raise FileRefError(f"filename {plain!r} must not start with '/' or contain '..'")
    name = os.path.basename(plain.replace("\\", "/"))
    if name in ("", "."):
        raise FileRefError(f"filename {plain!r} names a folder, not a file")
    try:
        return safe_join(directories.for_type(kind), subfolder, name)
    except PathEscapeError as exc:
        # Said without the server's own paths, which are none of the client's business.
        where = f"{subfolder}/{name}" if subfolder else name
        raise PathEscapeError(f"{where!r} leaves the {kind} folder") from exc
