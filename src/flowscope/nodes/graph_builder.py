"""GraphBuilder: how a node builds the subgraph it expands into (`{"result", "expand"}` returns).

Ids are deterministic: `<expanding node id>.<call index>.<builder index>.<n>`, as ComfyUI's
helper makes them, so re-running the same prompt expands to the same node ids.
"""

from __future__ import annotations

from typing import Any

from flowscope.nodes.progress import current_node


class GraphNode:
    def __init__(self, node_id: str, class_type: str, inputs: dict[str, Any]) -> None:
        self.id = node_id
        self.class_type = class_type
        self.inputs = inputs
        self.override_display_id: str | None = None

    def out(self, index: int) -> list[Any]:
        """A link to this node's output `index`."""
        return [self.id, index]

    def set_input(self, name: str, value: Any) -> None:
        if value is None:
            self.inputs.pop(name, None)
        else:
            self.inputs[name] = value

    def get_input(self, name: str) -> Any:
        return self.inputs.get(name)

    def set_override_display_id(self, display_id: str) -> None:
        self.override_display_id = display_id

    def serialize(self) -> dict[str, Any]:
        spec: dict[str, Any] = {"class_type": self.class_type, "inputs": dict(self.inputs)}
        if self.override_display_id is not None:
            spec["override_display_id"] = self.override_display_id
        return spec


class GraphBuilder:
    def __init__(self, prefix: str | None = None) -> None:
        if prefix is None:
            context = current_node.get()
            prefix = context.next_graph_prefix() if context is not None else ""
        self.prefix = prefix
        self.nodes: dict[str, GraphNode] = {}
        self._next_id = 0

    def node(self, class_type: str, id: str | None = None, **inputs: Any) -> GraphNode:
        if id is None:
            id = str(self._next_id)
            self._next_id += 1
        node_id = self.prefix + id
        if node_id in self.nodes:
            return self.nodes[node_id]
        node = GraphNode(node_id, class_type, {k: v for k, v in inputs.items() if v is not None})
        self.nodes[node_id] = node
        return node

    def lookup_node(self, id: str) -> GraphNode | None:
        return self.nodes.get(self.prefix + id)

    def finalize(self) -> dict[str, dict[str, Any]]:
        return {node_id: node.serialize() for node_id, node in self.nodes.items()}
