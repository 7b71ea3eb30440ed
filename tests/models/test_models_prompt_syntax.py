"""ComfyUI's CLIPTextEncode prompt syntax: weights, emphasis, escapes, unbalanced parentheses and
`embedding:` references; any string parses without an exception."""

from __future__ import annotations

import math
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flowscope.models.text.prompt_syntax import (
    EMBEDDING_PREFIX,
    MAX_WEIGHT,
    EmbeddingRef,
    parse_prompt_weights,
    split_embeddings,
)

# ComfyUI's own documented examples (the docstring of `token_weights` in comfy/sd1_clip.py).
DOCUMENTED = [
    ("(foo)", [("foo", 1.1)]),
    ("(foo)(bar)", [("foo", 1.1), ("bar", 1.1)]),
    ("(foo:2.0)", [("foo", 2.0)]),
    ("((foo))", [("foo", 1.21)]),
    ("((foo):1.1)", [("foo", 1.21)]),
    ("((foo:1.1))", [("foo", 1.1)]),
    ("(foo:0.0)", [("foo", 0.0)]),
    ("((foo:1.0):0.0)", [("foo", 1.0)]),
    (
        "foo ((((lol (cat:666) attack:100)))) baz",
        [("foo ", 1.0), ("lol ", 100.0), ("cat", 666.0), (" attack", 100.0), (" baz", 1.0)],
    ),
    (
        "foo ((((lol (cat:666) attack):100))) baz",
        [("foo ", 1.0), ("lol ", 110.0), ("cat", 666.0), (" attack", 110.0), (" baz", 1.0)],
    ),
]

MORE = [
    ("", []),
    ("a photo of a cat", [("a photo of a cat", 1.0)]),
    ("a (cat:1.5) on a mat", [("a ", 1.0), ("cat", 1.5), (" on a mat", 1.0)]),
    ("(cat: 1.5 )", [("cat", 1.5)]),  # float() takes surrounding spaces, as in ComfyUI
    ("(a:b:2)", [("a:b", 2.0)]),  # the last colon
    ("(:2)", [(":2", 1.1)]),  # a colon at the start is no weight
    ("(cat:x)", [("cat:x", 1.1)]),
    ("(cat:-0.5)", [("cat", -0.5)]),
    # Escaped parentheses are text, without their backslash.
    ("\\(foo\\)", [("(foo)", 1.0)]),
    ("(\\(foo\\):1.3)", [("(foo)", 1.3)]),
    ("a\\b", [("a\\b", 1.0)]),
    ("\\\\(a)", [("\\(a)", 1.0)]),  # `\(` is escaped even after another backslash
    # Unbalanced: an unclosed group keeps the rest as one item; a stray ")" turns the rest to text.
    ("a) (b)", [("a) (b)", 1.0)]),
    ("a) (b) ((c))", [("a) (b) (", 1.0), ("c", 1.1), (")", 1.0)]),
    ("(a (b)", [("a ", 1.1), ("(b", 1.1)]),
    ("((a)", [("(a", 1.1)]),
    ("(cat", [("(cat", 1.0)]),
    ("(a\\)", [("(a)", 1.0)]),
    ("()", []),
    # Weights that are not finite numbers stay text.
    ("(cat:nan)", [("cat:nan", 1.1)]),
    ("(cat:inf)", [("cat:inf", 1.1)]),
    ("(cat:1e999)", [("cat:1e999", 1.1)]),
    ("(cat:1e6)", [("cat", MAX_WEIGHT)]),
]


@pytest.mark.parametrize(("text", "expected"), DOCUMENTED + MORE)
def test_examples(text: str, expected: list[tuple[str, float]]) -> None:
    parsed = parse_prompt_weights(text)
    assert [segment for segment, _ in parsed] == [segment for segment, _ in expected]
    for (_, weight), (_, wanted) in zip(parsed, expected, strict=True):
        assert weight == pytest.approx(wanted, rel=1e-12)


def _reference(text: str) -> list[tuple[str, float]]:
    """ComfyUI's rules written recursively (escapes swapped for private-use characters first)."""
    open_mark, close_mark = "\ue000", "\ue001"
    escaped = text.replace("\\)", close_mark).replace("\\(", open_mark)

    def items(string: str) -> list[str]:
        out: list[str] = []
        current, level = "", 0
        for char in string:
            if char == "(":
                if level == 0:
                    if current:
                        out.append(current)
                    current = ""
                current += char
                level += 1
            elif char == ")":
                level -= 1
                current += char
                if level == 0:
                    out.append(current)
                    current = ""
            else:
                current += char
        if current:
            out.append(current)
        return out

    def weights(string: str, weight: float) -> list[tuple[str, float]]:
        out: list[tuple[str, float]] = []
        for item in items(string):
            if len(item) >= 2 and item[0] == "(" and item[-1] == ")":
                inner, inner_weight = item[1:-1], weight * 1.1
                colon = inner.rfind(":")
                if colon > 0:
                    try:
                        value = float(inner[colon + 1 :])
                    except ValueError:
                        value = math.nan
                    if math.isfinite(value):
                        inner, inner_weight = inner[:colon], value
                out += weights(inner, max(-MAX_WEIGHT, min(MAX_WEIGHT, inner_weight)))
            else:
                out.append((item, weight))
        return out

    return [
        (segment.replace(close_mark, ")").replace(open_mark, "("), weight)
        for segment, weight in weights(escaped, 1.0)
    ]


_syntax_text = st.text(st.sampled_from("ab :1.2()\\,"), max_size=40)


@settings(max_examples=500)
@given(text=_syntax_text)
def test_matches_the_recursive_rules(text: str) -> None:
    assert parse_prompt_weights(text) == _reference(text)


@given(text=st.text())
def test_any_text_parses_to_finite_bounded_weights(text: str) -> None:
    for segment, weight in parse_prompt_weights(text):
        assert isinstance(segment, str)
        assert math.isfinite(weight)
        assert abs(weight) <= MAX_WEIGHT


@given(text=st.text(st.characters(exclude_characters="()\\")))
def test_text_without_syntax_round_trips(text: str) -> None:
    assert parse_prompt_weights(text) == ([(text, 1.0)] if text else [])


def test_pathological_nesting_is_fast_and_kept_as_text() -> None:
    start = time.perf_counter()
    deep = parse_prompt_weights("(" * 5000 + "cat" + ")" * 5000)
    # Every level unclosed but ending in ")": ComfyUI recurses once per level.
    chain = parse_prompt_weights("(" * 3001 + "cat" + ")" * 3000)
    assert time.perf_counter() - start < 5.0
    for parsed in (deep, chain):
        assert "cat" in "".join(segment for segment, _ in parsed)
        assert all(abs(weight) <= MAX_WEIGHT for _, weight in parsed)
    # 20 levels are parsed like ComfyUI does.
    [(segment, weight)] = parse_prompt_weights("(" * 20 + "cat" + ")" * 20)
    assert segment == "cat"
    assert weight == pytest.approx(1.1**20)


@pytest.mark.parametrize(
    ("segment", "expected"),
    [
        ("a photo", ["a photo"]),
        ("embedding:style", [EmbeddingRef("style")]),
        ("a embedding:style b", ["a ", EmbeddingRef("style"), "b"]),
        ("a embedding:sub/dir/style.pt, b", ["a ", EmbeddingRef("sub/dir/style.pt,"), "b"]),
        ("a\nembedding:one embedding:two", ["a\n", EmbeddingRef("one"), EmbeddingRef("two")]),
        ("xembedding:style", ["xembedding:style"]),  # only at the start or after whitespace
        ("embedding:style<lora:x:1>", [EmbeddingRef("style"), "<lora:x:1>"]),
        ("embedding:style[x] tail", [EmbeddingRef("style"), "[x] tail"]),
        ("a embedding:", ["a ", "embedding:"]),  # no name: text
        ("embedding:<x>", ["embedding:<x>"]),
    ],
)
def test_split_embeddings(segment: str, expected: list[str | EmbeddingRef]) -> None:
    assert split_embeddings(segment) == expected


@given(text=st.text())
def test_split_embeddings_never_raises_and_keeps_plain_text(text: str) -> None:
    pieces = split_embeddings(text)
    if EMBEDDING_PREFIX not in text:
        assert pieces == ([text] if text else [])
    for piece in pieces:
        assert piece if isinstance(piece, str) else piece.name
