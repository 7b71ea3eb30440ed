"""The console sink: one short human-readable line per event, for development.

    12:00:01.234 INFO  node.succeeded   job=3f2a9c1e… node=#12 KSampler 1234.5 ms

Lines are formatted and written by the sink's own thread, so a slow or closed terminal costs the
emitter nothing and never raises into it (spec/telemetry.md §3). The JSON lines stay the record;
this view leaves fields out on purpose.
"""

from __future__ import annotations

import functools
import os
import sys
import time
from collections.abc import Sequence
from typing import IO

from flowscope.telemetry.events import Event, Level
from flowscope.telemetry.sinks.queued import QueuedSink

_RANK = {Level.DEBUG: 0, Level.INFO: 1, Level.WARN: 2, Level.ERROR: 3}
_COLOR = {
    Level.DEBUG: "\x1b[2m",
    Level.INFO: "\x1b[32m",
    Level.WARN: "\x1b[33m",
    Level.ERROR: "\x1b[1;31m",
}
_RESET = "\x1b[0m"
_DIM = "\x1b[2m"
JOB_ID_CHARS = 8
MESSAGE_CHARS = 500


def format_line(event: Event, *, color: bool = False) -> str:
    """`HH:MM:SS.mmm LEVEL action  job=… node=#id type duration details` (local time)."""
    seconds, nanos = divmod(event.time_ns, 1_000_000_000)
    clock = f"{_local_clock(seconds)}.{nanos // 1_000_000:03d}"
    level = f"{event.level.value.upper():<5}"
    parts = [f"{_DIM}{clock}{_RESET}" if color else clock]
    parts.append(f"{_COLOR[event.level]}{level}{_RESET}" if color else level)
    parts.append(f"{event.action.value:<16}")
    fields = event.fields or {}
    job_id = fields.get("job.id")
    if job_id is not None:
        parts.append(f"job={_clean(job_id, JOB_ID_CHARS)}")
    node_id = fields.get("node.id")
    if node_id is not None:
        node_type = fields.get("node.type", "?")
        node = f"node=#{_clean(node_id)} {_clean(node_type)}"
        title = fields.get("node.title")
        if title and title != node_type:
            node += f' "{_clean(title)}"'
        parts.append(node)
    parts.extend(_details(event, fields))
    return " ".join(parts)


@functools.lru_cache(maxsize=64)
def _local_clock(seconds: int) -> str:
    return time.strftime("%H:%M:%S", time.localtime(seconds))


def _details(event: Event, fields: dict[str, object]) -> list[str]:
    details: list[str] = []
    duration_ms = fields.get("node.duration_ms")
    if duration_ms is None and isinstance(duration_ns := fields.get("event.duration"), int):
        duration_ms = duration_ns / 1e6
    if isinstance(duration_ms, (int, float)):
        details.append(f"{duration_ms:.1f} ms")
    if fields.get("node.cached") is True and duration_ms is None:
        details.append("cached")
    value, total = fields.get("node.progress.value"), fields.get("node.progress.max")
    if value is not None and total is not None:
        details.append(f"{value}/{total}")
    error = fields.get("error.message")
    if error is not None:
        kind = fields.get("error.type")
        details.append("— " + _clean(f"{kind}: {error}" if kind else error, MESSAGE_CHARS))
    elif not event.action.value.startswith(("node.", "job.")):
        # Other events have no fixed layout here: their sentence says what happened.
        details.append(_clean(event.message, MESSAGE_CHARS))
    return details


# C0/C1 control characters (ESC among them): a title or error text from a workflow must not
# move the cursor or recolour the developer's terminal.
_CONTROLS = dict.fromkeys([*range(0x20), *range(0x7F, 0xA0)])


def _clean(value: object, limit: int = MESSAGE_CHARS) -> str:
    """`value` as one line of printable text, cut at `limit` characters."""
    text = " ".join(str(value).split()).translate(_CONTROLS)
    return text if len(text) <= limit else text[:limit] + "…"


def wants_color(stream: IO[str]) -> bool:
    """ANSI colours on a terminal, unless NO_COLOR is set (no-color.org)."""
    if os.environ.get("NO_COLOR"):
        return False
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


class ConsoleSink(QueuedSink):
    """Writes events at `min_level` and above to `stream` (standard error by default).

    Events below `min_level` are skipped on the emitting thread (they are not drops). `color`
    None means: colour when `stream` is a terminal and NO_COLOR is unset.
    """

    def __init__(
        self,
        stream: IO[str] | None = None,
        *,
        min_level: Level = Level.INFO,
        color: bool | None = None,
        capacity: int = 100_000,
        batch_size: int = 1_000,
        flush_interval_s: float = 0.05,
        name: str = "console",
    ) -> None:
        super().__init__(
            name, capacity=capacity, batch_size=batch_size, flush_interval_s=flush_interval_s
        )
        self.stream = stream if stream is not None else sys.stderr
        self.min_level = Level(min_level)
        self.color = wants_color(self.stream) if color is None else color
        self._min_rank = _RANK[self.min_level]

    def offer(self, event: Event) -> bool:
        if _RANK[event.level] < self._min_rank:
            return True  # filtered by choice, not lost
        return super().offer(event)

    def write_batch(self, events: Sequence[Event]) -> None:
        color = self.color
        self.stream.write("".join(format_line(event, color=color) + "\n" for event in events))

    def flush(self) -> None:
        self.stream.flush()
