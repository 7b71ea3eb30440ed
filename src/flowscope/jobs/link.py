"""The link between a server and its worker process: the messages and their framing.

One private socket pair per child (inherited, never bound to an address), so both ends are this
flowscope: frames are a 4-byte length and a pickled list of messages. The child sends what its
worker did (jobs started and finished, every event of its bus); the server sends commands (wake,
interrupt, free, stop). Jobs and events travel as plain tuples: unpickling dataclasses and enums
costs the server's interpreter several times more, for every event of every job.
"""

from __future__ import annotations

import pickle
import socket
import struct
import threading
from dataclasses import dataclass, fields
from typing import Any, BinaryIO

from flowscope.jobs.model import JobOutcome, QueuedJob
from flowscope.telemetry.events import Action, Event, Level

LINK_FD_FLAG = "--link-fd"  # `flowscope worker --link-fd N`: the child's end of the link
_HEADER = struct.Struct(">I")
_DETAIL_REPR_LIMIT = 200


# -- child -> server ---------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Ready:
    """The worker loop is about to start taking jobs."""

    worker_id: str


@dataclass(frozen=True, slots=True)
class JobStarted:
    job: QueuedJob  # arrives without its prompt and secrets: the server's store has them


@dataclass(frozen=True, slots=True)
class JobFinished:
    job: QueuedJob  # as in JobStarted
    outcome: JobOutcome


@dataclass(frozen=True, slots=True)
class Events:
    events: list[Event]


@dataclass(frozen=True, slots=True)
class Waiting:
    """The worker's claim found no job: it waits for a wake (or its next poll)."""


# -- server -> child ---------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Wake:
    """Jobs were queued since the child said it was waiting: look now, not at the next poll."""


@dataclass(frozen=True, slots=True)
class Interrupt:
    job_id: str | None  # None: whatever runs


@dataclass(frozen=True, slots=True)
class Free:
    unload_models: bool
    free_memory: bool


@dataclass(frozen=True, slots=True)
class Stop:
    timeout_s: float
    interrupt: bool = False


Message = Ready | JobStarted | JobFinished | Events | Waiting | Wake | Interrupt | Free | Stop


class FrameWriter:
    """Sends lists of messages as frames; safe to call from several threads."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._lock = threading.Lock()

    def send(self, messages: list[Message]) -> None:
        """Raises OSError once the other end has gone."""
        payload = _dumps([_encode(message) for message in messages])
        with self._lock:
            self._sock.sendall(_HEADER.pack(len(payload)) + payload)


class FrameReader:
    def __init__(self, sock: socket.socket) -> None:
        self._file: BinaryIO = sock.makefile("rb")

    def receive(self) -> list[Message] | None:
        """The next frame's messages; None when the other end has closed (or died)."""
        try:
            header = self._file.read(_HEADER.size)
            if len(header) < _HEADER.size:
                return None
            (size,) = _HEADER.unpack(header)
            payload = self._file.read(size)
        except OSError:
            return None
        if len(payload) < size:
            return None
        return [_decode(item) for item in pickle.loads(payload)]

    def close(self) -> None:
        self._file.close()


# -- the tuples on the wire ----------------------------------------------------------------
_EVENTS, _STARTED, _FINISHED, _AS_IS = range(4)
_JOB_FIELDS = tuple(f.name for f in fields(QueuedJob))
_OUTCOME_FIELDS = tuple(f.name for f in fields(JobOutcome))
_LEFT_OUT: dict[str, Any] = {"prompt": {}, "sensitive": {}}
_DETAIL = 5  # an event tuple's detail


def _encode(message: Message) -> tuple[Any, ...]:
    if isinstance(message, Events):
        return (_EVENTS, [_event_values(event) for event in message.events])
    if isinstance(message, JobStarted):
        return (_STARTED, _job_values(message.job))
    if isinstance(message, JobFinished):
        outcome = tuple(getattr(message.outcome, name) for name in _OUTCOME_FIELDS)
        return (_FINISHED, _job_values(message.job), outcome)
    return (_AS_IS, message)  # commands, Ready and Waiting: rare


def _decode(item: tuple[Any, ...]) -> Message:
    kind = item[0]
    if kind == _EVENTS:
        return Events([_event(values) for values in item[1]])
    if kind == _STARTED:
        return JobStarted(QueuedJob(*item[1]))
    if kind == _FINISHED:
        return JobFinished(QueuedJob(*item[1]), JobOutcome(*item[2]))
    message: Message = item[1]
    return message


def _job_values(job: QueuedJob) -> tuple[Any, ...]:
    return tuple(_LEFT_OUT.get(name, getattr(job, name)) for name in _JOB_FIELDS)


def _event_values(event: Event) -> tuple[Any, ...]:
    return (
        event.action.value,
        event.message,
        event.time_ns,
        event.level.value,
        event.fields,
        event.detail,
    )


def _event(values: tuple[Any, ...]) -> Event:
    action, message, time_ns, level, event_fields, detail = values
    return Event(_ACTIONS[action], message, time_ns, _LEVELS[level], event_fields, detail)


_ACTIONS = {action.value: action for action in Action}
_LEVELS = {level.value: level for level in Level}


def _dumps(items: list[tuple[Any, ...]]) -> bytes:
    try:
        return pickle.dumps(items, protocol=pickle.HIGHEST_PROTOCOL)
    except Exception:  # an event's detail holds something a node made that cannot be pickled
        portable = [_portable(item) for item in items]
        return pickle.dumps(portable, protocol=pickle.HIGHEST_PROTOCOL)


def _portable(item: tuple[Any, ...]) -> tuple[Any, ...]:
    if item[0] != _EVENTS:
        return item
    return (_EVENTS, [_portable_event(values) for values in item[1]])


def _portable_event(values: tuple[Any, ...]) -> tuple[Any, ...]:
    """The event with each detail value that cannot be pickled replaced by a short repr
    (details are for in-process observers; sinks never serialise them whole)."""
    detail = values[_DETAIL]
    if not detail or _picklable(detail):
        return values
    portable = {
        key: value if _picklable(value) else _short_repr(value) for key, value in detail.items()
    }
    return (*values[:_DETAIL], portable)


def _picklable(value: Any) -> bool:
    try:
        pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
    except Exception:
        return False
    return True


def _short_repr(value: Any) -> str:
    try:
        text = repr(value)
    except Exception:
        text = f"<{type(value).__qualname__}>"
    return text[:_DETAIL_REPR_LIMIT]
