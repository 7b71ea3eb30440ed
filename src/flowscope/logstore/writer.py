"""The log store's writer process: a child process that performs the store's inserts.

Indexing an event costs SQLite more CPU than producing the event costs the engine. In the
process that runs jobs that work would compete with them for the interpreter lock (all of one
process's Python runs on one core at a time); in a child it has a core of its own. The sink
sends batches of events, taken apart into records and pickled (the cheapest encoding of
Python values); the child builds their rows and inserts each batch in one transaction. Inserts
are not answered one by one: a `sync` request is answered once everything sent before it is
committed, with the count of rows that failed since the previous answer. The pipe holds about
one batch; when it is full the sink's thread waits (never the emitter), so what is in flight
stays bounded and the sink's queue takes, and counts, the rest.

`WriterProcess` starts the child (`main()` below); the protocol between them is private.
"""

from __future__ import annotations

import contextlib
import fcntl
import gc
import io
import os
import pickle
import signal
import struct
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import flowscope
from flowscope.logstore.row_plans import Record

_HEADER = struct.Struct(">I")  # the length of the pickled message that follows
_PROTOCOL = pickle.HIGHEST_PROTOCOL
# How much lower the writer's CPU priority is than its parent's. Indexing can wait: in a burst
# of requests the API and the jobs come first, and the writer catches up when they pause (the
# sink's queue and the pipe hold what it has not taken yet). On a 2-core machine under a
# `POST /prompt` burst this gave the API about 6 % more requests a second.
WRITER_NICE = 10


class WriterError(RuntimeError):
    """The writer process failed a request, or is gone; the message says why."""


@dataclass(frozen=True)
class Synced:
    """The answer to `sync`: what happened to the rows sent since the previous answer."""

    inserted: int  # new rows (duplicates of stored events are ignored, not failures)
    failed: int  # rows in batches that could not be written
    error: str | None  # the last failure, if any


class WriterProcess:
    """The parent's handle on one writer process for the store at `path`. Not thread-safe:
    one thread (the sink's) talks to it."""

    def __init__(self, path: Path, static_fields: Mapping[str, Any]) -> None:
        package_root = str(Path(flowscope.__file__).resolve().parent.parent)
        env = dict(os.environ)
        # The child imports flowscope from where this process did (a checkout, a venv...).
        env["PYTHONPATH"] = os.pathsep.join(
            item for item in (package_root, env.get("PYTHONPATH")) if item
        )
        self._process = subprocess.Popen(
            [sys.executable, "-c", "from flowscope.logstore.writer import main; main()"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env=env,
            # Its own session: a Ctrl-C meant for the parent must not cut the last writes
            # short; the child ends when the parent closes the pipe (or dies).
            start_new_session=True,
        )
        with contextlib.suppress(OSError):  # not allowed here: it keeps the parent's priority
            niceness = os.getpriority(os.PRIO_PROCESS, 0) + WRITER_NICE
            os.setpriority(os.PRIO_PROCESS, self._process.pid, min(niceness, 19))
        assert self._process.stdin is not None and self._process.stdout is not None
        self._requests: IO[bytes] = self._process.stdin
        _widen_pipe(self._requests.fileno())
        self._replies: IO[bytes] = self._process.stdout
        self.unconfirmed = 0  # rows sent since the last sync: lost if the child dies
        # Answered by the first sync: the child starts up while the caller goes on.
        self._send(("open", str(path), dict(static_fields)))

    @property
    def alive(self) -> bool:
        return self._process.poll() is None

    @property
    def pid(self) -> int:
        return self._process.pid

    def insert(self, records: Sequence[Record]) -> None:
        """Send events to store in one transaction; their fate is told by the next `sync`."""
        self._send(("insert", records))
        self.unconfirmed += len(records)

    def sync(self) -> Synced:
        """Wait until everything sent so far is committed (or failed)."""
        synced: Synced = self._request(("sync",))
        self.unconfirmed = 0
        return synced

    def prune_before(self, cutoff_ns: int) -> int:
        """Delete events older than `cutoff_ns`; returns how many."""
        deleted: int = self._request(("prune", cutoff_ns))
        return deleted

    def close(self, timeout_s: float = 5.0) -> None:
        """Close the pipe (the child writes what it was sent, closes the store and exits);
        kill it if it is still running after `timeout_s`."""
        with contextlib.suppress(OSError):  # already gone
            self._requests.close()
        try:
            self._process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        self._replies.close()

    # -- the exchange ---------------------------------------------------------------------
    def _request(self, message: tuple[Any, ...]) -> Any:
        self._send(message)
        header = self._replies.read(_HEADER.size)
        if len(header) < _HEADER.size:
            raise self._gone(None)
        (length,) = _HEADER.unpack(header)
        status, value = pickle.loads(self._replies.read(length))
        if status != "ok":
            raise WriterError(str(value))
        return value

    def _send(self, message: tuple[Any, ...]) -> None:
        buffer = io.BytesIO()
        buffer.write(_HEADER.pack(0))
        _PlainPickler(buffer, _PROTOCOL).dump(message)
        payload = buffer.getbuffer()
        _HEADER.pack_into(payload, 0, len(payload) - _HEADER.size)
        try:
            self._requests.write(payload)
            self._requests.flush()
        except (OSError, ValueError) as exc:  # a broken pipe: the child is gone
            raise self._gone(exc) from None
        finally:
            payload.release()

    def _gone(self, cause: BaseException | None) -> WriterError:
        try:
            code = self._process.wait(1.0)
        except subprocess.TimeoutExpired:
            code = None
        state = f"exited with status {code}" if code is not None else "stopped answering"
        detail = f" ({type(cause).__name__})" if cause is not None else ""
        return WriterError(f"the log store writer process {state}{detail}")


def _widen_pipe(descriptor: int) -> None:
    """Let the pipe hold a whole batch (Linux: 1 MiB rather than 64 KiB), so the next batch is
    waiting when the child finishes one, without the sink's thread having to be scheduled."""
    with contextlib.suppress(AttributeError, OSError):  # not Linux, or above pipe-max-size
        fcntl.fcntl(descriptor, fcntl.F_SETPIPE_SZ, 1 << 20)


class _PlainPickler(pickle.Pickler):
    """Pickles events' fields as the values the store keeps of them, so that the child can
    always read them back: a subclass of str, int or float as the plain value, any other
    mapping as a dict, a tuple as a list, and anything else as its str() (as the JSON the store
    writes would). Exact built-in values never reach `reducer_override`: no cost for them."""

    def reducer_override(self, obj: Any) -> Any:
        kind = type(obj)
        if kind in _PLAIN_TYPES or (kind is type and obj in _PLAIN_TYPES):
            return NotImplemented  # a plain value, or the type a reduction below names
        # The value itself, as the JSON encoder sees it (not what an overridden __str__ says).
        if isinstance(obj, str):
            return str, (str.__str__(obj),)
        if isinstance(obj, int):
            return int, (int.__int__(obj),)
        if isinstance(obj, float):
            return float, (float.__float__(obj),)
        if isinstance(obj, Mapping):
            return dict, (dict(obj),)
        if isinstance(obj, (list, tuple)):
            return list, (list(obj),)
        try:
            text = str(obj)
        except Exception:  # a broken __str__ must not lose the batch
            text = f"<unprintable {kind.__name__}>"
        return str, (text,)


_PLAIN_TYPES = frozenset((str, int, float, bool, type(None), dict, list, tuple, bytes))


# -- the child ------------------------------------------------------------------------------
def serve(requests: IO[bytes], replies: IO[bytes]) -> None:
    """Carry out requests until the parent closes the pipe."""
    from flowscope.logstore.store import LogStore

    store: LogStore | None = None
    static: dict[str, Any] = {}
    opening_error: str | None = None
    inserted = failed = 0
    error: str | None = None
    try:
        while True:
            header = requests.read(_HEADER.size)
            if len(header) < _HEADER.size:
                return  # the parent closed the pipe (or died)
            (length,) = _HEADER.unpack(header)
            kind, *arguments = pickle.loads(requests.read(length))
            if kind == "open":
                try:
                    path, static = arguments
                    store = LogStore(path)
                except Exception as exc:  # told at every sync, and every batch fails
                    opening_error = f"{type(exc).__name__}: {exc}"
                continue
            if kind == "insert":
                records = arguments[0]
                try:
                    if store is None:
                        raise WriterError(opening_error or "the store is not open")
                    inserted += store.insert_records(records, static)
                except Exception as exc:  # the batch is lost: told at the next sync
                    failed += len(records)
                    error = f"{type(exc).__name__}: {exc}"
                continue
            reply: tuple[str, Any]
            if kind == "sync":
                reply = ("ok", Synced(inserted, failed, error))
                inserted = failed = 0
                error = None
            elif kind == "prune" and store is not None:
                try:
                    reply = ("ok", store.prune_before(arguments[0]))
                except Exception as exc:
                    reply = ("error", f"{type(exc).__name__}: {exc}")
            else:
                reply = ("error", opening_error or f"cannot {kind}: the store is not open")
            payload = pickle.dumps(reply, _PROTOCOL)
            replies.write(_HEADER.pack(len(payload)) + payload)
            replies.flush()
    finally:
        if store is not None:
            store.close()


def main() -> None:
    from flowscope.logstore.store import bind_none_and_bool_directly

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    bind_none_and_bool_directly()
    # A batch's records live until it is written, so the collector's young generations would
    # examine each one several times; nothing here makes reference cycles to find.
    gc.set_threshold(50_000, 20, 100)
    # The replies get their own descriptor; anything else printed to stdout goes nowhere,
    # rather than into the protocol.
    replies = os.fdopen(os.dup(sys.stdout.fileno()), "wb")
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    serve(sys.stdin.buffer, replies)
