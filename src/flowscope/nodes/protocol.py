"""The V1 ("classic") node class protocol: a node class's attributes, with ComfyUI's defaults."""

from __future__ import annotations

import copy
import inspect
import weakref
from typing import Any

from flowscope.graph.schema import (
    CustomValidation,
    NodeSchema,
    normalize_type,
    output_flags,
    schema_inputs,
)

DEFAULT_CATEGORY = "sd"

# Hidden input kinds the executor fills in.
HIDDEN_PROMPT = "PROMPT"
HIDDEN_DYNPROMPT = "DYNPROMPT"
HIDDEN_EXTRA_PNGINFO = "EXTRA_PNGINFO"
HIDDEN_UNIQUE_ID = "UNIQUE_ID"
HIDDEN_AUTH_TOKEN = "AUTH_TOKEN_COMFY_ORG"
HIDDEN_API_KEY = "API_KEY_COMFY_ORG"


def input_types(cls: type) -> dict[str, Any]:
    """INPUT_TYPES() as a dict; it is called each time because it is often dynamic (file lists)."""
    result = cls.INPUT_TYPES()  # type: ignore[attr-defined]
    if not isinstance(result, dict):
        raise TypeError(
            f"{cls.__name__}.INPUT_TYPES() returned {type(result).__name__}, not a dict"
        )
    return result


def return_types(cls: type) -> tuple[Any, ...]:
    return tuple(getattr(cls, "RETURN_TYPES", ()))


def return_names(cls: type) -> tuple[str, ...]:
    names = getattr(cls, "RETURN_NAMES", None)
    return (
        tuple(names) if names is not None else tuple(normalize_type(t) for t in return_types(cls))
    )


def is_output_node(cls: type) -> bool:
    return getattr(cls, "OUTPUT_NODE", False) is True


def input_is_list(cls: type) -> bool:
    return bool(getattr(cls, "INPUT_IS_LIST", False))


def output_is_list(cls: type) -> tuple[bool, ...]:
    return output_flags(getattr(cls, "OUTPUT_IS_LIST", None), len(return_types(cls)))


def function_name(cls: type) -> str:
    name = getattr(cls, "FUNCTION", None)
    if not isinstance(name, str):
        raise TypeError(f"node class {cls.__name__} has no FUNCTION attribute")
    return name


def is_async(cls: type) -> bool:
    """Whether FUNCTION is `async def`: such nodes run concurrently and are picked first."""
    name = getattr(cls, "FUNCTION", None)
    method = getattr(cls, name, None) if isinstance(name, str) else None
    return method is not None and inspect.iscoroutinefunction(method)


def not_idempotent(cls: type) -> bool:
    return bool(getattr(cls, "NOT_IDEMPOTENT", False))


def custom_validation(cls: type) -> CustomValidation | None:
    """VALIDATE_INPUTS and its parameter names, which decide which built-in checks it replaces."""
    hook = getattr(cls, "VALIDATE_INPUTS", None)
    if hook is None:
        return None
    parameters = inspect.signature(hook).parameters.values()
    names = frozenset(
        p.name
        for p in parameters
        if p.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    )
    takes_kwargs = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters)
    return CustomValidation(hook, names, takes_kwargs)


def schema_of(class_type: str, cls: type) -> NodeSchema:
    """The graph-level schema of a node class, from a fresh INPUT_TYPES() call.

    INPUT_TYPES() is called every time (it is often dynamic: file lists), but its answer is
    parsed again only when it differs from the one the last schema was built from (the
    attributes the schema reads too): every submitted prompt validates each of its nodes, and
    parsing costs several times the call."""
    declared = input_types(cls)
    attributes = (
        class_type,
        getattr(cls, "RETURN_TYPES", ()),
        getattr(cls, "OUTPUT_IS_LIST", None),
        getattr(cls, "OUTPUT_NODE", False),
        getattr(cls, "INPUT_IS_LIST", False),
        getattr(cls, "VALIDATE_INPUTS", None),
    )
    cached = _SCHEMAS.get(cls)
    if cached is not None and _equal(cached[0], declared) and _equal(cached[1], attributes):
        return cached[2]
    inputs, hidden = schema_inputs(declared)
    types = return_types(cls)
    schema = NodeSchema(
        class_type=class_type,
        inputs=inputs,
        hidden=hidden,
        return_types=tuple(normalize_type(t) for t in types),
        output_is_list=output_is_list(cls),
        is_output=is_output_node(cls),
        input_is_list=input_is_list(cls),
        custom_validation=custom_validation(cls),
    )
    try:
        # A copy: a class may hand out one dict and change it in place (a refreshed file list).
        _SCHEMAS[cls] = (copy.deepcopy(declared), attributes, schema)
    except Exception:  # something in it cannot be copied: parsed every time, as before
        _SCHEMAS.pop(cls, None)
    return schema


# class -> (the INPUT_TYPES() answer and attributes it was built from, the schema); weak, so a
# reloaded custom node pack's old classes go.
_SCHEMAS: weakref.WeakKeyDictionary[type, tuple[dict[str, Any], tuple[Any, ...], NodeSchema]] = (
    weakref.WeakKeyDictionary()
)


def _equal(cached: Any, current: Any) -> bool:
    try:
        return bool(cached == current)
    except Exception:  # e.g. an array default, whose == is not a truth value
        return False


def has_hidden(schema: NodeSchema, kind: str) -> bool:
    return kind in schema.hidden.values()


def node_info(class_type: str, cls: type, display_name: str, python_module: str) -> dict[str, Any]:
    """One `/object_info` entry, exactly as ComfyUI shapes it."""
    declared = input_types(cls)
    types = return_types(cls)
    info: dict[str, Any] = {
        "input": declared,
        "input_order": {
            section: list((declared.get(section) or {}).keys())
            for section in ("required", "optional", "hidden")
            if section in declared
        },
        "output": list(types),
        "output_is_list": list(output_is_list(cls)),
        "output_name": list(return_names(cls)),
        "name": class_type,
        "display_name": display_name,
        "description": getattr(cls, "DESCRIPTION", ""),
        "python_module": python_module,
        "category": getattr(cls, "CATEGORY", DEFAULT_CATEGORY),
        "output_node": is_output_node(cls),
    }
    tooltips = getattr(cls, "OUTPUT_TOOLTIPS", None)
    if tooltips is not None:
        info["output_tooltips"] = list(tooltips)
    for attribute, key in (
        ("DEPRECATED", "deprecated"),
        ("EXPERIMENTAL", "experimental"),
        ("API_NODE", "api_node"),
        ("DEV_ONLY", "dev_only"),
        ("HAS_INTERMEDIATE_OUTPUT", "has_intermediate_output"),
    ):
        if getattr(cls, attribute, False):
            info[key] = True
    if getattr(cls, "SEARCH_ALIASES", None):
        info["search_aliases"] = list(cls.SEARCH_ALIASES)  # type: ignore[attr-defined]
    if getattr(cls, "ESSENTIALS_CATEGORY", None):
        info["essentials_category"] = cls.ESSENTIALS_CATEGORY  # type: ignore[attr-defined]
    if input_is_list(cls):
        info["is_input_list"] = True
    return info
