"""Node schemas: what the graph layer knows about a node class (inputs, outputs, flags).

The `nodes` package builds these from node classes (INPUT_TYPES and friends); validation and the
engine read only this shape, so `graph` never imports node code.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

COMBO = "COMBO"
ANY_TYPE = "*"


@dataclass(frozen=True, slots=True)
class InputSpec:
    """One declared input: `name: (TYPE, options)` from INPUT_TYPES."""

    name: str
    type: str
    options: Mapping[str, Any]
    required: bool
    # Combo inputs: the allowed values (`([...], {...})`, or `("COMBO", {"options": [...]})`).
    choices: tuple[Any, ...] | None
    # The declaration as written, reported as `input_config` in validation errors.
    config: Any

    @property
    def lazy(self) -> bool:
        return bool(self.options.get("lazy", False))

    @property
    def raw_link(self) -> bool:
        return bool(self.options.get("rawLink", False))


@dataclass(frozen=True, slots=True)
class CustomValidation:
    """A node's VALIDATE_INPUTS hook and what its signature says it takes over."""

    call: Callable[..., Any]
    parameters: frozenset[str]
    takes_kwargs: bool

    def covers(self, input_name: str) -> bool:
        """Whether the hook validates this input itself (disabling the built-in checks)."""
        return self.takes_kwargs or input_name in self.parameters

    @property
    def wants_input_types(self) -> bool:
        return "input_types" in self.parameters


@dataclass(frozen=True, slots=True)
class NodeSchema:
    class_type: str
    inputs: Mapping[str, InputSpec]
    hidden: Mapping[str, str]
    return_types: tuple[str, ...]
    output_is_list: tuple[bool, ...]
    is_output: bool
    input_is_list: bool
    custom_validation: CustomValidation | None = None


def parse_input(name: str, declaration: Any, required: bool) -> InputSpec:
    """Read one INPUT_TYPES entry, `(TYPE,)` or `(TYPE, options)`, in either combo style."""
    if isinstance(declaration, str):
        declaration = (declaration,)
    if not isinstance(declaration, (tuple, list)) or not declaration:
        raise ValueError(f"input {name!r} is declared as {declaration!r}, not (TYPE, options)")
    raw_type = declaration[0]
    options = declaration[1] if len(declaration) > 1 and isinstance(declaration[1], Mapping) else {}
    choices: tuple[Any, ...] | None = None
    if isinstance(raw_type, (list, tuple)):
        choices = tuple(raw_type)
        type_name = COMBO
    else:
        type_name = str(raw_type)
        if type_name == COMBO and isinstance(options.get("options"), (list, tuple)):
            choices = tuple(options["options"])
    return InputSpec(name, type_name, options, required, choices, declaration)


def normalize_type(type_: Any) -> str:
    """An output or input type as a string; list-typed (combo) outputs count as COMBO."""
    if isinstance(type_, (list, tuple)):
        return COMBO
    return str(type_)


def types_compatible(received: str, expected: str) -> bool:
    """ComfyUI's link type rule: equal, `*` on either side, or comma-unions that share a member."""
    if received == expected or ANY_TYPE in (received, expected):
        return True
    received_set = {part.strip() for part in received.split(",")}
    expected_set = {part.strip() for part in expected.split(",")}
    if ANY_TYPE in received_set or ANY_TYPE in expected_set:
        return True
    return not received_set.isdisjoint(expected_set)


def schema_inputs(input_types: Mapping[str, Any]) -> tuple[dict[str, InputSpec], dict[str, str]]:
    """Split an INPUT_TYPES() result into ordered input specs and hidden inputs."""
    inputs: dict[str, InputSpec] = {}
    for section, required in (("required", True), ("optional", False)):
        declared = input_types.get(section) or {}
        for name, declaration in declared.items():
            inputs[name] = parse_input(name, declaration, required)
    hidden_section = input_types.get("hidden") or {}
    hidden = {
        # V3-style packs write hidden kinds as tuples: ("PROMPT",).
        name: str(kind[0] if isinstance(kind, (tuple, list)) and kind else kind)
        for name, kind in hidden_section.items()
    }
    return inputs, hidden


def output_flags(value: Sequence[bool] | bool | None, count: int) -> tuple[bool, ...]:
    """OUTPUT_IS_LIST as one flag per output (missing means False)."""
    if value is None:
        return (False,) * count
    if isinstance(value, bool):
        return (value,) * count
    flags = tuple(bool(v) for v in value)
    return flags + (False,) * (count - len(flags))
