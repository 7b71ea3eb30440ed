"""The samplers on analytic denoisers: Gaussian data N(mu, s²) has the exact denoiser
D(x, sigma) = mu + (x - mu) s² / (s² + sigma²), and its probability-flow ODE has the closed-form
solution x(sigma) - mu = (x_T - mu) sqrt(s² + sigma²) / sqrt(s² + sigma_T²)."""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch
from torch import Tensor

from flowscope.nodes.sd.sampling import (
    SAMPLER_NAMES,
    SCHEDULER_NAMES,
    DiscreteSchedule,
    compute_sigmas,
    run_sampler,
)
from flowscope.nodes.sd.sampling.noise import cpu_generator
from flowscope.nodes.sd.sampling.samplers import calls_per_step
from flowscope.nodes.sd.sampling.schedules import karras_sigmas

torch.set_num_threads(1)

SCHEDULE = DiscreteSchedule.scaled_linear()
SIGMA_MAX = float(SCHEDULE.sigma_max)


def diffusers_sd_euler(**options: Any) -> Any:
    """diffusers' EulerDiscreteScheduler with SD's training schedule (imported lazily: slow)."""
    from diffusers import EulerDiscreteScheduler

    factory: Any = EulerDiscreteScheduler
    return factory(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", **options)


DETERMINISTIC = [
    "euler",
    "heun",
    "dpm_2",
    "lms",
    "dpmpp_2m",
    "ipndm",
    "deis",
    "ddim",
    "uni_pc",
    "uni_pc_bh2",
]
STOCHASTIC = [name for name in SAMPLER_NAMES if name not in DETERMINISTIC]


class Gaussian:
    """Exact denoiser of N(mu, s²) data; counts its calls."""

    def __init__(self, mu: float = 0.3, s: float = 0.5) -> None:
        self.mu, self.s = mu, s
        self.calls = 0

    def __call__(self, x: Tensor, sigma: Tensor) -> Tensor:
        assert sigma.shape == (x.shape[0],)
        self.calls += 1
        sigma = sigma.reshape(-1, 1, 1, 1)
        return self.mu + (x - self.mu) * self.s**2 / (self.s**2 + sigma**2)

    def ode_solution(self, x_t: Tensor, sigma_t: float) -> Tensor:
        return self.mu + (x_t - self.mu) * self.s / math.sqrt(self.s**2 + sigma_t**2)

    def start(self, shape: tuple[int, ...], sigma_t: float, seed: int = 0) -> Tensor:
        noise = torch.randn(shape, generator=cpu_generator(seed), dtype=torch.float64)
        return self.mu + noise * math.sqrt(self.s**2 + sigma_t**2)


def test_sampler_names_are_the_issues_seventeen_in_comfyuis_order() -> None:
    assert SAMPLER_NAMES == [
        "euler",
        "euler_ancestral",
        "heun",
        "dpm_2",
        "dpm_2_ancestral",
        "lms",
        "dpmpp_2s_ancestral",
        "dpmpp_sde",
        "dpmpp_2m",
        "dpmpp_2m_sde",
        "dpmpp_3m_sde",
        "lcm",
        "ipndm",
        "deis",
        "ddim",
        "uni_pc",
        "uni_pc_bh2",
    ]


@pytest.mark.parametrize("sampler", SAMPLER_NAMES)
def test_every_sampler_runs_every_scheduler_to_a_finite_result(sampler: str) -> None:
    denoiser = Gaussian()
    for scheduler in SCHEDULER_NAMES:
        sigmas = compute_sigmas(scheduler, SCHEDULE, 6)
        x = denoiser.start((2, 4, 4, 4), float(sigmas[0])).float()
        out = run_sampler(sampler, denoiser, x, sigmas, noise_seed=3)
        assert out.shape == x.shape
        assert out.dtype == torch.float32
        assert bool(torch.isfinite(out).all()), scheduler
        # Denoised: x started ~40 away from the data; at 6 steps some sampler / scheduler pairs
        # are crude (dpmpp_3m_sde after ddim_uniform's long last step), none is lost.
        assert float((out - denoiser.mu).abs().max()) < 20 * denoiser.s, scheduler


# (sampler, minimal observed order between 16 and 32 karras steps). Measured: euler / ddim 1.0;
# heun, dpm_2, dpmpp_2m, ipndm 2.2; deis 3.1; lms 3.3; uni_pc 3.7, uni_pc_bh2 3.8.
ORDERS = [
    ("euler", 0.9),
    ("ddim", 0.9),
    ("heun", 1.8),
    ("dpm_2", 1.8),
    ("dpmpp_2m", 1.8),
    ("ipndm", 1.8),
    ("deis", 2.6),
    ("lms", 2.8),
    ("uni_pc", 3.0),
    ("uni_pc_bh2", 3.0),
]


@pytest.mark.parametrize(("sampler", "order"), ORDERS)
def test_deterministic_samplers_converge_to_the_ode_solution_at_their_order(
    sampler: str, order: float
) -> None:
    # float64 and sigma_min 0.002, so rounding and the final jump to sigma 0 (error ~ sigma_min²)
    # stay far below the discretisation error being measured.
    denoiser = Gaussian(mu=0.3, s=1.0)
    x_t = denoiser.start((2, 4, 8, 8), SIGMA_MAX)
    exact = denoiser.ode_solution(x_t, SIGMA_MAX)
    errors = []
    for steps in (8, 16, 32):
        sigmas = karras_sigmas(steps, 0.002, SIGMA_MAX).double()
        out = run_sampler(sampler, denoiser, x_t.clone(), sigmas, noise_seed=0)
        errors.append(float((out - exact).abs().max()))
    assert errors[0] > errors[1] > errors[2]
    observed = math.log2(errors[1] / errors[2])
    assert observed >= order, f"{sampler}: errors {errors}, order {observed:.2f}"
    if order >= 1.8:
        assert errors[2] < 0.03  # |x_T - mu| is ~40 here


@pytest.mark.parametrize("sampler", DETERMINISTIC)
def test_deterministic_samplers_ignore_the_noise_seed(sampler: str) -> None:
    denoiser = Gaussian()
    sigmas = compute_sigmas("karras", SCHEDULE, 5)
    x = denoiser.start((1, 4, 4, 4), SIGMA_MAX).float()
    first = run_sampler(sampler, denoiser, x, sigmas, noise_seed=1)
    assert torch.equal(first, run_sampler(sampler, denoiser, x, sigmas, noise_seed=2))


@pytest.mark.parametrize("sampler", STOCHASTIC)
def test_stochastic_samplers_are_reproducible_per_seed_and_differ_between_seeds(
    sampler: str,
) -> None:
    denoiser = Gaussian()
    sigmas = compute_sigmas("karras", SCHEDULE, 5)
    x = denoiser.start((1, 4, 4, 4), SIGMA_MAX).float()
    first = run_sampler(sampler, denoiser, x, sigmas, noise_seed=11)
    assert torch.equal(first, run_sampler(sampler, denoiser, x, sigmas, noise_seed=11))
    assert not torch.allclose(first, run_sampler(sampler, denoiser, x, sigmas, noise_seed=12))


@pytest.mark.parametrize(
    ("sampler", "tolerance"),
    # Euler ancestral is first order: its spread is still ~7 % low at 60 steps.
    [(name, 0.10 if name == "euler_ancestral" else 0.04) for name in STOCHASTIC if name != "lcm"],
)
def test_ancestral_and_sde_samplers_sample_the_data_distribution(
    sampler: str, tolerance: float
) -> None:
    # 16384 values: the sample mean and spread are known to ~1 %. Wrong noise amounts (e.g. a
    # missing sigma_up factor) would show up as a wrong spread.
    denoiser = Gaussian(mu=0.3, s=0.5)
    sigmas = compute_sigmas("karras", SCHEDULE, 60)
    x = denoiser.start((1, 4, 64, 64), SIGMA_MAX, seed=2).float()
    out = run_sampler(sampler, denoiser, x, sigmas, noise_seed=2)
    assert float(out.mean()) == pytest.approx(denoiser.mu, abs=0.02)
    assert float(out.std()) / denoiser.s == pytest.approx(1.0, abs=tolerance)


def test_ancestral_noise_is_drawn_on_the_cpu_from_the_seed_plus_one() -> None:
    # One euler_ancestral step with a zero denoiser: x * sigma_down / sigma + noise * sigma_up.
    x = torch.full((1, 4, 4, 4), 2.0)
    sigmas = torch.tensor([2.0, 1.0])
    out = run_sampler("euler_ancestral", lambda x, s: torch.zeros_like(x), x, sigmas, noise_seed=9)
    sigma_up = math.sqrt(1.0 * (4.0 - 1.0) / 4.0)
    sigma_down = math.sqrt(1.0 - sigma_up**2)
    noise = torch.randn(x.shape, generator=cpu_generator(10))
    torch.testing.assert_close(out, x * sigma_down / 2.0 + noise * sigma_up)


@pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")
def test_euler_matches_diffusers_euler_discrete_scheduler() -> None:
    denoiser = Gaussian(mu=0.1, s=0.8)

    def epsilon_model(model_input: Tensor, sigma: Tensor) -> Tensor:
        # An epsilon-predicting "network" that sees the scaled input, as a UNet does.
        x = model_input * (sigma.reshape(-1, 1, 1, 1) ** 2 + 1).sqrt()
        return (x - denoiser(x, sigma)) / sigma.reshape(-1, 1, 1, 1)

    reference = diffusers_sd_euler()
    reference.set_timesteps(12)
    noise = torch.randn(1, 4, 8, 8, generator=cpu_generator(4))
    sample = noise * reference.init_noise_sigma
    for i, timestep in enumerate(reference.timesteps):
        model_input = reference.scale_model_input(sample, timestep)
        eps = epsilon_model(model_input, reference.sigmas[i].reshape(1))
        sample = reference.step(eps, timestep, sample).prev_sample

    def ours(x: Tensor, sigma: Tensor) -> Tensor:
        eps = epsilon_model(SCHEDULE.calculate_input(sigma, x), sigma)
        return SCHEDULE.calculate_denoised(sigma, eps, x)

    # Same start: diffusers scales the initial noise by sigma_max with "linspace" spacing, where
    # ComfyUI (and sample_latent) use sqrt(1 + sigma_max²); the stepping is what is compared.
    x = noise * reference.init_noise_sigma
    out = run_sampler("euler", ours, x, reference.sigmas, noise_seed=0)
    # Measured bit-identical (same float32 operations); 1e-5 allows a different operation order.
    torch.testing.assert_close(out, sample, rtol=0, atol=1e-5)


@pytest.mark.parametrize("sampler", SAMPLER_NAMES)
def test_each_step_calls_the_denoiser_the_advertised_number_of_times(sampler: str) -> None:
    denoiser = Gaussian()
    sigmas = compute_sigmas("karras", SCHEDULE, 7)
    run_sampler(sampler, denoiser, denoiser.start((1, 4, 2, 2), SIGMA_MAX), sigmas, noise_seed=0)
    # Two-stage samplers make one call on the final step to sigma 0.
    assert denoiser.calls == 7 * calls_per_step(sampler) - (calls_per_step(sampler) - 1)


@pytest.mark.parametrize("sampler", SAMPLER_NAMES)
def test_callback_reports_every_step_in_order(sampler: str) -> None:
    denoiser = Gaussian()
    sigmas = compute_sigmas("normal", SCHEDULE, 6)
    seen: list[tuple[int, float]] = []

    def callback(step: int, x: Tensor, denoised: Tensor, sigma: float) -> None:
        seen.append((step, sigma))
        assert x.shape == denoised.shape == (1, 4, 2, 2)
        if sampler not in ("uni_pc", "uni_pc_bh2"):
            # The prediction at this step's x (UniPC reports its corrected x instead).
            sigma_tensor = torch.full((1,), sigma, dtype=x.dtype)
            torch.testing.assert_close(denoised, Gaussian()(x, sigma_tensor))

    start = denoiser.start((1, 4, 2, 2), SIGMA_MAX).float()
    run_sampler(sampler, denoiser, start, sigmas, noise_seed=0, callback=callback)
    assert seen == [(i, float(sigmas[i])) for i in range(6)]


class InterruptError(Exception):
    pass


@pytest.mark.parametrize("sampler", SAMPLER_NAMES)
@pytest.mark.parametrize("stop_at", [0, 3, 5])
def test_an_exception_in_the_callback_stops_the_sampler_at_once(sampler: str, stop_at: int) -> None:
    sigmas = compute_sigmas("karras", SCHEDULE, 6)
    start = Gaussian().start((1, 4, 2, 2), SIGMA_MAX).float()

    full = Gaussian()
    calls_at_step: dict[int, int] = {}

    def record(step: int, x: Tensor, denoised: Tensor, sigma: float) -> None:
        calls_at_step[step] = full.calls

    run_sampler(sampler, full, start, sigmas, noise_seed=0, callback=record)

    interrupted = Gaussian()

    def interrupt(step: int, x: Tensor, denoised: Tensor, sigma: float) -> None:
        if step == stop_at:
            raise InterruptError

    with pytest.raises(InterruptError):
        run_sampler(sampler, interrupted, start, sigmas, noise_seed=0, callback=interrupt)
    # Not a single denoiser call after the callback raised.
    assert interrupted.calls == calls_at_step[stop_at]
    assert interrupted.calls == stop_at * calls_per_step(sampler) + 1


def test_a_single_sigma_leaves_x_unchanged() -> None:
    denoiser = Gaussian()
    x = torch.ones(1, 4, 2, 2)
    assert run_sampler("euler", denoiser, x, torch.tensor([1.0]), noise_seed=0) is x
    assert denoiser.calls == 0


def test_unknown_sampler_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown sampler 'dpm_fast'"):
        run_sampler("dpm_fast", Gaussian(), torch.zeros(1, 4, 2, 2), torch.ones(3), noise_seed=0)
