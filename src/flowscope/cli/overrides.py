"""`--set NODE.INPUT=VALUE`: override a prompt input from the command line."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from flowscope.graph.prompt import Prompt, node_title


class OverrideError(ValueError):
    pass


@dataclass(frozen=True)
class Override:
    node: str
    input: str
    value: Any


def parse_override(text: str) -> Override:
    target, sep, raw = text.partition("=")
    node, dot, name = target.rpartition(".")
    if not sep or not dot or not node or not name:
        raise OverrideError(f"--set {text!r}: expected NODE.INPUT=VALUE, e.g. 3.seed=42")
    try:
        value: Any = json.loads(raw)
    except json.JSONDecodeError:
        value = raw  # plain text, so --set 6.text=a cat works without quoting
    if isinstance(value, list):
        value = {"__value__": value}  # a list value, not a link
    return Override(node.strip(), name.strip(), value)


def apply_overrides(prompt: Prompt, overrides: list[Override]) -> Prompt:
    """A copy of `prompt` with the overrides applied; NODE matches an id, else a unique title."""
    result = {
        node_id: {**node, "inputs": dict(node.get("inputs", {}))}
        for node_id, node in prompt.items()
    }
    for override in overrides:
        node_id = _find_node(result, override.node)
        result[node_id]["inputs"][override.input] = override.value
    return result


def _find_node(prompt: Prompt, key: str) -> str:
    if key in prompt:
        return key
    matches = [node_id for node_id, node in prompt.items() if node_title(node) == key]
    if len(matches) == 1:
        return matches[0]
    if matches:
        raise OverrideError(
            f"--set: several nodes are titled {key!r} ({', '.join(matches)}); use an id"
        )
    listed = ", ".join(
        f"{node_id} ({node.get('class_type')})" for node_id, node in list(prompt.items())[:20]
    )
    raise OverrideError(f"--set: no node with id or title {key!r}; nodes: {listed}")
