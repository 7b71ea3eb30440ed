"""DynamicPrompt: the submitted prompt plus the ephemeral nodes that node expansion adds.

Nodes receive it through the DYNPROMPT hidden input, so its method names follow ComfyUI's.
"""

from __future__ import annotations

from typing import Any

from flowscope.graph.prompt import NodeSpec, Prompt


class NodeNotFoundError(KeyError):
    def __str__(self) -> str:
        return f"node {self.args[0]!r} is not in the prompt"


class DuplicateNodeError(ValueError):
    """An expansion reused a node id that already exists."""


class DynamicPrompt:
    def __init__(self, original_prompt: Prompt) -> None:
        self.original_prompt = original_prompt
        self.ephemeral_prompt: Prompt = {}
        self.ephemeral_parents: dict[str, str] = {}
        self.ephemeral_display: dict[str, str] = {}

    def get_node(self, node_id: str) -> NodeSpec:
        node = self.ephemeral_prompt.get(node_id)
        if node is None:
            node = self.original_prompt.get(node_id)
            if node is None:
                raise NodeNotFoundError(node_id)
        return node

    def has_node(self, node_id: str) -> bool:
        return node_id in self.original_prompt or node_id in self.ephemeral_prompt

    def is_ephemeral(self, node_id: str) -> bool:
        return node_id in self.ephemeral_prompt

    def add_ephemeral_node(
        self, node_id: str, node_info: NodeSpec, parent_id: str, display_id: str
    ) -> None:
        if self.has_node(node_id):
            raise DuplicateNodeError(
                f"node expansion created node id {node_id!r}, which already exists; "
                "expanded node ids must be unique (use GraphBuilder prefixes)"
            )
        self.ephemeral_prompt[node_id] = node_info
        self.ephemeral_parents[node_id] = parent_id
        self.ephemeral_display[node_id] = display_id

    def get_real_node_id(self, node_id: str) -> str:
        """The top-level (submitted) node an ephemeral node descends from."""
        while node_id in self.ephemeral_parents:
            node_id = self.ephemeral_parents[node_id]
        return node_id

    def get_parent_node_id(self, node_id: str) -> str | None:
        return self.ephemeral_parents.get(node_id)

    def get_display_node_id(self, node_id: str) -> str:
        while node_id in self.ephemeral_display:
            display = self.ephemeral_display[node_id]
            if display == node_id:
                break
            node_id = display
        return node_id

    def all_node_ids(self) -> set[str]:
        return set(self.original_prompt) | set(self.ephemeral_prompt)

    def get_original_prompt(self) -> Prompt:
        return self.original_prompt

    def node_meta(self, node_id: str) -> dict[str, Any]:
        """ComfyUI's per-node `meta` entry (history and progress_state)."""
        if node_id not in self.ephemeral_prompt:
            return {
                "node_id": node_id,
                "display_node": node_id,
                "parent_node": None,
                "real_node_id": node_id,
            }
        return {
            "node_id": node_id,
            "display_node": self.get_display_node_id(node_id),
            "parent_node": self.get_parent_node_id(node_id),
            "real_node_id": self.get_real_node_id(node_id),
        }
