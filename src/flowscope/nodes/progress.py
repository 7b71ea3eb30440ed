"""The progress and interrupt API that node code calls while it runs.

The engine installs a `NodeRunContext` around every node call; `ProgressBar` and
`check_interrupted()` find it through a context variable, so node code needs no handle on the
engine (async nodes inherit the variable through their task's context).
"""

from __future__ import annotations

from contextvars import ContextVar
from typing import Any, Protocol


class NodeRunContext(Protocol):
    """What the engine offers to the node that is running now."""

    node_id: str

    def report_progress(
        self, value: float, total: float, preview: Any | None = None, node_id: str | None = None
    ) -> None:
        """Record progress; raises `ExecutionInterrupted` when the job was interrupted."""

    def check_interrupted(self) -> None:
        """Raise `ExecutionInterrupted` if the job was interrupted."""

    def next_graph_prefix(self) -> str:
        """A fresh, deterministic id prefix for a GraphBuilder made during this call."""


class ExecutionInterrupted(Exception):  # noqa: N818 - the name users know from ComfyUI's message
    """The job was interrupted by a user; raised at the next interrupt check."""


current_node: ContextVar[NodeRunContext | None] = ContextVar("flowscope_current_node", default=None)


def check_interrupted() -> None:
    """Raise `ExecutionInterrupted` if the running job was interrupted (no-op outside a job)."""
    context = current_node.get()
    if context is not None:
        context.check_interrupted()


class ProgressBar:
    """Progress of the running node, e.g. sampler steps; shaped like ComfyUI's `ProgressBar`.

    Every update is also an interrupt check, so long loops stop promptly. Updates are throttled
    by the engine; the final value is always delivered.
    """

    def __init__(self, total: float, node_id: str | None = None) -> None:
        self.total = total
        self.current: float = 0
        self.node_id = node_id

    def update_absolute(
        self, value: float, total: float | None = None, preview: Any | None = None
    ) -> None:
        if total is not None:
            self.total = total
        self.current = min(value, self.total) if self.total else value
        context = current_node.get()
        if context is not None:
            context.report_progress(self.current, self.total, preview, self.node_id)

    def update(self, value: float) -> None:
        self.update_absolute(self.current + value)
