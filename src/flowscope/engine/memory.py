"""Peak memory per node: the process RSS high-water mark on CPU, CUDA peak stats on GPU.

On Linux, writing "5" to /proc/self/clear_refs resets VmHWM, so the high-water mark read after a
node is the peak since the reset. Both calls cost ~10-20 µs, too much for trivial nodes, so the
probe reads (and resets) only after nodes that ran at least `min_duration_ns`: the mark then
covers that node plus any trivial nodes since the last reset, which allocate next to nothing.
"""

from __future__ import annotations

import os
import sys
from typing import Any

_CLEAR_REFS = "/proc/self/clear_refs"
_STATUS = "/proc/self/status"


class MemoryProbe:
    def __init__(self, min_duration_ns: int = 1_000_000) -> None:
        self.min_duration_ns = min_duration_ns
        # Both files stay open: opening them through Python's io stack cost more than the
        # reset itself, once per job even for trivial ones.
        self._clear_refs = _open_proc(_CLEAR_REFS, os.O_WRONLY)
        self._status = _open_proc(_STATUS, os.O_RDONLY)
        self.rss_supported = (
            sys.platform.startswith("linux")
            and self._clear_refs is not None
            and self._status is not None
            and self._reset_rss()
        )
        self._cuda: Any = None

    def start_job(self) -> None:
        if self.rss_supported:
            self._reset_rss()
        self._cuda = _initialized_cuda()
        if self._cuda is not None:
            self._cuda.reset_peak_memory_stats()

    def node_finished(self, duration_ns: int) -> dict[str, int]:
        """Fields for the node's event; empty for nodes too short to be worth measuring."""
        if duration_ns < self.min_duration_ns:
            return {}
        fields: dict[str, int] = {}
        if self.rss_supported:
            peak = self._read_hwm_bytes()
            if peak is not None:
                fields["process.memory.peak_bytes"] = peak
            self._reset_rss()
        cuda = self._cuda if self._cuda is not None else _initialized_cuda()
        if cuda is not None:
            self._cuda = cuda
            fields["gpu.memory.peak_bytes"] = int(cuda.max_memory_allocated())
            fields["gpu.memory.used_bytes"] = int(cuda.memory_allocated())
            cuda.reset_peak_memory_stats()
        return fields

    def _reset_rss(self) -> bool:
        if self._clear_refs is None:
            return False
        try:
            os.write(self._clear_refs, b"5")
        except OSError:
            return False
        return True

    def _read_hwm_bytes(self) -> int | None:
        if self._status is None:
            return None
        try:
            status = os.pread(self._status, 16384, 0)
        except OSError:
            return None
        start = status.find(b"VmHWM:")
        if start < 0:
            return None
        end = status.find(b"\n", start)
        return int(status[start + 6 : end if end >= 0 else None].split()[0]) * 1024

    def close(self) -> None:
        for fd in (self._clear_refs, self._status):
            if fd is not None:
                os.close(fd)
        self._clear_refs = self._status = None
        self.rss_supported = False


def _open_proc(path: str, flags: int) -> int | None:
    try:
        return os.open(path, flags | os.O_CLOEXEC)
    except OSError:
        return None


def _initialized_cuda() -> Any:
    """torch.cuda if CUDA is already in use in this process (never initialises it)."""
    torch = sys.modules.get("torch")
    if torch is None:
        return None
    cuda = torch.cuda
    if cuda.is_available() and cuda.is_initialized():
        return cuda
    return None
