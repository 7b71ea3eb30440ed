"""Progress from running nodes: an interrupt check on every update, throttled `node.progress`."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from flowscope.engine.interrupt import InterruptFlag

ProgressReporter = Callable[[str, float, float, Any | None], None]


class NodeRun:
    """The `NodeRunContext` the engine installs around one node's calls."""

    __slots__ = (
        "_graphs",
        "_interrupt",
        "_last_sent",
        "_min_interval_ns",
        "_report",
        "call_index",
        "node_id",
    )

    def __init__(
        self,
        node_id: str,
        interrupt: InterruptFlag,
        report: ProgressReporter,
        min_interval_s: float,
    ) -> None:
        self.node_id = node_id
        self._interrupt = interrupt
        self._report = report
        self._min_interval_ns = int(min_interval_s * 1e9)
        self._last_sent = 0
        self.call_index = 0
        self._graphs = 0

    def start_call(self, index: int) -> None:
        """A new mapped call of the node: GraphBuilder prefixes restart per call."""
        self.call_index = index
        self._graphs = 0

    def next_graph_prefix(self) -> str:
        prefix = f"{self.node_id}.{self.call_index}.{self._graphs}."
        self._graphs += 1
        return prefix

    def check_interrupted(self) -> None:
        self._interrupt.check()

    def report_progress(
        self, value: float, total: float, preview: Any | None = None, node_id: str | None = None
    ) -> None:
        self._interrupt.check()
        now = time.monotonic_ns()
        finished = total > 0 and value >= total
        # Updates (previews included) are rate-limited per node; the last one always goes out.
        if not finished and now - self._last_sent < self._min_interval_ns:
            return
        self._last_sent = now
        self._report(node_id or self.node_id, value, total, preview)
