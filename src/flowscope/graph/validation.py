"""Prompt validation with ComfyUI's error types and shapes (spec §3.1), iterative on any depth.

Validation never raises for bad input: every problem becomes an error dict naming the node and
the input. Compared with ComfyUI it also reports cycles, links to missing nodes and bad output
indexes as clean errors, lists in `dependent_outputs` only the outputs that truly depend on a
node, and orders everything deterministically.
"""

from __future__ import annotations

import traceback
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from flowscope.graph.prompt import Prompt, is_link, node_sort_key, unwrap_value
from flowscope.graph.schema import COMBO, InputSpec, NodeSchema, types_compatible

SchemaLookup = Callable[[str], NodeSchema | None]
# Combo lists longer than this are summarised in errors, as ComfyUI does.
MAX_LISTED_CHOICES = 20
# Cycles longer than this are named by their first nodes only: every node on the cycle carries the
# error, and listing the whole cycle in each would make the report quadratic in its length.
MAX_LISTED_CYCLE_NODES = 12


@dataclass
class ValidationResult:
    ok: bool
    # The prompt to run: constants coerced and `__value__` wrappers removed (kept only around
    # lists, which would otherwise read as links). Nodes that needed no change are shared with
    # the submitted prompt, not copied.
    prompt: Prompt
    # Output node ids that passed, in run order.
    outputs: list[str]
    node_errors: dict[str, dict[str, Any]] = field(default_factory=dict)
    # The top-level error (`invalid_prompt`, `prompt_no_outputs`, ...) when nothing can run.
    error: dict[str, Any] | None = None


def error_dict(
    type_: str, message: str, details: str = "", extra_info: dict[str, Any] | None = None
) -> dict[str, Any]:
    return {"type": type_, "message": message, "details": details, "extra_info": extra_info or {}}


def _prompt_error(type_: str, message: str, details: str = "") -> ValidationResult:
    return ValidationResult(False, {}, [], {}, error_dict(type_, message, details))


def validate_prompt(
    prompt: Any,
    schema_of: SchemaLookup,
    partial_execution_targets: Sequence[str] | None = None,
) -> ValidationResult:
    """Validate an API-format prompt; see the module docstring for how errors are reported."""
    structural = _check_structure(prompt)
    if structural is not None:
        return structural
    assert isinstance(prompt, dict)

    schemas: dict[str, NodeSchema] = {}
    schema_errors: dict[str, dict[str, Any]] = {}
    # Sorted, so the node named in a prompt-level error does not depend on the JSON key order.
    for node_id in sorted(prompt, key=node_sort_key):
        class_type = prompt[node_id]["class_type"]
        if class_type in schemas or class_type in schema_errors:
            continue
        try:
            schema = schema_of(class_type)
        except Exception as exc:  # a custom node's INPUT_TYPES can raise anything
            schema_errors[class_type] = _exception_error("exception_during_validation", exc)
            continue
        if schema is None:
            return _prompt_error(
                "invalid_prompt",
                f"Cannot execute because node {class_type} does not exist.",
                f"Node ID '#{node_id}'",
            )
        schemas[class_type] = schema

    targets = _output_targets(prompt, schemas, partial_execution_targets)
    if isinstance(targets, ValidationResult):
        return targets
    return _Validator(prompt, schemas, schema_errors).run(targets)


def _check_structure(prompt: Any) -> ValidationResult | None:
    if not isinstance(prompt, dict):
        return _prompt_error(
            "invalid_prompt",
            "Cannot execute because the prompt is not an object of nodes.",
            f"expected {{node_id: {{class_type, inputs}}}}, got {type(prompt).__name__}",
        )
    for node_id in prompt:
        if not isinstance(node_id, str):
            return _prompt_error("invalid_prompt", "Node ids must be strings.", repr(node_id))
    for node_id in sorted(prompt, key=node_sort_key):
        node = prompt[node_id]
        if not isinstance(node, dict) or "class_type" not in node:
            return _prompt_error(
                "invalid_prompt",
                "Cannot execute because a node is missing the class_type property.",
                f"Node ID '#{node_id}'",
            )
        if not isinstance(node["class_type"], str):
            return _prompt_error(
                "invalid_prompt",
                f"Node '#{node_id}' has a class_type that is not a string.",
                f"Node ID '#{node_id}'",
            )
        inputs = node.get("inputs", {})
        if not isinstance(inputs, dict) or not all(isinstance(name, str) for name in inputs):
            return _prompt_error(
                "invalid_prompt",
                f"Node '#{node_id}' ({node['class_type']}) has inputs that are not an object "
                "of named values.",
                f"Node ID '#{node_id}'",
            )
    return None


def _output_targets(
    prompt: Prompt, schemas: Mapping[str, NodeSchema], partial: Sequence[str] | None
) -> list[str] | ValidationResult:
    if partial is not None:
        if not isinstance(partial, (list, tuple)) or not all(isinstance(t, str) for t in partial):
            return _prompt_error(
                "invalid_prompt",
                "partial_execution_targets must be a list of node ids.",
                repr(partial)[:200],
            )
        missing = [t for t in partial if t not in prompt]
        if missing:
            return _prompt_error(
                "invalid_prompt",
                "partial_execution_targets names nodes that are not in the prompt.",
                ", ".join(f"'#{t}'" for t in missing),
            )
        targets = list(dict.fromkeys(partial))
    else:
        targets = [
            node_id
            for node_id, node in prompt.items()
            if (schema := schemas.get(node["class_type"])) is not None and schema.is_output
        ]
    if not targets:
        return _prompt_error(
            "prompt_no_outputs", "Prompt has no outputs", "Add an output node such as SaveImage."
        )
    return sorted(targets, key=node_sort_key)


def _exception_error(type_: str, exc: BaseException, **extra: Any) -> dict[str, Any]:
    from flowscope.telemetry.events import qualified_name

    message = "Exception when validating node"
    if type_ == "exception_during_inner_validation":
        message = "Exception when validating inner node"
    return error_dict(
        type_,
        message,
        str(exc),
        {
            **extra,
            "exception_message": str(exc),
            "exception_type": qualified_name(type(exc)),
            "traceback": traceback.format_tb(exc.__traceback__),
        },
    )


class _Validator:
    def __init__(
        self,
        prompt: Prompt,
        schemas: Mapping[str, NodeSchema],
        schema_errors: Mapping[str, dict[str, Any]],
    ) -> None:
        self.source = prompt
        self.schemas = schemas
        self.schema_errors = schema_errors
        self.normalized: Prompt = {}
        self.own_errors: dict[str, list[dict[str, Any]]] = {}
        self.order: list[str] = []  # post-order: every node after the nodes it links from

    def run(self, targets: list[str]) -> ValidationResult:
        self._walk(targets)
        for node_id in self.order:
            self.own_errors[node_id] = self._check_node(node_id)
        self._report_cycles()

        # Which errored nodes each node depends on (itself included), as a bit set over
        # `errored` (in dependency order): linear in the graph even when a long chain or cycle
        # errors at every node, where sets of ids per node would be quadratic.
        errored: list[str] = []
        failed_upstream: dict[str, int] = {}
        for node_id in self.order:
            mask = 0
            for value in self.normalized[node_id]["inputs"].values():
                if is_link(value):
                    mask |= failed_upstream.get(value[0], 0)
            if self.own_errors[node_id]:
                mask |= 1 << len(errored)
                errored.append(node_id)
            if mask:
                failed_upstream[node_id] = mask

        good = [t for t in targets if t not in failed_upstream]
        entries: dict[int, dict[str, Any]] = {}
        for output in targets:
            bits = bin(failed_upstream.get(output, 0))[:1:-1]  # lowest bit first
            for bit in (i for i, digit in enumerate(bits) if digit == "1"):
                node_id = errored[bit]
                entry = entries.setdefault(
                    bit,
                    {
                        "errors": self.own_errors[node_id],
                        "dependent_outputs": [],
                        "class_type": self.source[node_id]["class_type"],
                    },
                )
                entry["dependent_outputs"].append(output)
        node_errors = {errored[bit]: entries[bit] for bit in sorted(entries)}
        prompt = {
            node_id: self.normalized.get(node_id, node) for node_id, node in self.source.items()
        }
        if good:
            return ValidationResult(True, prompt, good, node_errors)
        details = "\n".join(
            f"{error['message']}: {error['details']}"
            for entry in node_errors.values()
            for error in entry["errors"]
        )
        error = error_dict(
            "prompt_outputs_failed_validation", "Prompt outputs failed validation", details
        )
        return ValidationResult(False, prompt, [], node_errors, error)

    def _walk(self, targets: list[str]) -> None:
        """Iterative DFS from the outputs: post-order, and cycles noted (not recursed into)."""
        state: dict[str, int] = {}  # 1 = on the stack, 2 = done
        self.cycles: list[list[str]] = []
        for target in targets:
            if target in state:
                continue
            stack: list[tuple[str, list[str]]] = [(target, self._sources(target))]
            state[target] = 1
            path = [target]
            while stack:
                node_id, sources = stack[-1]
                if sources:
                    source = sources.pop()
                    seen = state.get(source)
                    if seen is None:
                        state[source] = 1
                        path.append(source)
                        stack.append((source, self._sources(source)))
                    elif seen == 1:
                        self.cycles.append(path[path.index(source) :])
                    continue
                stack.pop()
                path.pop()
                state[node_id] = 2
                self.order.append(node_id)

    def _sources(self, node_id: str) -> list[str]:
        """Linked source ids that exist, reversed so the DFS visits them in input-name order
        (not JSON key order: the report must not depend on how the client ordered keys)."""
        inputs = self.source[node_id].get("inputs", {})
        found = [
            value[0]
            for _, value in sorted(inputs.items())
            if is_link(value) and value[0] in self.source
        ]
        found.reverse()
        return found

    def _report_cycles(self) -> None:
        for cycle in self.cycles:
            ordered = list(reversed(cycle))  # source -> consumer order reads naturally
            listed = ordered[:MAX_LISTED_CYCLE_NODES]
            names = " → ".join(f"{n} ({self.source[n]['class_type']})" for n in listed)
            if len(ordered) > len(listed):
                names += f" → … {len(ordered) - len(listed)} more"
            names += f" → {ordered[0]}"
            for node_id in cycle:
                self.own_errors[node_id].append(
                    error_dict(
                        "dependency_cycle",
                        "Dependency cycle",
                        f"Node '{node_id}' is part of a cycle: {names}",
                        {"cycle": listed, "cycle_length": len(ordered)},
                    )
                )

    def _check_node(self, node_id: str) -> list[dict[str, Any]]:
        node = self.source[node_id]
        class_type = node["class_type"]
        submitted: dict[str, Any] = node.get("inputs", {})
        inputs = submitted
        # Copy on write: most nodes' constants already have their declared types.
        self.normalized[node_id] = node
        if class_type in self.schema_errors:
            return [self.schema_errors[class_type]]
        schema = self.schemas[class_type]
        custom = schema.custom_validation
        errors: list[dict[str, Any]] = []
        received_types: dict[str, str] = {}
        for name, spec in schema.inputs.items():
            if name not in inputs:
                if spec.required:
                    errors.append(
                        error_dict(
                            "required_input_missing",
                            "Required input is missing",
                            name,
                            {"input_name": name},
                        )
                    )
                continue
            original = value = inputs[name]
            if type(value) is list:
                link_error = self._check_link(node_id, spec, value, received_types, schema)
                if link_error is not None:
                    errors.append(link_error)
                continue
            value = unwrap_value(value)
            try:
                value = _coerce(spec.type, value)
            except (TypeError, ValueError, OverflowError) as exc:
                errors.append(
                    error_dict(
                        "invalid_input_type",
                        f"Failed to convert an input value to a {spec.type} value",
                        f"{name}, {value!r}, {exc}",
                        {
                            "input_name": name,
                            "input_config": spec.config,
                            "received_value": value,
                            "exception_message": str(exc),
                        },
                    )
                )
                continue
            unwrapped = unwrap_value(original)
            if value is not unwrapped or (original is not unwrapped and type(value) is not list):
                if inputs is submitted:
                    inputs = dict(submitted)
                    self.normalized[node_id] = {**node, "inputs": inputs}
                # A list constant keeps its wrapper: bare, it would read as a link (to the engine
                # and to validation when the validated prompt is submitted again).
                inputs[name] = {"__value__": value} if type(value) is list else value
            if custom is None or not custom.covers(name):
                range_error = _check_range(spec, value)
                if range_error is not None:
                    errors.append(range_error)
        for name, value in inputs.items():
            # Undeclared linked inputs are still passed at run time (dynamic-input packs rely on
            # it), so their links must point somewhere.
            if name not in schema.inputs and is_link(value) and value[0] not in self.source:
                errors.append(
                    error_dict(
                        "bad_linked_input",
                        f"Input '{name}' of node '{node_id}' links to node '{value[0]}', "
                        "which is not in the prompt",
                        f"{name} -> missing node '{value[0]}'",
                        {"input_name": name, "received_value": value, "linked_node": value},
                    )
                )
        if custom is not None and not errors:
            errors.extend(self._run_custom_validation(node_id, schema, inputs, received_types))
        return errors

    def _check_link(
        self,
        node_id: str,
        spec: InputSpec,
        value: list[Any],
        received_types: dict[str, str],
        schema: NodeSchema,
    ) -> dict[str, Any] | None:
        name = spec.name
        extra = {"input_name": name, "input_config": spec.config, "received_value": value}
        if not is_link(value):
            return error_dict(
                "bad_linked_input",
                "Bad linked input, must be a length-2 list of [node_id, slot_index]",
                name,
                extra,
            )
        source_id, slot = value
        source = self.source.get(source_id)
        if source is None:
            return error_dict(
                "bad_linked_input",
                f"Input '{name}' of node '{node_id}' links to node '{source_id}', "
                "which is not in the prompt",
                f"{name} -> missing node '{source_id}'",
                {**extra, "linked_node": value},
            )
        source_schema = self.schemas.get(source["class_type"])
        if source_schema is None:  # its INPUT_TYPES failed; that node reports the error
            return None
        outputs = source_schema.return_types
        # A float slot must be integral (NaN and infinities are not: int() would raise).
        integral = not isinstance(slot, float) or slot.is_integer()
        if not integral or not 0 <= int(slot) < len(outputs):
            return error_dict(
                "bad_linked_input",
                f"Input '{name}' of node '{node_id}' links to output {slot} of node "
                f"'{source_id}' ({source['class_type']}), which has {len(outputs)} output(s)",
                f"{name} -> '{source_id}' output {slot}",
                {**extra, "linked_node": value},
            )
        received = outputs[int(slot)]
        received_types[name] = received
        wants_types = (
            schema.custom_validation is not None and schema.custom_validation.wants_input_types
        )
        if not wants_types and not types_compatible(received, spec.type):
            return error_dict(
                "return_type_mismatch",
                "Return type mismatch between linked nodes",
                f"{name}, received_type({received}) mismatch input_type({spec.type})",
                {
                    "input_name": name,
                    "input_config": spec.config,
                    "received_type": received,
                    "linked_node": value,
                },
            )
        return None

    def _run_custom_validation(
        self,
        node_id: str,
        schema: NodeSchema,
        inputs: dict[str, Any],
        received_types: dict[str, str],
    ) -> list[dict[str, Any]]:
        custom = schema.custom_validation
        assert custom is not None
        arguments: dict[str, Any] = {}
        for name in schema.inputs:
            if not custom.covers(name) or name not in inputs:
                continue
            value = inputs[name]
            # Links are unknown until run time.
            arguments[name] = None if is_link(value) else unwrap_value(value)
        if custom.wants_input_types:
            arguments["input_types"] = received_types
        for name, kind in schema.hidden.items():
            if custom.covers(name) and kind == "UNIQUE_ID":
                arguments[name] = node_id
            elif custom.covers(name) and kind == "PROMPT":
                arguments[name] = self.source
        try:
            result = custom.call(**arguments)
        except Exception as exc:
            return [_exception_error("exception_during_validation", exc)]
        if result is True:
            return []
        # Name the inputs the hook judged (not `input_types` or hidden values: they are no inputs).
        covered = ", ".join(name for name in arguments if name in schema.inputs) or "inputs"
        details = covered if result is False else f"{covered} - {result}"
        return [
            error_dict(
                "custom_validation_failed",
                "Custom validation failed for node",
                details,
                {"input_name": covered, "received_value": result},
            )
        ]


def _coerce(type_: str, value: Any) -> Any:
    """Convert a constant to its declared widget type (ComfyUI coerces and writes it back)."""
    if type_ == "INT":
        if isinstance(value, str):
            value = value.strip()
            return int(float(value)) if any(c in value for c in ".eE") else int(value)
        return int(value)
    if type_ == "FLOAT":
        return float(value)
    if type_ == "STRING":
        return value if type(value) is str else str(value)
    if type_ == "BOOLEAN":
        # Better than ComfyUI's bool(): the string "false" must not become True.
        if isinstance(value, str):
            lowered = value.strip().lower()
            if lowered in ("true", "1", "yes", "on"):
                return True
            if lowered in ("false", "0", "no", "off", ""):
                return False
            raise ValueError(f"{value!r} is not a boolean")
        return bool(value)
    return value


def _check_range(spec: InputSpec, value: Any) -> dict[str, Any] | None:
    options = spec.options
    extra = {"input_name": spec.name, "input_config": spec.config, "received_value": value}
    minimum, maximum = options.get("min"), options.get("max")
    try:
        if minimum is not None and value < minimum:
            return error_dict(
                "value_smaller_than_min",
                f"Value {value} smaller than min of {minimum}",
                spec.name,
                extra,
            )
        if maximum is not None and value > maximum:
            return error_dict(
                "value_bigger_than_max",
                f"Value {value} bigger than max of {maximum}",
                spec.name,
                extra,
            )
    except TypeError:
        pass  # not comparable (a custom type with a min option): nothing to check
    if spec.type == COMBO and spec.choices is not None:
        try:
            present = value in spec.choices
        except TypeError:
            present = False
        if not present:
            listed: Any = list(spec.choices)
            config: Any = spec.config
            if len(listed) > MAX_LISTED_CHOICES:
                listed = f"(list of length {len(listed)})"
                config = None
            return error_dict(
                "value_not_in_list",
                "Value not in list",
                f"{spec.name}: '{value}' not in {listed}",
                {"input_name": spec.name, "input_config": config, "received_value": value},
            )
    return None
