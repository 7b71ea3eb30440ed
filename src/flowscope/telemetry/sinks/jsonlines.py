"""The JSON-lines sink: one ECS document per line (spec/telemetry.md §1, §3), the source of truth
that shippers tail. The emitting thread only enqueues; the sink's thread encodes and writes, and
rotates the file itself (rename + reopen, never copytruncate)."""

from __future__ import annotations

import contextlib
import json
import math
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any

import orjson

from flowscope.telemetry.document import DocumentBuilder, ServiceInfo
from flowscope.telemetry.events import Action, Event, Level, format_timestamp
from flowscope.telemetry.sinks.queued import QueuedSink
from flowscope.telemetry.sinks.rotation import MiB, RotatingFile

_MAX_DEPTH = 32


def encode_line(document: dict[str, Any]) -> bytes:
    """One document as one UTF-8 JSON line. Never fails: what JSON cannot hold (objects, NaN,
    non-string keys, cycles) is written as its `str()`; a lone surrogate becomes a `\\udcxx`
    escape, so the line is still valid UTF-8 and valid JSON."""
    data = _fast_json(document)
    if data is not None:
        return data + b"\n"
    # Rare, so the slower walk is only paid for documents that need it.
    text = _ENCODER.encode(_plain(document, 0))
    return (text + "\n").encode("utf-8", "backslashreplace")


def _fast_json(value: Any) -> bytes | None:
    """orjson's JSON of `value`, or None when it needs the careful walk: what orjson refuses
    (non-string keys, integers beyond 64 bits, lone surrogates, cycles, deep nesting), and any
    output holding `null`, which may be a NaN or an infinity that orjson writes as null where
    this file and the log store write the number's text ("nan"). Values JSON has no type for
    go to `_text`, as with the standard encoder (datetimes and dataclasses included; orjson
    would write its own forms of them)."""
    try:
        data = orjson.dumps(value, default=_text, option=_ORJSON_OPTIONS)
    except TypeError:  # orjson.JSONEncodeError is a TypeError
        return None
    return None if b"null" in data else data


_ORJSON_OPTIONS = orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS


def _plain(value: Any, depth: int) -> Any:
    """`value` reduced to what JSON holds; anything odd becomes its `str()`."""
    if value is None or isinstance(value, (str, bool, int)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if depth >= _MAX_DEPTH:  # also ends reference cycles
        return _text(value)
    if isinstance(value, dict):
        return {_text(key): _plain(item, depth + 1) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(item, depth + 1) for item in value]
    return _text(value)


def _text(value: Any) -> str:
    if isinstance(value, str):
        return value
    try:
        return str(value)
    except Exception:  # a broken __str__ must not lose the event
        return f"<unprintable {type(value).__name__}>"


# The careful walk's encoder, built once: `json.dumps` with options builds a new one per call.
_ENCODER = json.JSONEncoder(
    ensure_ascii=False, separators=(",", ":"), allow_nan=False, default=_text
)
_HEAD_KEYS = frozenset(("@timestamp", "log.level", "message", "event.action"))
_LEVELS = {level: level.value.encode() for level in Level}
_ACTIONS = {action: action.value.encode() for action in Action}


class LineEncoder:
    """`encode_line(DocumentBuilder(service)(event))`, without building the document: the
    head (time, level, message, action) and the service fields are spliced around the JSON of
    the event's own fields. An event whose fields would replace a head or service field, or
    that needs the careful walk, takes the document path."""

    def __init__(self, service: ServiceInfo | None = None) -> None:
        self._document = DocumentBuilder(service)
        static = (service or ServiceInfo()).fields()
        self._reserved = _HEAD_KEYS | static.keys()
        members = orjson.dumps(static)[1:-1]  # `"service.name":"flowscope",...`
        self._tail = b"," + members + b"}\n" if members else b"}\n"

    def __call__(self, event: Event) -> bytes:
        fields = event.fields
        if fields and not self._reserved.isdisjoint(fields):
            return encode_line(self._document(event))
        encoded = _fast_json(fields) if fields else b"{}"
        try:
            message = orjson.dumps(event.message)  # a string: no NaN to look for
        except TypeError:  # a lone surrogate
            message = None
        if encoded is None or message is None:  # what only the careful walk can write
            return encode_line(self._document(event))
        members = encoded[1:-1]
        return b"".join(
            (
                b'{"@timestamp":"',
                format_timestamp(event.time_ns).encode(),
                b'","log.level":"',
                _LEVELS[event.level],
                b'","message":',
                message,
                b',"event.action":"',
                _ACTIONS[event.action],
                b'",' + members if members else b'"',
                self._tail,
            )
        )


class JsonLinesSink(QueuedSink):
    """Writes events to `path` (rotated), to standard output, or both.

    A batch that cannot be written to the file (disk full, permission, a removed directory) is
    dropped and counted in `dropped`; the next batch reopens the file, so the sink recovers by
    itself when the cause clears. The standard output copy is best effort when a file is set.
    """

    def __init__(
        self,
        path: Path | str | None,
        *,
        stdout: bool = False,
        service: ServiceInfo | None = None,
        max_bytes: int | None = 100 * MiB,
        rotate_every_s: float | None = None,
        keep: int = 10,
        capacity: int = 100_000,
        batch_size: int = 1_000,
        flush_interval_s: float = 0.05,
        name: str = "jsonlines",
    ) -> None:
        if path is None and not stdout:
            raise ValueError("JsonLinesSink needs a file path, stdout=True, or both")
        super().__init__(
            name, capacity=capacity, batch_size=batch_size, flush_interval_s=flush_interval_s
        )
        self.path = Path(path) if path is not None else None
        self.file: RotatingFile | None = None
        if self.path is not None:
            self.file = RotatingFile(
                self.path, max_bytes=max_bytes, rotate_every_s=rotate_every_s, keep=keep
            )
            try:
                # Opened here, so that a bad path fails at start-up rather than in the thread.
                self.file.open()
            except OSError as exc:
                raise ValueError(
                    f"cannot write the JSON lines file {self.path}: {exc.strerror or exc}; "
                    "give a writable file path (its directory is created if missing)"
                ) from exc
        self.stdout_errors = 0
        self._stdout: IO[str] | None = sys.stdout if stdout else None
        self._encode = LineEncoder(service)

    @property
    def rotations(self) -> int:
        return self.file.rotations if self.file is not None else 0

    def write_batch(self, events: Sequence[Event]) -> None:
        encode = self._encode
        lines = [encode(event) for event in events]
        if self.file is not None:
            self.file.write_lines(lines)
        if self._stdout is not None:
            self._write_stdout(lines, len(events))

    def _write_stdout(self, lines: list[bytes], count: int) -> None:
        assert self._stdout is not None
        data = b"".join(lines)
        try:
            buffer = getattr(self._stdout, "buffer", None)
            if buffer is not None:
                self._stdout.flush()  # text already printed goes out first
                buffer.write(data)
            else:  # a text-only stream (e.g. a test's StringIO)
                self._stdout.write(data.decode("utf-8"))
        except (OSError, ValueError):  # closed or broken pipe
            if self.file is None:
                raise  # the only output: the batch is lost, and counted
            self.stdout_errors += count

    def flush(self) -> None:
        if self._stdout is not None:
            self._stdout.flush()

    def close_output(self) -> None:
        if self.file is not None:
            self.file.close()
        if self._stdout is not None:
            with contextlib.suppress(OSError, ValueError):  # closed or broken pipe
                self._stdout.flush()
