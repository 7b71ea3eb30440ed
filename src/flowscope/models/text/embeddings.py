"""Textual-inversion embedding files (`embedding:name` in a prompt): their vectors per text
encoder, from the layouts A1111, SD2/SDXL trainers and diffusers write."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from flowscope.models.files import (
    PICKLE_EXTENSIONS,
    ModelFileError,
    PickleRefusedError,
    read_state_dict,
)

# The key of vectors whose file does not say which encoder they are for (SD1/SD2 files): they
# serve whichever encoder they are given to, if the widths agree.
ANY_ENCODER = "*"
ENCODER_KEYS = ("clip_l", "clip_g", "clip_h")


class EmbeddingMismatchError(ValueError):
    """An embedding whose vectors do not fit a text encoder of the model it is used with."""


def read_embedding(path: Path, *, allow_pickle: bool = False) -> dict[str, torch.Tensor]:
    """The vectors of one embedding file: encoder name (`clip_l`, `clip_g`, `clip_h`) or
    ANY_ENCODER → float tensor [n_vectors, width]. Raises ModelFileError (naming the file) for a
    file that cannot be read or holds no embedding; pickles (.pt, .bin) need `allow_pickle`."""
    path = Path(path)
    if path.suffix.lower() in PICKLE_EXTENSIONS:
        content: Mapping[str, Any] = _read_pickle(path, allow_pickle=allow_pickle)
    else:
        content = read_state_dict(path, allow_pickle=allow_pickle)
    vectors = _vectors(content)
    if not vectors:
        keys = ", ".join(sorted(map(str, content))[:8]) or "nothing"
        raise ModelFileError(
            path,
            "not a textual-inversion embedding: expected `clip_l`/`clip_g` (SDXL), "
            f"`emb_params`, `string_to_param` or a single tensor, found {keys}",
        )
    out: dict[str, torch.Tensor] = {}
    for key, tensor in vectors.items():
        if not tensor.is_floating_point() or tensor.dim() == 0 or tensor.numel() == 0:
            raise ModelFileError(
                path, f"embedding vectors {key!r} are not a non-empty float tensor"
            )
        out[key] = tensor.detach().reshape(-1, tensor.shape[-1]).float()
    return out


def vectors_for(
    embedding: Mapping[str, torch.Tensor], encoder: str, width: int, *, name: str
) -> torch.Tensor:
    """The vectors of `embedding` for the text encoder `encoder` of hidden size `width`.

    Raises EmbeddingMismatchError naming the embedding when it has none for that encoder or
    their width differs (ComfyUI drops such vectors with a log line; an error says why the
    embedding has no effect)."""
    vectors = embedding.get(encoder)
    if vectors is None:
        vectors = embedding.get(ANY_ENCODER)
    if vectors is None:
        have = ", ".join(sorted(embedding)) or "none"
        raise EmbeddingMismatchError(
            f"embedding {name!r} has no vectors for the {encoder} text encoder "
            f"(it has: {have}); use an embedding made for this model's family"
        )
    if vectors.shape[-1] != width:
        raise EmbeddingMismatchError(
            f"embedding {name!r} has vectors of width {vectors.shape[-1]}, but this model's "
            f"{encoder} text encoder has width {width}: it was made for another model family "
            "(768: SD1 / SDXL clip_l, 1024: SD2, 1280: SDXL clip_g)"
        )
    return vectors


def _vectors(content: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    keyed = {
        key: content[key] for key in ENCODER_KEYS if isinstance(content.get(key), torch.Tensor)
    }
    if keyed:
        return keyed
    by_token = content.get("string_to_param")
    if isinstance(by_token, Mapping):
        # A1111 / the textual-inversion paper's layout: {"*": tensor}.
        tensors = [value for value in by_token.values() if isinstance(value, torch.Tensor)]
        return {ANY_ENCODER: tensors[0]} if tensors else {}
    if isinstance(content.get("emb_params"), torch.Tensor):
        return {ANY_ENCODER: content["emb_params"]}
    tensors = [value for value in content.values() if isinstance(value, torch.Tensor)]
    # diffusers' textual inversion: {"<token>": tensor}.
    return {ANY_ENCODER: tensors[0]} if len(tensors) == 1 else {}


def _read_pickle(path: Path, *, allow_pickle: bool) -> Mapping[str, Any]:
    """The dict a .pt/.bin embedding holds. Not through `read_state_dict`, which keeps only
    top-level tensors: A1111 files nest theirs in `string_to_param`."""
    if not path.is_file():
        raise ModelFileError(path, "no such file")
    if not allow_pickle:
        raise PickleRefusedError(path)
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        first_line = str(error).splitlines()[0] if str(error) else ""
        raise ModelFileError(
            path,
            f"cannot be read as a PyTorch embedding file ({type(error).__name__}: {first_line}); "
            "it may be truncated, or hold objects other than tensors (files of the original "
            "textual-inversion code do: convert them to .safetensors)",
        ) from error
    if not isinstance(loaded, dict):
        raise ModelFileError(path, f"holds a {type(loaded).__name__}, not a dict of tensors")
    return {str(key): value for key, value in loaded.items()}
