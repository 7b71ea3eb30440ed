"""ECS event fields as OpenTelemetry span attributes, and the process as an OTel resource.

Field names carry over unchanged (spec §1: "OpenTelemetry maps 1:1"). Attribute values must be
primitives or homogeneous arrays, so nested objects (`node.inputs`, `node.outputs`) are flattened
into dotted keys, the way Elasticsearch's `flattened` type reads them, and anything else becomes
text.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from opentelemetry.attributes import BoundedAttributes
from opentelemetry.sdk.resources import Resource
from opentelemetry.util.types import Attributes, AttributeValue

from flowscope.telemetry.document import ServiceInfo

# The SDK's default span limit (OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT); beyond it the span reports
# `dropped_attributes_count` instead of growing without bound (`--log-inputs full`).
MAX_ATTRIBUTES = 128
_MAX_DEPTH = 3  # node.outputs nests {"items": n, "first": {...}}; deeper is summarised as text
_INT64 = 2**63


def resource_for(service: ServiceInfo) -> Resource:
    """The resource every span carries; `Resource.create` adds the SDK's own attributes and
    OTEL_RESOURCE_ATTRIBUTES (e.g. k8s.pod.name), which our explicit values override."""
    return Resource.create(
        {
            "service.name": service.name,
            "service.version": service.version,
            "service.instance.id": service.node_name,  # ECS service.node.name
            "deployment.environment.name": service.environment,
            "host.name": service.host_name,
        }
    )


def to_attributes(fields: Mapping[str, Any], skip: frozenset[str]) -> Attributes:
    """The span attributes for an event's fields, leaving out `skip` (ids the span context
    already carries, per-event bookkeeping, texts that go into span events)."""
    attributes: dict[str, AttributeValue] = {}
    for key, value in fields.items():
        if key not in skip:
            _put(attributes, key, value, 0)
    if len(attributes) > MAX_ATTRIBUTES:
        return BoundedAttributes(MAX_ATTRIBUTES, attributes)
    return attributes


def _put(attributes: dict[str, AttributeValue], key: str, value: Any, depth: int) -> None:
    if value is None:
        return
    if isinstance(value, (str, bool, float)):
        attributes[key] = value
    elif isinstance(value, int):
        # OTLP integers are int64; a 64-bit unsigned seed would fail the whole span's encoding.
        attributes[key] = value if -_INT64 <= value < _INT64 else str(value)
    elif isinstance(value, Mapping) and depth < _MAX_DEPTH:
        for name, item in value.items():
            _put(attributes, f"{key}.{name}", item, depth + 1)
    elif isinstance(value, (list, tuple)) and _homogeneous(value):
        attributes[key] = tuple(value)
    else:
        attributes[key] = str(value)


def _homogeneous(values: list[Any] | tuple[Any, ...]) -> bool:
    """OTel arrays hold one primitive type (bool is not int here: it would change the type)."""
    if not values:
        return False
    kind = type(values[0])
    if kind not in (str, bool, int, float):
        return False
    if kind is int and not all(-_INT64 <= v < _INT64 for v in values if type(v) is int):
        return False
    return all(type(v) is kind for v in values)
