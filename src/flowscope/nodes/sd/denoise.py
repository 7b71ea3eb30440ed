"""Denoising a LATENT with a MODEL, the body both KSampler nodes share: guidance, the sampling
procedure, progress with latent previews, and the interrupt check on every step."""

from __future__ import annotations

import time
from typing import Any

import torch

from flowscope.models.components import DiffusionModel
from flowscope.nodes.progress import ProgressBar
from flowscope.nodes.sd.guidance import Conditioning, GuidedDenoiser
from flowscope.nodes.sd.latents import Latent
from flowscope.nodes.sd.sampling.ksampler import plan_sigmas, sample_latent
from flowscope.nodes.sd.sampling.latent_preview import latent_to_rgb
from flowscope.nodes.sd.sampling.model_sampling import DiscreteSchedule

PREVIEW_SIZE = 512
# Latent previews cost a conversion and a JPEG; one every quarter second is plenty to watch.
PREVIEW_INTERVAL_S = 0.25


def _schedule(model: DiffusionModel) -> DiscreteSchedule:
    return DiscreteSchedule(model.alphas_cumprod, prediction=model.family.prediction)


def denoise_latent(
    model: DiffusionModel,
    *,
    seed: int,
    steps: int,
    cfg: float,
    sampler_name: str,
    scheduler: str,
    positive: Conditioning,
    negative: Conditioning,
    latent: Latent,
    denoise: float = 1.0,
    add_noise: bool = True,
    start_step: int | None = None,
    end_step: int | None = None,
    force_full_denoise: bool = False,
) -> Latent:
    """`latent` denoised by `model` as the KSampler nodes do (their common body)."""
    # LATENT values are the VAE's own latents; the model samples in its scaled space.
    scale = model.family.vae_scaling_factor
    samples = latent["samples"].float() * scale
    schedule = _schedule(model)
    plan: dict[str, Any] = {
        "steps": steps,
        "sampler": sampler_name,
        "scheduler": scheduler,
        "denoise": denoise,
        "start_step": start_step,
        "end_step": end_step,
        "force_full_denoise": force_full_denoise,
    }
    # The steps really sampled: denoise, start and end steps shorten the run.
    total = max(0, len(plan_sigmas(schedule=schedule, **plan)) - 1)
    progress = ProgressBar(total)
    last_preview = 0.0

    def on_step(step: int, x: torch.Tensor, denoised: torch.Tensor, sigma: float) -> None:
        nonlocal last_preview
        preview = None
        now = time.monotonic()
        if now - last_preview >= PREVIEW_INTERVAL_S:
            last_preview = now
            preview = ("JPEG", latent_to_rgb(denoised[:1], model.latent_family), PREVIEW_SIZE)
        # Every update is also the interrupt check: a cancelled job stops within one step.
        progress.update_absolute(step + 1, total, preview)

    with model.unet.applied(model.placement.device) as unet:
        denoiser = GuidedDenoiser(
            unet,
            schedule,
            positive,
            negative,
            cfg,
            family=model.family,
            placement=model.placement,
        )
        with torch.inference_mode():
            result = sample_latent(
                schedule=schedule,
                make_denoiser=lambda: denoiser,
                latent=samples,
                seed=seed,
                add_noise=add_noise,
                noise_mask=latent.get("noise_mask"),
                batch_index=latent.get("batch_index"),
                callback=on_step,
                **plan,
            )
    output = dict(latent)  # the noise mask stays, as in ComfyUI
    output["samples"] = result.float().cpu() / scale
    return output
