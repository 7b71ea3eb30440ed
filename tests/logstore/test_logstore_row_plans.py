"""The plan-based row builder gives the rows of the careful one (rows.build_row) for any
fields, whichever path each event takes, and keeps planning bounded."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from flowscope.logstore.row_plans import RowBuilder
from flowscope.logstore.rows import COLUMNS, EXTRA, build_row, wide_integers
from flowscope.telemetry.ids import uuid7

CACHED = COLUMNS.index("cached")
NAMES = [
    # typed columns
    "event.id",
    "event.outcome",
    "event.sequence",
    "event.duration",
    "job.id",
    "workflow.id",
    "trace.id",
    "node.id",
    "node.type",
    "node.duration_ms",
    "node.cached",
    "error.type",
    "error.message",
    # kept in extra, two of them objects whose keys are data
    "span.id",
    "node.title",
    "node.inputs",
    "node.outputs",
    "telemetry.dropped",
    # the shared context, the head of the document, and anything else
    "service.name",
    "host.name",
    "message",
    "@timestamp",
    "custom",
]
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=8),
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=4), inner, max_size=3)
    ),
    max_leaves=6,
)


def context_ids(found: dict[str, Any]) -> int | None:
    """A stand-in for the store's contexts table: one id per distinct content."""
    return len(json.dumps(found, sort_keys=True, default=str)) if found else None


def comparable(row: Any) -> list[Any]:
    """The row as the store keeps it: wide integers moved to extra, extra as an object,
    the cached flag as 0/1, NaN made comparable."""
    values = list(row)
    moved = wide_integers(values)
    extra = json.loads(values[EXTRA]) if values[EXTRA] else {}
    extra.update(moved)
    values[EXTRA] = {key: repr(value) for key, value in extra.items()} or None
    if values[CACHED] is not None:
        values[CACHED] = int(values[CACHED])
    return [repr(v) if isinstance(v, float) and math.isnan(v) else v for v in values]


STATIC = {"service.name": "flowscope", "host.name": "h1"}


def careful(record: tuple[int, str, str, str, Mapping[str, Any]]) -> list[Any]:
    static = STATIC

    def context_id(found: dict[str, Any]) -> int | None:
        return context_ids({**static, **found})

    return build_row(*record, context_id)


@settings(max_examples=300)
@given(
    st.lists(st.dictionaries(st.sampled_from(NAMES), values, max_size=8), min_size=1, max_size=6),
    st.booleans(),
)
def test_plans_give_the_careful_rows(many_fields: list[dict[str, Any]], with_id: bool) -> None:
    builder = RowBuilder(context_ids, STATIC)
    records = []
    for index, fields in enumerate(many_fields):
        if with_id:
            fields = {"event.id": uuid7(), **fields}
        records.append((1_000 + index, "info", "node.succeeded", "node succeeded", fields))
    # Twice: the second time every shape has its plan (or its refusal) already.
    for _ in range(2):
        built = builder.rows(records)
        assert [comparable(row) for row in built] == [
            comparable(careful(record)) for record in records
        ]


def test_engine_events_take_the_plan_and_match() -> None:
    builder = RowBuilder(context_ids, STATIC)
    fields = {
        "node.id": "4",
        "node.type": "KSampler",
        "node.title": "Sampler",
        "event.outcome": "SUCCESS",
        "event.duration": 12_000_000,
        "node.duration_ms": 12.0,
        "node.cached": False,
        "node.inputs": {"seed": 7, "cfg": 7.5},
        "job.id": "j1",
        "event.sequence": 3,
        "event.id": uuid7(),
    }
    record = (5, "info", "node.succeeded", "node succeeded", fields)
    (row,) = builder.rows([record])
    assert isinstance(row, tuple)  # the plan's row, not the careful path's list
    assert comparable(row) == comparable(careful(record))
    assert row[COLUMNS.index("outcome")] == "success"
    assert json.loads(row[EXTRA]) == {
        "node.title": "Sampler",
        "node.inputs": {"seed": 7, "cfg": 7.5},
    }


def test_planning_is_bounded(monkeypatch: Any) -> None:
    from flowscope.logstore import row_plans

    monkeypatch.setattr(row_plans, "_MAX_PLANS", 3)
    builder = RowBuilder(context_ids)
    records = [
        (1, "info", "worker.started", "m", {"event.id": uuid7(), f"field{i}": i}) for i in range(10)
    ]
    rows = builder.rows(records)
    assert len(rows) == 10
    assert sum(len(by_types) for by_types in builder._plans.values()) == 3
