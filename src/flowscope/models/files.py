"""Reading weight files into state dicts: safetensors always, PyTorch pickles (`.ckpt`, `.pt`,
...) only when explicitly allowed, and a clear error naming the file for anything else."""

from __future__ import annotations

from pathlib import Path

import torch

SAFETENSORS_EXTENSIONS = frozenset({".safetensors", ".sft"})
PICKLE_EXTENSIONS = frozenset({".ckpt", ".pt", ".pt2", ".pth", ".bin", ".pkl"})
# A safetensors header is at most 100 MB (the format's own limit).
_MAX_HEADER = 100_000_000


class ModelFileError(ValueError):
    """A weight file that cannot be used; the message names the file, the problem and the fix."""

    def __init__(self, path: Path, problem: str) -> None:
        super().__init__(f"{path}: {problem}")
        self.path = path
        self.problem = problem


class PickleRefusedError(ModelFileError):
    """A pickle-based weight file read without permission to run pickles."""

    def __init__(self, path: Path) -> None:
        super().__init__(
            path,
            ".ckpt/.pt pickles are refused: loading one can run arbitrary code. Use a "
            ".safetensors version of the model, or pass --allow-pickle to load it with "
            "torch.load(weights_only=True).",
        )


def read_state_dict(path: Path, *, allow_pickle: bool = False) -> dict[str, torch.Tensor]:
    """All tensors of a weight file, keys as stored, on the CPU in the stored dtypes."""
    path = Path(path)
    if not path.is_file():
        raise ModelFileError(path, "no such file")
    suffix = path.suffix.lower()
    if suffix in SAFETENSORS_EXTENSIONS:
        return _read_safetensors(path)
    if suffix in PICKLE_EXTENSIONS:
        if not allow_pickle:
            raise PickleRefusedError(path)
        return _read_pickle(path)
    if _looks_like_safetensors(path):
        return _read_safetensors(path)
    raise ModelFileError(
        path,
        f"unknown weight format {suffix or '(no extension)'!r}: expected .safetensors "
        f"(or, with --allow-pickle, {', '.join(sorted(PICKLE_EXTENSIONS))})",
    )


def _looks_like_safetensors(path: Path) -> bool:
    with path.open("rb") as file:
        head = file.read(9)
    if len(head) < 9:
        return False
    size = int.from_bytes(head[:8], "little")
    return 0 < size <= _MAX_HEADER and head[8:9] == b"{"


def _read_safetensors(path: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    try:
        return load_file(path, device="cpu")
    except BaseException as error:
        # Rust panics surface as pyo3's PanicException, a BaseException subclass.
        if not isinstance(error, Exception) and type(error).__name__ != "PanicException":
            raise
        raise ModelFileError(path, _safetensors_problem(path, error)) from error


def _safetensors_problem(path: Path, error: BaseException) -> str:
    with path.open("rb") as file:
        magic = file.read(4)
    if magic.startswith(b"PK"):
        return (
            "not a safetensors file: it is a PyTorch pickle (zip). Rename it to .ckpt and pass "
            "--allow-pickle, or convert it to safetensors"
        )
    detail = str(error).strip() or type(error).__name__
    return (
        f"not a valid safetensors file ({detail}); it may be truncated (an interrupted "
        "download) or another kind of file: download it again"
    )


def _read_pickle(path: Path) -> dict[str, torch.Tensor]:
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        raise ModelFileError(
            path,
            f"cannot be read as a PyTorch weights file ({type(error).__name__}: "
            f"{str(error).splitlines()[0] if str(error) else ''}); it may be truncated, or "
            "hold objects other than tensors",
        ) from error
    while isinstance(loaded, dict) and isinstance(loaded.get("state_dict"), dict):
        loaded = loaded["state_dict"]
    if not isinstance(loaded, dict):
        raise ModelFileError(path, f"holds a {type(loaded).__name__}, not a dict of tensors")
    tensors = {str(key): value for key, value in loaded.items() if isinstance(value, torch.Tensor)}
    if not tensors and loaded:
        raise ModelFileError(path, "holds no tensors")
    return tensors
