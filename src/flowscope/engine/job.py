"""What the executor is asked to run and what it reports back."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any, Literal

from flowscope.graph.prompt import Prompt

JobStatus = Literal["success", "error", "interrupted"]
NodeStatus = Literal["succeeded", "cached", "failed", "blocked"]


@dataclass
class JobRequest:
    # A validated prompt (`ValidationResult.prompt`) and the output nodes to run.
    prompt: Prompt
    outputs: list[str]
    job_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    # ComfyUI's extra_data: client_id, extra_pnginfo, auth tokens for API nodes.
    extra_data: dict[str, Any] = field(default_factory=dict)
    workflow_id: str | None = None
    user_id: str | None = None
    # The W3C trace id to join (32 hex digits), e.g. from the submitting request's traceparent.
    trace_id: str | None = None


@dataclass(slots=True)
class NodeRecord:
    """One node's run in a job, for timing tables and history."""

    node_id: str
    class_type: str
    title: str | None
    status: NodeStatus
    duration_ms: float = 0.0
    memory_peak_bytes: int | None = None


@dataclass
class JobResult:
    job_id: str
    status: JobStatus
    # ComfyUI history `outputs`: node id -> the node's merged `ui` dict.
    outputs: dict[str, dict[str, Any]] = field(default_factory=dict)
    # ComfyUI history `meta`: node id -> {node_id, display_node, parent_node, real_node_id}.
    meta: dict[str, dict[str, Any]] = field(default_factory=dict)
    nodes: list[NodeRecord] = field(default_factory=list)
    cached_nodes: list[str] = field(default_factory=list)
    # The `execution_error` / `execution_interrupted` payload when the job did not succeed.
    error: dict[str, Any] | None = None
    duration_ms: float = 0.0

    @property
    def executed(self) -> list[str]:
        return [record.node_id for record in self.nodes if record.status != "failed"]
