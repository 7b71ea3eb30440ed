"""The event: one typed record per thing that happened, shaped for ECS (spec/telemetry.md §1-2).

Events are built on the hot path, so they hold plain fields and defer all formatting (ISO
timestamps, JSON) to the sinks. `fields` carries the ECS fields with dotted names; `detail` carries
in-process objects for in-process observers (a node's UI output, a preview image, the ComfyUI
error payload) that sinks may summarise but never serialise whole.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any


class Action(StrEnum):
    """The closed vocabulary of `event.action`."""

    JOB_QUEUED = "job.queued"
    JOB_REJECTED = "job.rejected"
    JOB_STARTED = "job.started"
    JOB_SUCCEEDED = "job.succeeded"
    JOB_FAILED = "job.failed"
    JOB_INTERRUPTED = "job.interrupted"
    JOB_CANCELLED = "job.cancelled"
    JOB_REQUEUED = "job.requeued"
    NODE_STARTED = "node.started"
    NODE_SUCCEEDED = "node.succeeded"
    NODE_CACHED = "node.cached"
    NODE_FAILED = "node.failed"
    NODE_BLOCKED = "node.blocked"
    NODE_EXPANDED = "node.expanded"
    NODE_PROGRESS = "node.progress"
    MODEL_LOADED = "model.loaded"
    MODEL_UNLOADED = "model.unloaded"
    MODEL_CACHE_HIT = "model.cache_hit"
    OUTPUT_SAVED = "output.saved"
    OUTPUT_UPLOADED = "output.uploaded"
    WORKER_STARTED = "worker.started"
    WORKER_STOPPED = "worker.stopped"
    HTTP_REQUEST = "http.request"
    TELEMETRY_DROPPED = "telemetry.dropped"


class Level(StrEnum):
    DEBUG = "debug"
    INFO = "info"
    WARN = "warn"
    ERROR = "error"


class Outcome(StrEnum):
    SUCCESS = "success"
    FAILURE = "failure"
    UNKNOWN = "unknown"


@dataclass(slots=True)
class Event:
    action: Action
    message: str
    time_ns: int
    level: Level = Level.INFO
    fields: dict[str, Any] | None = None
    detail: dict[str, Any] | None = None

    def get(self, key: str, default: Any = None) -> Any:
        """An ECS field by its dotted name (`node.id`), or `default`."""
        if self.fields is None:
            return default
        return self.fields.get(key, default)

    def to_ecs(self) -> dict[str, Any]:
        """The event as one flat ECS document (dotted keys), ready for a JSON sink."""
        document: dict[str, Any] = {
            "@timestamp": format_timestamp(self.time_ns),
            "log.level": self.level.value,
            "message": self.message,
            "event.action": self.action.value,
        }
        if self.fields:
            document.update(self.fields)
        return document


def format_timestamp(time_ns: int) -> str:
    """UTC with microseconds: `2026-11-23T09:30:00.123456Z`."""
    seconds, nanos = divmod(time_ns, 1_000_000_000)
    return f"{_format_second(seconds)}.{nanos // 1000:06d}Z"


@functools.lru_cache(maxsize=64)
def _format_second(seconds: int) -> str:
    # Sinks format every event; events come many per second, and strftime costs ~4 µs.
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S")


def qualified_name(exc_type: type[BaseException]) -> str:
    """`error.type`: the exception's qualified class name; built-ins appear bare."""
    module = exc_type.__module__
    if module in ("builtins", "__main__"):
        return exc_type.__qualname__
    return f"{module}.{exc_type.__qualname__}"
