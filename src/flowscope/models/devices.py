"""Where models run and in what precision: device choice (CUDA > MPS > CPU), the dtype policy,
out-of-memory classification, and the default memory budget of the model cache."""

from __future__ import annotations

import os
from pathlib import Path

import torch

# The cache budget as a share of the device's memory. On a GPU the rest is for activations
# (SD1.5 at 512², batch 4, needs a few GiB beyond its weights); on the CPU and on MPS, whose
# memory is the system's, the rest is for the OS, the server and the other processes.
BUDGET_FRACTIONS = {"cuda": 0.75, "mps": 0.5, "cpu": 0.5}

_DTYPES: dict[str, torch.dtype] = {
    "fp32": torch.float32,
    "float32": torch.float32,
    "fp16": torch.float16,
    "float16": torch.float16,
    "half": torch.float16,
    "bf16": torch.bfloat16,
    "bfloat16": torch.bfloat16,
}

# What torch says when an accelerator's allocator fails: "CUDA out of memory", "MPS backend out
# of memory", and the CPU allocator's own wordings.
_OOM_MARKERS = (
    "out of memory",
    "DefaultCPUAllocator: can't allocate memory",
    "DefaultCPUAllocator: not enough memory",
)

_MEMINFO = Path("/proc/meminfo")
# cgroup v2 then v1: a container's limit is often far below the host's MemTotal.
_CGROUP_LIMITS = (
    Path("/sys/fs/cgroup/memory.max"),
    Path("/sys/fs/cgroup/memory/memory.limit_in_bytes"),
)


class DeviceChoiceError(ValueError):
    """A requested dtype the device cannot compute in (or a name we do not know)."""


def choose_device(*, force_cpu: bool = False) -> torch.device:
    """The device models run on: the current CUDA device, else MPS, else the CPU (`--cpu`
    forces the CPU)."""
    if force_cpu:
        return torch.device("cpu")
    if torch.cuda.is_available():
        # Indexed, so `str(device)` names it exactly in `model.device` ("cuda:0").
        return torch.device("cuda", torch.cuda.current_device())
    if _mps_available():
        return torch.device("mps")
    return torch.device("cpu")


def compute_dtype(device: torch.device, *, prefer: str | None = None) -> torch.dtype:
    """The dtype to hold weights and compute in on `device`.

    Default: fp16 on CUDA and MPS, fp32 on the CPU (half precision is slow there, and diffusers'
    VAE is unstable in it). `prefer` ("fp32", "fp16", "bf16", or the long torch names) overrides
    the default; bf16 on a GPU that cannot compute in it natively raises `DeviceChoiceError`.
    """
    if prefer is None:
        return torch.float32 if device.type == "cpu" else torch.float16
    dtype = _DTYPES.get(prefer.strip().lower())
    if dtype is None:
        choices = ", ".join(sorted({"fp32", "fp16", "bf16"}))
        raise DeviceChoiceError(f"unknown dtype {prefer!r}: choose one of {choices}")
    if dtype is torch.bfloat16 and not supports_bf16(device):
        raise DeviceChoiceError(
            f"bf16 was asked for, but {device} cannot compute in bf16 natively "
            "(CUDA needs compute capability 8.0 or newer): use fp16 or fp32"
        )
    return dtype


def supports_bf16(device: torch.device) -> bool:
    """Whether `device` computes in bfloat16 natively (emulation on older GPUs does not count)."""
    if device.type == "cpu":
        return True
    if device.type == "cuda":
        try:
            return bool(torch.cuda.is_bf16_supported(including_emulation=False))
        except TypeError:  # torch releases before the keyword
            return bool(torch.cuda.is_bf16_supported())
    try:  # MPS has bf16 from macOS 14: ask the backend rather than the OS version
        torch.zeros(1, dtype=torch.bfloat16, device=device)
    except (RuntimeError, TypeError):
        return False
    return True


def is_out_of_memory(exc: BaseException) -> bool:
    """Whether `exc` is an allocation failure that freeing memory may cure: torch's
    OutOfMemoryError (CUDA), a RuntimeError saying "out of memory" (MPS, CUDA kernels) or the
    CPU allocator's failure, and MemoryError."""
    if isinstance(exc, (torch.OutOfMemoryError, MemoryError)):
        return True
    if isinstance(exc, RuntimeError):
        text = str(exc)
        return any(marker in text for marker in _OOM_MARKERS)
    return False


def total_memory(device: torch.device) -> int:
    """Bytes of memory on `device`: the GPU's VRAM on CUDA; the system's RAM on MPS (unified
    memory) and on the CPU, capped by the container's cgroup limit where there is one."""
    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        return int(torch.cuda.get_device_properties(index).total_memory)
    return system_memory()


def default_budget_bytes(device: torch.device) -> int:
    """The model cache's default budget on `device`: `BUDGET_FRACTIONS` of `total_memory`."""
    fraction = BUDGET_FRACTIONS.get(device.type, BUDGET_FRACTIONS["cpu"])
    return int(total_memory(device) * fraction)


def system_memory() -> int:
    """Total RAM in bytes (/proc/meminfo, else sysconf), capped by a cgroup memory limit."""
    total = _meminfo_total()
    if total is None:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    limit = _cgroup_limit()
    return min(total, limit) if limit is not None else total


def empty_device_cache() -> None:
    """Return the allocators' cached blocks to CUDA / MPS (a no-op where neither is in use)."""
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.empty_cache()
    if _mps_available():
        torch.mps.empty_cache()


def _mps_available() -> bool:
    mps = getattr(torch.backends, "mps", None)
    return mps is not None and bool(mps.is_available())


def _meminfo_total() -> int | None:
    try:
        with _MEMINFO.open(encoding="ascii") as meminfo:
            for line in meminfo:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) * 1024  # in kB
    except (OSError, ValueError, IndexError):
        return None
    return None


def _cgroup_limit() -> int | None:
    for path in _CGROUP_LIMITS:
        try:
            text = path.read_text(encoding="ascii").strip()
        except OSError:
            continue
        # "max" (v2) or a huge page-rounded number (v1) mean no limit.
        if text.isdigit() and int(text) < 1 << 60:
            return int(text)
    return None
