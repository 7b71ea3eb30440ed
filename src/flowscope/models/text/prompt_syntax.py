"""ComfyUI's prompt syntax for CLIPTextEncode: `(text:1.2)` weights, `((text))` emphasis (×1.1 per
level), `\\(` `\\)` escapes and `embedding:name` references. Any string parses; nothing raises."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

EMBEDDING_PREFIX = "embedding:"

# Each unweighted pair of parentheses multiplies the weight by this (ComfyUI's factor).
EMPHASIS = 1.1
# Weights are kept within ±MAX_WEIGHT so the conditioning stays finite (ComfyUI takes any float;
# far below this the image is noise already).
MAX_WEIGHT = 1000.0
# Deeper nesting is kept as literal text: ComfyUI recurses once per level and fails near 1000;
# no real prompt comes close, and parsing stays fast on pathological input.
MAX_DEPTH = 100

_PARENS = re.compile(r"\\[()]|[()]")
_EMBEDDING_SPLIT = re.compile(rf"(?<=\s){re.escape(EMBEDDING_PREFIX)}")
_NAME_END = re.compile(r"[<\[]")


def parse_prompt_weights(text: str) -> list[tuple[str, float]]:
    """Split `text` into (segment, weight) pairs exactly as ComfyUI's `token_weights` does,
    escapes resolved. Unbalanced parentheses are kept as text; an explicit weight that is not a
    finite number leaves the `:...` as text."""
    out: list[tuple[str, float]] = []
    # Work items, last first: ("parse", string, weight, depth) or ("text", string, weight, 0).
    stack: list[tuple[bool, str, float, int]] = [(True, text, 1.0, 0)]
    while stack:
        parse, string, weight, depth = stack.pop()
        if not parse or depth > MAX_DEPTH:
            out.append((_unescape(string), weight))
            continue
        work: list[tuple[bool, str, float, int]] = []
        for item in _top_level_items(string):
            if len(item) >= 2 and item[0] == "(" and item[-1] == ")" and item[-2] != "\\":
                inner, inner_weight = _group(item[1:-1], weight)
                work.append((True, inner, inner_weight, depth + 1))
            else:
                work.append((False, item, weight, 0))
        stack.extend(reversed(work))
    return out


def _group(inner: str, weight: float) -> tuple[str, float]:
    """The text and weight of one `( ... )` group: `(text:1.3)` sets the weight, anything else
    multiplies the enclosing one by 1.1 (ComfyUI: the last colon, not the first, and not at 0)."""
    colon = inner.rfind(":")
    if colon > 0:
        explicit = _number(inner[colon + 1 :])
        if explicit is not None:
            return inner[:colon], _clamp(explicit)
    return inner, _clamp(weight * EMPHASIS)


def _number(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def _clamp(weight: float) -> float:
    return max(-MAX_WEIGHT, min(MAX_WEIGHT, weight))


def _top_level_items(string: str) -> list[str]:
    """ComfyUI's `parse_parentheses`: text runs and top-level `( ... )` groups, escaped
    parentheses being plain text. A stray `)` drives the level below zero, after which ComfyUI
    keeps everything as text; an unclosed `(` keeps the rest as one item."""
    items: list[str] = []
    level = 0
    start = 0  # where the current item began
    for match in _PARENS.finditer(string):
        if len(match.group()) == 2:  # an escaped parenthesis
            continue
        position = match.start()
        if match.group() == "(":
            if level == 0:
                if position > start:
                    items.append(string[start:position])
                start = position
            level += 1
        else:
            level -= 1
            if level == 0:
                items.append(string[start : position + 1])
                start = position + 1
    if start < len(string):
        items.append(string[start:])
    return items


def _unescape(text: str) -> str:
    return text.replace("\\(", "(").replace("\\)", ")")


@dataclass(frozen=True)
class EmbeddingRef:
    """`embedding:NAME` in a prompt: NAME as written (a subfolder path, an extension or not;
    trailing commas are tried with and without, as ComfyUI does)."""

    name: str


def split_embeddings(segment: str) -> list[str | EmbeddingRef]:
    """One weighted segment → its text parts and embedding references, in order (ComfyUI's rule:
    `embedding:` at the start or after whitespace; the name ends at whitespace, `<` or `[`).
    `embedding:` with no name after it stays text."""
    parts = _EMBEDDING_SPLIT.split(segment)
    pieces: list[str | EmbeddingRef] = []
    for index, part in enumerate(parts):
        if index > 0:
            part = EMBEDDING_PREFIX + part
        if not part.startswith(EMBEDDING_PREFIX):
            if part:
                pieces.append(part)
            continue
        words = part[len(EMBEDDING_PREFIX) :].split()
        name = words[0] if words else ""
        leftover = " ".join(words[1:])
        cut = _NAME_END.search(name)
        if cut is not None:
            leftover = name[cut.start() :] + (" " + leftover if leftover else "")
            name = name[: cut.start()]
        if not name:
            pieces.append(part)
            continue
        pieces.append(EmbeddingRef(name))
        if leftover:
            pieces.append(leftover)
    return pieces
