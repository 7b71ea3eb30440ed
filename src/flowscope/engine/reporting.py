"""The job's voice: builds the job.* and node.* events (telemetry spec §1-2) and emits them.

Kept cheap for the hot path: with no subscriber nothing is built, and each event is one small
object whose expensive parts (timestamps as text, JSON) are left to the sinks.
"""

from __future__ import annotations

import functools
import re
import time
from collections.abc import Mapping, Sequence
from typing import Any

from flowscope.engine.errors import summarize
from flowscope.graph.prompt import NodeSpec, is_link, node_title, unwrap_value
from flowscope.telemetry.bus import EventBus
from flowscope.telemetry.events import Action, Event, Level, Outcome, qualified_name
from flowscope.telemetry.ids import new_span_id, new_trace_id
from flowscope.telemetry.log_inputs import LOG_INPUTS, LogInputs

__all__ = ["LOG_INPUTS", "JobEvents", "LogInputs", "preview_inputs", "summarize_outputs"]

INPUT_STRING_LIMIT = 200
INPUT_PREVIEW_LIMIT = 2048
_SECRET_KEY = re.compile(r"key|token|password|secret", re.IGNORECASE)


@functools.lru_cache(maxsize=4096)
def _looks_secret(name: str) -> bool:
    return _SECRET_KEY.search(name) is not None


def preview_inputs(inputs: Mapping[str, Any], *, full: bool = False) -> dict[str, Any]:
    """`node.inputs`: constants only and secret-looking keys dropped (always); strings cut and
    the whole preview size-capped, unless `full`. Objects appear as short summaries."""
    preview: dict[str, Any] = {}
    budget = INPUT_PREVIEW_LIMIT
    for name, value in inputs.items():
        if is_link(value) or _looks_secret(name):
            continue
        value = unwrap_value(value)  # a list constant travels as {"__value__": [...]}
        if isinstance(value, str):
            if len(value) > INPUT_STRING_LIMIT and not full:
                value = value[:INPUT_STRING_LIMIT] + "…"
        elif not (value is None or isinstance(value, (bool, int, float))):
            value = summarize(value)
        if not full:
            budget -= len(name) + len(str(value))
            if budget < 0:
                preview["_truncated"] = True
                break
        preview[name] = value
    return preview


def summarize_outputs(outputs: Sequence[Sequence[Any]]) -> dict[str, Any]:
    """`node.outputs`: per output slot, a summary of the first item (and the count if several)."""
    summary: dict[str, Any] = {}
    for slot, items in enumerate(outputs):
        if not items:
            summary[str(slot)] = "[]"
        elif len(items) == 1:
            summary[str(slot)] = summarize(items[0])
        else:
            summary[str(slot)] = {"items": len(items), "first": summarize(items[0])}
    return summary


class JobEvents:
    """Emits one job's events with the shared fields and a per-job sequence number.

    Trace context: the job is one trace (`trace.id`, given by the caller, e.g. from a W3C
    `traceparent`, or new) whose root span is the job (`transaction.id`, and `span.id` on job
    events); each node run is a child span (`span.id` on its node events). Tracing sinks build
    their spans from these ids, so logs and traces always agree.
    """

    def __init__(
        self,
        bus: EventBus | None,
        job_id: str,
        workflow_id: str | None,
        user_id: str | None,
        *,
        trace_id: str | None = None,
        log_inputs: LogInputs = "preview",
    ) -> None:
        self._bus = bus
        self.enabled = bus is not None and bus.has_subscribers
        self.sequence = 0
        self.log_inputs = log_inputs
        self.trace_id = trace_id or new_trace_id()
        self.job_span_id = new_span_id()
        self._node_spans: dict[str, str] = {}
        self._base: dict[str, Any] = {
            "job.id": job_id,
            "trace.id": self.trace_id,
            "transaction.id": self.job_span_id,
        }
        if workflow_id is not None:
            self._base["workflow.id"] = workflow_id
        if user_id is not None:
            self._base["user.id"] = user_id

    def node_span_id(self, node_id: str) -> str:
        span = self._node_spans.get(node_id)
        if span is None:
            span = self._node_spans[node_id] = new_span_id()
        return span

    def _inputs(self, node: NodeSpec) -> dict[str, Any] | None:
        if self.log_inputs == "none":
            return None
        return preview_inputs(node.get("inputs", {}), full=self.log_inputs == "full")

    def emit(
        self,
        action: Action,
        message: str,
        fields: dict[str, Any],
        *,
        level: Level = Level.INFO,
        detail: dict[str, Any] | None = None,
    ) -> None:
        if not self.enabled:
            return
        assert self._bus is not None
        self.sequence += 1
        fields.update(self._base)
        fields["event.sequence"] = self.sequence
        if "span.id" not in fields:
            fields["span.id"] = self.job_span_id
        self._bus.emit(Event(action, message, time.time_ns(), level, fields, detail))

    # -- job events ---------------------------------------------------------------------
    def job_started(self, node_count: int, cached_nodes: list[str]) -> None:
        self.emit(
            Action.JOB_STARTED,
            "job started",
            {"job.nodes_total": node_count, "job.nodes_cached": len(cached_nodes)},
            detail={"cached_nodes": cached_nodes},
        )

    def job_finished(self, action: Action, duration_ns: int, detail: dict[str, Any]) -> None:
        outcome = Outcome.SUCCESS if action is Action.JOB_SUCCEEDED else Outcome.FAILURE
        level = Level.ERROR if action is Action.JOB_FAILED else Level.INFO
        fields: dict[str, Any] = {"event.outcome": outcome.value, "event.duration": duration_ns}
        error = detail.get("error")
        if action is Action.JOB_FAILED and error is not None:
            fields["error.type"] = error["exception_type"]
            fields["error.message"] = error["exception_message"]
            fields["node.id"] = error["node_id"]
            fields["node.type"] = error["node_type"]
        message = {
            Action.JOB_SUCCEEDED: "job succeeded",
            Action.JOB_FAILED: "job failed",
            Action.JOB_INTERRUPTED: "job interrupted",
        }.get(action, action.value)
        self.emit(action, message, fields, level=level, detail=detail)

    # -- node events --------------------------------------------------------------------
    def node_fields(self, node_id: str, node: NodeSpec) -> dict[str, Any]:
        fields: dict[str, Any] = {
            "node.id": node_id,
            "node.type": node["class_type"],
            "span.id": self.node_span_id(node_id),
        }
        if "_meta" in node:
            title = node_title(node)
            if title is not None:
                fields["node.title"] = title
        return fields

    def node_started(self, node_id: str, node: NodeSpec, meta: dict[str, Any]) -> None:
        if self.enabled:
            self.emit(
                Action.NODE_STARTED, "node started", self.node_fields(node_id, node), detail=meta
            )

    def node_succeeded(
        self,
        node_id: str,
        node: NodeSpec,
        duration_ns: int,
        outputs: Sequence[Sequence[Any]],
        ui: dict[str, Any] | None,
        meta: dict[str, Any],
        memory: dict[str, int],
    ) -> None:
        if not self.enabled:
            return
        fields = self.node_fields(node_id, node)
        fields["event.outcome"] = Outcome.SUCCESS.value
        fields["event.duration"] = duration_ns
        fields["node.duration_ms"] = duration_ns / 1e6
        fields["node.cached"] = False
        if (inputs := self._inputs(node)) is not None:
            fields["node.inputs"] = inputs
        if outputs:
            fields["node.outputs"] = summarize_outputs(outputs)
        fields.update(memory)
        self.emit(Action.NODE_SUCCEEDED, "node succeeded", fields, detail={**meta, "ui": ui})

    def node_cached(
        self, node_id: str, node: NodeSpec, ui: dict[str, Any] | None, meta: dict[str, Any]
    ) -> None:
        if not self.enabled:
            return
        fields = self.node_fields(node_id, node)
        fields["event.outcome"] = "success"
        fields["node.cached"] = True
        meta["ui"] = ui  # meta is built per event, so it can carry the UI without a copy
        self.emit(Action.NODE_CACHED, "node served from cache", fields, detail=meta)

    def node_failed(
        self,
        node_id: str,
        node: NodeSpec,
        duration_ns: int,
        exc: BaseException,
        payload: dict[str, Any],
        oom: bool,
    ) -> None:
        if not self.enabled:
            return
        fields = self.node_fields(node_id, node)
        fields["event.outcome"] = Outcome.FAILURE.value
        fields["event.duration"] = duration_ns
        fields["node.duration_ms"] = duration_ns / 1e6
        fields["node.cached"] = False
        if (inputs := self._inputs(node)) is not None:
            fields["node.inputs"] = inputs
        fields["error.type"] = qualified_name(type(exc))
        fields["error.message"] = payload["exception_message"]
        fields["error.stack_trace"] = "".join(payload["traceback"])
        if oom:
            fields["error.code"] = "out_of_memory"
        self.emit(Action.NODE_FAILED, "node failed", fields, level=Level.ERROR, detail=payload)

    def node_blocked(
        self, node_id: str, node: NodeSpec, message: str | None, meta: dict[str, Any]
    ) -> None:
        if not self.enabled:
            return
        fields = self.node_fields(node_id, node)
        fields["event.outcome"] = Outcome.UNKNOWN.value
        if message is not None:
            fields["error.message"] = message
            fields["error.type"] = "ExecutionBlocked"
        level = Level.WARN if message is not None else Level.INFO
        text = f"node blocked: {message}" if message else "node blocked"
        self.emit(
            Action.NODE_BLOCKED, text, fields, level=level, detail={**meta, "message": message}
        )

    def node_expanded(self, node_id: str, node: NodeSpec, new_nodes: list[str]) -> None:
        if not self.enabled:
            return
        fields = self.node_fields(node_id, node)
        fields["node.expanded_count"] = len(new_nodes)
        self.emit(Action.NODE_EXPANDED, "node expanded", fields, detail={"nodes": new_nodes})

    def node_progress(
        self,
        node_id: str,
        node: NodeSpec,
        value: float,
        total: float,
        preview: Any,
        meta: dict[str, Any],
    ) -> None:
        if not self.enabled:
            return
        fields = self.node_fields(node_id, node)
        fields["node.progress.value"] = value
        fields["node.progress.max"] = total
        self.emit(
            Action.NODE_PROGRESS,
            "node progress",
            fields,
            level=Level.DEBUG,
            detail={**meta, "preview": preview},
        )
