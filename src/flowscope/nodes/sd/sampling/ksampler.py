"""The KSampler / KSamplerAdvanced procedure around a denoiser: which sigmas to sample (steps,
denoise, start / end step), the initial noise, inpainting with a noise mask, then the sampler."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor

from flowscope.nodes.sd.choices import SAMPLER_NAMES, SCHEDULER_NAMES
from flowscope.nodes.sd.sampling.model_sampling import DiscreteSchedule
from flowscope.nodes.sd.sampling.noise import cpu_generator, prepare_noise
from flowscope.nodes.sd.sampling.samplers import Denoiser, StepCallback, run_sampler
from flowscope.nodes.sd.sampling.schedules import compute_sigmas

# Samplers that get one extra step and skip the second-to-last sigma (their last step would be
# tiny otherwise), as in ComfyUI.
DISCARD_PENULTIMATE_SIGMA_SAMPLERS = frozenset({"dpm_2", "dpm_2_ancestral", "uni_pc", "uni_pc_bh2"})
# Samplers that re-noise the kept (unmasked) area with fresh noise from seed + 1 instead of
# the initial noise: what ComfyUI's "ddim" does differently from "euler".
RANDOM_INPAINT_NOISE_SAMPLERS = frozenset({"ddim"})


def sampler_sigmas(schedule: DiscreteSchedule, scheduler: str, sampler: str, steps: int) -> Tensor:
    """The full schedule for `steps` steps of `sampler` (KSampler's calculate_sigmas)."""
    if sampler not in SAMPLER_NAMES:
        raise ValueError(f"unknown sampler {sampler!r}; expected one of {SAMPLER_NAMES}")
    if scheduler not in SCHEDULER_NAMES:
        raise ValueError(f"unknown scheduler {scheduler!r}; expected one of {SCHEDULER_NAMES}")
    if sampler in DISCARD_PENULTIMATE_SIGMA_SAMPLERS:
        sigmas = compute_sigmas(scheduler, schedule, steps + 1)
        return torch.cat([sigmas[:-2], sigmas[-1:]])
    return compute_sigmas(scheduler, schedule, steps)


def plan_sigmas(
    *,
    schedule: DiscreteSchedule,
    steps: int,
    sampler: str,
    scheduler: str,
    denoise: float = 1.0,
    start_step: int | None = None,
    end_step: int | None = None,
    force_full_denoise: bool = False,
) -> Tensor:
    """The sigmas `sample_latent` steps through; fewer than 2 values mean nothing is sampled and
    the latent comes back unchanged. `len(result) - 1` is the number of progress steps."""
    if steps < 1:
        raise ValueError(f"steps must be at least 1, not {steps}")
    if start_step is not None and start_step < 0:
        raise ValueError(f"start_step must be >= 0, not {start_step}")
    if end_step is not None and end_step < 0:
        raise ValueError(f"end_step must be >= 0, not {end_step}")
    if denoise > 0.9999:
        sigmas = sampler_sigmas(schedule, scheduler, sampler, steps)
    elif denoise <= 0.0:
        return torch.zeros(0)
    else:
        # Partial denoise: the tail of a longer schedule, so the steps land where a full run
        # of int(steps / denoise) steps would put its last `steps` steps.
        sigmas = sampler_sigmas(schedule, scheduler, sampler, int(steps / denoise))
        sigmas = sigmas[-(steps + 1) :]
    if end_step is not None and end_step < len(sigmas) - 1:
        sigmas = sigmas[: end_step + 1].clone()
        if force_full_denoise:
            sigmas[-1] = 0
    if start_step is not None:
        if start_step >= len(sigmas) - 1:
            return torch.zeros(0)
        sigmas = sigmas[start_step:]
    return sigmas


def sample_latent(
    *,
    schedule: DiscreteSchedule,
    make_denoiser: Callable[[], Denoiser],
    latent: Tensor,
    seed: int,
    steps: int,
    sampler: str,
    scheduler: str,
    denoise: float = 1.0,
    add_noise: bool = True,
    start_step: int | None = None,
    end_step: int | None = None,
    force_full_denoise: bool = False,
    noise_mask: Tensor | None = None,
    batch_index: list[int] | None = None,
    callback: StepCallback | None = None,
) -> Tensor:
    """Sample `latent` (in the model's sampling space) as KSampler does; returns float32 on
    `latent`'s device.

    KSampler: `denoise`. KSamplerAdvanced: `add_noise`, `start_step`, `end_step` and
    `force_full_denoise` (= return_with_leftover_noise "disable"). `noise_mask` ([B,H,W], [H,W]
    or [B,1,H,W] at any resolution; 1 = resample) keeps the rest of the latent: before every
    denoiser call the kept area is replaced by the original latent noised to the current
    sigma, and the prediction there by the original latent. `make_denoiser` is called only if
    there is something to sample.
    """
    sigmas = plan_sigmas(
        schedule=schedule,
        steps=steps,
        sampler=sampler,
        scheduler=scheduler,
        denoise=denoise,
        start_step=start_step,
        end_step=end_step,
        force_full_denoise=force_full_denoise,
    )
    latent = latent.float()
    if len(sigmas) < 2:
        return latent.clone()
    if add_noise:
        noise = prepare_noise(latent, seed, batch_index)
    else:
        noise = torch.zeros(latent.shape, dtype=latent.dtype)
    noise = noise.to(latent.device)
    sigma_max = float(schedule.sigma_max)
    first = float(sigmas[0])
    max_denoise = math.isclose(sigma_max, first, rel_tol=1e-05) or first > sigma_max
    x = schedule.noise_scaling(sigmas[0], noise, latent, max_denoise)

    denoiser = make_denoiser()
    if noise_mask is not None:
        mask = _latent_mask(noise_mask, latent)
        inpaint_noise = noise
        if sampler in RANDOM_INPAINT_NOISE_SAMPLERS:
            inpaint_noise = torch.randn(latent.shape, generator=cpu_generator(seed + 1))
            inpaint_noise = inpaint_noise.to(latent.device, latent.dtype)
        denoiser = _inpainting(denoiser, schedule, mask, latent, inpaint_noise)
    return run_sampler(sampler, denoiser, x, sigmas, noise_seed=seed, callback=callback)


def _latent_mask(noise_mask: Tensor, latent: Tensor) -> Tensor:
    """The mask resized (bilinear) to the latent, repeated over channels and batch."""
    mask = noise_mask.to(latent.device, torch.float32)
    mask = mask.reshape((-1, 1, mask.shape[-2], mask.shape[-1]))
    mask = torch.nn.functional.interpolate(mask, size=latent.shape[2:], mode="bilinear")
    mask = mask.repeat(1, latent.shape[1], 1, 1)
    batch = latent.shape[0]
    if mask.shape[0] < batch:
        mask = mask.repeat(math.ceil(batch / mask.shape[0]), 1, 1, 1)
    return mask[:batch]


def _inpainting(
    denoiser: Denoiser, schedule: DiscreteSchedule, mask: Tensor, latent: Tensor, noise: Tensor
) -> Denoiser:
    keep = 1.0 - mask

    def denoise(x: Tensor, sigma: Tensor) -> Tensor:
        renoised = schedule.noise_scaling(sigma, noise, latent, False)
        denoised = denoiser(x * mask + renoised * keep, sigma)
        return denoised * mask + latent * keep

    return denoise
