"""What the executor needs to know about a node class, read once per job from the protocol."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from flowscope.graph.schema import InputSpec
from flowscope.nodes import protocol
from flowscope.nodes.registry import NodeRegistry


class UnknownNodeError(LookupError):
    """A node type that is not installed (possible only for nodes added by expansion)."""


@dataclass(frozen=True, slots=True)
class NodeClass:
    class_type: str
    cls: type
    function: str
    inputs: Mapping[str, InputSpec]
    hidden: Mapping[str, str]
    lazy_inputs: frozenset[str]
    output_count: int
    output_is_list: tuple[bool, ...]
    input_is_list: bool
    is_output: bool
    is_async: bool
    # The node id joins the cache key: NOT_IDEMPOTENT, or a UNIQUE_ID hidden input.
    keyed_by_id: bool
    fingerprint: Any  # IS_CHANGED, or None
    fingerprint_params: frozenset[str] | None  # None: it takes **kwargs
    has_lazy_check: bool


def load_node_class(registry: NodeRegistry, class_type: str) -> NodeClass:
    cls = registry.get(class_type)
    if cls is None:
        raise UnknownNodeError(f"node type {class_type!r} is not installed")
    schema = protocol.schema_of(class_type, cls)
    fingerprint = getattr(cls, "IS_CHANGED", None)
    params: frozenset[str] | None = None
    if callable(fingerprint):
        parameters = inspect.signature(fingerprint).parameters.values()
        if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters):
            params = frozenset(p.name for p in parameters)
    else:
        fingerprint = None
    return NodeClass(
        class_type=class_type,
        cls=cls,
        function=protocol.function_name(cls),
        inputs=schema.inputs,
        hidden=schema.hidden,
        lazy_inputs=frozenset(name for name, spec in schema.inputs.items() if spec.lazy),
        output_count=len(schema.return_types),
        output_is_list=schema.output_is_list,
        input_is_list=schema.input_is_list,
        is_output=schema.is_output,
        is_async=protocol.is_async(cls),
        keyed_by_id=protocol.not_idempotent(cls)
        or protocol.has_hidden(schema, protocol.HIDDEN_UNIQUE_ID),
        fingerprint=fingerprint,
        fingerprint_params=params,
        has_lazy_check=callable(getattr(cls, "check_lazy_status", None)),
    )


class NodeClassLookup:
    """The NodeClass of each node of one job, loaded once per class and remembered per node id."""

    def __init__(self, registry: NodeRegistry, node_types: Callable[[str], str]) -> None:
        """`node_types(node_id)` gives a node's class_type (ephemeral nodes included)."""
        self._registry = registry
        self._node_types = node_types
        self._by_type: dict[str, NodeClass] = {}
        self._by_node: dict[str, NodeClass] = {}

    def __call__(self, node_id: str) -> NodeClass:
        info = self._by_node.get(node_id)
        if info is not None:
            return info
        class_type = self._node_types(node_id)
        info = self._by_type.get(class_type)
        if info is None:
            info = load_node_class(self._registry, class_type)
            self._by_type[class_type] = info
        self._by_node[node_id] = info
        return info
