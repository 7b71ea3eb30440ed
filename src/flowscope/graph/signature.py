"""Merkle signatures: a node's cache key is a hash of its own content and its inputs' keys.

O(N) for a whole graph at any depth (ComfyUI embeds every ancestor in each key: O(N²)), and
stable across processes: only canonical encodings go into the hash, never `hash()` or `id()`.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Mapping
from typing import Any

Signature = bytes

_SEPARATOR = "\x1f"
_blake2b = hashlib.blake2b


def _never_equal() -> str:
    """A token that matches nothing: for values that cannot be compared (NaN, opaque objects)."""
    return "!" + os.urandom(12).hex()


def canonical(value: Any) -> str:
    """A stable text encoding of a constant; opaque objects get a token that never repeats."""
    kind = type(value)
    if kind is str:
        return "s" + repr(value)  # repr escapes separators: the encoding stays injective
    if kind is bool or value is None:
        return "b" + repr(value)
    if kind is int:
        return "i" + repr(value)
    if kind is float:
        return _never_equal() if math.isnan(value) else "f" + repr(value)
    try:
        return "j" + json.dumps(value, sort_keys=True, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError):
        return _never_equal()


def fingerprint_token(fingerprint: Any) -> str:
    """Encode an IS_CHANGED result; NaN (anywhere) means "changed every time"."""
    if fingerprint is None:
        return ""
    if isinstance(fingerprint, (list, tuple)):
        return "[" + ",".join(fingerprint_token(item) for item in fingerprint) + "]"
    return canonical(fingerprint)


def node_signature(
    class_type: str,
    inputs: Mapping[str, Any],
    input_signatures: Mapping[str, Signature],
    fingerprint: str = "",
    node_id: str | None = None,
) -> Signature:
    """Hash one node; `input_signatures` maps each linked source node id to its signature.

    `node_id` is mixed in only for nodes that must not share results with identical nodes
    elsewhere (NOT_IDEMPOTENT, or a UNIQUE_ID hidden input).
    """
    parts = [repr(class_type), fingerprint, repr(node_id)]
    names = sorted(inputs) if len(inputs) > 1 else inputs
    for name in names:
        value = inputs[name]
        # is_link(), inlined: this runs once per input of every node of every job.
        if (
            type(value) is list
            and len(value) == 2
            and type(value[0]) is str
            and isinstance(value[1], (int, float))
        ):
            parts.append(f"{name!r}=@{input_signatures[value[0]].hex()}:{int(value[1])}")
        elif type(value) is str:
            parts.append(f"{name!r}=s{value!r}")
        else:
            parts.append(f"{name!r}={canonical(value)}")
    return _blake2b(_SEPARATOR.join(parts).encode(), digest_size=16).digest()
