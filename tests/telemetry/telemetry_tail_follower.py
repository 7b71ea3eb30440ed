"""A file follower that reads a rotated log the way Fluentd's `in_tail` (with `follow_inodes`)
and Fluent Bit's `tail` do: by inode and offset. It notices a rename, reads the rotated file to
its end first, then moves on to the file written after it, even when the writer rotated several
times between two polls (the successor of `events.jsonl.k` is `events.jsonl.k-1`).

For tests only: it proves that the JSON-lines sink's rename + reopen rotation loses and repeats
nothing for a reader that follows files this way.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import BinaryIO


class RotationLostError(AssertionError):
    """The file being followed was rotated out of reach (beyond `keep`) before it was read."""


class TailFollower:
    def __init__(self, path: Path, *, keep: int) -> None:
        self.path = path
        self.keep = keep
        self.files_followed = 0
        self._file: BinaryIO | None = None
        self._inode: int | None = None
        self._partial = b""

    def poll(self) -> list[bytes]:
        """Every complete line written since the last poll, in the order it was written."""
        lines: list[bytes] = []
        if self._file is None and not self._open_current():
            return lines
        while True:
            lines.extend(self._read_to_end())
            try:
                inode = os.stat(self.path).st_ino
            except FileNotFoundError:
                return lines  # mid-rotation: renamed, not yet reopened
            if inode == self._inode:
                return lines
            # Rotated: the writer closed this file before renaming it, so what we read now is
            # its true end. Then follow the file written after it.
            lines.extend(self._read_to_end())
            if self._partial:
                raise AssertionError(f"rotated file ended mid-line: {self._partial[:80]!r}")
            self._move_to_successor()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    # -- internals ----------------------------------------------------------------------
    def _open_current(self) -> bool:
        try:
            file = open(self.path, "rb")  # noqa: SIM115 (kept open across polls)
        except FileNotFoundError:
            return False
        self._follow(file)
        return True

    def _follow(self, file: BinaryIO) -> None:
        self.close()
        self._file = file
        self._inode = os.fstat(file.fileno()).st_ino
        self.files_followed += 1

    def _read_to_end(self) -> list[bytes]:
        assert self._file is not None
        data = self._partial + self._file.read()
        *lines, self._partial = data.split(b"\n")
        return lines

    def _move_to_successor(self, timeout_s: float = 10.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            snapshot = self._snapshot()
            if snapshot is not None:
                inodes = [os.fstat(file.fileno()).st_ino for file in snapshot]
                if self._inode in inodes:
                    index = inodes.index(self._inode)
                    if index > 0:
                        successor = snapshot.pop(index - 1)
                        for file in snapshot:
                            file.close()
                        self._follow(successor)
                        return
                for file in snapshot:
                    file.close()
                if self._inode not in inodes and len(inodes) > self.keep:
                    raise RotationLostError(f"{self.path}: inode {self._inode} rotated beyond keep")
            time.sleep(0.001)
        raise RotationLostError(f"{self.path}: no successor of inode {self._inode} found")

    def _snapshot(self) -> list[BinaryIO] | None:
        """`path`, `path.1`, … opened newest first, up to the first missing name; None when a
        rotation ran while opening (the same inode appears twice), so the caller retries.

        Opening in this order while the writer renames oldest first means a rotation during the
        scan always shows up as a repeated inode or a gap, never as a wrong successor.
        """
        files: list[BinaryIO] = []
        seen: set[int] = set()
        for index in range(self.keep + 1):
            name = self.path if index == 0 else self.path.with_name(f"{self.path.name}.{index}")
            try:
                file = open(name, "rb")  # noqa: SIM115 (closed by the caller)
            except FileNotFoundError:
                break
            files.append(file)
            inode = os.fstat(file.fileno()).st_ino
            if inode in seen:
                for opened in files:
                    opened.close()
                return None
            seen.add(inode)
        return files
