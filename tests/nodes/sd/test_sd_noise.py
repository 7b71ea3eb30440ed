"""Seeded CPU noise: ComfyUI's prepare_noise (with batch_index) and the samplers' step noise."""

from __future__ import annotations

import pytest
import torch

from flowscope.nodes.sd.sampling import prepare_noise
from flowscope.nodes.sd.sampling.noise import StepNoise, cpu_generator

torch.set_num_threads(1)

LATENT = torch.zeros(3, 4, 8, 8)


def test_noise_is_what_torch_manual_seed_then_randn_gives() -> None:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(1234)
        expected = torch.randn(LATENT.shape)
    noise = prepare_noise(LATENT, 1234)
    assert torch.equal(noise, expected)
    assert noise.device.type == "cpu"
    assert noise.dtype == LATENT.dtype


def test_same_seed_same_noise_different_seed_different_noise() -> None:
    assert torch.equal(prepare_noise(LATENT, 7), prepare_noise(LATENT, 7))
    assert not torch.equal(prepare_noise(LATENT, 7), prepare_noise(LATENT, 8))


def test_noise_keeps_the_latent_dtype() -> None:
    assert prepare_noise(LATENT.double(), 1).dtype == torch.float64


def test_batch_index_picks_the_items_of_sequential_single_draws() -> None:
    single = LATENT[:1]
    generator = cpu_generator(42)
    draws = [torch.randn(single.shape, generator=generator) for _ in range(4)]
    assert torch.equal(prepare_noise(single, 42, batch_index=[2]), draws[2])
    assert torch.equal(
        prepare_noise(LATENT, 42, batch_index=[3, 0, 3]), torch.cat([draws[3], draws[0], draws[3]])
    )


def test_batch_index_item_equals_that_item_of_the_full_batch() -> None:
    # What LatentFromBatch relies on: sampling item k alone reproduces item k of the batch
    # (for latents whose size is a multiple of 16, where torch's CPU randn is sequential).
    full = prepare_noise(LATENT, 99)
    for index in range(3):
        assert torch.equal(
            prepare_noise(LATENT[:1], 99, batch_index=[index]), full[index : index + 1]
        )


def test_the_whole_seed_range_is_accepted() -> None:
    largest = 2**64 - 1
    assert torch.isfinite(prepare_noise(LATENT, largest)).all()
    assert not torch.equal(prepare_noise(LATENT, largest), prepare_noise(LATENT, 0))


def test_bad_batch_index_is_refused() -> None:
    with pytest.raises(ValueError, match="must not be empty"):
        prepare_noise(LATENT, 1, batch_index=[])
    with pytest.raises(ValueError, match=">= 0"):
        prepare_noise(LATENT, 1, batch_index=[-1])


def test_step_noise_uses_the_next_seed_and_the_states_shape_and_dtype() -> None:
    like = torch.zeros(2, 4, 3, 3, dtype=torch.float64)
    noise = StepNoise(5, like)
    generator = cpu_generator(6)
    first, second = noise(), noise()
    assert first.dtype == torch.float64
    assert first.shape == like.shape
    assert torch.equal(first, torch.randn(like.shape, generator=generator).double())
    assert torch.equal(second, torch.randn(like.shape, generator=generator).double())
    # seed + 1 wraps at the top of the range instead of failing.
    assert torch.isfinite(StepNoise(2**64 - 1, like)()).all()
