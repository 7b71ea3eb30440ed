"""Sigma schedules: ComfyUI's nine schedulers, their conventions, properties for any step count."""

from __future__ import annotations

import itertools
import math
from typing import Any

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from flowscope.nodes.sd.sampling import SCHEDULER_NAMES, DiscreteSchedule, compute_sigmas
from flowscope.nodes.sd.sampling.schedules import beta_quantile, regularized_incomplete_beta

torch.set_num_threads(1)

SCHEDULE = DiscreteSchedule.scaled_linear()
SIGMA_MAX = float(SCHEDULE.sigma_max)
SIGMA_MIN = float(SCHEDULE.sigma_min)


def diffusers_sd_euler(**options: Any) -> Any:
    """diffusers' EulerDiscreteScheduler with SD's training schedule (imported lazily: slow)."""
    from diffusers import EulerDiscreteScheduler

    factory: Any = EulerDiscreteScheduler
    return factory(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", **options)


def test_scheduler_names_are_comfyuis_in_its_order() -> None:
    assert SCHEDULER_NAMES == [
        "simple",
        "sgm_uniform",
        "karras",
        "exponential",
        "ddim_uniform",
        "beta",
        "normal",
        "linear_quadratic",
        "kl_optimal",
    ]


def _expected_length(scheduler: str, steps: int) -> int | None:
    if scheduler == "ddim_uniform":  # strides by 1000 // steps from timestep 1, then 0
        return len(range(1, 1000, max(1000 // steps, 1))) + 1
    if scheduler == "beta":  # repeated timesteps are dropped: at most steps + 1
        return None
    return steps + 1


@settings(max_examples=150)
@given(
    scheduler=st.sampled_from(SCHEDULER_NAMES),
    steps=st.integers(min_value=1, max_value=200),
    linear_start=st.sampled_from([0.00085, 0.0001, 0.001]),
    linear_end=st.sampled_from([0.012, 0.02, 0.006]),
)
def test_every_schedule_descends_to_zero_from_at_most_sigma_max(
    scheduler: str, steps: int, linear_start: float, linear_end: float
) -> None:
    schedule = DiscreteSchedule.scaled_linear(linear_start, linear_end)
    sigmas = compute_sigmas(scheduler, schedule, steps)
    assert sigmas.dtype == torch.float32
    assert sigmas.ndim == 1
    expected = _expected_length(scheduler, steps)
    if expected is None:
        assert 2 <= len(sigmas) <= steps + 1
        assert bool((sigmas[1:] < sigmas[:-1]).all())  # distinct levels
    else:
        assert len(sigmas) == expected
    assert bool(torch.isfinite(sigmas).all())
    assert float(sigmas[-1]) == 0.0
    assert bool((sigmas[:-1] > 0).all())
    assert bool((sigmas[1:] <= sigmas[:-1]).all())
    assert float(sigmas[0]) <= float(schedule.sigma_max) * (1 + 1e-6)


# diffusers calls np.array on a tensor the numpy 2 way; not ours to fix.
@pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")
@pytest.mark.parametrize(
    ("scheduler", "flag"),
    [("karras", "use_karras_sigmas"), ("exponential", "use_exponential_sigmas")],
)
@pytest.mark.parametrize("steps", [2, 7, 20, 150])
def test_karras_and_exponential_match_diffusers(scheduler: str, flag: str, steps: int) -> None:
    reference = diffusers_sd_euler(**{flag: True})
    reference.set_timesteps(steps)
    ours = compute_sigmas(scheduler, SCHEDULE, steps)
    # Same formula over the same range; diffusers derives sigma_min / sigma_max from a float32
    # cumulative product (ours is float64, as ComfyUI's), which moves them by ~1.3e-5.
    torch.testing.assert_close(ours, reference.sigmas.float(), rtol=5e-5, atol=0)


def test_karras_spacing_is_linear_in_sigma_to_the_one_seventh() -> None:
    sigmas = compute_sigmas("karras", SCHEDULE, 12)[:-1].double()
    ramp = sigmas ** (1 / 7)
    torch.testing.assert_close(ramp.diff(), ramp.diff()[:1].expand(11), rtol=1e-4, atol=0)
    assert float(sigmas[0]) == pytest.approx(SIGMA_MAX, rel=1e-6)
    assert float(sigmas[-1]) == pytest.approx(SIGMA_MIN, rel=1e-6)


def test_simple_takes_every_nth_training_sigma_from_the_top() -> None:
    sigmas = compute_sigmas("simple", SCHEDULE, 8)
    indices = [999 - int(i * 1000 / 8) for i in range(8)]
    assert torch.equal(sigmas[:-1], SCHEDULE.sigmas[indices])


def test_normal_spaces_timesteps_evenly_from_the_top_to_the_bottom() -> None:
    sigmas = compute_sigmas("normal", SCHEDULE, 10)
    timesteps = torch.linspace(999, 0, 10)
    expected = torch.stack([SCHEDULE.sigma(t) for t in timesteps])
    assert torch.equal(sigmas[:-1], expected)
    assert float(sigmas[0]) == pytest.approx(SIGMA_MAX, rel=1e-6)
    assert float(sigmas[-2]) == pytest.approx(SIGMA_MIN, rel=1e-6)


def test_sgm_uniform_leaves_out_the_bottom_timestep() -> None:
    sigmas = compute_sigmas("sgm_uniform", SCHEDULE, 10)
    expected = torch.stack([SCHEDULE.sigma(t) for t in torch.linspace(999, 0, 11)[:-1]])
    assert torch.equal(sigmas[:-1], expected)
    assert float(sigmas[-2]) > 3 * SIGMA_MIN


def test_ddim_uniform_strides_up_from_timestep_one() -> None:
    sigmas = compute_sigmas("ddim_uniform", SCHEDULE, 10)
    assert torch.equal(sigmas[:-1], SCHEDULE.sigmas[list(range(901, 0, -100))])
    # ComfyUI's stride (1000 // 7 = 142) fits 8 levels: one more step than asked for.
    assert len(compute_sigmas("ddim_uniform", SCHEDULE, 7)) == 9
    one = compute_sigmas("ddim_uniform", SCHEDULE, 1)
    assert torch.equal(one, torch.stack([SCHEDULE.sigmas[1], torch.tensor(0.0)]))


def test_beta_places_steps_at_beta_quantiles() -> None:
    sigmas = compute_sigmas("beta", SCHEDULE, 10)
    indices = [round(beta_quantile(1 - i / 10, 0.6, 0.6) * 999) for i in range(10)]
    assert indices[0] == 999
    assert torch.equal(sigmas[:-1], SCHEDULE.sigmas[indices])
    # Beta(0.6, 0.6) puts more steps at both ends than in the middle.
    gaps = [a - b for a, b in itertools.pairwise(indices)]
    assert gaps[len(gaps) // 2] > gaps[0]
    assert gaps[len(gaps) // 2] > gaps[-1]


def test_beta_drops_repeated_timesteps_of_long_schedules() -> None:
    sigmas = compute_sigmas("beta", SCHEDULE, 200)
    assert len(sigmas) < 201
    assert bool((sigmas[1:] < sigmas[:-1]).all())


@pytest.mark.parametrize(
    ("alpha", "beta", "quantile"),
    [
        (1.0, 1.0, lambda p: p),
        (2.0, 1.0, math.sqrt),
        (1.0, 2.0, lambda p: 1 - math.sqrt(1 - p)),
        # The arcsine distribution: unbounded density at both ends, like Beta(0.6, 0.6).
        (0.5, 0.5, lambda p: math.sin(math.pi * p / 2) ** 2),
    ],
)
def test_beta_quantile_matches_closed_forms(alpha: float, beta: float, quantile: object) -> None:
    assert callable(quantile)
    for probability in (1e-9, 0.001, 0.1, 0.37, 0.5, 0.9, 0.999, 1 - 1e-9):
        assert beta_quantile(probability, alpha, beta) == pytest.approx(
            quantile(probability), rel=1e-9, abs=1e-15
        )


def test_incomplete_beta_matches_numerical_integration() -> None:
    # Integrate the Beta(0.6, 0.6) density with x = sin²θ, which removes its end singularities.
    theta = torch.linspace(0, math.pi / 2, 400_001, dtype=torch.float64)
    density = 2 * theta.sin() ** 0.2 * theta.cos() ** 0.2
    steps = (density[1:] + density[:-1]) / 2 * theta.diff()
    cdf = torch.cat([torch.zeros(1, dtype=torch.float64), steps.cumsum(0)])
    cdf = cdf / cdf[-1]
    for index in (20_000, 100_000, 200_000, 333_333, 390_000):
        x = float(theta[index].sin() ** 2)
        assert regularized_incomplete_beta(x, 0.6, 0.6) == pytest.approx(
            float(cdf[index]), abs=2e-6
        )
        assert beta_quantile(float(cdf[index]), 0.6, 0.6) == pytest.approx(x, abs=1e-5)


def test_linear_quadratic_follows_mochis_schedule() -> None:
    # steps 4: linear to 0.025 over 2 steps, then a quadratic reaching 1 (worked by hand).
    sigmas = compute_sigmas("linear_quadratic", SCHEDULE, 4)
    expected = torch.tensor([1.0, 0.9875, 0.975, 0.725, 0.0]) * SIGMA_MAX
    torch.testing.assert_close(sigmas, expected, rtol=1e-6, atol=1e-6)
    assert torch.equal(
        compute_sigmas("linear_quadratic", SCHEDULE, 1), torch.tensor([SIGMA_MAX, 0.0])
    )


def test_kl_optimal_is_evenly_spaced_in_arctan_sigma() -> None:
    sigmas = compute_sigmas("kl_optimal", SCHEDULE, 9)[:-1].double()
    angles = sigmas.atan()
    torch.testing.assert_close(angles.diff(), angles.diff()[:1].expand(8), rtol=1e-5, atol=0)
    assert float(sigmas[0]) == pytest.approx(SIGMA_MAX, rel=1e-5)
    assert float(sigmas[-1]) == pytest.approx(SIGMA_MIN, rel=1e-5)
    # ComfyUI yields NaN for one step (it divides by steps - 1); we start at the top.
    assert torch.equal(compute_sigmas("kl_optimal", SCHEDULE, 1), torch.tensor([SIGMA_MAX, 0.0]))


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(ValueError, match="unknown scheduler 'linear'"):
        compute_sigmas("linear", SCHEDULE, 10)
    with pytest.raises(ValueError, match="steps must be at least 1"):
        compute_sigmas("karras", SCHEDULE, 0)
