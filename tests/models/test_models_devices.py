"""Device choice, the dtype policy, out-of-memory classification and the default memory budget.

This machine has no GPU: the CUDA / MPS branches are driven by replacing torch's availability
probes, which is exactly what `choose_device` and friends consult."""

from __future__ import annotations

import os
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from flowscope.models import devices
from flowscope.models.devices import (
    DeviceChoiceError,
    choose_device,
    compute_dtype,
    default_budget_bytes,
    is_out_of_memory,
    system_memory,
    total_memory,
)

torch.set_num_threads(1)

CPU = torch.device("cpu")
CUDA = torch.device("cuda", 0)
MPS = torch.device("mps")
GIB = 1 << 30


@pytest.fixture
def cuda_present(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 1)


def test_cpu_when_no_accelerator(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    assert choose_device() == CPU


@pytest.mark.usefixtures("cuda_present")
def test_cuda_first_and_indexed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
    device = choose_device()
    assert device == torch.device("cuda", 1)
    assert str(device) == "cuda:1"  # what model.device will say


def test_mps_before_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
    assert choose_device() == MPS


@pytest.mark.usefixtures("cuda_present")
def test_force_cpu_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
    assert choose_device(force_cpu=True) == CPU


def test_default_dtypes() -> None:
    assert compute_dtype(CPU) is torch.float32
    assert compute_dtype(CUDA) is torch.float16
    assert compute_dtype(MPS) is torch.float16


@pytest.mark.parametrize(
    ("prefer", "dtype"),
    [
        ("fp32", torch.float32),
        ("FP16", torch.float16),
        ("bf16", torch.bfloat16),
        ("float32", torch.float32),
        ("bfloat16", torch.bfloat16),
    ],
)
def test_prefer_overrides_on_cpu(prefer: str, dtype: torch.dtype) -> None:
    assert compute_dtype(CPU, prefer=prefer) is dtype


def test_prefer_fp32_on_cuda() -> None:
    assert compute_dtype(CUDA, prefer="fp32") is torch.float32


def test_bf16_on_cuda_only_where_supported(monkeypatch: pytest.MonkeyPatch) -> None:
    asked: list[bool] = []

    def bf16_supported(including_emulation: bool = True) -> bool:
        asked.append(including_emulation)
        return supported

    monkeypatch.setattr(torch.cuda, "is_bf16_supported", bf16_supported)
    supported = True
    assert compute_dtype(CUDA, prefer="bf16") is torch.bfloat16
    supported = False
    with pytest.raises(DeviceChoiceError, match=r"bf16 .* cuda:0 .* use fp16 or fp32"):
        compute_dtype(CUDA, prefer="bf16")
    # Emulated bf16 (pre-Ampere) is slow: only native support counts.
    assert asked == [False, False]


def test_unknown_dtype_names_the_choices() -> None:
    with pytest.raises(DeviceChoiceError, match=r"'fp8'.*bf16, fp16, fp32"):
        compute_dtype(CPU, prefer="fp8")


def test_out_of_memory_errors() -> None:
    assert is_out_of_memory(torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2 GiB"))
    assert is_out_of_memory(torch.cuda.OutOfMemoryError("CUDA out of memory."))
    assert is_out_of_memory(RuntimeError("MPS backend out of memory (MPS allocated: 9 GB)"))
    assert is_out_of_memory(RuntimeError("CUDA error: out of memory"))
    assert is_out_of_memory(MemoryError())
    with pytest.raises(RuntimeError) as real:  # the CPU allocator's own failure, for real
        torch.empty(1 << 62, dtype=torch.uint8)
    assert is_out_of_memory(real.value)


def test_other_errors_are_not_out_of_memory() -> None:
    assert not is_out_of_memory(RuntimeError("mat1 and mat2 shapes cannot be multiplied"))
    assert not is_out_of_memory(ValueError("out of memory"))  # not an allocator's error type
    assert not is_out_of_memory(KeyboardInterrupt())


def _fake_system(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, meminfo: str, cgroup: str
) -> None:
    (tmp_path / "meminfo").write_text(meminfo)
    (tmp_path / "memory.max").write_text(cgroup)
    monkeypatch.setattr(devices, "_MEMINFO", tmp_path / "meminfo")
    monkeypatch.setattr(devices, "_CGROUP_LIMITS", (tmp_path / "memory.max",))


MEMINFO = "MemTotal:       16384000 kB\nMemFree:         1000 kB\nMemAvailable:   8000000 kB\n"


def test_system_memory_reads_meminfo(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    _fake_system(monkeypatch, tmp_path, MEMINFO, "max\n")
    assert system_memory() == 16384000 * 1024
    assert total_memory(CPU) == 16384000 * 1024
    assert default_budget_bytes(CPU) == 16384000 * 1024 // 2


def test_container_limit_caps_system_memory(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    _fake_system(monkeypatch, tmp_path, MEMINFO, f"{4 * GIB}\n")
    assert system_memory() == 4 * GIB
    assert default_budget_bytes(CPU) == 2 * GIB


def test_without_meminfo_sysconf_answers(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(devices, "_MEMINFO", tmp_path / "absent")
    monkeypatch.setattr(devices, "_CGROUP_LIMITS", ())
    assert system_memory() == os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def test_real_system_memory_is_plausible() -> None:
    assert 256 * (1 << 20) < total_memory(CPU) < 1 << 50
    assert default_budget_bytes(CPU) == int(total_memory(CPU) * 0.5)


@pytest.mark.usefixtures("cuda_present")
def test_cuda_budget_is_a_share_of_vram(monkeypatch: pytest.MonkeyPatch) -> None:
    asked: list[int] = []

    def properties(index: int) -> SimpleNamespace:
        asked.append(index)
        return SimpleNamespace(total_memory=80 * GIB)

    monkeypatch.setattr(torch.cuda, "get_device_properties", properties)
    assert total_memory(torch.device("cuda", 0)) == 80 * GIB
    assert default_budget_bytes(torch.device("cuda")) == 60 * GIB
    assert asked == [0, 1]  # an unindexed device means the current one


def test_mps_budget_is_a_share_of_system_memory(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    _fake_system(monkeypatch, tmp_path, MEMINFO, "max")
    assert total_memory(MPS) == 16384000 * 1024
    assert default_budget_bytes(MPS) == 16384000 * 1024 // 2
