"""Calling node code the ComfyUI way: list mapping, blocked inputs, and turning what a node's
calls returned (tuples, `{"ui", "result"}`, `{"result", "expand"}`, blockers) into its outputs."""

from __future__ import annotations

from collections.abc import Awaitable
from dataclasses import dataclass, field
from typing import Any

from flowscope.engine.errors import NodeOutputError
from flowscope.engine.node_class import NodeClass
from flowscope.nodes.blocker import ExecutionBlocker

# Per output slot, the list of items (one per list element / mapped call).
Outputs = list[list[Any]]


class BlockedCall:
    """A mapped call that never ran because an input was blocked (unlike a node that itself
    returns an ExecutionBlocker, which ran and succeeded)."""

    __slots__ = ("blocker",)

    def __init__(self, blocker: ExecutionBlocker) -> None:
        self.blocker = blocker


def mapped_calls(data: dict[str, list[Any]], info: NodeClass) -> list[dict[str, Any]]:
    """ComfyUI's list mapping: one call per index up to the longest list (shorter lists repeat
    their last item), or one call with whole lists for INPUT_IS_LIST nodes."""
    if info.input_is_list or not data:
        return [data if info.input_is_list else {}]
    lengths = [len(v) for v in data.values()]
    if lengths.count(1) == len(lengths):  # the common case: one value per input
        return [{k: v[0] for k, v in data.items()}]
    if min(lengths) == 0:
        return []  # an empty list upstream: nothing to map over
    count = max(lengths)
    return [{k: v[i] if i < len(v) else v[-1] for k, v in data.items()} for i in range(count)]


def find_blocker(kwargs: dict[str, Any], whole_lists: bool) -> ExecutionBlocker | None:
    for value in kwargs.values():
        if whole_lists and isinstance(value, list):
            for item in value:
                if isinstance(item, ExecutionBlocker):
                    return item
        elif isinstance(value, ExecutionBlocker):
            return value
    return None


@dataclass
class CallResults:
    """What a node's calls returned, sorted out."""

    values: list[tuple[Any, ...]] = field(default_factory=list)
    ui: dict[str, Any] | None = None
    # In call order: (False, value tuple) or (True, (expanded graph, result tuple)).
    parts: list[tuple[bool, Any]] = field(default_factory=list)
    blocked_calls: int = 0

    @property
    def expands(self) -> bool:
        return any(is_subgraph for is_subgraph, _ in self.parts)


def sort_results(info: NodeClass, results: list[Any]) -> CallResults:
    sorted_out = CallResults()
    uis: list[dict[str, Any]] = []
    for result in results:
        if isinstance(result, dict):
            ui = result.get("ui")
            if isinstance(ui, dict):
                uis.append(ui)
            if "expand" in result:
                expanded = (result["expand"], as_tuple(info, result.get("result")))
                sorted_out.parts.append((True, expanded))
                continue
            if "result" in result:
                value = as_tuple(info, result["result"])
            elif info.output_count == 0:
                value = ()
            else:
                raise NodeOutputError(
                    f"{info.class_type} returned a dict without 'result' but declares "
                    f"{info.output_count} output(s)"
                )
        else:
            if isinstance(result, BlockedCall):
                sorted_out.blocked_calls += 1
                result = result.blocker
            value = as_tuple(info, result)
        sorted_out.values.append(value)
        sorted_out.parts.append((False, value))
    sorted_out.ui = merge_ui(uis)
    return sorted_out


def as_tuple(info: NodeClass, value: Any) -> tuple[Any, ...]:
    """One call's return value as one item per declared output, or a clear error."""
    if isinstance(value, ExecutionBlocker):
        return (value,) * info.output_count
    if value is None and info.output_count == 0:
        return ()
    if not isinstance(value, (tuple, list)):
        raise NodeOutputError(
            f"{info.class_type}.{info.function} returned {type(value).__name__}; a node must "
            f"return a tuple with one value per output ({info.output_count} declared)"
        )
    if len(value) < info.output_count:
        raise NodeOutputError(
            f"{info.class_type}.{info.function} returned {len(value)} value(s) but declares "
            f"{info.output_count} output(s) in RETURN_TYPES"
        )
    return tuple(value)


def merge_outputs(info: NodeClass, values: list[tuple[Any, ...]]) -> Outputs:
    """Per output: OUTPUT_IS_LIST outputs are concatenated, others collect one item per call."""
    outputs: Outputs = []
    for slot in range(info.output_count):
        if info.output_is_list[slot]:
            merged: list[Any] = []
            for value in values:
                item = value[slot]
                if isinstance(item, ExecutionBlocker):
                    merged.append(item)
                else:
                    merged.extend(item)
            outputs.append(merged)
        else:
            outputs.append([value[slot] for value in values])
    return outputs


def merge_ui(uis: list[dict[str, Any]]) -> dict[str, Any] | None:
    """Mapped calls' UI dicts, concatenated key by key."""
    if not uis:
        return None
    if len(uis) == 1:
        return uis[0]
    merged: dict[str, Any] = {}
    for ui in uis:
        for key, value in ui.items():
            bucket = merged.setdefault(key, [])
            if isinstance(value, (list, tuple)):
                bucket.extend(value)
            else:
                bucket.append(value)
    return merged


async def as_coroutine(awaitable: Awaitable[Any]) -> Any:
    return await awaitable
