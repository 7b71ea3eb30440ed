"""Textual-inversion files: the layouts in use (SDXL `clip_l`/`clip_g`, `emb_params`, A1111
`string_to_param`, diffusers' single tensor), pickles only when allowed, clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from flowscope.models.files import ModelFileError, PickleRefusedError
from flowscope.models.text.embeddings import (
    ANY_ENCODER,
    EmbeddingMismatchError,
    read_embedding,
    vectors_for,
)

torch.set_num_threads(1)


def test_sdxl_file_has_vectors_per_encoder(tmp_path: Path) -> None:
    path = tmp_path / "style.safetensors"
    clip_l, clip_g = torch.randn(2, 768), torch.randn(2, 1280)
    save_file({"clip_l": clip_l, "clip_g": clip_g}, path)
    vectors = read_embedding(path)
    assert set(vectors) == {"clip_l", "clip_g"}
    assert torch.equal(vectors["clip_l"], clip_l)
    assert torch.equal(vectors["clip_g"], clip_g)


def test_emb_params_file_serves_any_encoder(tmp_path: Path) -> None:
    path = tmp_path / "sd2.safetensors"
    tensor = torch.randn(3, 1024, dtype=torch.float16)
    save_file({"emb_params": tensor}, path)
    vectors = read_embedding(path)
    assert list(vectors) == [ANY_ENCODER]
    assert vectors[ANY_ENCODER].dtype == torch.float32
    assert torch.equal(vectors[ANY_ENCODER], tensor.float())


def test_a1111_pickle_needs_permission(tmp_path: Path) -> None:
    path = tmp_path / "a1111.pt"
    tensor = torch.randn(4, 768)
    torch.save(
        {
            "string_to_token": {"*": 265},
            "string_to_param": {"*": torch.nn.Parameter(tensor)},
            "name": "a1111",
            "step": 1000,
        },
        path,
    )
    with pytest.raises(PickleRefusedError, match="allow-pickle"):
        read_embedding(path)
    vectors = read_embedding(path, allow_pickle=True)
    assert torch.equal(vectors[ANY_ENCODER], tensor)
    assert not vectors[ANY_ENCODER].requires_grad


def test_diffusers_single_vector_becomes_one_row(tmp_path: Path) -> None:
    path = tmp_path / "learned_embeds.bin"
    tensor = torch.randn(768)
    torch.save({"<cat-toy>": tensor}, path)
    vectors = read_embedding(path, allow_pickle=True)
    assert vectors[ANY_ENCODER].shape == (1, 768)
    assert torch.equal(vectors[ANY_ENCODER][0], tensor)


def test_files_that_are_not_embeddings(tmp_path: Path) -> None:
    several = tmp_path / "model.safetensors"
    save_file({"a.weight": torch.randn(2, 2), "b.weight": torch.randn(2)}, several)
    with pytest.raises(ModelFileError, match=r"not a textual-inversion embedding.*a\.weight"):
        read_embedding(several)

    integers = tmp_path / "ints.safetensors"
    save_file({"emb_params": torch.ones(2, 8, dtype=torch.int64)}, integers)
    with pytest.raises(ModelFileError, match="not a non-empty float tensor"):
        read_embedding(integers)

    truncated = tmp_path / "cut.safetensors"
    save_file({"emb_params": torch.randn(2, 768)}, truncated)
    truncated.write_bytes(truncated.read_bytes()[:100])
    with pytest.raises(ModelFileError, match=str(truncated.name)):
        read_embedding(truncated)

    not_a_dict = tmp_path / "list.pt"
    torch.save([torch.randn(2, 768)], not_a_dict)
    with pytest.raises(ModelFileError, match="holds a list"):
        read_embedding(not_a_dict, allow_pickle=True)

    with pytest.raises(ModelFileError, match="no such file"):
        read_embedding(tmp_path / "missing.pt", allow_pickle=True)


def test_a_pickle_with_code_objects_is_refused_even_when_allowed(tmp_path: Path) -> None:
    path = tmp_path / "original.pt"
    torch.save({"string_to_param": torch.nn.ParameterDict({"*": torch.randn(1, 768)})}, path)
    with pytest.raises(ModelFileError, match="cannot be read as a PyTorch embedding"):
        read_embedding(path, allow_pickle=True)


def test_vectors_for_an_encoder() -> None:
    sdxl = {"clip_l": torch.zeros(2, 768), "clip_g": torch.ones(2, 1280)}
    assert torch.equal(vectors_for(sdxl, "clip_g", 1280, name="style"), sdxl["clip_g"])
    unkeyed = {ANY_ENCODER: torch.zeros(1, 768)}
    assert vectors_for(unkeyed, "clip_l", 768, name="style").shape == (1, 768)

    with pytest.raises(EmbeddingMismatchError, match=r"'style' has no vectors for the clip_h"):
        vectors_for(sdxl, "clip_h", 1024, name="style")
    with pytest.raises(EmbeddingMismatchError, match=r"'sd1/style' has vectors of width 768"):
        vectors_for(unkeyed, "clip_g", 1280, name="sd1/style")
