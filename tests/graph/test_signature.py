"""Merkle signatures: content-addressed, order-independent, never equal for NaN or opaque values,
and stable across processes."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import textwrap
from typing import Any

import pytest

from flowscope.graph.signature import canonical, fingerprint_token, node_signature


def sign(inputs: dict[str, Any], sources: dict[str, bytes] | None = None, **kw: Any) -> bytes:
    return node_signature("Node", inputs, sources or {}, **kw)


def test_equal_content_gives_equal_signatures() -> None:
    assert sign({"a": 1, "b": "x"}) == sign({"a": 1, "b": "x"})
    assert len(sign({"a": 1})) == 16


def test_input_order_does_not_matter() -> None:
    assert sign({"a": 1, "b": 2, "c": [1, 2]}) == sign({"c": [1, 2], "b": 2, "a": 1})
    assert sign({"d": {"x": 1, "y": 2}}) == sign({"d": {"y": 2, "x": 1}})


def test_class_type_and_every_constant_count() -> None:
    base = sign({"a": 1, "b": "x"})
    assert node_signature("Other", {"a": 1, "b": "x"}, {}) != base
    assert sign({"a": 2, "b": "x"}) != base
    assert sign({"a": 1, "b": "y"}) != base
    assert sign({"a": 1}) != base
    assert sign({"a": 1, "b": "x", "c": None}) != base
    assert sign({"z": 1, "b": "x"}) != base  # the name counts, not only the value


@pytest.mark.parametrize(
    ("left", "right"),
    [(1, 1.0), (1, True), (0, False), (1, "1"), (None, "None"), ([1], [1.0]), ("a", ["a"])],
)
def test_values_of_different_types_differ(left: Any, right: Any) -> None:
    assert sign({"v": left}) != sign({"v": right})


def test_strings_cannot_forge_other_inputs() -> None:
    # The encoding escapes separators, so one string cannot spell two inputs.
    assert sign({"a": "x", "b": "y"}) != sign({"a": "x\x1f'b'=s'y'"})
    assert sign({"a": "x\x1f", "b": "y"}) != sign({"a": "x", "b": "\x1fy"})


def test_nan_and_opaque_values_never_match() -> None:
    assert canonical(math.nan) != canonical(math.nan)
    assert sign({"v": math.nan}) != sign({"v": math.nan})
    assert sign({"v": [1, math.nan]}) != sign({"v": [1, math.nan]})
    thing = object()
    assert sign({"v": thing}) != sign({"v": thing})
    assert sign({"v": {1: "a", "b": 2}}) != sign({"v": {1: "a", "b": 2}})  # mixed keys: opaque


def test_links_sign_with_the_source_signature_and_slot() -> None:
    first, second = sign({"a": 1}), sign({"a": 2})
    linked = sign({"in": ["7", 0]}, {"7": first})
    assert linked == sign({"in": ["7", 0]}, {"7": first})
    assert linked != sign({"in": ["7", 0]}, {"7": second})  # the source changed
    assert linked != sign({"in": ["7", 1]}, {"7": first})  # another output of it
    # Content-addressed: the source's id does not matter, only its signature.
    assert linked == sign({"in": ["99", 0]}, {"99": first})
    assert linked == sign({"in": ["7", 0.0]}, {"7": first})


def test_the_node_id_counts_only_when_given() -> None:
    assert sign({"a": 1}, node_id="3") != sign({"a": 1}, node_id="4")
    assert sign({"a": 1}, node_id="3") != sign({"a": 1})
    assert sign({"a": 1}, node_id="3") == sign({"a": 1}, node_id="3")


def test_fingerprints() -> None:
    assert fingerprint_token(None) == ""
    assert fingerprint_token([1, "a"]) == fingerprint_token([1, "a"])
    assert fingerprint_token([1, "a"]) != fingerprint_token([1, "b"])
    assert fingerprint_token([math.nan]) != fingerprint_token([math.nan])
    assert fingerprint_token((1.5, [math.nan])) != fingerprint_token((1.5, [math.nan]))
    assert sign({"a": 1}, fingerprint="x") != sign({"a": 1}, fingerprint="y")
    assert sign({"a": 1}, fingerprint="x") == sign({"a": 1}, fingerprint="x")


_CHAIN_SCRIPT = textwrap.dedent(
    """
    import json
    from flowscope.graph.signature import fingerprint_token, node_signature
    sigs = {}
    load = {"name": "a.png", "n": 3, "f": 0.5, "opt": {"b": 1, "a": [True, None]}}
    sigs["1"] = node_signature("Load", load, {}, fingerprint_token([12.5, "hash"]))
    sigs["2"] = node_signature("Step", {"in": ["1", 0], "seed": 42}, sigs, "", "2")
    sigs["3"] = node_signature("Save", {"a": ["2", 0], "b": ["1", 1], "text": "héllo"}, sigs)
    print(json.dumps({k: v.hex() for k, v in sigs.items()}))
    """
)


def test_signatures_are_stable_across_processes() -> None:
    outputs = []
    for seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        done = subprocess.run(
            [sys.executable, "-c", _CHAIN_SCRIPT],
            env=env,
            capture_output=True,
            text=True,
            check=True,
            timeout=60,
        )
        outputs.append(json.loads(done.stdout))
    namespace: dict[str, Any] = {}
    exec(_CHAIN_SCRIPT.replace("print(", "result = ("), namespace)
    here = json.loads(namespace["result"])
    assert outputs[0] == outputs[1] == here
    assert len(set(here.values())) == 3
