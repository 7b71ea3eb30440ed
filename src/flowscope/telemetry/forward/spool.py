"""A bounded on-disk spool of encoded Forward requests: every chunk is written here before it is
sent and deleted only once the server acks it, so chunks survive an outage of the server and a
restart (even a SIGKILL) of this process. Over `max_bytes`, the oldest chunks are dropped and
counted.

One file per chunk, `<sequence>-<events>-<chunk id>.fwd`, holding the exact request bytes: a
replayed chunk is byte-identical to the first attempt (same chunk id, same `event.id`s). Files
are written to `*.tmp` and renamed, so a crash never leaves a torn chunk under a chunk name. A
lock file keeps two live processes from sharing a directory.
"""

from __future__ import annotations

import fcntl
import os
import re
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

from flowscope.telemetry.forward.protocol import EncodedChunk, ForwardError

_SUFFIX = ".fwd"
_TMP_SUFFIX = ".tmp"
_LOCK_NAME = "spool.lock"
_CHUNK_NAME = re.compile(r"^(\d{20})-(\d+)-([A-Za-z0-9_\-=]+)\.fwd$")
_CHUNK_ID = re.compile(r"^[A-Za-z0-9+/=]+$")
# Chunk ids are standard base64; '/' cannot appear in a file name, so names use the URL-safe
# alphabet and translate back on load.
_TO_NAME = str.maketrans("+/", "-_")
_FROM_NAME = str.maketrans("-_", "+/")


class SpoolInUseError(ForwardError):
    """Another live process holds this spool directory."""


@dataclass(frozen=True, slots=True)
class SpooledChunk:
    sequence: int
    chunk_id: str
    events: int
    size: int
    path: Path


class Spool:
    """Thread-safe: the sink's thread adds chunks while the sender's thread reads and removes."""

    def __init__(self, directory: str | os.PathLike[str], max_bytes: int, *, fsync: bool = True):
        if max_bytes <= 0:
            raise ValueError(f"max_spool_bytes must be positive, got {max_bytes}")
        self.directory = Path(directory)
        self.max_bytes = max_bytes
        self.fsync = fsync
        self.dropped_chunks = 0
        self.dropped_events = 0
        self._mutex = threading.Lock()
        self._chunks: OrderedDict[str, SpooledChunk] = OrderedDict()
        self._bytes = 0
        self.directory.mkdir(parents=True, exist_ok=True)
        self._lock_fd = _lock(self.directory)
        try:
            self._next_sequence = self._load()
            with self._mutex:
                self._make_room(0)  # the bound may have shrunk since the last run
        except BaseException:
            os.close(self._lock_fd)
            raise

    # -- queries --------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self._chunks)

    @property
    def size_bytes(self) -> int:
        return self._bytes

    @property
    def pending_events(self) -> int:
        with self._mutex:
            return sum(chunk.events for chunk in self._chunks.values())

    def pending(self) -> list[SpooledChunk]:
        """The spooled chunks, oldest first."""
        with self._mutex:
            return list(self._chunks.values())

    def read(self, chunk: SpooledChunk) -> bytes | None:
        """The chunk's request bytes, or None if it was dropped or acked meanwhile."""
        try:
            return chunk.path.read_bytes()
        except FileNotFoundError:
            with self._mutex:
                if self._chunks.get(chunk.chunk_id) is chunk:
                    # Deleted behind our back: forget it (and count it) rather than wait forever.
                    del self._chunks[chunk.chunk_id]
                    self._bytes -= chunk.size
                    self._count_dropped(chunk)
            return None

    # -- changes --------------------------------------------------------------------------
    def add(self, chunk: EncodedChunk) -> list[SpooledChunk]:
        """Write `chunk` to disk; returns the chunks dropped to stay under `max_bytes`
        (`chunk` itself when it alone is larger than the bound)."""
        if not _CHUNK_ID.match(chunk.chunk_id):
            raise ValueError(f"chunk id {chunk.chunk_id!r} is not base64")
        size = len(chunk.frame)
        with self._mutex:
            sequence = self._next_sequence
            self._next_sequence += 1
            name = f"{sequence:020d}-{chunk.events}-{chunk.chunk_id.translate(_TO_NAME)}{_SUFFIX}"
            spooled = SpooledChunk(
                sequence, chunk.chunk_id, chunk.events, size, self.directory / name
            )
            if size > self.max_bytes:
                self._count_dropped(spooled)
                return [spooled]
            dropped = self._make_room(size)
            self._write(spooled.path, chunk.frame)
            self._chunks[chunk.chunk_id] = spooled
            self._bytes += size
            return dropped

    def remove(self, chunk_id: str) -> SpooledChunk | None:
        """Delete an acked chunk; None if it is no longer here (dropped, or acked twice)."""
        with self._mutex:
            spooled = self._chunks.pop(chunk_id, None)
            if spooled is None:
                return None
            self._bytes -= spooled.size
        spooled.path.unlink(missing_ok=True)
        return spooled

    def close(self) -> None:
        """Release the directory lock; chunks stay on disk for the next run."""
        if self._lock_fd >= 0:
            os.close(self._lock_fd)
            self._lock_fd = -1

    # -- internals --------------------------------------------------------------------------
    def _load(self) -> int:
        found: list[SpooledChunk] = []
        for path in self.directory.iterdir():
            if path.name.endswith(_TMP_SUFFIX):
                path.unlink(missing_ok=True)  # a write cut short by a crash: never acked
                continue
            match = _CHUNK_NAME.match(path.name)
            if match is None:
                continue
            sequence, events, name_id = match.groups()
            size = path.stat().st_size
            chunk_id = name_id.translate(_FROM_NAME)
            found.append(SpooledChunk(int(sequence), chunk_id, int(events), size, path))
        found.sort(key=lambda chunk: chunk.sequence)
        for chunk in found:
            self._chunks[chunk.chunk_id] = chunk
            self._bytes += chunk.size
        return found[-1].sequence + 1 if found else 0

    def _make_room(self, size: int) -> list[SpooledChunk]:
        dropped = []
        while self._chunks and self._bytes + size > self.max_bytes:
            _, oldest = self._chunks.popitem(last=False)
            self._bytes -= oldest.size
            oldest.path.unlink(missing_ok=True)
            self._count_dropped(oldest)
            dropped.append(oldest)
        return dropped

    def _count_dropped(self, chunk: SpooledChunk) -> None:
        self.dropped_chunks += 1
        self.dropped_events += chunk.events

    def _write(self, path: Path, data: bytes) -> None:
        tmp = path.with_name(path.name + _TMP_SUFFIX)
        with open(tmp, "wb") as file:
            file.write(data)
            if self.fsync:
                file.flush()
                os.fsync(file.fileno())
        os.replace(tmp, path)
        if self.fsync:
            # The rename itself must reach the disk, or a power cut can forget the chunk.
            directory_fd = os.open(self.directory, os.O_RDONLY)
            try:
                os.fsync(directory_fd)
            finally:
                os.close(directory_fd)


def _lock(directory: Path) -> int:
    fd = os.open(directory / _LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.read(fd, 32).decode("ascii", "replace").strip() or "unknown"
        os.close(fd)
        raise SpoolInUseError(
            f"spool directory {directory} is in use by another process (pid {holder}); give "
            "each ForwardSink its own spool_dir"
        ) from None
    # The kernel drops the lock when the process dies, even by SIGKILL; the pid is for humans.
    os.ftruncate(fd, 0)
    os.write(fd, str(os.getpid()).encode())
    return fd
