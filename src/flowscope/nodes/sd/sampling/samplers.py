"""The samplers offered by KSampler: ODE and SDE solvers stepping a latent from the first sigma of
a schedule down to the last, with ComfyUI's (k-diffusion's) update rules and defaults."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor

from flowscope.nodes.sd.choices import SAMPLER_NAMES, check_implemented
from flowscope.nodes.sd.sampling import _multistep
from flowscope.nodes.sd.sampling._stepping import (
    Denoiser,
    SamplerRun,
    StepCallback,
    ancestral_step,
    to_d,
)

__all__ = ["SAMPLER_NAMES", "Denoiser", "StepCallback", "calls_per_step", "run_sampler"]

SamplerFunction = Callable[[SamplerRun, Tensor], Tensor]

# ComfyUI's defaults for the samplers that take them.
ETA = 1.0
S_NOISE = 1.0


def run_sampler(
    name: str,
    denoiser: Denoiser,
    x: Tensor,
    sigmas: Tensor,
    *,
    noise_seed: int,
    callback: StepCallback | None = None,
) -> Tensor:
    """Step `x` (already noised to `sigmas[0]`) through `sigmas` with the sampler `name`.

    Ancestral and SDE samplers draw their extra noise on the CPU from `noise_seed`, so results do
    not depend on the device. `callback` runs after the first denoiser call of every step.
    """
    function = _SAMPLERS.get(name)
    if function is None:
        raise ValueError(f"unknown sampler {name!r}; expected one of {SAMPLER_NAMES}")
    levels = [float(value) for value in sigmas.detach().to("cpu", torch.float64).flatten()]
    if len(levels) < 2:
        return x
    run = SamplerRun(denoiser, levels, noise_seed, callback, x)
    with torch.no_grad():
        return function(run, x)


def calls_per_step(name: str) -> int:
    """How many denoiser calls a step of sampler `name` makes (the final step to sigma 0 of a
    two-stage sampler makes one)."""
    return 2 if name in _TWO_STAGE else 1


def _euler(run: SamplerRun, x: Tensor) -> Tensor:
    sigmas = run.sigmas
    for i in range(run.steps):
        denoised = run.denoise(x, sigmas[i])
        run.report(i, x, denoised)
        x = x + to_d(x, sigmas[i], denoised) * (sigmas[i + 1] - sigmas[i])
    return x


def _euler_ancestral(run: SamplerRun, x: Tensor) -> Tensor:
    sigmas = run.sigmas
    for i in range(run.steps):
        denoised = run.denoise(x, sigmas[i])
        sigma_down, sigma_up = ancestral_step(sigmas[i], sigmas[i + 1], ETA)
        run.report(i, x, denoised)
        if sigma_down == 0:
            x = denoised
        else:
            x = x + to_d(x, sigmas[i], denoised) * (sigma_down - sigmas[i])
            x = x + run.noise() * (S_NOISE * sigma_up)
    return x


def _heun(run: SamplerRun, x: Tensor) -> Tensor:
    sigmas = run.sigmas
    for i in range(run.steps):
        sigma, sigma_next = sigmas[i], sigmas[i + 1]
        denoised = run.denoise(x, sigma)
        d = to_d(x, sigma, denoised)
        run.report(i, x, denoised)
        dt = sigma_next - sigma
        if sigma_next == 0:
            x = x + d * dt
        else:
            x_2 = x + d * dt
            d_2 = to_d(x_2, sigma_next, run.denoise(x_2, sigma_next))
            x = x + (d + d_2) * (dt / 2)
    return x


def _dpm_2(run: SamplerRun, x: Tensor) -> Tensor:
    sigmas = run.sigmas
    for i in range(run.steps):
        sigma, sigma_next = sigmas[i], sigmas[i + 1]
        denoised = run.denoise(x, sigma)
        d = to_d(x, sigma, denoised)
        run.report(i, x, denoised)
        if sigma_next == 0:
            x = x + d * (sigma_next - sigma)
        else:
            x = _dpm_2_step(run, x, d, sigma, sigma_next)
    return x


def _dpm_2_step(run: SamplerRun, x: Tensor, d: Tensor, sigma: float, sigma_to: float) -> Tensor:
    # DPM-Solver-2: the derivative at the log-midpoint carries the whole step.
    sigma_mid = math.exp(0.5 * (math.log(sigma) + math.log(sigma_to)))
    x_2 = x + d * (sigma_mid - sigma)
    d_2 = to_d(x_2, sigma_mid, run.denoise(x_2, sigma_mid))
    return x + d_2 * (sigma_to - sigma)


def _dpm_2_ancestral(run: SamplerRun, x: Tensor) -> Tensor:
    sigmas = run.sigmas
    for i in range(run.steps):
        sigma = sigmas[i]
        denoised = run.denoise(x, sigma)
        sigma_down, sigma_up = ancestral_step(sigma, sigmas[i + 1], ETA)
        run.report(i, x, denoised)
        d = to_d(x, sigma, denoised)
        if sigma_down == 0:
            x = x + d * (sigma_down - sigma)
        else:
            x = _dpm_2_step(run, x, d, sigma, sigma_down)
            x = x + run.noise() * (S_NOISE * sigma_up)
    return x


def _dpmpp_2s_ancestral(run: SamplerRun, x: Tensor) -> Tensor:
    sigmas = run.sigmas
    for i in range(run.steps):
        sigma, sigma_next = sigmas[i], sigmas[i + 1]
        denoised = run.denoise(x, sigma)
        sigma_down, sigma_up = ancestral_step(sigma, sigma_next, ETA)
        run.report(i, x, denoised)
        if sigma_down == 0:
            x = x + to_d(x, sigma, denoised) * (sigma_down - sigma)
        else:
            # DPM-Solver++(2S) in lambda = -log(sigma), midpoint r = 1/2.
            h = math.log(sigma) - math.log(sigma_down)
            sigma_s = sigma * math.exp(-0.5 * h)
            x_2 = (sigma_s / sigma) * x - math.expm1(-0.5 * h) * denoised
            denoised_2 = run.denoise(x_2, sigma_s)
            x = (sigma_down / sigma) * x - math.expm1(-h) * denoised_2
        if sigma_next > 0:
            x = x + run.noise() * (S_NOISE * sigma_up)
    return x


def _dpmpp_sde(run: SamplerRun, x: Tensor) -> Tensor:
    # DPM-Solver++ (stochastic), r = 1/2. ComfyUI draws this noise from a Brownian tree
    # (torchsde); the two draws of a step are increments over nested intervals, so they are
    # built here as Brownian increments too (same joint distribution, no torchsde).
    r = 0.5
    sigmas = run.sigmas
    for i in range(run.steps):
        sigma, sigma_next = sigmas[i], sigmas[i + 1]
        denoised = run.denoise(x, sigma)
        run.report(i, x, denoised)
        if sigma_next == 0:
            x = denoised
            continue
        h = math.log(sigma) - math.log(sigma_next)
        sigma_mid = sigma * math.exp(-r * h)
        first, second = _nested_brownian_noise(run, sigma, sigma_mid, sigma_next)

        sigma_down, sigma_up = ancestral_step(sigma, sigma_mid, ETA)
        h_down = math.log(sigma) - math.log(sigma_down)
        x_2 = math.exp(-h_down) * x - math.expm1(-h_down) * denoised
        x_2 = x_2 + first * (S_NOISE * sigma_up)
        denoised_2 = run.denoise(x_2, sigma_mid)

        sigma_down, sigma_up = ancestral_step(sigma, sigma_next, ETA)
        h_down = math.log(sigma) - math.log(sigma_down)
        fac = 1 / (2 * r)
        denoised_d = (1 - fac) * denoised + fac * denoised_2
        x = math.exp(-h_down) * x - math.expm1(-h_down) * denoised_d
        x = x + second * (S_NOISE * sigma_up)
    return x


def _nested_brownian_noise(
    run: SamplerRun, sigma: float, sigma_mid: float, sigma_next: float
) -> tuple[Tensor, Tensor]:
    """Normalised Brownian increments over [sigma_mid, sigma] and [sigma_next, sigma]."""
    near, far = sigma - sigma_mid, sigma_mid - sigma_next
    z_near, z_far = run.noise(), run.noise()
    whole = (z_near * math.sqrt(near) + z_far * math.sqrt(far)) / math.sqrt(near + far)
    return z_near, whole


def _dpmpp_2m(run: SamplerRun, x: Tensor) -> Tensor:
    sigmas = run.sigmas
    old_denoised: Tensor | None = None
    for i in range(run.steps):
        sigma, sigma_next = sigmas[i], sigmas[i + 1]
        denoised = run.denoise(x, sigma)
        run.report(i, x, denoised)
        if sigma_next == 0:
            x = denoised
        else:
            h = math.log(sigma) - math.log(sigma_next)
            if old_denoised is None:
                denoised_d = denoised
            else:
                h_last = math.log(sigmas[i - 1]) - math.log(sigma)
                half_inverse_r = h / (2 * h_last)
                denoised_d = (1 + half_inverse_r) * denoised - half_inverse_r * old_denoised
            x = (sigma_next / sigma) * x - math.expm1(-h) * denoised_d
        old_denoised = denoised
    return x


def _dpmpp_2m_sde(run: SamplerRun, x: Tensor) -> Tensor:
    # DPM-Solver++(2M) SDE, midpoint variant. Noise over disjoint intervals is independent, so
    # plain normal draws have the distribution of ComfyUI's Brownian-tree increments.
    sigmas = run.sigmas
    old_denoised: Tensor | None = None
    h_last: float | None = None
    for i in range(run.steps):
        sigma, sigma_next = sigmas[i], sigmas[i + 1]
        denoised = run.denoise(x, sigma)
        run.report(i, x, denoised)
        if sigma_next == 0:
            x = denoised
        else:
            h = math.log(sigma) - math.log(sigma_next)
            h_eta = h * (ETA + 1)
            x = (sigma_next / sigma * math.exp(-h * ETA)) * x - math.expm1(-h_eta) * denoised
            if old_denoised is not None and h_last is not None:
                r = h_last / h
                x = x - (0.5 * math.expm1(-h_eta) / r) * (denoised - old_denoised)
            x = x + run.noise() * (sigma_next * math.sqrt(-math.expm1(-2 * h * ETA)) * S_NOISE)
            h_last = h
        old_denoised = denoised
    return x


def _dpmpp_3m_sde(run: SamplerRun, x: Tensor) -> Tensor:
    sigmas = run.sigmas
    history: list[tuple[Tensor, float]] = []  # (denoised, h) of earlier steps, newest first
    for i in range(run.steps):
        sigma, sigma_next = sigmas[i], sigmas[i + 1]
        denoised = run.denoise(x, sigma)
        run.report(i, x, denoised)
        if sigma_next == 0:
            x = denoised
            continue
        h = math.log(sigma) - math.log(sigma_next)
        h_eta = h * (ETA + 1)
        x = (sigma_next / sigma * math.exp(-h * ETA)) * x - math.expm1(-h_eta) * denoised
        phi_2 = math.expm1(-h_eta) / h_eta + 1
        if len(history) >= 2:
            (denoised_1, h_1), (denoised_2, h_2) = history[0], history[1]
            r0, r1 = h_1 / h, h_2 / h
            d1_0 = (denoised - denoised_1) / r0
            d1_1 = (denoised_1 - denoised_2) / r1
            d1 = d1_0 + (d1_0 - d1_1) * (r0 / (r0 + r1))
            d2 = (d1_0 - d1_1) / (r0 + r1)
            phi_3 = phi_2 / h_eta - 0.5
            x = x + phi_2 * d1 - phi_3 * d2
        elif history:
            denoised_1, h_1 = history[0]
            x = x + phi_2 * ((denoised - denoised_1) / (h_1 / h))
        x = x + run.noise() * (sigma_next * math.sqrt(-math.expm1(-2 * h * ETA)) * S_NOISE)
        history = [(denoised, h), *history[:1]]
    return x


def _lcm(run: SamplerRun, x: Tensor) -> Tensor:
    # Latent consistency: jump to the prediction, then re-noise to the next level.
    sigmas = run.sigmas
    for i in range(run.steps):
        denoised = run.denoise(x, sigmas[i])
        run.report(i, x, denoised)
        x = denoised
        if sigmas[i + 1] > 0:
            x = x + run.noise() * sigmas[i + 1]
    return x


_SAMPLERS: dict[str, SamplerFunction] = {
    "euler": _euler,
    "euler_ancestral": _euler_ancestral,
    "heun": _heun,
    "dpm_2": _dpm_2,
    "dpm_2_ancestral": _dpm_2_ancestral,
    "lms": _multistep.lms,
    "dpmpp_2s_ancestral": _dpmpp_2s_ancestral,
    "dpmpp_sde": _dpmpp_sde,
    "dpmpp_2m": _dpmpp_2m,
    "dpmpp_2m_sde": _dpmpp_2m_sde,
    "dpmpp_3m_sde": _dpmpp_3m_sde,
    "lcm": _lcm,
    "ipndm": _multistep.ipndm,
    "deis": _multistep.deis,
    # ComfyUI's "ddim" is Euler; it differs only in the inpainting noise (see ksampler.py).
    "ddim": _euler,
    "uni_pc": _multistep.uni_pc_bh1,
    "uni_pc_bh2": _multistep.uni_pc_bh2,
}

check_implemented("sampler", _SAMPLERS, SAMPLER_NAMES)

_TWO_STAGE = frozenset({"heun", "dpm_2", "dpm_2_ancestral", "dpmpp_2s_ancestral", "dpmpp_sde"})
