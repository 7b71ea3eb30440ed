"""A log file that the process rotates itself: close, rename `events.jsonl` → `events.jsonl.1`
(older files shift up, the oldest beyond `keep` is dropped), reopen a new `events.jsonl`.

Never copytruncate: a tailing shipper (Fluentd `in_tail`, Fluent Bit `tail`) follows the renamed
file by inode to its end and then picks up the new one, so nothing is lost or read twice
(spec/telemetry.md §3). Lines are written whole with unbuffered writes, so a reader never sees a
line cut at a rotation, and a failed write leaves the file ready to be reopened.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path

MiB = 1024 * 1024


class RotatingFile:
    """Appends whole lines to `path`, rotating by size (`max_bytes`) and/or time
    (`rotate_every_s`, at multiples of it since the Unix epoch: 86400 rotates at UTC midnight).

    Not thread-safe: one writer (the sink's thread) owns it.
    """

    def __init__(
        self,
        path: Path,
        *,
        max_bytes: int | None = 100 * MiB,
        rotate_every_s: float | None = None,
        keep: int = 10,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if max_bytes is not None and max_bytes <= 0:
            raise ValueError(f"max_bytes must be positive (or None for no size limit): {max_bytes}")
        if rotate_every_s is not None and not rotate_every_s > 0:
            raise ValueError(
                f"rotate_every_s must be positive (or None for no time rotation): {rotate_every_s}"
            )
        if keep < 0:
            raise ValueError(f"keep must be 0 or more rotated files: {keep}")
        self.path = Path(path)
        self.max_bytes = max_bytes
        self.rotate_every_s = rotate_every_s
        self.keep = keep
        self.rotations = 0
        self._clock = clock
        self._file: _RawFile | None = None
        self._size = 0
        self._period_end = math.inf

    @property
    def size(self) -> int:
        """Bytes in the current file (as far as this writer knows)."""
        return self._size

    def write_lines(self, lines: Sequence[bytes]) -> None:
        """Append `lines` (each ending in a newline); rotation happens between lines only.

        An OSError (disk full, permission, a removed directory) propagates after the file is
        closed; the next call reopens it, so the writer recovers when the cause clears.
        """
        if not lines:
            return
        if self._file is None:
            self._open()
        if self._size and self._clock() >= self._period_end:
            self._rotate()
        limit = self.max_bytes
        chunk: list[bytes] = []
        chunk_bytes = 0
        for line in lines:
            length = len(line)
            if limit is not None and self._size + chunk_bytes + length > limit:
                if chunk:
                    self._write(b"".join(chunk))
                    chunk.clear()
                    chunk_bytes = 0
                if self._size:  # a line longer than the limit still gets a file of its own
                    self._rotate()
            chunk.append(line)
            chunk_bytes += length
        if chunk:
            self._write(b"".join(chunk))

    def open(self) -> None:
        """Open (creating the directories) now rather than at the first write."""
        if self._file is None:
            self._open()

    def rotate(self) -> None:
        """Rotate now (if the current file holds anything)."""
        if self._file is None:
            self._open()
        if self._size:
            self._rotate()

    def close(self) -> None:
        if self._file is not None:
            file, self._file = self._file, None
            file.close()

    def rotated_paths(self) -> list[Path]:
        """`path.1` … `path.keep` (newest first), whether or not they exist yet."""
        return [self._numbered(index) for index in range(1, self.keep + 1)]

    # -- internals ----------------------------------------------------------------------
    def _numbered(self, index: int) -> Path:
        return self.path.with_name(f"{self.path.name}.{index}")

    def _open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        file = _RawFile(self.path)
        try:
            self._size = file.size()
            if self._size and file.last_byte() != b"\n":
                # A crash or a failed write left half a line: end it, so the next line parses.
                file.write(b"\n")
                self._size += 1
        except OSError:
            file.close()
            raise
        self._file = file
        # A file kept from an earlier run belongs to the period of its last write.
        started = file.mtime() if self._size else self._clock()
        self._period_end = self._next_boundary(started)

    def _next_boundary(self, moment: float) -> float:
        every = self.rotate_every_s
        if every is None:
            return math.inf
        return (math.floor(moment / every) + 1) * every

    def _write(self, data: bytes) -> None:
        assert self._file is not None
        try:
            self._file.write(data)
        except OSError:
            self.close()  # reopened (and a cut line ended) on the next write
            raise
        self._size += len(data)

    def _rotate(self) -> None:
        self.close()
        if self.keep == 0:
            self.path.unlink(missing_ok=True)
        else:
            # Oldest first, so each rename's target has already moved on (or is dropped).
            for index in range(self.keep - 1, 0, -1):
                source = self._numbered(index)
                if source.exists():
                    os.replace(source, self._numbered(index + 1))
            os.replace(self.path, self._numbered(1))
        self.rotations += 1
        self._open()


class _RawFile:
    """An unbuffered append-only file: each write reaches the kernel whole or raises."""

    def __init__(self, path: Path) -> None:
        # Read access only to check the last byte of a file kept from before.
        self._io = open(path, "a+b", buffering=0)  # noqa: SIM115 (owned by RotatingFile)

    def write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            written = self._io.write(view)
            if not written:  # FileIO returns None/0 only when the write could not proceed
                raise OSError(f"could not write to {self._io.name}")
            view = view[written:]

    def size(self) -> int:
        return os.fstat(self._io.fileno()).st_size

    def mtime(self) -> float:
        return os.fstat(self._io.fileno()).st_mtime

    def last_byte(self) -> bytes:
        return os.pread(self._io.fileno(), 1, self.size() - 1)

    def close(self) -> None:
        self._io.close()
