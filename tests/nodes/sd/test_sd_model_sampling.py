"""DiscreteSchedule: sigmas from alphas_cumprod, quantized timesteps, eps / v parameterisations."""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from flowscope.nodes.sd.sampling import DiscreteSchedule

torch.set_num_threads(1)

SCHEDULE = DiscreteSchedule.scaled_linear()


def diffusers_sd_euler(**options: Any) -> Any:
    """diffusers' EulerDiscreteScheduler with SD's training schedule (imported lazily: slow)."""
    from diffusers import EulerDiscreteScheduler

    factory: Any = EulerDiscreteScheduler
    return factory(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", **options)


def test_scaled_linear_matches_the_sd_training_schedule() -> None:
    # SD1.x's well-known range, and sigma = sqrt((1 - ac) / ac) at every timestep.
    assert float(SCHEDULE.sigma_min) == pytest.approx(0.029168, abs=1e-5)
    assert float(SCHEDULE.sigma_max) == pytest.approx(14.614642, abs=1e-5)
    betas = torch.linspace(0.00085**0.5, 0.012**0.5, 1000, dtype=torch.float64) ** 2
    cumprod = torch.cumprod(1 - betas, dim=0)
    expected = ((1 - cumprod) / cumprod).sqrt().float()
    assert torch.equal(SCHEDULE.sigmas, expected)
    assert SCHEDULE.sigmas.dtype == torch.float32
    assert bool((SCHEDULE.sigmas[1:] > SCHEDULE.sigmas[:-1]).all())


def test_sigmas_agree_with_diffusers_training_sigmas() -> None:
    scheduler = diffusers_sd_euler()
    theirs = ((1 - scheduler.alphas_cumprod) / scheduler.alphas_cumprod) ** 0.5
    # diffusers accumulates the product in float32; we do it in float64 (as ComfyUI).
    torch.testing.assert_close(SCHEDULE.sigmas, theirs.float(), rtol=2e-5, atol=0)


def test_timestep_is_the_index_of_each_training_sigma() -> None:
    indices = SCHEDULE.timestep(SCHEDULE.sigmas)
    assert indices.dtype == torch.int64
    assert torch.equal(indices, torch.arange(1000))


@settings(max_examples=200)
@given(st.floats(min_value=0.03, max_value=14.6))
def test_timestep_picks_the_nearest_log_sigma(sigma: float) -> None:
    index = int(SCHEDULE.timestep(torch.tensor([sigma])))
    distances = (SCHEDULE.log_sigmas - math.log(sigma)).abs()
    assert float(distances[index]) == pytest.approx(float(distances.min()), abs=1e-7)


def test_timestep_keeps_the_shape_and_clamps_outside_the_range() -> None:
    sigmas = torch.tensor([[100.0, 0.001], [1.0, 14.6146]])
    indices = SCHEDULE.timestep(sigmas)
    assert indices.shape == (2, 2)
    assert int(indices[0, 0]) == 999
    assert int(indices[0, 1]) == 0


def test_sigma_interpolates_log_sigma_between_timesteps() -> None:
    # exp(float32 log-sigma) is the training sigma up to float32 rounding.
    torch.testing.assert_close(
        SCHEDULE.sigma(torch.arange(1000)), SCHEDULE.sigmas, rtol=1e-6, atol=0
    )
    half = SCHEDULE.sigma(torch.tensor(10.5))
    expected = math.exp(0.5 * (float(SCHEDULE.log_sigmas[10]) + float(SCHEDULE.log_sigmas[11])))
    assert float(half) == pytest.approx(expected, rel=1e-6)
    assert SCHEDULE.sigma(torch.tensor(-5.0)) == SCHEDULE.sigma(torch.tensor(0))
    assert SCHEDULE.sigma(torch.tensor(5000.0)) == SCHEDULE.sigma(torch.tensor(999))


def test_percent_to_sigma() -> None:
    assert SCHEDULE.percent_to_sigma(0.0) == pytest.approx(999999999.9)
    assert SCHEDULE.percent_to_sigma(1.0) == 0.0
    assert SCHEDULE.percent_to_sigma(0.5) == pytest.approx(
        float(SCHEDULE.sigma(torch.tensor(499.5)))
    )
    assert SCHEDULE.percent_to_sigma(0.1) > SCHEDULE.percent_to_sigma(0.9)


@pytest.mark.parametrize("prediction", ["epsilon", "v_prediction"])
def test_calculate_denoised_recovers_x0_from_an_exact_prediction(prediction: str) -> None:
    schedule = DiscreteSchedule.scaled_linear(prediction=prediction)  # type: ignore[arg-type]
    generator = torch.Generator().manual_seed(0)
    x0 = torch.randn(3, 4, 5, 5, generator=generator, dtype=torch.float64)
    eps = torch.randn(3, 4, 5, 5, generator=generator, dtype=torch.float64)
    sigma = torch.tensor([0.1, 1.0, 14.0], dtype=torch.float64)
    s = sigma.reshape(-1, 1, 1, 1)
    x = x0 + s * eps
    # v = alpha * eps - sigma_vp * x0, in the variance-preserving scale.
    output = eps if prediction == "epsilon" else (eps - s * x0) / (1 + s**2).sqrt()
    torch.testing.assert_close(schedule.calculate_denoised(sigma, output, x), x0)


def test_calculate_input_scales_to_unit_variance() -> None:
    x = torch.ones(2, 4, 2, 2)
    scaled = SCHEDULE.calculate_input(torch.tensor([0.0, 3.0]), x)
    assert torch.allclose(scaled[0], torch.ones(4, 2, 2))
    assert torch.allclose(scaled[1], torch.full((4, 2, 2), 1 / math.sqrt(10)))


def test_noise_scaling_at_the_top_uses_the_full_marginal_spread() -> None:
    noise = torch.full((1, 4, 2, 2), 2.0)
    latent = torch.full((1, 4, 2, 2), 0.5)
    sigma = torch.tensor(3.0)
    top = SCHEDULE.noise_scaling(sigma, noise, latent, max_denoise=True)
    partial = SCHEDULE.noise_scaling(sigma, noise, latent, max_denoise=False)
    assert torch.allclose(top, torch.full_like(noise, 2.0 * math.sqrt(10.0) + 0.5))
    assert torch.allclose(partial, torch.full_like(noise, 6.5))


def test_invalid_schedules_are_refused() -> None:
    with pytest.raises(ValueError, match="prediction"):
        DiscreteSchedule(torch.tensor([0.9, 0.5]), prediction="x0")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="strictly in"):
        DiscreteSchedule(torch.tensor([1.0, 0.5]))
    with pytest.raises(ValueError, match="non-increasing"):
        DiscreteSchedule(torch.tensor([0.5, 0.9]))
