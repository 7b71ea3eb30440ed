"""Reads the editor's saved workflow JSON (litegraph, schema 0.4 and 1) into plain records.

Only the shape is checked here; what nodes, links and subgraphs mean for the prompt is decided in
`workflow.py`. Every shape problem becomes a `WorkflowError` that says where it is.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from flowscope.graph.schema import ANY_TYPE, COMBO


class WorkflowError(ValueError):
    """A UI workflow that cannot be turned into a prompt; the message names the node and the fix."""

    __module__ = "flowscope.graph.workflow"


MODE_NEVER = 2  # "muted": the node does not run and its outputs are unavailable
MODE_BYPASS = 4  # the node does not run; its outputs are fed from matching inputs
SUBGRAPH_INPUT_NODE = "-10"  # the id of a subgraph's input boundary inside its definition
SUBGRAPH_OUTPUT_NODE = "-20"


# The records below are never changed after parsing; they are not frozen only because frozen
# dataclasses are several times slower to build, and a large workflow has tens of thousands.


@dataclass(slots=True)
class Link:
    key: str
    origin: str
    origin_slot: int
    target: str | None
    target_slot: int | None


@dataclass(slots=True)
class InputSlot:
    name: str
    type: str
    link: str | None
    widget: str | None  # name of the widget this socket belongs to, if any


@dataclass(slots=True)
class Node:
    key: str
    type: str
    mode: int
    title: str | None
    inputs: tuple[InputSlot, ...]
    output_types: tuple[str, ...]
    widgets_values: list[Any] | Mapping[str, Any] | None

    def input_named(self, name: str) -> InputSlot | None:
        for slot in self.inputs:
            if slot.name == name:
                return slot
        return None


@dataclass(frozen=True, slots=True)
class Graph:
    nodes: Mapping[str, Node]  # in file order
    links: Mapping[str, Link]


@dataclass(slots=True)
class BoundarySlot:
    """One input or output of a subgraph definition."""

    name: str
    type: str
    link_keys: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class SubgraphDef:
    id: str
    name: str
    graph: Graph
    inputs: tuple[BoundarySlot, ...]
    outputs: tuple[BoundarySlot, ...]

    def output_link(self, index: int) -> str | None:
        """The inner link feeding output `index` (the editor keeps one)."""
        keys = self.outputs[index].link_keys
        return keys[0] if keys else None


@dataclass(frozen=True, slots=True)
class Document:
    graph: Graph
    subgraphs: Mapping[str, SubgraphDef]
    group_node_types: frozenset[str]  # legacy "group nodes" declared in extra.groupNodes


def node_key(value: Any) -> str | None:
    """A node or link id as the string the prompt uses; None when it is not an id."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, str) and value:
        return value
    return None


def slot_index(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int) and value >= 0:
        return value
    if isinstance(value, float) and value.is_integer() and value >= 0:
        return int(value)
    return None


def type_name(value: Any) -> str:
    """A slot type as a string; litegraph writes wildcards as "", 0 or "*", combos as lists."""
    if isinstance(value, str):
        return value or ANY_TYPE
    if isinstance(value, list):
        return COMBO
    return ANY_TYPE


def short(value: Any, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def parse_document(workflow: Mapping[str, Any]) -> Document:
    graph = _parse_graph(workflow.get("nodes"), workflow.get("links"), "the workflow")
    subgraphs: dict[str, SubgraphDef] = {}
    for raw in _subgraph_definitions(workflow):
        definition = _parse_subgraph(raw)
        subgraphs.setdefault(definition.id, definition)
    group_nodes: frozenset[str] = frozenset()
    extra = workflow.get("extra")
    if isinstance(extra, Mapping) and isinstance(extra.get("groupNodes"), Mapping):
        group_nodes = frozenset(name for name in extra["groupNodes"] if isinstance(name, str))
    return Document(graph, subgraphs, group_nodes)


def _subgraph_definitions(workflow: Mapping[str, Any]) -> Iterator[Mapping[str, Any]]:
    """Every `definitions.subgraphs` entry, including ones nested inside other definitions."""
    pending: list[Any] = [workflow]
    seen: set[int] = set()
    while pending:
        holder = pending.pop()
        definitions = holder.get("definitions")
        if definitions is None:
            continue
        if not isinstance(definitions, Mapping):
            raise WorkflowError("'definitions' must be an object with a 'subgraphs' list")
        entries = definitions.get("subgraphs")
        if entries is None:
            continue
        if not isinstance(entries, list):
            raise WorkflowError("'definitions.subgraphs' must be a list of subgraph definitions")
        for position, raw in enumerate(entries):
            if not isinstance(raw, Mapping):
                raise WorkflowError(f"definitions.subgraphs[{position}] is not an object")
            if id(raw) in seen:
                continue
            seen.add(id(raw))
            yield raw
            pending.append(raw)


def _parse_subgraph(raw: Mapping[str, Any]) -> SubgraphDef:
    sub_id = raw.get("id")
    if not isinstance(sub_id, str) or not sub_id:
        raise WorkflowError(f"a subgraph definition has no string 'id' (got {short(sub_id)})")
    name = raw.get("name")
    label = name if isinstance(name, str) and name else sub_id
    where = f"subgraph {label!r} ({sub_id})"
    graph = _parse_graph(raw.get("nodes"), raw.get("links"), where)
    inputs = _parse_boundary(raw.get("inputs"), f"{where} inputs")
    outputs = _parse_boundary(raw.get("outputs"), f"{where} outputs")
    # Files that omit `linkIds` still say where each boundary link starts or ends.
    leaving: dict[int, list[str]] = {}
    entering: dict[int, list[str]] = {}
    for link in graph.links.values():
        if link.origin == SUBGRAPH_INPUT_NODE:
            leaving.setdefault(link.origin_slot, []).append(link.key)
        if link.target == SUBGRAPH_OUTPUT_NODE and link.target_slot is not None:
            entering.setdefault(link.target_slot, []).append(link.key)
    for index, slot in enumerate(inputs):
        slot.link_keys = slot.link_keys or tuple(leaving.get(index, ()))
    for index, slot in enumerate(outputs):
        slot.link_keys = slot.link_keys or tuple(entering.get(index, ()))
    return SubgraphDef(id=sub_id, name=label, graph=graph, inputs=inputs, outputs=outputs)


def _parse_boundary(raw: Any, where: str) -> tuple[BoundarySlot, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise WorkflowError(f"{where} must be a list")
    slots: list[BoundarySlot] = []
    for position, entry in enumerate(raw):
        if not isinstance(entry, Mapping) or not isinstance(entry.get("name"), str):
            raise WorkflowError(f"{where}[{position}] must be an object with a string 'name'")
        link_ids = entry.get("linkIds")
        keys: list[str] = []
        if link_ids is not None:
            if not isinstance(link_ids, list):
                raise WorkflowError(f"{where}[{position}].linkIds must be a list of link ids")
            for link_id in link_ids:
                key = node_key(link_id)
                if key is None:
                    raise WorkflowError(f"{where}[{position}] lists a bad link id {short(link_id)}")
                keys.append(key)
        slots.append(BoundarySlot(entry["name"], type_name(entry.get("type")), tuple(keys)))
    return tuple(slots)


def _parse_graph(raw_nodes: Any, raw_links: Any, where: str) -> Graph:
    if not isinstance(raw_nodes, list):
        raise WorkflowError(f"{where} has no 'nodes' list")
    nodes: dict[str, Node] = {}
    for position, raw in enumerate(raw_nodes):
        node = _parse_node(raw, f"{where}, nodes[{position}]")
        if node.key in nodes:
            raise WorkflowError(
                f"{where} has two nodes with id {node.key}; ids must be unique — "
                "re-save the workflow from the editor"
            )
        nodes[node.key] = node
    return Graph(nodes, _parse_links(raw_links, where))


def _parse_links(raw: Any, where: str) -> dict[str, Link]:
    if raw is None:
        return {}
    if isinstance(raw, Mapping):
        entries = list(raw.values())
    elif isinstance(raw, list):
        entries = raw
    else:
        raise WorkflowError(f"{where}: 'links' must be a list (or an object keyed by link id)")
    links: dict[str, Link] = {}
    for position, entry in enumerate(entries):
        if entry is None:  # older files leave holes where links were deleted
            continue
        link = _parse_link(entry)
        if link is None:
            raise WorkflowError(
                f"{where}: links[{position}] is malformed ({short(entry)}); a link is "
                "[id, origin_id, origin_slot, target_id, target_slot, type] or an object "
                "with id, origin_id and origin_slot"
            )
        links[link.key] = link  # the editor also lets a later duplicate win
    return links


def _parse_link(entry: Any) -> Link | None:
    if isinstance(entry, list):
        if len(entry) < 5:
            return None
        fields = entry[:5]
    elif isinstance(entry, Mapping):
        fields = [entry.get(k) for k in ("id", "origin_id", "origin_slot", "target_id")]
        fields.append(entry.get("target_slot"))
    else:
        return None
    key, origin, origin_slot = node_key(fields[0]), node_key(fields[1]), slot_index(fields[2])
    if key is None or origin is None or origin_slot is None:
        return None
    return Link(key, origin, origin_slot, node_key(fields[3]), slot_index(fields[4]))


def _parse_node(raw: Any, where: str) -> Node:
    if not isinstance(raw, Mapping):
        raise WorkflowError(f"{where} is not an object")
    key = node_key(raw.get("id"))
    if key is None:
        raise WorkflowError(f"{where} has no valid 'id' (got {short(raw.get('id'))})")
    node_type = raw.get("type")
    if not isinstance(node_type, str) or not node_type:
        raise WorkflowError(f"node {key} has no 'type'; every node needs its node type name")
    mode = raw.get("mode", 0)
    if mode is None:
        mode = 0
    if isinstance(mode, bool) or not isinstance(mode, int):
        raise WorkflowError(f"node {key} ({node_type}) has an invalid mode {short(mode)}")
    title = raw.get("title")
    values = raw.get("widgets_values")
    if values is not None and not isinstance(values, (list, Mapping)):
        raise WorkflowError(
            f"node {key} ({node_type}): 'widgets_values' must be a list or an object, "
            f"not {type(values).__name__}"
        )
    return Node(
        key=key,
        type=node_type,
        mode=mode,
        title=title if isinstance(title, str) else None,
        inputs=_parse_inputs(raw.get("inputs"), f"node {key} ({node_type})"),
        output_types=_parse_output_types(raw.get("outputs"), f"node {key} ({node_type})"),
        widgets_values=values,
    )


def _parse_inputs(raw: Any, where: str) -> tuple[InputSlot, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise WorkflowError(f"{where}: 'inputs' must be a list")
    slots: list[InputSlot] = []
    for position, entry in enumerate(raw):
        if not isinstance(entry, Mapping) or not isinstance(entry.get("name"), str):
            raise WorkflowError(f"{where}: inputs[{position}] must be an object with a 'name'")
        link_raw = entry.get("link")
        link = None if link_raw is None else node_key(link_raw)
        if link_raw is not None and link is None:
            raise WorkflowError(
                f"{where}: input {entry['name']!r} has a bad link id {short(link_raw)}"
            )
        widget = entry.get("widget")
        widget_name = widget.get("name") if isinstance(widget, Mapping) else None
        slots.append(
            InputSlot(
                name=entry["name"],
                type=type_name(entry.get("type")),
                link=link,
                widget=widget_name if isinstance(widget_name, str) else None,
            )
        )
    return tuple(slots)


def _parse_output_types(raw: Any, where: str) -> tuple[str, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise WorkflowError(f"{where}: 'outputs' must be a list")
    return tuple(
        type_name(entry.get("type")) if isinstance(entry, Mapping) else ANY_TYPE for entry in raw
    )
