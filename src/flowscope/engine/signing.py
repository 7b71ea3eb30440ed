"""Merkle signatures of a job's nodes (the cache keys), with IS_CHANGED evaluated once each."""

from __future__ import annotations

import inspect
import os
from collections.abc import Callable
from typing import Any

from flowscope.engine.dynprompt import DynamicPrompt
from flowscope.engine.errors import DependencyCycleError
from flowscope.engine.node_calls import mapped_calls
from flowscope.engine.node_class import NodeClass
from flowscope.graph.prompt import NodeSpec, is_link, unwrap_value
from flowscope.graph.signature import Signature, fingerprint_token, node_signature
from flowscope.nodes.blocker import ExecutionBlocker

HiddenInputs = Callable[[str, NodeClass], dict[str, list[Any]]]


class SigningError(Exception):
    """A node could not be signed (unknown type, dangling link, cycle); `cause` says why."""

    def __init__(self, node_id: str, cause: Exception) -> None:
        super().__init__(str(cause))
        self.node_id = node_id
        self.cause = cause


class Signer:
    def __init__(
        self,
        dynprompt: DynamicPrompt,
        node_class: Callable[[str], NodeClass],
        hidden_inputs: HiddenInputs,
    ) -> None:
        self.dynprompt = dynprompt
        self.node_class = node_class
        self.hidden_inputs = hidden_inputs
        self.signatures: dict[str, Signature] = {}

    async def sign_prompt(self, roots: list[str]) -> list[str]:
        """Sign every submitted node the roots depend on (lazy inputs included), sources first.

        One iterative pass: a node is signed once all its sources are, which keeps this O(N) at
        any depth. Returns the nodes in the order they were signed.
        """
        prompt = self.dynprompt.original_prompt
        signatures = self.signatures
        order: list[str] = []
        expanded: set[str] = set()
        for root in roots:
            stack = [root]
            while stack:
                node_id = stack[-1]
                if node_id in signatures:
                    stack.pop()
                    continue
                node = prompt[node_id]
                inputs = node.get("inputs", {})
                if node_id not in expanded:
                    expanded.add(node_id)
                    unsigned = [
                        v[0]
                        for v in inputs.values()
                        # is_link(), inlined: this runs for every node of every job
                        if type(v) is list
                        and len(v) == 2
                        and type(v[0]) is str
                        and isinstance(v[1], (int, float))
                        and v[0] not in signatures
                        and v[0] in prompt
                    ]
                    for source in unsigned:
                        if source in expanded:  # expanded but unsigned: it is below us
                            cycle = DependencyCycleError(f"node {node_id} is on a dependency cycle")
                            raise SigningError(node_id, cycle)
                    if unsigned:
                        stack.extend(unsigned)
                        continue
                stack.pop()
                await self._sign(node_id, node, signatures)
                order.append(node_id)
        return order

    async def sign_expansion(self, new_nodes: list[str]) -> None:
        """Sign the nodes an expansion added, in dependency order among themselves."""
        new = set(new_nodes)
        order: list[str] = []
        done: set[str] = set()
        for root in new_nodes:
            stack: list[tuple[str, bool]] = [(root, False)]
            while stack:
                node_id, expanded = stack.pop()
                if node_id in done:
                    continue
                if expanded:
                    done.add(node_id)
                    order.append(node_id)
                    continue
                stack.append((node_id, True))
                for value in self.dynprompt.get_node(node_id).get("inputs", {}).values():
                    if is_link(value) and value[0] in new and value[0] not in done:
                        stack.append((value[0], False))
        for node_id in order:
            node = self.dynprompt.get_node(node_id)
            sources: dict[str, Signature] = {}
            for value in node.get("inputs", {}).values():
                if is_link(value):
                    # A link to a node outside the plan gets a key that never matches.
                    sources[value[0]] = self.signatures.get(value[0]) or os.urandom(16)
            await self._sign(node_id, node, sources)

    async def _sign(self, node_id: str, node: NodeSpec, sources: dict[str, Signature]) -> None:
        try:
            info = self.node_class(node_id)
            fingerprint = await self._fingerprint(node_id, node, info) if info.fingerprint else ""
            self.signatures[node_id] = node_signature(
                info.class_type,
                node.get("inputs", {}),
                sources,
                fingerprint,
                node_id if info.keyed_by_id else None,
            )
        except Exception as exc:  # an unvalidated prompt: unknown type, dangling link
            raise SigningError(node_id, exc) from exc

    async def _fingerprint(self, node_id: str, node: NodeSpec, info: NodeClass) -> str:
        """IS_CHANGED on the constant inputs (links are None), mapped like execution."""
        data: dict[str, list[Any]] = {}
        for name, value in node.get("inputs", {}).items():
            if name in info.inputs:
                data[name] = [None] if is_link(value) else [unwrap_value(value)]
        data.update(self.hidden_inputs(node_id, info))
        if info.fingerprint_params is not None:
            data = {k: v for k, v in data.items() if k in info.fingerprint_params}
        try:
            results = []
            for kwargs in mapped_calls(data, info):
                result = info.fingerprint(**kwargs)
                if inspect.isawaitable(result):
                    result = await result
                results.append(None if isinstance(result, ExecutionBlocker) else result)
        except Exception:
            return fingerprint_token(float("nan"))  # a failing IS_CHANGED means "always changed"
        return fingerprint_token(results)
