"""The node registry: class_type -> node class, and the `/object_info` view of it."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flowscope.graph.schema import NodeSchema
from flowscope.nodes import protocol


@dataclass(frozen=True, slots=True)
class RegisteredNode:
    class_type: str
    cls: type
    display_name: str
    # `python_module` in /object_info: "nodes" for built-ins, "custom_nodes.<pack>" for packs.
    python_module: str
    builtin: bool


@dataclass
class RegistrationReport:
    """What happened when one set of mappings was registered."""

    added: list[str] = field(default_factory=list)
    # Names a pack tried to register that are built-ins: packs cannot override core nodes.
    ignored_builtins: list[str] = field(default_factory=list)
    # Names an earlier pack had registered; the later pack wins, as in ComfyUI.
    replaced: list[str] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class ObjectInfoError:
    class_type: str
    message: str


class NodeRegistry:
    def __init__(self) -> None:
        self._nodes: dict[str, RegisteredNode] = {}
        self.web_directories: dict[str, Path] = {}

    def register_mappings(
        self,
        mappings: Mapping[str, type],
        display_names: Mapping[str, str] | None = None,
        *,
        python_module: str,
        builtin: bool = False,
    ) -> RegistrationReport:
        """Add NODE_CLASS_MAPPINGS (+ NODE_DISPLAY_NAME_MAPPINGS) from one module."""
        report = RegistrationReport()
        display_names = display_names or {}
        for class_type, cls in mappings.items():
            existing = self._nodes.get(class_type)
            if existing is not None and existing.builtin:
                report.ignored_builtins.append(class_type)
                continue
            if existing is not None:
                report.replaced.append(class_type)
            self._nodes[class_type] = RegisteredNode(
                class_type=class_type,
                cls=cls,
                display_name=str(display_names.get(class_type, class_type)),
                python_module=python_module,
                builtin=builtin,
            )
            report.added.append(class_type)
        return report

    def get(self, class_type: str) -> type | None:
        entry = self._nodes.get(class_type)
        return entry.cls if entry is not None else None

    def entry(self, class_type: str) -> RegisteredNode | None:
        return self._nodes.get(class_type)

    def __contains__(self, class_type: object) -> bool:
        return class_type in self._nodes

    def __iter__(self) -> Iterator[RegisteredNode]:
        return iter(list(self._nodes.values()))

    def __len__(self) -> int:
        return len(self._nodes)

    def schema(self, class_type: str) -> NodeSchema | None:
        """The schema of a registered node (INPUT_TYPES is evaluated now), or None if unknown."""
        entry = self._nodes.get(class_type)
        return protocol.schema_of(class_type, entry.cls) if entry is not None else None

    def node_info(self, class_type: str) -> dict[str, Any] | None:
        entry = self._nodes.get(class_type)
        if entry is None:
            return None
        return protocol.node_info(class_type, entry.cls, entry.display_name, entry.python_module)

    def object_info(self) -> tuple[dict[str, Any], list[ObjectInfoError]]:
        """Every node's definition; a node whose INPUT_TYPES raises is left out and reported."""
        info: dict[str, Any] = {}
        errors: list[ObjectInfoError] = []
        for entry in list(self._nodes.values()):
            try:
                info[entry.class_type] = protocol.node_info(
                    entry.class_type, entry.cls, entry.display_name, entry.python_module
                )
            except Exception as exc:  # a broken custom node must not hide the others
                errors.append(ObjectInfoError(entry.class_type, f"{type(exc).__name__}: {exc}"))
        return info, errors
