"""Seeded noise, always drawn on the CPU so a seed gives the same image on any device: the initial
latent noise (ComfyUI's `prepare_noise`) and the per-step noise of ancestral / SDE samplers."""

from __future__ import annotations

import torch
from torch import Tensor

_SEED_MODULUS = 2**64  # torch.Generator.manual_seed accepts 0 .. 2^64 - 1


def cpu_generator(seed: int) -> torch.Generator:
    """A fresh CPU generator in the state `torch.manual_seed(seed)` leaves the global one in."""
    return torch.Generator(device="cpu").manual_seed(seed % _SEED_MODULUS)


def prepare_noise(latent: Tensor, seed: int, batch_index: list[int] | None = None) -> Tensor:
    """The initial noise for `latent` (same shape and dtype, on the CPU).

    With `batch_index`, noise is drawn one item at a time up to the largest index and the listed
    items are picked, so item k of a batch equals the k-th item of the same seed's full batch
    (what ComfyUI does for latents split out of a batch, e.g. by LatentFromBatch).
    """
    generator = cpu_generator(seed)
    if batch_index is None:
        return torch.randn(latent.shape, dtype=latent.dtype, generator=generator, device="cpu")
    if not batch_index:
        raise ValueError("batch_index must not be empty")
    if min(batch_index) < 0:
        raise ValueError(f"batch_index values must be >= 0, got {batch_index}")
    wanted = set(batch_index)
    item_shape = [1, *latent.shape[1:]]
    drawn: dict[int, Tensor] = {}
    for index in range(max(wanted) + 1):
        noise = torch.randn(item_shape, dtype=latent.dtype, generator=generator, device="cpu")
        if index in wanted:
            drawn[index] = noise
    return torch.cat([drawn[index] for index in batch_index], dim=0)


class StepNoise:
    """Standard normal noise shaped like the sampling state, one draw per call.

    Seeded with `seed + 1`, as ComfyUI seeds its CPU noise sampler, so that the step noise is not
    a copy of the initial noise (which uses `seed`). Draws happen only when a sampler asks, so
    the stream (and the image) matches ComfyUI's sampler-by-sampler on the CPU.
    """

    def __init__(self, seed: int, like: Tensor) -> None:
        self._generator = cpu_generator(seed + 1)
        self._shape = like.shape
        self._device = like.device
        self._dtype = like.dtype

    def __call__(self) -> Tensor:
        noise = torch.randn(self._shape, generator=self._generator, dtype=torch.float32)
        return noise.to(self._device, self._dtype)
