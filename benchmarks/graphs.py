"""The benchmark graphs of trivial built-in nodes, shared by the engine and server benchmarks."""

from __future__ import annotations

from typing import Any


def chain(n: int, start: int) -> dict[str, Any]:
    """PrimitiveInt -> (n-2) x IntMath(+1) -> PreviewAny."""
    prompt: dict[str, Any] = {"0": {"class_type": "PrimitiveInt", "inputs": {"value": start}}}
    for i in range(1, n - 1):
        prompt[str(i)] = {
            "class_type": "IntMath",
            "inputs": {"a": [str(i - 1), 0], "b": 1, "operation": "add"},
        }
    prompt[str(n - 1)] = {"class_type": "PreviewAny", "inputs": {"source": [str(n - 2), 0]}}
    return prompt


def tree(n: int, start: int) -> dict[str, Any]:
    """n/2 PrimitiveInt leaves reduced pairwise by IntMath(add), then PreviewAny."""
    prompt: dict[str, Any] = {}
    level = []
    for i in range(n // 2):
        prompt[f"l{i}"] = {"class_type": "PrimitiveInt", "inputs": {"value": start + i}}
        level.append(f"l{i}")
    counter = 0
    while len(level) > 1:
        nxt = []
        for a, b in zip(level[::2], level[1::2], strict=False):
            node_id = f"s{counter}"
            counter += 1
            prompt[node_id] = {
                "class_type": "IntMath",
                "inputs": {"a": [a, 0], "b": [b, 0], "operation": "add"},
            }
            nxt.append(node_id)
        if len(level) % 2:
            nxt.append(level[-1])
        level = nxt
    prompt["out"] = {"class_type": "PreviewAny", "inputs": {"source": [level[0], 0]}}
    return prompt
