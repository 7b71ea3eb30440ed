"""Errors during execution: ComfyUI's `execution_error` payload (spec §3.7), OOM classification, and
short summaries of values (a tensor is its shape and dtype, never its full repr)."""

from __future__ import annotations

import time
import traceback
from collections.abc import Mapping, Sequence
from typing import Any

from flowscope.telemetry.events import qualified_name

MAX_SUMMARY_CHARS = 200
MAX_LIST_ITEMS = 8

OOM_TIPS = (
    "\nThis error means the machine ran out of memory while running this node.\n"
    "TIPS: lower the batch size or the resolution, or free cached models and results "
    "(POST /free) before retrying."
)

_CPU_OOM_MARKERS = (
    "DefaultCPUAllocator: can't allocate memory",
    "DefaultCPUAllocator: not enough memory",
    "CUDA out of memory",
    "out of memory",
)


class DependencyCycleError(RuntimeError):
    """Node expansion created a dependency cycle at run time."""


class NodeOutputError(TypeError):
    """A node returned something that is not one value per declared output."""


def is_out_of_memory(exc: BaseException) -> bool:
    """torch's OutOfMemoryError (CUDA or other devices), MemoryError, and CPU allocator failures."""
    if isinstance(exc, MemoryError):
        return True
    import torch

    oom_type = getattr(torch, "OutOfMemoryError", None)
    if oom_type is not None and isinstance(exc, oom_type):
        return True
    if isinstance(exc, RuntimeError):
        text = str(exc)
        return any(marker in text for marker in _CPU_OOM_MARKERS)
    return False


def summarize(value: Any) -> Any:
    """A short, JSON-safe stand-in for a value: primitives as they are, tensors as shape/dtype."""
    if value is None or isinstance(value, (bool, int, float)):
        return value
    if isinstance(value, str):
        return value if len(value) <= MAX_SUMMARY_CHARS else value[:MAX_SUMMARY_CHARS] + "…"
    shape = getattr(value, "shape", None)
    dtype = getattr(value, "dtype", None)
    if shape is not None and dtype is not None:
        kind = type(value).__name__
        device = getattr(value, "device", None)
        where = f", device={device}" if device is not None else ""
        return f"{kind}(shape={list(shape)}, dtype={dtype}{where})"
    if isinstance(value, Mapping):
        items = list(value.items())[:MAX_LIST_ITEMS]
        return {str(k): summarize(v) for k, v in items}
    if isinstance(value, (list, tuple)):
        summary = [summarize(v) for v in value[:MAX_LIST_ITEMS]]
        if len(value) > MAX_LIST_ITEMS:
            summary.append(f"… {len(value) - MAX_LIST_ITEMS} more")
        return summary
    text = repr(value)
    if len(text) > MAX_SUMMARY_CHARS:
        text = text[:MAX_SUMMARY_CHARS] + "…"
    return text


def summarize_inputs(inputs: Mapping[str, Sequence[Any]]) -> dict[str, list[Any]]:
    """`current_inputs`: each input's list of values, summarised."""
    return {
        name: [summarize(v) for v in list(values)[:MAX_LIST_ITEMS]]
        for name, values in inputs.items()
    }


def execution_error_payload(
    *,
    job_id: str,
    node_id: str,
    node_type: str,
    executed: Sequence[str],
    exc: BaseException,
    current_inputs: Mapping[str, Sequence[Any]],
    current_outputs: Sequence[str],
) -> dict[str, Any]:
    """The `data` of ComfyUI's `execution_error` message."""
    message = str(exc)
    if is_out_of_memory(exc):
        message += OOM_TIPS
    return {
        "prompt_id": job_id,
        "node_id": node_id,
        "node_type": node_type,
        "executed": list(executed),
        "exception_message": message,
        "exception_type": qualified_name(type(exc)),
        "traceback": traceback.format_tb(exc.__traceback__),
        "current_inputs": summarize_inputs(current_inputs),
        "current_outputs": list(current_outputs),
        "timestamp": int(time.time() * 1000),
    }
