"""API-format prompts: `{node_id: {"class_type", "inputs", "_meta"?}}`, links and wrapped values."""

from __future__ import annotations

from typing import Any, TypeGuard

Link = list[Any]  # [source_node_id: str, output_index: int]
NodeSpec = dict[str, Any]
Prompt = dict[str, NodeSpec]


def is_link(value: Any) -> TypeGuard[Link]:
    """ComfyUI's exact link test: a list of length 2, a `str` node id, an int/float output index."""
    return (
        type(value) is list
        and len(value) == 2
        and isinstance(value[0], str)
        and isinstance(value[1], (int, float))
    )


def unwrap_value(value: Any) -> Any:
    """A widget value that is itself a list travels as `{"__value__": [...]}`; unwrap it."""
    if type(value) is dict and "__value__" in value:
        return value["__value__"]
    return value


def node_title(node: NodeSpec) -> str | None:
    meta = node.get("_meta")
    if isinstance(meta, dict):
        title = meta.get("title")
        if isinstance(title, str):
            return title
    return None


def node_sort_key(node_id: str) -> tuple[int, int, str]:
    """Deterministic order for node ids: numeric ids numerically, then the rest as text."""
    if node_id.isascii() and node_id.isdigit():  # not "²": isdigit() accepts it, int() does not
        return (0, int(node_id), node_id)
    return (1, 0, node_id)
