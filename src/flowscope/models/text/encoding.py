"""CLIPTextEncode's computation with ComfyUI's semantics: weighted prompt → 77-token chunks →
each text encoder's chosen layer (embeddings injected, weights applied) → one conditioning."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, TypeAlias

import torch

from flowscope.models.text.embeddings import vectors_for
from flowscope.models.text.prompt_syntax import (
    EmbeddingRef,
    parse_prompt_weights,
    split_embeddings,
)
from flowscope.models.text.tokenizer import ClipTokenizer

CHUNK_LENGTH = 77  # start token + 75 prompt tokens + end token (padded to this)
# A word of fewer tokens than this moves whole to the next chunk rather than being split.
_MAX_WORD_LENGTH = 8

EmbeddingLookup: TypeAlias = Callable[[str], Mapping[str, torch.Tensor] | None]
# A chunk position holds a token id or an embedding vector [width].
Token: TypeAlias = int | torch.Tensor


@dataclass
class TextEncoderSpec:
    """One text encoder of a checkpoint and how ComfyUI uses it."""

    name: str  # "clip_l" | "clip_h" | "clip_g"
    model: torch.nn.Module  # transformers CLIPTextModel / CLIPTextModelWithProjection
    pad_with_end: bool  # SD1/SDXL clip_l pad with the end token; clip_g / clip_h with 0
    layer: Literal["last", "hidden"] = "last"
    layer_idx: int | None = None  # CLIPSetLastLayer: -1 the last layer, -2 the one before, ...
    layer_norm_hidden_state: bool = True  # SD1: the final layer norm also on a hidden layer


def encode_text(
    text: str,
    encoders: Sequence[TextEncoderSpec],
    *,
    embedding_lookup: EmbeddingLookup | None = None,
    tokenizer: ClipTokenizer | None = None,
    on_unknown_embedding: Callable[[str], None] | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """ComfyUI's CLIPTextEncode: (cond [1, 77·chunks, sum of widths], pooled [1, P]), float32 on
    the encoders' device. Pooled is the projected pooled output of the first chunk from the last
    encoder with a projection (SDXL: clip_g), else the last encoder's pooler output.

    `embedding:NAME` uses `embedding_lookup(NAME)`; a name it does not know (None) is left out
    of the prompt and reported to `on_unknown_embedding`, as ComfyUI skips it with a warning.
    An embedding that does not fit an encoder raises EmbeddingMismatchError.
    """
    if not encoders:
        raise ValueError("encode_text needs at least one text encoder")
    tokenizer = tokenizer if tokenizer is not None else ClipTokenizer.shipped()
    groups = _word_groups(text, tokenizer, embedding_lookup, on_unknown_embedding)
    pooled_from = _pooled_source(encoders)
    outputs: list[torch.Tensor] = []
    pooled: torch.Tensor | None = None
    with torch.no_grad():
        for index, spec in enumerate(encoders):
            chunks = _chunks(groups, spec, tokenizer)
            cond, spec_pooled = _encode_chunks(spec, chunks, tokenizer, index == pooled_from)
            outputs.append(cond)
            if index == pooled_from:
                pooled = spec_pooled
    # ComfyUI's SDXL model cuts both encoders' outputs to the shorter one.
    length = min(output.shape[1] for output in outputs)
    return torch.cat([output[:, :length] for output in outputs], dim=-1), pooled


@dataclass(frozen=True)
class _Embedding:
    name: str
    vectors: Mapping[str, torch.Tensor]


# A word group: what ComfyUI tokenizes as one unit (a text part of a weighted segment, or an
# embedding's vectors), with its weight.
_Group: TypeAlias = tuple[list[int] | _Embedding, float]


def _word_groups(
    text: str,
    tokenizer: ClipTokenizer,
    lookup: EmbeddingLookup | None,
    on_unknown: Callable[[str], None] | None,
) -> list[_Group]:
    groups: list[_Group] = []
    reported: set[str] = set()
    for segment, weight in parse_prompt_weights(text):
        for piece in split_embeddings(segment):
            if isinstance(piece, str):
                groups.append((tokenizer.encode(piece), weight))
                continue
            embedding, leftover = _resolve(piece, lookup)
            if embedding is None:
                if on_unknown is not None and piece.name not in reported:
                    on_unknown(piece.name)
                reported.add(piece.name)
            else:
                groups.append((embedding, weight))
            if leftover:
                groups.append((tokenizer.encode(leftover), weight))
    return groups


def _resolve(ref: EmbeddingRef, lookup: EmbeddingLookup | None) -> tuple[_Embedding | None, str]:
    """The embedding `ref` names and any text left over: `name,` is tried as written, then
    without the commas, which then stay text (ComfyUI's rule)."""
    if lookup is None:
        return None, ""
    vectors = lookup(ref.name)
    if vectors is not None:
        return _Embedding(ref.name, vectors), ""
    stripped = ref.name.strip(",")
    if stripped and stripped != ref.name:
        vectors = lookup(stripped)
        if vectors is not None:
            return _Embedding(stripped, vectors), ref.name[len(ref.name.rstrip(",")) :]
    return None, ""


@dataclass
class _Chunk:
    tokens: list[Token]
    weights: list[float]


def _chunks(
    groups: Sequence[_Group], spec: TextEncoderSpec, tokenizer: ClipTokenizer
) -> list[_Chunk]:
    """ComfyUI's `tokenize_with_weights` layout: start token, up to 75 positions, end token,
    padding; a group of 8+ positions is split where a chunk ends, a shorter one moves on whole."""
    width = _text_model(spec.model).embeddings.token_embedding.weight.shape[1]
    pad = _pad_token(spec, tokenizer)
    room = CHUNK_LENGTH - 1  # positions before the end token
    chunk = _Chunk([tokenizer.bos], [1.0])
    chunks = [chunk]

    def close(current: _Chunk) -> None:
        current.tokens.append(tokenizer.eos)
        current.weights.append(1.0)
        padding = CHUNK_LENGTH - len(current.tokens)
        current.tokens.extend([pad] * padding)
        current.weights.extend([1.0] * padding)

    for content, weight in groups:
        tokens: list[Token]
        if isinstance(content, _Embedding):
            vectors = vectors_for(content.vectors, spec.name, width, name=content.name)
            tokens = list(vectors.unbind(0))
        else:
            tokens = list(content)
        large = len(tokens) >= _MAX_WORD_LENGTH
        while tokens:
            if len(chunk.tokens) + len(tokens) > room:
                if large:
                    take = room - len(chunk.tokens)
                    chunk.tokens.extend(tokens[:take])
                    chunk.weights.extend([weight] * take)
                    tokens = tokens[take:]
                close(chunk)
                chunk = _Chunk([tokenizer.bos], [1.0])
                chunks.append(chunk)
            else:
                chunk.tokens.extend(tokens)
                chunk.weights.extend([weight] * len(tokens))
                tokens = []
    close(chunk)
    return chunks


def _pad_token(spec: TextEncoderSpec, tokenizer: ClipTokenizer) -> int:
    return tokenizer.eos if spec.pad_with_end else 0


def _encode_chunks(
    spec: TextEncoderSpec, chunks: list[_Chunk], tokenizer: ClipTokenizer, want_pooled: bool
) -> tuple[torch.Tensor, torch.Tensor | None]:
    weighted = any(weight != 1.0 for chunk in chunks for weight in chunk.weights)
    rows = [chunk.tokens for chunk in chunks]
    if weighted:
        # z_empty: the empty prompt, padded the way this encoder pads.
        pad = _pad_token(spec, tokenizer)
        rows.append([tokenizer.bos, tokenizer.eos] + [pad] * (CHUNK_LENGTH - 2))
    z, eos_state = _run(spec, rows, want_pooled)
    z = z.float()
    count = len(chunks)
    if weighted:
        weights = torch.tensor([chunk.weights for chunk in chunks], dtype=z.dtype, device=z.device)
        weights = weights.unsqueeze(-1)
        empty = z[count:]
        # Only where a weight is not 1, so unweighted positions stay bit-identical.
        z = torch.where(weights != 1.0, (z[:count] - empty) * weights + empty, z[:count])
    cond = z[:count].reshape(1, count * CHUNK_LENGTH, z.shape[-1])
    if eos_state is None:
        return cond, None
    projection = getattr(spec.model, "text_projection", None)
    pooled = projection(eos_state) if isinstance(projection, torch.nn.Module) else eos_state
    return cond, pooled.float()


def _run(
    spec: TextEncoderSpec, rows: list[list[Token]], want_pooled: bool
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The CLIP text transformer on `rows`, fed as input embeddings so that embedding vectors can
    sit among the tokens (the transformers model takes only ids): (the output ComfyUI uses,
    the first row's final-norm state at its first end token when `want_pooled`)."""
    from transformers.masking_utils import create_causal_mask

    core = _text_model(spec.model)
    table = core.embeddings.token_embedding
    device = table.weight.device
    ids = [[token if isinstance(token, int) else 0 for token in row] for row in rows]
    inputs = table(torch.tensor(ids, device=device))
    for row_index, row in enumerate(rows):
        for position, token in enumerate(row):
            if isinstance(token, torch.Tensor):
                inputs[row_index, position] = token.to(device=device, dtype=inputs.dtype)
    states = core.embeddings(inputs_embeds=inputs)
    mask = create_causal_mask(
        config=core.config, inputs_embeds=states, attention_mask=None, past_key_values=None
    )
    layers = core.encoder.layers
    target = _layer_index(spec, len(layers))
    # Without a pooled output the layers past the one asked for change nothing.
    stop = len(layers) if want_pooled or target is None else target + 1
    hidden: torch.Tensor | None = None
    for index in range(stop):
        states = layers[index](states, mask, is_causal=True)
        if index == target:
            hidden = states
    if hidden is None:
        z = core.final_layer_norm(states)
    else:
        z = core.final_layer_norm(hidden) if spec.layer_norm_hidden_state else hidden
    if not want_pooled:
        return z, None
    final = z if hidden is None else core.final_layer_norm(states)
    # Every chunk has an end token; the first one closes the prompt (a padding one comes later).
    eos = next(i for i, t in enumerate(rows[0]) if isinstance(t, int) and t == ClipTokenizer.eos)
    return z, final[0:1, eos]


def _layer_index(spec: TextEncoderSpec, layer_count: int) -> int | None:
    """The 0-based layer whose output ComfyUI uses, or None for the final-norm output: "last",
    or a `layer_idx` beyond the model's depth, means the latter (ComfyUI's rule)."""
    index = spec.layer_idx
    if spec.layer == "last" or index is None or abs(index) > layer_count:
        return None
    index = index + layer_count if index < 0 else index
    return index if index < layer_count else None


def _pooled_source(encoders: Sequence[TextEncoderSpec]) -> int:
    for index in range(len(encoders) - 1, -1, -1):
        if isinstance(getattr(encoders[index].model, "text_projection", None), torch.nn.Module):
            return index
    return len(encoders) - 1


def _text_model(model: torch.nn.Module) -> Any:
    """The module holding embeddings / encoder / final_layer_norm: a CLIPTextModel itself, the
    `text_model` of a CLIPTextModelWithProjection. Any: transformers' modules are untyped."""
    inner = getattr(model, "text_model", None)
    return inner if isinstance(inner, torch.nn.Module) else model
