"""Which node runs next: a topological "dissolve" over a growing graph, in ComfyUI's UX order.

Every pending node counts the upstream nodes it still waits for. Ready nodes wait in four heaps,
one per UX class (ComfyUI's `ux_friendly_pick_node`): output or async nodes first, then nodes
that feed an output directly, then two steps from one, then the rest; within a class, the node
discovered first. A pick is O(log N), where ComfyUI rescans every pending node.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable

from flowscope.engine.dynprompt import DynamicPrompt
from flowscope.graph.prompt import is_link

OUTPUT_CLASS, FEEDS_OUTPUT, NEAR_OUTPUT, OTHER = 0, 1, 2, 3


class NodeInputError(ValueError):
    """A lazy node asked for an input it does not have, or for a constant."""


class Scheduler:
    def __init__(
        self,
        dynprompt: DynamicPrompt,
        *,
        is_output: Callable[[str], bool],
        is_async: Callable[[str], bool],
        is_lazy_input: Callable[[str, str], bool],
        is_satisfied: Callable[[str], bool],
    ) -> None:
        """`is_satisfied(node)` says whether a node's result is already available (cached)."""
        self.dynprompt = dynprompt
        self._is_output = is_output
        self._is_async = is_async
        self._is_lazy_input = is_lazy_input
        self._is_satisfied = is_satisfied
        self.pending: dict[str, int] = {}  # node id -> discovery index
        self._block_count: dict[str, int] = {}
        self._blocking: dict[str, set[str]] = {}  # source -> nodes waiting for it
        self._external: dict[str, int] = {}  # node id -> unfinished async work
        self._ready: list[list[tuple[int, str]]] = [[], [], [], []]
        self._ready_class: dict[str, int] = {}
        self._discovered = 0
        self.completed: set[str] = set()

    # -- building the plan --------------------------------------------------------------
    def add_node(self, node_id: str) -> None:
        """Stage `node_id` and, iteratively, every unsatisfied non-lazy input it links from."""
        stack = [node_id]
        while stack:
            current = stack.pop()
            if current in self.pending or current in self.completed:
                continue
            self.pending[current] = self._discovered
            self._discovered += 1
            self._block_count.setdefault(current, 0)
            node = self.dynprompt.get_node(current)
            # A node whose result is already known (a cached output) needs none of its inputs.
            inputs = {} if self._is_satisfied(current) else node.get("inputs", {})
            for name, value in inputs.items():
                if not is_link(value) or self._is_lazy_input(current, name):
                    continue
                source = value[0]
                if source in self.completed or self._is_satisfied(source):
                    continue
                stack.append(source)
                self._link(source, current)
            if self._block_count[current] == 0:
                self._push_ready(current)

    def add_strong_link(self, source: str, target: str) -> None:
        """Make `target` wait for `source` (lazy inputs asked for, expansion results)."""
        if source in self.completed or self._is_satisfied(source):
            return
        self.add_node(source)
        self._link(source, target)

    def make_input_strong_link(self, node_id: str, input_name: str) -> None:
        inputs = self.dynprompt.get_node(node_id).get("inputs", {})
        if input_name not in inputs:
            raise NodeInputError(
                f"node {node_id} asked for input {input_name!r}, but it has no such input"
            )
        value = inputs[input_name]
        if not is_link(value):
            raise NodeInputError(
                f"node {node_id} asked for input {input_name!r}, but that input is a constant"
            )
        self.add_strong_link(value[0], node_id)

    def _link(self, source: str, target: str) -> None:
        waiting = self._blocking.setdefault(source, set())
        if target in waiting:
            return
        waiting.add(target)
        self._block_count[target] = self._block_count.get(target, 0) + 1
        self._ready_class.pop(target, None)  # no longer ready; its heap entry goes stale
        if source in self._ready_class:
            # The source may now be one step closer to an output: re-rank it.
            rank = self._rank(source)
            if rank < self._ready_class[source]:
                self._push_ready(source, rank)

    # -- running ------------------------------------------------------------------------
    def next_ready(self) -> str | None:
        for rank, heap in enumerate(self._ready):
            while heap:
                _, node_id = heapq.heappop(heap)
                if self._ready_class.get(node_id) == rank:
                    del self._ready_class[node_id]
                    return node_id
        return None

    def requeue(self, node_id: str) -> None:
        """A picked node went back to pending; make it ready again if nothing blocks it."""
        if self._block_count.get(node_id, 0) == 0 and not self._external.get(node_id):
            self._push_ready(node_id)

    def add_external_block(self, node_id: str) -> Callable[[], None]:
        """Hold `node_id` until the returned function is called (its async work finished)."""
        self._external[node_id] = self._external.get(node_id, 0) + 1

        def release() -> None:
            remaining = self._external.get(node_id, 0) - 1
            if remaining > 0:
                self._external[node_id] = remaining
                return
            self._external.pop(node_id, None)
            if node_id in self.pending and self._block_count.get(node_id, 0) == 0:
                self._push_ready(node_id)

        return release

    @property
    def has_external_blocks(self) -> bool:
        return bool(self._external)

    def complete(self, node_id: str) -> None:
        self.pending.pop(node_id, None)
        self._ready_class.pop(node_id, None)
        self.completed.add(node_id)
        for waiting in self._blocking.pop(node_id, ()):
            count = self._block_count[waiting] - 1
            self._block_count[waiting] = count
            if count == 0 and not self._external.get(waiting) and waiting in self.pending:
                self._push_ready(waiting)

    def is_done(self) -> bool:
        return not self.pending

    def find_cycle(self) -> list[str]:
        """Nodes on a dependency cycle among the pending nodes (empty if there is none)."""
        state: dict[str, int] = {}
        for start in self.pending:
            if start in state:
                continue
            path: list[str] = []
            stack = [(start, iter(sorted(self._blocking.get(start, ()))))]
            state[start] = 1
            path.append(start)
            while stack:
                node_id, children = stack[-1]
                child = next(children, None)
                if child is None:
                    stack.pop()
                    path.pop()
                    state[node_id] = 2
                    continue
                if state.get(child) == 1:
                    return path[path.index(child) :]
                if child not in state and child in self.pending:
                    state[child] = 1
                    path.append(child)
                    stack.append((child, iter(sorted(self._blocking.get(child, ())))))
        return []

    # -- ranking ------------------------------------------------------------------------
    def _rank(self, node_id: str) -> int:
        if self._is_output(node_id) or self._is_async(node_id):
            return OUTPUT_CLASS
        blocked = self._blocking.get(node_id, ())
        if any(self._is_output(b) for b in blocked):
            return FEEDS_OUTPUT
        for b in blocked:
            if any(self._is_output(b2) for b2 in self._blocking.get(b, ())):
                return NEAR_OUTPUT
        return OTHER

    def _push_ready(self, node_id: str, rank: int | None = None) -> None:
        if rank is None:
            rank = self._rank(node_id)
        self._ready_class[node_id] = rank
        heapq.heappush(self._ready[rank], (self.pending[node_id], node_id))
