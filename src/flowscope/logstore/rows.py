"""How an ECS document becomes an `events` row, and a row becomes the document again.

Hot fields go to their typed columns when their value has the column's type; anything else
(including a hot field with an unexpected type, so nothing is lost) stays in the `extra` JSON.
Nested objects are flattened to dotted keys, as the JSON-lines files write them, except the
objects whose keys are data (`node.inputs`, `node.outputs`).
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable, Mapping
from typing import Any

from flowscope.logstore.dates import parse_timestamp
from flowscope.logstore.fields import (
    COLUMN_FIELDS,
    CONTEXT_PREFIXES,
    OBJECT_FIELDS,
    Kind,
)
from flowscope.telemetry.events import format_timestamp

# The columns a row is made of, in INSERT order.
COLUMNS: tuple[str, ...] = (
    "time_ns",
    "level",
    "action",
    "outcome",
    "event_id",
    "sequence",
    "duration_ns",
    "job_id",
    "workflow_id",
    "user_id",
    "trace_id",
    "node_id",
    "node_type",
    "duration_ms",
    "cached",
    "message",
    "error_type",
    "error_message",
    "context_id",
    "extra",
)
INSERT_SQL = (
    f"INSERT OR IGNORE INTO events ({', '.join(COLUMNS)}) "
    f"VALUES ({', '.join('?' for _ in COLUMNS)})"
)
# What queries select: the row's columns (aliased `e`) and its context's JSON (`c`).
SELECT_COLUMNS = ", ".join(f"e.{column}" for column in COLUMNS) + ", c.doc"
CONTEXT_JOIN = "LEFT JOIN contexts AS c ON c.id = e.context_id"
FROM_EVENTS = f"events AS e {CONTEXT_JOIN}"

_INDEX = {column: index for index, column in enumerate(COLUMNS)}
EXTRA = _INDEX["extra"]
_INT64 = (-(2**63), 2**63 - 1)


class DocumentError(ValueError):
    """A document that cannot be stored; the message says which field and why."""


def _accepts(kind: Kind) -> Callable[[Any], bool]:
    if kind in (Kind.LONG, Kind.DATE):
        return lambda v: type(v) is int and _INT64[0] <= v <= _INT64[1]
    if kind is Kind.FLOAT:
        # An int SQLite cannot bind (beyond 64 bits) stays in extra, as for LONG columns.
        return lambda v: (
            (type(v) is float and math.isfinite(v))
            or (type(v) is int and _INT64[0] <= v <= _INT64[1])
        )
    if kind is Kind.BOOLEAN:
        return lambda v: type(v) is bool
    return lambda v: type(v) is str


# ECS name -> (column index, type check, lower-case it?) for the typed columns a document fills.
_SLOTS: dict[str, tuple[int, Callable[[Any], bool], bool]] = {
    field.name: (_INDEX[field.column], _accepts(field.kind), field.kind is Kind.LOWER_KEYWORD)
    for field in COLUMN_FIELDS
    if field.name not in ("@timestamp", "message", "log.level", "event.action")
}
# Typed columns -> ECS names, for rebuilding documents (timestamp handled apart).
_NAMES: tuple[tuple[int, str], ...] = tuple(
    (_INDEX[field.column], field.name) for field in COLUMN_FIELDS if field.name != "@timestamp"
)
_CACHED = _INDEX["cached"]
_FIRST_KEYS = ("log.level", "message", "event.action")


# Where each field name goes, decided once per name: a typed column's slot, or the context
# (service.*, host.*), or the `extra` JSON. Bounded: unusual producers may invent many names.
_CONTEXT_ROUTE = (-1, None, False)
_EXTRA_ROUTE = (-2, None, False)
_ROUTES: dict[str, tuple[int, Callable[[Any], bool] | None, bool]] = {}
_MAX_ROUTES = 10_000


def _route(key: str) -> tuple[int, Callable[[Any], bool] | None, bool]:
    route = _ROUTES.get(key)
    if route is None:
        slot = _SLOTS.get(key)
        if slot is not None:
            route = slot
        elif key.startswith(CONTEXT_PREFIXES):
            route = _CONTEXT_ROUTE
        else:
            route = _EXTRA_ROUTE
        if len(_ROUTES) < _MAX_ROUTES:
            _ROUTES[key] = route
    return route


def _has_nested(fields: Mapping[str, Any]) -> bool:
    return any(type(value) is dict and key not in OBJECT_FIELDS for key, value in fields.items())


def flatten(fields: Mapping[str, Any]) -> dict[str, Any]:
    """Dotted keys all the way down, except below the data-keyed objects (node.inputs...)."""
    if not any(type(v) is dict and k not in OBJECT_FIELDS for k, v in fields.items()):
        return dict(fields)
    flat: dict[str, Any] = {}
    pending: list[tuple[str, Mapping[str, Any]]] = [("", fields)]
    while pending:
        prefix, mapping = pending.pop()
        for key, value in mapping.items():
            name = f"{prefix}{key}"
            if type(value) is dict and value and name not in OBJECT_FIELDS:
                pending.append((name + ".", value))
            else:
                flat[name] = value
    return flat


def build_row(
    time_ns: int,
    level: str | None,
    action: str | None,
    message: str | None,
    fields: Mapping[str, Any],
    context_id: Callable[[dict[str, Any]], int | None],
) -> list[Any]:
    """The row for one event. `fields` are its ECS fields (dotted keys); `context_id` maps the
    service/host fields found (possibly none) to a `contexts` id."""
    row: list[Any] = [None] * len(COLUMNS)
    row[0] = time_ns
    row[1] = level.lower() if isinstance(level, str) else None
    row[2] = action.lower() if isinstance(action, str) else None
    row[_INDEX["message"]] = message if isinstance(message, str) else None
    extra: dict[str, Any] = {}
    context: dict[str, Any] = {}
    # Events from the bus are flat already (dotted keys): skip the copy that flatten() makes.
    items = flatten(fields).items() if _has_nested(fields) else fields.items()
    for key, value in items:
        index, accepts, lower = _ROUTES.get(key) or _route(key)
        if accepts is not None and accepts(value):
            row[index] = value.lower() if lower else value
        elif index == _CONTEXT_ROUTE[0]:
            context[key] = value
        elif value is not None:
            extra[key] = value
    if row[_CACHED] is not None:
        row[_CACHED] = int(row[_CACHED])
    if row[_INDEX["event_id"]] is None:
        # Re-importing a file without event ids must not duplicate it: derive one from content.
        digest = hashlib.sha256(
            dumps({**fields, "@t": time_ns, "@l": level, "@a": action, "@m": message}).encode()
        ).hexdigest()
        row[_INDEX["event_id"]] = f"sha256-{digest[:32]}"
    row[_INDEX["context_id"]] = context_id(context)
    row[_INDEX["extra"]] = dumps(extra) if extra else None
    return row


def wide_integers(row: list[Any]) -> dict[str, Any]:
    """Take the integers SQLite cannot bind (beyond 64 bits) out of the row's typed columns;
    returns them by ECS name, for `extra`."""
    moved: dict[str, Any] = {}
    for index, name in _NAMES:
        value = row[index]
        if type(value) is int and not _INT64[0] <= value <= _INT64[1]:
            moved[name] = value
            row[index] = None
    return moved


def document_row(
    document: Mapping[str, Any], context_id: Callable[[dict[str, Any]], int | None]
) -> list[Any]:
    """The row for a stored ECS document (a JSON-lines record); raises DocumentError."""
    if not isinstance(document, Mapping):
        raise DocumentError(f"expected a JSON object, found {type(document).__name__}")
    fields = flatten(document)
    stamp = fields.pop("@timestamp", None)
    if not isinstance(stamp, str):
        raise DocumentError("missing @timestamp (an ISO 8601 time such as 2026-11-23T09:30:00Z)")
    try:
        time_ns = parse_timestamp(stamp)
    except (OverflowError, ValueError):
        raise DocumentError(f"@timestamp {stamp!r} is not an ISO 8601 time") from None
    level = fields.pop("log.level", None)
    action = fields.pop("event.action", None)
    message = fields.pop("message", None)
    for name, value in (("log.level", level), ("event.action", action), ("message", message)):
        if value is not None and not isinstance(value, str):
            fields[name] = value  # kept, in extra, rather than lost
    return build_row(time_ns, level, action, message, fields, context_id)


def to_document(values: tuple[Any, ...]) -> dict[str, Any]:
    """The ECS document of a row selected with SELECT_COLUMNS (the context's JSON last)."""
    document: dict[str, Any] = {"@timestamp": format_timestamp(values[0])}
    for index, name in _NAMES:
        value = values[index]
        if value is not None:
            document[name] = bool(value) if index == _CACHED else value
    ordered = {"@timestamp": document.pop("@timestamp")}
    for key in _FIRST_KEYS:
        if key in document:
            ordered[key] = document.pop(key)
    ordered.update(document)
    context_doc = values[len(COLUMNS)]
    if context_doc:
        ordered.update(json.loads(context_doc))
    extra = values[_INDEX["extra"]]
    if extra:
        ordered.update(json.loads(extra))
    return ordered


def dumps(value: Any) -> str:
    """Compact JSON that SQLite's JSON functions can read: non-finite floats become strings,
    objects JSON cannot hold become their `str()`."""
    try:
        return json.dumps(
            value, separators=(",", ":"), ensure_ascii=False, allow_nan=False, default=str
        )
    except ValueError:
        return json.dumps(_finite(value), separators=(",", ":"), ensure_ascii=False, default=str)


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, Mapping):
        return {str(k): _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value
