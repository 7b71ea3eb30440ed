"""The JSON text columns: what a client sent comes back as it was, whichever encoder wrote it
(orjson for the common case, the standard one for what orjson refuses or writes otherwise)."""

from __future__ import annotations

import json
import math
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from flowscope.jobs.rows import dumps, loads

JSON_VALUES = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text()),
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=6), inner, max_size=4)
    ),
    max_leaves=16,
)


def same(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    return type(a) is type(b) and bool(a == b)


@given(JSON_VALUES)
def test_a_value_comes_back_as_it_was(value: Any) -> None:
    text = dumps(value)
    assert "\n" not in text
    assert same(loads(text), value)


def test_what_orjson_would_change_or_refuse_takes_the_standard_encoder() -> None:
    odd = {
        "nan": float("nan"),  # orjson would write null
        "inf": float("inf"),
        "huge": 2**80,  # beyond orjson's 64 bits
        "surrogate": "lone \udcff",  # not UTF-8
        "none": None,
    }
    text = dumps(odd)
    assert text.isascii()  # the standard encoder's escapes
    back = loads(text)
    assert math.isnan(back["nan"]) and back["inf"] == float("inf")
    assert back["huge"] == 2**80 and back["surrogate"] == "lone \udcff" and back["none"] is None
    assert dumps({1: "int key"}) == '{"1":"int key"}'  # as json.dumps writes it


def test_the_common_case_is_compact_utf8() -> None:
    prompt = {"1": {"class_type": "CLIPTextEncode", "inputs": {"text": "un château, 城堡"}}}
    text = dumps(prompt)
    assert text == '{"1":{"class_type":"CLIPTextEncode","inputs":{"text":"un château, 城堡"}}}'
    assert json.loads(text) == prompt
