"""Sigma schedules ("schedulers" in ComfyUI): which noise levels a sampler steps through, derived
from a model's `DiscreteSchedule` with ComfyUI's conventions for each of the nine names."""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import lru_cache

import torch
from torch import Tensor

from flowscope.nodes.sd.choices import SCHEDULER_NAMES, check_implemented
from flowscope.nodes.sd.sampling.model_sampling import DiscreteSchedule


def karras_sigmas(steps: int, sigma_min: float, sigma_max: float, rho: float = 7.0) -> Tensor:
    """Karras et al. (2022): evenly spaced in sigma^(1/rho), then a final 0."""
    ramp = torch.linspace(0, 1, steps)
    min_inv_rho = sigma_min ** (1 / rho)
    max_inv_rho = sigma_max ** (1 / rho)
    sigmas = (max_inv_rho + ramp * (min_inv_rho - max_inv_rho)) ** rho
    return _append_zero(sigmas)


def exponential_sigmas(steps: int, sigma_min: float, sigma_max: float) -> Tensor:
    """Evenly spaced in log-sigma, then a final 0."""
    sigmas = torch.linspace(math.log(sigma_max), math.log(sigma_min), steps).exp()
    return _append_zero(sigmas)


def compute_sigmas(scheduler: str, schedule: DiscreteSchedule, steps: int) -> Tensor:
    """The noise levels for `steps` steps, descending, ending in 0 (float32, on the CPU).

    Usually steps + 1 values. As in ComfyUI, `beta` drops repeated training timesteps (long
    schedules get fewer, distinct levels) and `ddim_uniform` strides the training timesteps by
    1000 // steps, which for some step counts gives one level more.
    """
    if steps < 1:
        raise ValueError(f"steps must be at least 1, not {steps}")
    handler = _HANDLERS.get(scheduler)
    if handler is None:
        raise ValueError(f"unknown scheduler {scheduler!r}; expected one of {SCHEDULER_NAMES}")
    return handler(schedule, steps)


def _append_zero(sigmas: Tensor) -> Tensor:
    return torch.cat([sigmas, sigmas.new_zeros([1])])


def _from_levels(levels: list[float]) -> Tensor:
    return torch.tensor(levels, dtype=torch.float32)


def _simple(schedule: DiscreteSchedule, steps: int) -> Tensor:
    # Every (N / steps)-th training sigma, counted down from the top.
    stride = len(schedule.sigmas) / steps
    levels = [float(schedule.sigmas[-(1 + int(i * stride))]) for i in range(steps)]
    return _from_levels([*levels, 0.0])


def _uniform_timesteps(schedule: DiscreteSchedule, steps: int, *, sgm: bool) -> Tensor:
    start = schedule.timestep(schedule.sigma_max)
    end = schedule.timestep(schedule.sigma_min)
    append_zero = True
    if sgm:
        # SGM (SDXL's reference code): the end timestep is the zero level, so it is left out.
        timesteps = torch.linspace(float(start), float(end), steps + 1)[:-1]
    else:
        if math.isclose(float(schedule.sigma(end)), 0, abs_tol=0.00001):
            # A zero-terminal-SNR schedule reaches 0 on its own.
            steps += 1
            append_zero = False
        timesteps = torch.linspace(float(start), float(end), steps)
    levels = [float(schedule.sigma(t)) for t in timesteps]
    return _from_levels([*levels, 0.0] if append_zero else levels)


def _normal(schedule: DiscreteSchedule, steps: int) -> Tensor:
    return _uniform_timesteps(schedule, steps, sgm=False)


def _sgm_uniform(schedule: DiscreteSchedule, steps: int) -> Tensor:
    return _uniform_timesteps(schedule, steps, sgm=True)


def _karras(schedule: DiscreteSchedule, steps: int) -> Tensor:
    return karras_sigmas(steps, float(schedule.sigma_min), float(schedule.sigma_max))


def _exponential(schedule: DiscreteSchedule, steps: int) -> Tensor:
    return exponential_sigmas(steps, float(schedule.sigma_min), float(schedule.sigma_max))


def _ddim_uniform(schedule: DiscreteSchedule, steps: int) -> Tensor:
    sigmas = schedule.sigmas
    levels: list[float] = []
    if math.isclose(float(sigmas[1]), 0, abs_tol=0.00001):
        steps += 1
    else:
        levels.append(0.0)
    stride = max(len(sigmas) // steps, 1)
    levels.extend(float(sigmas[index]) for index in range(1, len(sigmas), stride))
    return _from_levels(levels[::-1])


def _beta(schedule: DiscreteSchedule, steps: int) -> Tensor:
    # Lee et al. (2024), arXiv 2407.12173: timesteps at Beta(0.6, 0.6) quantiles, which spends
    # more steps at both ends of the schedule.
    last_index = len(schedule.sigmas) - 1
    levels: list[float] = []
    previous = -1
    for fraction in _beta_quantiles(steps, 0.6, 0.6):
        index = round(fraction * last_index)  # round half to even, like numpy.rint
        if index != previous:
            levels.append(float(schedule.sigmas[index]))
        previous = index
    return _from_levels([*levels, 0.0])


def _linear_quadratic(schedule: DiscreteSchedule, steps: int) -> Tensor:
    # Mochi's schedule: linear in sigma for the first half (up to threshold_noise), then
    # quadratic; expressed as fractions of sigma_max.
    threshold_noise = 0.025
    if steps == 1:
        fractions = [1.0, 0.0]
    else:
        linear_steps = steps // 2
        linear = [i * threshold_noise / linear_steps for i in range(linear_steps)]
        step_diff = linear_steps - threshold_noise * steps
        quadratic_steps = steps - linear_steps
        quadratic_coef = step_diff / (linear_steps * quadratic_steps**2)
        linear_coef = threshold_noise / linear_steps - 2 * step_diff / (quadratic_steps**2)
        const = quadratic_coef * (linear_steps**2)
        quadratic = [
            quadratic_coef * (i**2) + linear_coef * i + const for i in range(linear_steps, steps)
        ]
        fractions = [1.0 - value for value in [*linear, *quadratic, 1.0]]
    return _from_levels(fractions) * schedule.sigma_max


def _kl_optimal(schedule: DiscreteSchedule, steps: int) -> Tensor:
    # Evenly spaced in arctan(sigma) (the KL-optimal schedule of AUTOMATIC1111 PR 15608).
    sigma_min, sigma_max = float(schedule.sigma_min), float(schedule.sigma_max)
    if steps == 1:
        # ComfyUI divides by steps - 1 here and yields NaN; one step starts at the top.
        return _from_levels([sigma_max, 0.0])
    # In float64 (ComfyUI uses float32): tan is steep near pi/2, and float32 angles would put
    # the first level up to ~1e-5 away from sigma_max for large sigma_max.
    fractions = torch.arange(steps, dtype=torch.float64).div_(steps - 1)
    angles = fractions * math.atan(sigma_min) + (1 - fractions) * math.atan(sigma_max)
    return _append_zero(angles.tan().float())


_HANDLERS: dict[str, Callable[[DiscreteSchedule, int], Tensor]] = {
    "simple": _simple,
    "sgm_uniform": _sgm_uniform,
    "karras": _karras,
    "exponential": _exponential,
    "ddim_uniform": _ddim_uniform,
    "beta": _beta,
    "normal": _normal,
    "linear_quadratic": _linear_quadratic,
    "kl_optimal": _kl_optimal,
}
check_implemented("scheduler", _HANDLERS, SCHEDULER_NAMES)


@lru_cache(maxsize=64)
def _beta_quantiles(steps: int, alpha: float, beta: float) -> tuple[float, ...]:
    """Beta(alpha, beta) quantiles at 1, 1 - 1/steps, ..., 1/steps (descending)."""
    probabilities = [1.0 - i * (1.0 / steps) for i in range(steps)]
    return tuple(beta_quantile(p, alpha, beta) for p in probabilities)


def beta_quantile(probability: float, alpha: float, beta: float) -> float:
    """The inverse of the regularized incomplete beta function (scipy.stats.beta.ppf): Newton
    steps kept inside a shrinking bisection bracket, so it is fast where the density is smooth
    and still safe where it is unbounded (at 0 and 1 when alpha, beta < 1)."""
    if probability <= 0.0:
        return 0.0
    if probability >= 1.0:
        return 1.0
    log_norm = math.lgamma(alpha + beta) - math.lgamma(alpha) - math.lgamma(beta)
    low, high = 0.0, 1.0
    x = 0.5
    for _ in range(200):
        error = regularized_incomplete_beta(x, alpha, beta) - probability
        if error == 0.0:
            return x
        if error < 0.0:
            low = x
        else:
            high = x
        density = math.exp(log_norm + (alpha - 1.0) * math.log(x) + (beta - 1.0) * math.log1p(-x))
        candidate = x - error / density
        if not low < candidate < high:
            candidate = 0.5 * (low + high)
        if abs(candidate - x) <= 4e-16 * max(x, 1e-300) or candidate in (low, high):
            return candidate
        x = candidate
    return x


def regularized_incomplete_beta(x: float, alpha: float, beta: float) -> float:
    """I_x(alpha, beta), the Beta(alpha, beta) CDF, from its continued fraction (evaluated with
    the modified Lentz method on the side where it converges fast)."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    if x > (alpha + 1.0) / (alpha + beta + 2.0):
        return 1.0 - regularized_incomplete_beta(1.0 - x, beta, alpha)
    log_front = (
        alpha * math.log(x)
        + beta * math.log1p(-x)
        + math.lgamma(alpha + beta)
        - math.lgamma(alpha)
        - math.lgamma(beta)
    )
    return math.exp(log_front) * _beta_continued_fraction(x, alpha, beta) / alpha


def _beta_continued_fraction(x: float, alpha: float, beta: float) -> float:
    tiny = 1e-300
    c, d = 1.0, 1.0 - (alpha + beta) * x / (alpha + 1.0)
    d = 1.0 / (d if abs(d) > tiny else tiny)
    result = d
    for m in range(1, 1000):
        # Even term, then odd term, of the continued fraction.
        for numerator in (
            m * (beta - m) * x / ((alpha + 2 * m - 1) * (alpha + 2 * m)),
            -(alpha + m) * (alpha + beta + m) * x / ((alpha + 2 * m) * (alpha + 2 * m + 1)),
        ):
            d = 1.0 + numerator * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + numerator / c
            c = c if abs(c) > tiny else tiny
            result *= c * d
        if abs(c * d - 1.0) < 1e-16:
            break
    return result
