"""Reading an Elasticsearch/OpenSearch mapping the way the cluster applies it to our documents:
dotted keys expand into objects, so `node.duration_ms` is the leaf `node` -> `duration_ms`."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

# Whole-object leaf types: their sub-keys are values inside the field, not fields of their own.
OBJECT_LEAVES = frozenset({"flattened", "flat_object"})


def leaf_fields(properties: Mapping[str, Any], prefix: str = "") -> dict[str, Mapping[str, Any]]:
    """`properties` flattened to {dotted path: leaf mapping}."""
    leaves: dict[str, Mapping[str, Any]] = {}
    for name, mapping in properties.items():
        path = f"{prefix}{name}"
        if "properties" in mapping:
            leaves.update(leaf_fields(mapping["properties"], prefix=f"{path}."))
        else:
            leaves[path] = mapping
    return leaves


def field_of(key: str, leaves: Mapping[str, Mapping[str, Any]]) -> str | None:
    """The mapped field a document key lands in: itself, or an enclosing whole-object leaf."""
    if key in leaves:
        return key
    parts = key.split(".")
    for end in range(len(parts) - 1, 0, -1):
        enclosing = ".".join(parts[:end])
        if leaves.get(enclosing, {}).get("type") in OBJECT_LEAVES:
            return enclosing
    return None


def fits(value: Any, mapping: Mapping[str, Any]) -> bool:
    """Whether `value` indexes into a field of this mapping as what it means (no coercion
    tricks: a number into a keyword, or a bool into a long, does not count)."""
    kind = mapping.get("type")
    if value is None:
        return True  # null is "missing" for every type
    if kind in ("keyword", "text"):
        return isinstance(value, str)
    if kind == "long":
        return isinstance(value, int) and not isinstance(value, bool)
    if kind in ("float", "double"):
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if kind == "boolean":
        return isinstance(value, bool)
    if kind == "date":
        return isinstance(value, str) and _is_iso_datetime(value)
    if kind in OBJECT_LEAVES:
        return isinstance(value, dict)
    raise AssertionError(f"no rule for mapping type {kind!r}")


def _is_iso_datetime(value: str) -> bool:
    try:
        datetime.fromisoformat(value)
    except ValueError:
        return False
    return True


def dynamic_type(value: Any, mappings: Mapping[str, Any]) -> str | None:
    """The type a field the template does not name would get: the first matching dynamic
    template (by JSON type), else Elasticsearch's default dynamic mapping; None if `dynamic`
    would refuse or ignore the field."""
    if mappings.get("dynamic", True) not in (True, "true"):
        return None
    json_type = (
        "boolean"
        if isinstance(value, bool)
        else "long"
        if isinstance(value, int)
        else "double"
        if isinstance(value, float)
        else "string"
        if isinstance(value, str)
        else "object"
    )
    if json_type == "string" and mappings.get("date_detection", True) and _is_iso_datetime(value):
        json_type = "date"  # date detection runs before the dynamic templates
    for template in mappings.get("dynamic_templates", []):
        ((_name, rule),) = template.items()
        if rule.get("match_mapping_type") in (json_type, "*"):
            return str(rule["mapping"]["type"])
    if json_type == "string":
        return "text"  # the default: text with a .keyword sub-field
    return json_type
