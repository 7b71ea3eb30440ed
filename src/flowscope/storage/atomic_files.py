"""Writing files so that a reader or a crash never sees half of one: a hidden temporary file beside
the target, then an atomic rename (replacing) or hard link (never replacing)."""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
from pathlib import Path

TEMP_PREFIX = ".flowscope-tmp-"
# Where hard links are not supported, fall back to an exclusive create plus a rename.
_NO_LINK_ERRNOS = frozenset(
    {errno.EPERM, errno.EXDEV, errno.EMLINK, errno.ENOTSUP, errno.EOPNOTSUPP, errno.ENOSYS}
)


def temp_path_beside(target: Path) -> Path:
    """A fresh hidden name in `target`'s folder (same file system, so a rename is atomic)."""
    return target.with_name(f"{TEMP_PREFIX}{secrets.token_hex(8)}")


def write_bytes_atomic(target: Path, data: bytes, *, durable: bool = False) -> None:
    """Replace `target` with `data` in one step. `durable` also flushes to disk before the
    rename, so a power cut leaves either the old file or the new one."""
    temp = temp_path_beside(target)
    try:
        with open(temp, "xb") as handle:
            handle.write(data)
            if durable:
                handle.flush()
                os.fsync(handle.fileno())
        os.replace(temp, target)
    except BaseException:
        discard(temp)
        raise
    if durable:
        _fsync_directory(target.parent)


def publish_no_clobber(temp: Path, target: Path) -> None:
    """Give the finished file `temp` the name `target`, unless `target` exists (FileExistsError;
    `temp` is left in place). Two writers racing for one name can never overwrite each other."""
    try:
        os.link(temp, target)
    except FileExistsError:
        raise
    except OSError as exc:
        if exc.errno not in _NO_LINK_ERRNOS:
            raise
        # Reserve the name exclusively, then move the content over the empty placeholder.
        fd = os.open(target, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        os.close(fd)
        os.replace(temp, target)
        return
    discard(temp)


def discard(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


def _fsync_directory(folder: Path) -> None:
    # Makes the rename itself durable; not every platform can open a directory.
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
