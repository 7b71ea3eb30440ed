"""Rows for events straight from the bus, built from a plan made once per *shape* (the event's
field names and their value types). Events come in a handful of shapes, so the per-field
routing of rows.py is decided once per shape and each event is then taken apart with C-level
item getters: the same rows as `rows.build_row`, for about two thirds of its cost.

Whatever a plan does not cover (service/host fields on the event, nested objects, a missing
`event.id`, a wrongly typed hot field, a non-finite duration...) goes through `build_row`.
"""

from __future__ import annotations

import json
import math
import operator
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from flowscope.logstore.fields import COLUMN_FIELDS, CONTEXT_PREFIXES, OBJECT_FIELDS, Kind
from flowscope.logstore.rows import COLUMNS, build_row

# One event as the log store takes it: (time_ns, log.level, event.action, message, fields).
Record = tuple[int, str, str, str, Mapping[str, Any] | None]

_NoneType = type(None)
# The value types each kind of typed column takes as is. Integers are not range-checked here:
# one SQLite cannot bind (beyond 64 bits) is moved to `extra` when the insert fails on it
# (store.insert_rows), where build_row would have put it.
_COLUMN_TYPES: dict[Kind, tuple[type, ...]] = {
    Kind.LONG: (int,),
    Kind.DATE: (int,),
    Kind.FLOAT: (int, float),
    Kind.BOOLEAN: (bool,),
}
_TEXT_TYPES: tuple[type, ...] = (str,)
_HEAD = ("@timestamp", "message", "log.level", "event.action")
# ECS name -> (column, kind) for the typed columns an event's fields fill.
_COLUMN_OF: dict[str, tuple[str, Kind]] = {
    field.name: (field.column, field.kind) for field in COLUMN_FIELDS if field.name not in _HEAD
}
# Positions in the `fixed` tuple that precedes an event's column values (see Plan.row).
_FIXED = ("time_ns", "level", "action", "message", "extra", "context_id", "outcome", None)
_NONE_SLOT = _FIXED.index(None)
_MAX_PLANS = 4_096

# As rows.dumps, less the circular-reference bookkeeping (a third of the cost): a cycle ends
# in RecursionError instead, and takes the careful path.
_ENCODER = json.JSONEncoder(
    ensure_ascii=False, separators=(",", ":"), allow_nan=False, default=str, check_circular=False
)


def _getter(keys: tuple[str, ...]) -> Callable[[Mapping[str, Any]], tuple[Any, ...]]:
    """A C-level function returning the values of `keys` as a tuple (even for one key)."""
    if len(keys) == 1:
        (key,) = keys
        return lambda fields: (fields[key],)
    return operator.itemgetter(*keys)


class Plan:
    """How events of one shape become rows."""

    def __init__(self, names: tuple[str, ...], types: tuple[type, ...]) -> None:
        columns: list[str] = []
        extras: list[str] = []
        self.finite_at: int | None = None  # the float column's position among the values
        self.has_outcome = False
        for name, kind in zip(names, types, strict=True):
            slot = _COLUMN_OF.get(name)
            if kind is _NoneType:
                continue  # a None value is stored nowhere (as rows.build_row does)
            if slot is not None:
                if name == "event.outcome":
                    self.has_outcome = True  # lower-cased apart: the `outcome` slot of `fixed`
                    continue
                if kind is float and slot[1] is Kind.FLOAT:
                    self.finite_at = len(columns)
                columns.append(name)
            else:
                extras.append(name)
        self.columns = _getter(tuple(columns)) if columns else None
        self.extra_names = tuple(extras)
        self.extras = _getter(self.extra_names) if extras else None
        value_at = {_COLUMN_OF[name][0]: len(_FIXED) + i for i, name in enumerate(columns)}
        fixed_at = {name: i for i, name in enumerate(_FIXED) if name is not None}
        self.layout = operator.itemgetter(
            *(fixed_at.get(column, value_at.get(column, _NONE_SLOT)) for column in COLUMNS)
        )

    @staticmethod
    def covers(names: tuple[str, ...], types: tuple[type, ...]) -> bool:
        """Whether a plan gives the same row as `build_row` for every event of this shape."""
        if "event.id" not in names or types[names.index("event.id")] is not str:
            return False  # no id: build_row derives one from the content
        for name, kind in zip(names, types, strict=True):
            if name.startswith(CONTEXT_PREFIXES):
                return False  # context fields on the event itself: merged with the static ones
            slot = _COLUMN_OF.get(name)
            if slot is not None:
                if kind is not _NoneType and kind not in _COLUMN_TYPES.get(slot[1], _TEXT_TYPES):
                    return False  # a hot field of another type: build_row keeps it in extra
            elif kind is dict and name not in OBJECT_FIELDS:
                return False  # a nested object: build_row flattens it
        return True

    def row(
        self,
        time_ns: int,
        level: str,
        action: str,
        message: str,
        fields: Mapping[str, Any],
        context_id: int | None,
    ) -> tuple[Any, ...] | None:
        """The row, or None when this event's values need the careful path after all."""
        values = self.columns(fields) if self.columns is not None else ()
        if self.finite_at is not None and not math.isfinite(values[self.finite_at]):
            return None
        extra = None
        if self.extras is not None:
            try:
                extra = _ENCODER.encode(
                    dict(zip(self.extra_names, self.extras(fields), strict=True))
                )
            except (ValueError, RecursionError):  # NaN (dumps() writes a string), a cycle
                return None
        outcome = fields["event.outcome"].lower() if self.has_outcome else None
        fixed = (time_ns, level.lower(), action.lower(), message, extra, context_id, outcome, None)
        row: tuple[Any, ...] = self.layout(fixed + values)
        return row


class RowBuilder:
    """Builds `events` rows for records; `context_id` maps service/host fields to their id,
    `static` are the service/host fields every record shares."""

    def __init__(
        self,
        context_id: Callable[[dict[str, Any]], int | None],
        static: Mapping[str, Any] | None = None,
    ) -> None:
        self._static = dict(static or {})
        self._context_id = context_id
        self._static_id = context_id(self._static)
        # Field names -> value types -> plan (None: the careful path). Two levels, because
        # hashing the names alone is cheaper, and a shape's types seldom vary.
        self._plans: dict[tuple[str, ...], dict[tuple[type, ...], Plan | None]] = {}
        self._count = 0

    def rows(self, records: Iterable[Record]) -> list[tuple[Any, ...] | list[Any]]:
        plans = self._plans
        static_id = self._static_id
        built: list[tuple[Any, ...] | list[Any]] = []
        append = built.append
        for time_ns, level, action, message, fields in records:
            if fields is None:
                fields = {}
            names = tuple(fields)
            types = tuple(map(type, fields.values()))
            try:
                plan = plans[names][types]
            except KeyError:  # a new shape
                plan = self._plan(names, types)
            row = None
            if plan is not None and type(message) is str:
                row = plan.row(time_ns, level, action, message, fields, static_id)
            append(
                row if row is not None else self.careful(time_ns, level, action, message, fields)
            )
        return built

    def careful(
        self, time_ns: int, level: str, action: str, message: str, fields: Mapping[str, Any]
    ) -> list[Any]:
        """The row by rows.build_row: every field checked one by one."""
        return build_row(time_ns, level, action, message, fields, self._event_context_id)

    def _event_context_id(self, found: dict[str, Any]) -> int | None:
        return self._context_id({**self._static, **found}) if found else self._static_id

    def _plan(self, names: tuple[str, ...], types: tuple[type, ...]) -> Plan | None:
        plan = Plan(names, types) if Plan.covers(names, types) else None
        if self._count < _MAX_PLANS:  # bounded: unusual producers may invent many shapes
            self._count += 1
            self._plans.setdefault(names, {})[types] = plan
        return plan
