"""Turns a workflow saved by the ComfyUI editor (litegraph JSON) into an API-format prompt.

This is what the editor's `graphToPrompt` does before queueing, so a saved workflow can run
without "Export (API)": subgraphs are expanded into `"<parent>:<inner>"` nodes, widget values are
read by name using the node definitions, links are followed through reroutes, subgraph boundaries
and bypassed nodes, and frontend-only nodes (notes, reroutes, primitives) are left out.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from flowscope.graph._workflow_model import (
    MODE_BYPASS,
    MODE_NEVER,
    Document,
    Node,
    SubgraphDef,
    WorkflowError,
    parse_document,
)
from flowscope.graph._workflow_resolve import (
    DROPPED,
    VIRTUAL_TYPES,
    Constant,
    Hop,
    LinkResolver,
    LinkTo,
    Scope,
)
from flowscope.graph._workflow_widgets import NodeLayout, build_layout, widget_values
from flowscope.graph.prompt import Prompt, is_link

__all__ = ["WorkflowError", "is_ui_workflow", "workflow_to_prompt"]

Definitions = Callable[[str], Mapping[str, Any] | None]

MAX_SUBGRAPH_DEPTH = 32
MAX_EXPANDED_NODES = 250_000
_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$", re.I)


def is_ui_workflow(document: object) -> bool:
    """Whether `document` is an editor workflow (has a `nodes` list), not an API prompt."""
    if not isinstance(document, Mapping):
        return False
    links = document.get("links", [])
    return isinstance(document.get("nodes"), list) and isinstance(links, (list, Mapping))


def workflow_to_prompt(
    workflow: Mapping[str, Any], definitions: Definitions
) -> dict[str, dict[str, Any]]:
    """Convert an editor workflow into an API prompt `{node_id: {class_type, inputs, _meta}}`.

    `definitions(class_type)` returns the node's `/object_info` entry, or None when the type is
    not installed. Raises `WorkflowError` (naming the node and the fix) for anything that cannot
    be converted.
    """
    if not is_ui_workflow(workflow):
        raise WorkflowError(
            "this is not an editor workflow: it needs a 'nodes' list and a 'links' list; "
            "an API-format prompt can be submitted as it is"
        )
    return _Converter(parse_document(workflow), definitions).convert()


class _Converter:
    def __init__(self, document: Document, definitions: Definitions) -> None:
        self.doc = document
        self.definitions = definitions
        self.layouts: dict[str, NodeLayout | None] = {}
        self.widgets: dict[int, dict[str, Any]] = {}  # id(node) -> its widget values by name
        self.links = LinkResolver(document, self._layout, self._widget_values)

    def convert(self) -> Prompt:
        prompt: Prompt = {}
        # Expand every subgraph first: a link may lead into one listed later in the file.
        for scope, node in list(self._executable_nodes()):
            layout = self._require_layout(scope, node)
            inputs = {name: _api_value(v) for name, v in self._widget_values(node, layout).items()}
            for slot in node.inputs:
                if slot.link is None:
                    continue
                want_type = layout.input_types.get(slot.name, slot.type)
                resolved = self.links.resolve(
                    Hop(scope, slot.link, want_type, scope.describe(node))
                )
                if isinstance(resolved, LinkTo):
                    inputs[slot.name] = [resolved.node_id, resolved.slot]
                elif isinstance(resolved, Constant):
                    inputs[slot.name] = _api_value(resolved.value)
                elif resolved is DROPPED:
                    inputs.pop(slot.name, None)
            prompt[scope.node_id(node)] = {
                "inputs": inputs,
                "class_type": node.type,
                "_meta": {"title": layout.display_name if node.title is None else node.title},
            }
        for entry in prompt.values():  # as the editor does: no links to nodes that are not sent
            inputs = entry["inputs"]
            for name in [n for n, v in inputs.items() if is_link(v) and v[0] not in prompt]:
                del inputs[name]
        return prompt

    def _executable_nodes(self) -> Iterator[tuple[Scope, Node]]:
        """Every node that runs, in file order, with subgraph contents in place of their node.

        A muted or bypassed subgraph node takes its contents with it.
        """
        root = Scope(self.doc.graph, "")
        visited = 0
        stack = [(root, iter(root.graph.nodes.values()))]
        while stack:
            scope, pending = stack[-1]
            node = next(pending, None)
            if node is None:
                stack.pop()
                continue
            visited += 1
            if visited > MAX_EXPANDED_NODES:
                raise WorkflowError(
                    f"the workflow expands to more than {MAX_EXPANDED_NODES} nodes once its "
                    "subgraphs are unpacked; split it into smaller workflows"
                )
            if node.mode in (MODE_NEVER, MODE_BYPASS):
                continue
            subgraph = self.doc.subgraphs.get(node.type)
            if subgraph is not None:
                child = self._enter(scope, node, subgraph)
                stack.append((child, iter(subgraph.graph.nodes.values())))
            elif node.type not in VIRTUAL_TYPES:
                yield scope, node

    def _enter(self, scope: Scope, node: Node, subgraph: SubgraphDef) -> Scope:
        ancestor: Scope | None = scope
        while ancestor is not None:
            if ancestor.subgraph is not None and ancestor.subgraph.id == subgraph.id:
                raise WorkflowError(
                    f"{scope.describe(node)} places subgraph {subgraph.name!r} inside itself; "
                    "a subgraph cannot contain itself — remove that node from the subgraph"
                )
            ancestor = ancestor.parent
        if scope.depth >= MAX_SUBGRAPH_DEPTH:
            raise WorkflowError(
                f"{scope.describe(node)} nests subgraphs more than {MAX_SUBGRAPH_DEPTH} deep; "
                "unpack some of them in the editor"
            )
        child = Scope(
            subgraph.graph,
            f"{scope.node_id(node)}:",
            parent=scope,
            host=node,
            subgraph=subgraph,
            depth=scope.depth + 1,
        )
        scope.children[node.key] = child
        return child

    def _layout(self, class_type: str) -> NodeLayout | None:
        if class_type not in self.layouts:
            info = self.definitions(class_type)
            self.layouts[class_type] = None if info is None else build_layout(class_type, info)
        return self.layouts[class_type]

    def _require_layout(self, scope: Scope, node: Node) -> NodeLayout:
        layout = self._layout(node.type)
        if layout is not None:
            return layout
        where = scope.describe(node)
        if node.type in self.doc.group_node_types:
            raise WorkflowError(
                f"{where} is a legacy group node, which this server does not expand; open the "
                "workflow in the editor, convert the group node to a subgraph and save it again"
            )
        if _UUID.match(node.type):
            raise WorkflowError(
                f"{where} is a subgraph whose definition is missing from "
                "'definitions.subgraphs'; the file is incomplete — save it again from the editor"
            )
        raise WorkflowError(
            f"{where} uses node type {node.type!r}, which is not installed on this server; "
            "install the node pack that provides it, or remove the node from the workflow"
        )

    def _widget_values(self, node: Node, layout: NodeLayout) -> dict[str, Any]:
        values = self.widgets.get(id(node))
        if values is None:
            values = widget_values(layout, node.widgets_values)
            self.widgets[id(node)] = values
        return values


def _api_value(value: Any) -> Any:
    """A widget value as the prompt carries it: lists are wrapped so they do not read as links."""
    if isinstance(value, list):
        return {"__value__": copy.deepcopy(value)}
    if isinstance(value, dict):
        return copy.deepcopy(value)
    return value
