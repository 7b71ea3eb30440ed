"""Following an editor link to what really feeds an input, as the editor does when it queues.

A link may start at a reroute, a primitive, a bypassed node, a muted node, a subgraph node (go
inside, to what feeds that output) or a subgraph's input boundary (go out, to what feeds the
subgraph node, or to the value of the widget the subgraph node shows for it). Resolution is a loop
over hops, memoised per (graph instance, link, wanted type), so long chains cost linear time and
never recurse.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from flowscope.graph._workflow_model import (
    MODE_BYPASS,
    MODE_NEVER,
    SUBGRAPH_INPUT_NODE,
    Document,
    Graph,
    InputSlot,
    Node,
    SubgraphDef,
    WorkflowError,
)
from flowscope.graph._workflow_widgets import (
    MISSING,
    NodeLayout,
    SlotKind,
    is_control_value,
)
from flowscope.graph.schema import ANY_TYPE, types_compatible

PRIMITIVE_NODE = "PrimitiveNode"
# Frontend-only nodes whose output passes their input of the same index straight through.
PASS_THROUGH_TYPES = frozenset({"Reroute", "Reroute (rgthree)", "SetNode"})
GET_NODE = "GetNode"  # KJNodes: re-emits the input of the SetNode with the same name
SET_NODE = "SetNode"
# Nodes that exist only in the editor: never sent to the server.
VIRTUAL_TYPES = frozenset(
    {
        "Note",
        "MarkdownNote",
        PRIMITIVE_NODE,
        GET_NODE,
        *PASS_THROUGH_TYPES,
        *(
            f"{name} (rgthree)"
            for name in (
                "Fast Groups Bypasser",
                "Fast Groups Muter",
                "Fast Bypasser",
                "Fast Muter",
                "Fast Actions Button",
                "Fast Button Action",
                "Mute / Bypass Repeater",
                "Mute / Bypass Relay",
                "Random Unmuter",
                "Node Collector",
                "Label",
                "Bookmark",
            )
        ),
    }
)


@dataclass(frozen=True, slots=True)
class LinkTo:
    node_id: str
    slot: int


@dataclass(frozen=True, slots=True)
class Constant:
    value: Any


class Outcome(Enum):
    NOTHING = "nothing"  # no source: the input keeps its widget value, or stays unset
    DROPPED = "dropped"  # the source is muted: the input is removed, widget value included


NOTHING = Outcome.NOTHING
DROPPED = Outcome.DROPPED
Resolution = LinkTo | Constant | Outcome


@dataclass(eq=False, slots=True)
class Scope:
    """One graph instance: the root graph, or the contents of one subgraph node."""

    graph: Graph
    prefix: str  # "" for the root; "5:" inside subgraph node 5; "5:3:" one level deeper
    parent: Scope | None = None
    host: Node | None = None  # the subgraph node this scope expands
    subgraph: SubgraphDef | None = None
    depth: int = 0
    children: dict[str, Scope] = field(default_factory=dict)

    def node_id(self, node: Node) -> str:
        return self.prefix + node.key

    def describe(self, node: Node) -> str:
        title = f", titled {node.title!r}" if node.title else ""
        return f"node {self.node_id(node)} ({node.type}{title})"

    def name(self) -> str:
        if self.subgraph is None:
            return "the workflow"
        return f"subgraph {self.subgraph.name!r} (node {self.prefix[:-1]})"


@dataclass(frozen=True, slots=True)
class Hop:
    scope: Scope
    link: str
    want_type: str  # the type of the input being fed; picks the input of a bypassed node
    holder: str  # who holds `link`, for error messages


def slot_types_match(a: str, b: str) -> bool:
    """litegraph's `isValidConnection`: wildcards, case-insensitive, comma unions."""
    return types_compatible(a.lower(), b.lower())


def bypass_slot(input_types: list[str], slot: int, output_type: str, want_type: str) -> int:
    """The input whose link a bypassed node passes to output `slot` (-1 for none).

    The editor's rule: for a wildcard target, the same index; else the same index when its type
    fits both the output and the target, else the first input of exactly the target's type, else
    the first input that fits both.
    """
    if want_type == ANY_TYPE:
        return slot if slot < len(input_types) else 0
    if slot < len(input_types):
        same = input_types[slot]
        if slot_types_match(same, output_type) and slot_types_match(same, want_type):
            return slot
    for index, input_type in enumerate(input_types):
        if input_type == want_type:
            return index
    for index, input_type in enumerate(input_types):
        if slot_types_match(input_type, output_type) and slot_types_match(input_type, want_type):
            return index
    return -1


class LinkResolver:
    def __init__(
        self,
        document: Document,
        layout_of: Callable[[str], NodeLayout | None],
        widgets_of: Callable[[Node, NodeLayout], dict[str, Any]],
    ) -> None:
        self.doc = document
        self.layout_of = layout_of
        self.widgets_of = widgets_of
        self.memo: dict[tuple[Scope, str, str], Resolution] = {}
        self.promoted: dict[Scope, dict[int, Any]] = {}  # scope -> input index -> value
        self.setters: dict[Scope, dict[str, Node]] = {}

    def resolve(self, hop: Hop) -> Resolution:
        path: list[tuple[Scope, str, str]] = []
        seen: set[tuple[Scope, str, str]] = set()
        step: Hop | Resolution = hop
        while isinstance(step, Hop):
            state = (step.scope, step.link, step.want_type)
            known = self.memo.get(state)
            if known is not None:
                step = known
                break
            if state in seen:
                raise WorkflowError(
                    f"{hop.holder}: its input link {hop.link} goes round a loop of reroutes, "
                    "bypassed nodes or subgraph boundaries and never reaches a real node; "
                    "break the loop in the editor"
                )
            seen.add(state)
            path.append(state)
            step = self._step(step)
        for state in path:
            self.memo[state] = step
        return step

    def _step(self, hop: Hop) -> Hop | Resolution:
        scope = hop.scope
        link = scope.graph.links.get(hop.link)
        if link is None:
            raise WorkflowError(
                f"{hop.holder} refers to link {hop.link}, which is missing from {scope.name()}; "
                "the file is damaged — reconnect that input in the editor and save again"
            )
        if link.origin == SUBGRAPH_INPUT_NODE:
            return self._leave_subgraph(hop, link.origin_slot)
        node = scope.graph.nodes.get(link.origin)
        if node is None:
            raise WorkflowError(
                f"{hop.holder}: link {hop.link} comes from node {scope.prefix}{link.origin}, "
                f"which is not in {scope.name()}; reconnect that input in the editor"
            )
        slot = link.origin_slot
        if node.type == PRIMITIVE_NODE:  # whatever its mode, the editor copies its value over
            return _primitive_value(node)
        subgraph = self.doc.subgraphs.get(node.type)
        if subgraph is not None and node.mode not in (MODE_NEVER, MODE_BYPASS):
            return self._enter_output(hop, node, subgraph, slot)
        if node.type in PASS_THROUGH_TYPES:
            return self._pass_through(scope, node, slot, hop.want_type)
        if node.type == GET_NODE:
            return self._from_setter(hop, node, slot)
        if node.type in VIRTUAL_TYPES:
            return NOTHING
        if node.mode == MODE_NEVER:
            return DROPPED
        if node.mode == MODE_BYPASS:
            return self._through_bypass(hop, node, slot, subgraph)
        return LinkTo(scope.node_id(node), slot)

    def _pass_through(
        self, scope: Scope, node: Node, slot: int, want_type: str
    ) -> Hop | Resolution:
        passed = node.inputs[slot] if slot < len(node.inputs) else None
        if passed is None or passed.link is None:
            return NOTHING
        return Hop(scope, passed.link, want_type, scope.describe(node))

    def _enter_output(
        self, hop: Hop, node: Node, subgraph: SubgraphDef, slot: int
    ) -> Hop | Resolution:
        scope = hop.scope
        if slot >= len(subgraph.outputs):
            raise WorkflowError(
                f"{hop.holder}: link {hop.link} uses output {slot} of {scope.describe(node)}, "
                f"but subgraph {subgraph.name!r} has {len(subgraph.outputs)} outputs"
            )
        inner = subgraph.output_link(slot)
        child = scope.children.get(node.key)
        if inner is None or child is None:
            return NOTHING
        holder = f"output {subgraph.outputs[slot].name!r} of {child.name()}"
        return Hop(child, inner, hop.want_type, holder)

    def _leave_subgraph(self, hop: Hop, index: int) -> Hop | Resolution:
        scope = hop.scope
        if scope.subgraph is None or scope.host is None or scope.parent is None:
            raise WorkflowError(
                f"{hop.holder}: link {hop.link} starts at a subgraph input (node -10), but "
                f"{scope.name()} is not a subgraph"
            )
        if index >= len(scope.subgraph.inputs):
            raise WorkflowError(
                f"{hop.holder}: link {hop.link} uses input {index} of {scope.name()}, which "
                f"has {len(scope.subgraph.inputs)} inputs"
            )
        boundary = scope.subgraph.inputs[index]
        outer = scope.host.input_named(boundary.name)
        if outer is not None and outer.link is not None:
            return Hop(scope.parent, outer.link, boundary.type, scope.parent.describe(scope.host))
        value = self.promoted_values(scope).get(index, MISSING)
        return NOTHING if value is MISSING else Constant(value)

    def _through_bypass(
        self, hop: Hop, node: Node, slot: int, subgraph: SubgraphDef | None
    ) -> Hop | Resolution:
        sockets = self._sockets(node, subgraph)
        outputs = self._output_types(node, subgraph)
        output_type = outputs[slot] if slot < len(outputs) else ANY_TYPE
        index = bypass_slot([t for _, t, _ in sockets], slot, output_type, hop.want_type)
        if not 0 <= index < len(sockets):
            return NOTHING
        _, socket_type, link = sockets[index]
        if link is None:
            return NOTHING
        return Hop(hop.scope, link, socket_type, hop.scope.describe(node))

    def _from_setter(self, hop: Hop, node: Node, slot: int) -> Hop | Resolution:
        name = _first_value(node)
        if not isinstance(name, str) or not name:
            return NOTHING
        scope: Scope | None = hop.scope
        while scope is not None:  # its own graph first, then the graphs around it
            setter = self._setters(scope).get(name)
            if setter is not None:
                return self._pass_through(scope, setter, slot, hop.want_type)
            scope = scope.parent
        return NOTHING

    def _setters(self, scope: Scope) -> dict[str, Node]:
        found = self.setters.get(scope)
        if found is None:
            found = {}
            for node in scope.graph.nodes.values():
                name = _first_value(node) if node.type == SET_NODE else None
                if isinstance(name, str) and name:
                    found.setdefault(name, node)
            self.setters[scope] = found
        return found

    def _sockets(
        self, node: Node, subgraph: SubgraphDef | None
    ) -> list[tuple[str, str, str | None]]:
        """The node's input sockets in the editor's order, as (name, type, link)."""
        declared: list[tuple[str, str]] = []
        if subgraph is not None:
            declared = [(slot.name, slot.type) for slot in subgraph.inputs]
        else:
            layout = self.layout_of(node.type)
            if layout is not None:
                declared = list(layout.sockets)
        if not declared:  # not installed: trust the saved slots
            return [(slot.name, slot.type, slot.link) for slot in node.inputs]
        links: dict[str, str | None] = {}
        for slot in node.inputs:
            links.setdefault(slot.name, slot.link)
        known = {name for name, _ in declared}
        sockets = [(name, socket_type, links.get(name)) for name, socket_type in declared]
        sockets += [(s.name, s.type, s.link) for s in node.inputs if s.name not in known]
        return sockets

    def _output_types(self, node: Node, subgraph: SubgraphDef | None) -> tuple[str, ...]:
        if subgraph is not None:
            return tuple(slot.type for slot in subgraph.outputs)
        layout = self.layout_of(node.type)
        return layout.output_types if layout is not None else node.output_types

    def promoted_values(self, scope: Scope) -> dict[int, Any]:
        """Values of the widgets a subgraph node shows for its inputs that are wired to widgets.

        The editor saves them in the subgraph node's `widgets_values`, one per such input in
        input order, and they replace the inner widget's value while the input is unconnected.
        Without a saved value the inner widget's own value stands.
        """
        cached = self.promoted.get(scope)
        if cached is not None:
            return cached
        assert scope.subgraph is not None and scope.host is not None
        targets = self._promotion_targets(scope.subgraph)
        saved = scope.host.widgets_values
        extra = len(saved) - len(targets) if isinstance(saved, list) else 0
        values: dict[int, Any] = {}
        cursor = 0
        for index, (inner, name, controlled) in targets.items():
            value: Any = MISSING
            if isinstance(saved, Mapping):
                value = saved.get(scope.subgraph.inputs[index].name, MISSING)
            elif isinstance(saved, list) and cursor < len(saved):
                value = saved[cursor]
                cursor += 1
                # Some editors also saved the inner widget's control value after it.
                if controlled and extra > 0 and _control_at(saved, cursor):
                    cursor += 1
                    extra -= 1
            if value is MISSING or value is None:
                value = self._inner_widget_value(scope, inner, name)
            if value is not MISSING:
                values[index] = value
        self.promoted[scope] = values
        return values

    def _promotion_targets(self, subgraph: SubgraphDef) -> dict[int, tuple[Node, str, bool]]:
        """Subgraph input index -> (inner node, widget name, whether it has a control widget)."""
        holders: dict[str, tuple[Node, InputSlot]] = {}
        for node in subgraph.graph.nodes.values():
            for slot in node.inputs:
                if slot.link is not None:
                    holders.setdefault(slot.link, (node, slot))
        targets: dict[int, tuple[Node, str, bool]] = {}
        for index in range(len(subgraph.inputs)):
            for link in subgraph.inputs[index].link_keys:
                if link not in holders or holders[link][0].type in VIRTUAL_TYPES:
                    continue
                node, slot = holders[link]
                if node.type in self.doc.subgraphs:  # a widget promoted again, one level down
                    targets[index] = (node, slot.name, False)
                    break
                layout = self.layout_of(node.type)
                widget = slot.widget or slot.name
                if layout is not None and widget in layout.widgets:
                    targets[index] = (node, widget, _has_control(layout, widget))
                    break
                if layout is None and slot.widget is not None:
                    targets[index] = (node, widget, False)
                    break
        return targets

    def _inner_widget_value(self, scope: Scope, inner: Node, name: str) -> Any:
        nested = self.doc.subgraphs.get(inner.type)
        if nested is not None:  # bounded by the subgraph nesting depth
            child = scope.children.get(inner.key)
            names = [slot.name for slot in nested.inputs]
            if child is None or name not in names:
                return MISSING
            return self.promoted_values(child).get(names.index(name), MISSING)
        layout = self.layout_of(inner.type)
        if layout is None:
            return MISSING
        return self.widgets_of(inner, layout).get(name, MISSING)


def _first_value(node: Node) -> Any:
    values = node.widgets_values
    return values[0] if isinstance(values, list) and values else None


def _control_at(saved: list[Any], cursor: int) -> bool:
    return cursor < len(saved) and is_control_value(saved[cursor])


def _primitive_value(node: Node) -> Resolution:
    values = node.widgets_values
    if isinstance(values, list) and values:
        return Constant(values[0])
    if isinstance(values, Mapping) and "value" in values:
        return Constant(values["value"])
    return NOTHING


def _has_control(layout: NodeLayout, widget_name: str) -> bool:
    slots = layout.layouts[0]
    for position, slot in enumerate(slots):
        if slot.widget is not None and slot.widget.name == widget_name:
            return position + 1 < len(slots) and slots[position + 1].kind is SlotKind.CONTROL
    return False
