"""Reading weight files: safetensors as stored, pickles only when allowed, and every broken or
foreign file a ModelFileError naming it (fuzzed)."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from safetensors.torch import save, save_file

from flowscope.models.files import ModelFileError, PickleRefusedError, read_state_dict

torch.set_num_threads(1)

TENSORS = {
    "model.a.weight": torch.arange(6, dtype=torch.float32).reshape(2, 3),
    "model.b": torch.tensor([1.5, -2.0], dtype=torch.float16),
    "alphas": torch.tensor(0.5, dtype=torch.bfloat16),
}
VALID = save(TENSORS)
_names = itertools.count()


def _equal(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(
        a[k].dtype == b[k].dtype and torch.equal(a[k], b[k]) for k in a
    )


@pytest.mark.parametrize("suffix", [".safetensors", ".sft", ".SafeTensors"])
def test_safetensors_keys_dtypes_and_values_come_back_as_stored(
    tmp_path: Path, suffix: str
) -> None:
    path = tmp_path / f"model{suffix}"
    save_file(TENSORS, path)
    assert _equal(read_state_dict(path), TENSORS)


def test_a_safetensors_file_with_another_extension_is_recognised_by_its_header(
    tmp_path: Path,
) -> None:
    path = tmp_path / "model.weights"
    path.write_bytes(VALID)
    assert _equal(read_state_dict(path), TENSORS)
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(ModelFileError, match=r"unknown weight format '\.txt'") as caught:
        read_state_dict(tmp_path / "notes.txt")
    assert caught.value.path == tmp_path / "notes.txt"


def test_a_missing_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(ModelFileError, match=r"gone\.safetensors: no such file"):
        read_state_dict(tmp_path / "gone.safetensors")


@pytest.mark.parametrize("suffix", [".ckpt", ".pt", ".pth", ".bin"])
def test_pickles_are_refused_unless_allowed(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"old{suffix}"
    torch.save({"state_dict": dict(TENSORS), "global_step": 7}, path)
    with pytest.raises(PickleRefusedError) as caught:
        read_state_dict(path)
    message = str(caught.value)
    assert str(path) in message and "--allow-pickle" in message and "arbitrary code" in message
    # Allowed: the `state_dict` wrapper is unwrapped; values that are not tensors are dropped.
    assert _equal(read_state_dict(path, allow_pickle=True), TENSORS)


def test_an_allowed_pickle_still_cannot_run_code(tmp_path: Path) -> None:
    path = tmp_path / "evil.ckpt"
    torch.save({"weights": TENSORS["model.b"], "payload": Path("/")}, path)  # a non-tensor class
    with pytest.raises(ModelFileError, match=r"evil\.ckpt: cannot be read as a PyTorch weights"):
        read_state_dict(path, allow_pickle=True)


def test_a_pickle_renamed_to_safetensors_says_what_it_is(tmp_path: Path) -> None:
    path = tmp_path / "renamed.safetensors"
    torch.save(dict(TENSORS), path)
    with pytest.raises(ModelFileError, match="it is a PyTorch pickle") as caught:
        read_state_dict(path)
    assert "renamed.safetensors" in str(caught.value)


def _read_bytes(directory: Path, data: bytes, suffix: str = ".safetensors") -> None:
    path = directory / f"fuzz-{next(_names)}{suffix}"
    path.write_bytes(data)
    try:
        read_state_dict(path)
    except ModelFileError as error:
        assert str(path) in str(error)
        assert error.path == path
    finally:
        path.unlink()


@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.binary(max_size=300))
def test_random_bytes_give_a_model_file_error_or_a_state_dict(
    tmp_path_factory: pytest.TempPathFactory, data: bytes
) -> None:
    _read_bytes(tmp_path_factory.getbasetemp(), data)


@settings(max_examples=150)
@given(cut=st.integers(min_value=0, max_value=len(VALID) - 1))
def test_every_truncation_of_a_valid_file_is_a_model_file_error(
    tmp_path_factory: pytest.TempPathFactory, cut: int
) -> None:
    path = tmp_path_factory.getbasetemp() / f"cut-{next(_names)}.safetensors"
    path.write_bytes(VALID[:cut])
    with pytest.raises(ModelFileError) as caught:
        read_state_dict(path)
    assert str(path) in str(caught.value)


@settings(max_examples=200)
@given(
    position=st.integers(min_value=0, max_value=len(VALID) - 1),
    value=st.integers(min_value=0, max_value=255),
    suffix=st.sampled_from([".safetensors", ".unknown"]),
)
def test_a_corrupted_byte_never_raises_anything_but_a_model_file_error(
    tmp_path_factory: pytest.TempPathFactory, position: int, value: int, suffix: str
) -> None:
    data = bytearray(VALID)
    data[position] = value
    _read_bytes(tmp_path_factory.getbasetemp(), bytes(data), suffix)
