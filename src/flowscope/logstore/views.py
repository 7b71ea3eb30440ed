"""The canned views: one job's timeline (a waterfall of its nodes) and per-node-type statistics
over a time window (count, error rate, cache-hit rate, mean / p50 / p95 / max duration)."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

from flowscope.logstore.rows import FROM_EVENTS, SELECT_COLUMNS, to_document
from flowscope.logstore.schema import NODE_RESULTS
from flowscope.logstore.store import LogStore, TimeBound, bound_ns

_TIME = 0  # index of time_ns in a SELECT_COLUMNS row
_JOB_END = {
    "job.succeeded": "succeeded",
    "job.failed": "failed",
    "job.interrupted": "interrupted",
    "job.cancelled": "cancelled",
}
_NODE_END = {
    "node.succeeded": "succeeded",
    "node.failed": "failed",
    "node.cached": "cached",
    "node.blocked": "blocked",
}


class AmbiguousJobError(LookupError):
    """A job id prefix that matches several jobs."""


# -- a job's timeline --------------------------------------------------------------------
@dataclass(frozen=True)
class TimelineEvent:
    offset_ns: int  # from the job's start (its job.started event, else its first event)
    document: dict[str, Any]

    @property
    def action(self) -> str | None:
        action = self.document.get("event.action")
        return action if isinstance(action, str) else None


@dataclass(frozen=True)
class NodeSpan:
    """One node execution: a bar of the waterfall."""

    node_id: str
    node_type: str | None
    title: str | None
    status: str  # succeeded | failed | cached | blocked | unfinished
    offset_ns: int
    duration_ns: int
    error_type: str | None = None
    error_message: str | None = None


@dataclass(frozen=True)
class JobTimeline:
    job_id: str
    status: str  # succeeded | failed | interrupted | cancelled | running
    start_ns: int
    duration_ns: int
    workflow_id: str | None
    user_id: str | None
    trace_id: str | None
    spans: tuple[NodeSpan, ...]
    events: tuple[TimelineEvent, ...]

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["events"] = [{"offset_ns": event.offset_ns, **event.document} for event in self.events]
        return data


def resolve_job_id(store: LogStore, text: str) -> str | None:
    """The job id `text` names: itself, or the one job whose id starts with it."""
    if store.fetch("SELECT 1 FROM events WHERE job_id = ? LIMIT 1", (text,)):
        return text
    if not text:
        return None
    pattern = "".join(f"[{ch}]" if ch in "*?[" else ch for ch in text) + "*"
    found = [
        row[0]
        for row in store.fetch(
            "SELECT DISTINCT job_id FROM events WHERE job_id GLOB ? LIMIT 6", (pattern,)
        )
    ]
    if len(found) > 1:
        listed = ", ".join(found[:5]) + (", ..." if len(found) > 5 else "")
        raise AmbiguousJobError(f"{text!r} starts several job ids ({listed}); give more of it")
    return found[0] if found else None


def job_timeline(store: LogStore, job_id: str) -> JobTimeline | None:
    """All of a job's events in sequence, with their offsets, and a span per node execution;
    None when the store has no event of that job."""
    rows = store.fetch(
        f"SELECT {SELECT_COLUMNS} FROM {FROM_EVENTS} WHERE e.job_id = ? "
        "ORDER BY e.sequence NULLS LAST, e.time_ns, e.id",
        (job_id,),
    )
    if not rows:
        return None
    documents = [(row[_TIME], to_document(row)) for row in rows]
    started = [t for t, doc in documents if doc.get("event.action") == "job.started"]
    start = started[0] if started else min(t for t, _ in documents)
    last = max(t for t, _ in documents)
    status, duration = "running", last - start
    for time_ns, doc in documents:
        ending = _JOB_END.get(str(doc.get("event.action")))
        if ending is not None:
            status = ending
            measured = doc.get("event.duration")
            duration = measured if isinstance(measured, int) else time_ns - start
    return JobTimeline(
        job_id=job_id,
        status=status,
        start_ns=start,
        duration_ns=max(duration, 0),
        workflow_id=_first(documents, "workflow.id"),
        user_id=_first(documents, "user.id"),
        trace_id=_first(documents, "trace.id"),
        spans=_spans(documents, start, start + max(duration, 0)),
        events=tuple(TimelineEvent(t - start, doc) for t, doc in documents),
    )


def _first(documents: list[tuple[int, dict[str, Any]]], key: str) -> str | None:
    for _, doc in documents:
        value = doc.get(key)
        if isinstance(value, str):
            return value
    return None


def _spans(
    documents: list[tuple[int, dict[str, Any]]], start: int, end: int
) -> tuple[NodeSpan, ...]:
    """Pair each node.started with the node's next ending event; an ending without a start
    (a cached node) is a zero-length span at its time, a start without an end is unfinished."""
    open_starts: dict[str, tuple[int, dict[str, Any]]] = {}
    spans: list[tuple[int, NodeSpan]] = []
    for order, (time_ns, doc) in enumerate(documents):
        action = str(doc.get("event.action"))
        node_id = doc.get("node.id")
        if not isinstance(node_id, str) or not action.startswith("node."):
            continue
        if action == "node.started":
            open_starts[node_id] = (time_ns, doc)
            continue
        status = _NODE_END.get(action)
        if status is None:
            continue
        opened = open_starts.pop(node_id, None)
        measured = doc.get("event.duration")
        if isinstance(measured, int):
            duration = measured
        elif opened is not None:
            duration = time_ns - opened[0]
        else:
            duration = 0
        begin = opened[0] if opened is not None else time_ns - duration
        spans.append((order, _span(node_id, doc, status, begin - start, duration)))
    for node_id, (time_ns, doc) in open_starts.items():
        spans.append(
            (len(documents), _span(node_id, doc, "unfinished", time_ns - start, end - time_ns))
        )
    spans.sort(key=lambda item: (item[1].offset_ns, item[0]))
    return tuple(span for _, span in spans)


def _span(node_id: str, doc: dict[str, Any], status: str, offset: int, duration: int) -> NodeSpan:
    def text(key: str) -> str | None:
        value = doc.get(key)
        return value if isinstance(value, str) else None

    return NodeSpan(
        node_id=node_id,
        node_type=text("node.type"),
        title=text("node.title"),
        status=status,
        offset_ns=offset,
        duration_ns=max(duration, 0),
        error_type=text("error.type"),
        error_message=text("error.message"),
    )


# -- per-node-type statistics ------------------------------------------------------------
@dataclass(frozen=True)
class NodeTypeStats:
    """One node type over a window. `count` is every ending (run or cached); durations are
    over the runs (succeeded or failed), in milliseconds; percentiles interpolate linearly
    between the closest ranks (numpy's default, `statistics.quantiles(method="inclusive")`)."""

    node_type: str
    count: int
    failed: int
    cached: int
    runs: int
    error_rate: float
    cache_hit_rate: float
    total_ms: float
    mean_ms: float | None
    p50_ms: float | None
    p95_ms: float | None
    max_ms: float | None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def node_stats(
    store: LogStore, since: TimeBound | None = None, until: TimeBound | None = None
) -> list[NodeTypeStats]:
    """Per node type, busiest (most total run time) first. Uses the covering index over node
    results: the totals are one pass over it, each percentile a seek by rank."""
    window, params = _window(bound_ns(since), bound_ns(until))
    totals = store.fetch(
        "SELECT node_type, count(*), sum(action = 'node.failed'), sum(action = 'node.cached'), "
        "count(duration_ns), sum(duration_ns), max(duration_ns) "
        f"FROM events WHERE {NODE_RESULTS} AND node_type IS NOT NULL{window} "
        "GROUP BY node_type",
        params,
    )
    stats = []
    for node_type, count, failed, cached, runs, total, longest in totals:
        p50 = _percentile(store, node_type, runs, 0.50, window, params)
        p95 = _percentile(store, node_type, runs, 0.95, window, params)
        stats.append(
            NodeTypeStats(
                node_type=node_type,
                count=count,
                failed=failed,
                cached=cached,
                runs=runs,
                error_rate=failed / count,
                cache_hit_rate=cached / count,
                total_ms=(total or 0) / 1e6,
                mean_ms=total / runs / 1e6 if runs else None,
                p50_ms=None if p50 is None else p50 / 1e6,
                p95_ms=None if p95 is None else p95 / 1e6,
                max_ms=None if longest is None else longest / 1e6,
            )
        )
    stats.sort(key=lambda s: (-s.total_ms, s.node_type))
    return stats


def _window(since_ns: int | None, until_ns: int | None) -> tuple[str, tuple[int, ...]]:
    clauses, params = "", []
    if since_ns is not None:
        clauses += " AND time_ns >= ?"
        params.append(since_ns)
    if until_ns is not None:
        clauses += " AND time_ns < ?"
        params.append(until_ns)
    return clauses, tuple(params)


def _percentile(
    store: LogStore, node_type: str, runs: int, q: float, window: str, params: tuple[int, ...]
) -> float | None:
    """The q-quantile of the type's run durations: the two values around rank q·(n-1), read
    in index order (no sort, no fetching every duration)."""
    if runs == 0:
        return None
    position = q * (runs - 1)
    lower = math.floor(position)
    values = [
        row[0]
        for row in store.fetch(
            f"SELECT duration_ns FROM events WHERE {NODE_RESULTS} AND node_type = ? "
            f"AND duration_ns IS NOT NULL{window} ORDER BY duration_ns LIMIT 2 OFFSET ?",
            (node_type, *params, lower),
        )
    ]
    if not values:
        return None
    upper = values[1] if len(values) > 1 else values[0]
    return float(values[0] + (upper - values[0]) * (position - lower))
