"""One user's own files (`user/<id>/`: workflows, subgraphs, `user.css`...): request paths kept
strictly inside that folder (no `..`, no absolute paths, no symlink out, never the folder itself),
listings, atomic writes, deletes and moves."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, TypedDict

from flowscope.storage.atomic_files import (
    TEMP_PREFIX,
    discard,
    publish_no_clobber,
    temp_path_beside,
    write_bytes_atomic,
)
from flowscope.storage.directories import PathEscapeError, safe_join
from flowscope.storage.file_refs import FileRefError, check_text


class UserPathError(ValueError):
    """A user-data path that is malformed in itself (empty, NUL bytes, backslashes...)."""


class FileInfo(TypedDict):
    path: str
    size: int
    modified: int  # milliseconds since the epoch
    created: int


class UserFiles:
    def __init__(self, root: Path) -> None:
        self.root = root

    @property
    def real_root(self) -> Path:
        return Path(os.path.realpath(self.root))

    def resolve(self, relative: str) -> Path:
        """The real path of `relative` inside the user's folder. UserPathError when malformed,
        PathEscapeError when it is absolute, has a `..` part or leads out through a symlink."""
        try:
            check_text(relative, "path")
        except FileRefError as exc:
            raise UserPathError(str(exc)) from exc
        if "\\" in relative:
            raise UserPathError(f"path {relative!r} contains a backslash; use '/'")
        if relative.startswith("/"):
            raise PathEscapeError(f"absolute path {relative!r} is not allowed here")
        parts = [part for part in relative.split("/") if part]
        if not parts:
            raise UserPathError("path is empty")
        if ".." in parts:
            raise PathEscapeError(f"path {relative!r} must not contain '..'")
        try:
            return safe_join(self.root, *parts)
        except PathEscapeError as exc:
            raise PathEscapeError(f"path {relative!r} leads out of the user's folder") from exc

    def resolve_entry(self, relative: str) -> Path:
        """Like `resolve`, but refusing the user's folder itself (nothing may delete or move it)."""
        path = self.resolve(relative)
        if path == self.real_root:
            raise UserPathError(f"path {relative!r} names the user folder itself, not a file")
        return path

    def relative(self, path: Path) -> str:
        return path.relative_to(self.real_root).as_posix()

    def list_files(self, directory: str, *, recurse: bool) -> list[Path]:
        """The files in `directory` (in its subfolders too with `recurse`), sorted, skipping
        hidden names like ComfyUI's glob does. FileNotFoundError / NotADirectoryError."""
        root = self.real_root
        folder = self.resolve(directory)
        if not folder.exists():
            raise FileNotFoundError(directory)
        if not folder.is_dir():
            raise NotADirectoryError(directory)
        found: list[Path] = []
        for current, dirs, files in os.walk(folder):
            dirs[:] = [name for name in dirs if not name.startswith(".")] if recurse else []
            for name in files:
                if name.startswith("."):
                    continue
                path = Path(current, name)
                if os.path.isfile(path) and _inside(path, root):
                    found.append(path)
        found.sort(key=lambda path: path.relative_to(folder).as_posix())
        return found

    def entries(self, directory: str = "") -> list[dict[str, Any]]:
        """`/v2/userdata`: every folder and file under `directory` (recursively), paths relative
        to the user's folder, folders first then by name. A user without a folder has none."""
        base = self.real_root
        folder = self.resolve(directory) if directory else base
        if not folder.exists():
            if folder == base:
                return []
            raise FileNotFoundError(directory)
        if not folder.is_dir():
            raise NotADirectoryError(directory)
        results: list[dict[str, Any]] = []
        for current, dirs, files in os.walk(folder):
            for name in dirs:
                path = Path(current, name)
                if _inside(path, base):
                    relative = path.relative_to(base).as_posix()
                    results.append({"name": name, "path": relative, "type": "directory"})
            for name in files:
                path = Path(current, name)
                if name.startswith(TEMP_PREFIX) or not _inside(path, base):
                    continue
                entry: dict[str, Any] = {
                    "name": name,
                    "path": path.relative_to(base).as_posix(),
                    "type": "file",
                }
                try:
                    info = os.stat(path)
                except OSError:
                    pass  # vanished or unreadable: listed without size, as ComfyUI does
                else:
                    entry["size"] = info.st_size
                    entry["modified"] = info.st_mtime
                results.append(entry)
        results.sort(key=lambda entry: (entry["type"] != "directory", entry["name"].lower()))
        return results

    def info(self, path: Path, relative_to: Path | None = None) -> FileInfo:
        """ComfyUI's file info; `path` relative to `relative_to` (default: the user's folder)."""
        stat = os.stat(path)
        base = relative_to if relative_to is not None else self.real_root
        return {
            "path": path.relative_to(base).as_posix(),
            "size": stat.st_size,
            "modified": int(stat.st_mtime * 1000),
            "created": int(stat.st_ctime * 1000),
        }

    def write(self, relative: str, data: bytes, *, overwrite: bool = True) -> Path:
        """Store `data` at `relative`, creating folders. FileExistsError when it exists and not
        `overwrite`; IsADirectoryError when it names a folder."""
        path = self.resolve_entry(relative)
        if path.is_dir():
            raise IsADirectoryError(relative)
        if not overwrite and os.path.lexists(path):
            raise FileExistsError(relative)
        path.parent.mkdir(parents=True, exist_ok=True)
        if overwrite:
            write_bytes_atomic(path, data, durable=True)
            return path
        temp = temp_path_beside(path)
        try:
            with open(temp, "xb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            publish_no_clobber(temp, path)  # another writer may have taken the name meanwhile
        finally:
            discard(temp)
        return path

    def delete(self, relative: str) -> None:
        path = self.resolve_entry(relative)
        if not os.path.lexists(path):
            raise FileNotFoundError(relative)
        if path.is_dir():
            raise IsADirectoryError(relative)
        os.remove(path)

    def move(self, source: str, destination: str, *, overwrite: bool = True) -> Path:
        """Rename `source` to `destination`. FileNotFoundError when `source` is missing,
        FileExistsError when `destination` exists and not `overwrite`, IsADirectoryError when
        `destination` is a folder."""
        origin = self.resolve_entry(source)
        target = self.resolve_entry(destination)
        if not os.path.lexists(origin):
            raise FileNotFoundError(source)
        if target.is_dir() and target != origin:
            raise IsADirectoryError(destination)
        if not overwrite and os.path.lexists(target) and target != origin:
            raise FileExistsError(destination)
        target.parent.mkdir(parents=True, exist_ok=True)
        if overwrite or origin.is_dir() or target == origin:
            os.replace(origin, target)
        else:
            publish_no_clobber(origin, target)  # link then unlink: never replaces a file
        return target


def _inside(path: Path, root: Path) -> bool:
    # A listing must not show (or reach through) a symlink that points out of the folder.
    real = Path(os.path.realpath(path))
    return real == root or root in real.parents
