"""Worker identity and liveness: ids of the form `host:pid:index`, and telling a dead worker's
jobs from a live one's when a process restarts.

A running job carries its worker's id and a lease that the worker renews. A job is lost when its
lease expires or, faster, when its worker is known dead: a worker on this host whose process is
gone, or one that claims to be this process but is not one of its live workers (the previous
server, when pid and host name repeat, as for PID 1 in a restarted container).
"""

from __future__ import annotations

import os
import socket
import threading

_HOST = socket.gethostname()
# Worker ids that claimed a job in this process and have not stopped: workers of this process
# (and of every JobStore in it) are alive by definition.
_live_here: set[str] = set()
_live_lock = threading.Lock()


def make_worker_id(index: int, *, host: str | None = None, pid: int | None = None) -> str:
    """`host:pid:index`; `index` tells apart the workers of one process."""
    return f"{host or _HOST}:{pid if pid is not None else os.getpid()}:{index}"


def parse_worker_id(worker_id: str) -> tuple[str, int, str] | None:
    """(host, pid, index) of a `host:pid:index` id, or None for an id of another form."""
    host, sep, rest = worker_id.rpartition(":")
    host, sep2, pid = host.rpartition(":")
    if not sep or not sep2 or not host or not pid.isdigit():
        return None
    return host, int(pid), rest


def mark_live(worker_id: str) -> None:
    """Record that `worker_id` works in this process (done when it claims a job)."""
    with _live_lock:
        _live_here.add(worker_id)


def mark_stopped(worker_id: str) -> None:
    with _live_lock:
        _live_here.discard(worker_id)


def worker_alive(worker_id: str) -> bool:
    """False only when `worker_id` is known dead; workers on other hosts count as alive (their
    leases decide)."""
    parsed = parse_worker_id(worker_id)
    if parsed is None:
        return True
    host, pid, _index = parsed
    if host != _HOST:
        return True
    if pid == os.getpid():
        with _live_lock:
            return worker_id in _live_here
    return _process_exists(pid)


def _process_exists(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: it exists
        return True
    except OSError:
        return True  # cannot tell; the lease decides
    return not _is_zombie(pid)


def _is_zombie(pid: int) -> bool:
    """A process that has exited but was not reaped yet (a worker process whose server was
    killed, waiting for an init that may never reap it) still answers kill(pid, 0)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            # "pid (comm) S ...": the state follows the last ")" (comm may hold ")").
            return stat.read().rpartition(b")")[2].split()[0] == b"Z"
    except (OSError, IndexError):
        return False
