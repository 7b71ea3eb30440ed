"""KSampler and KSamplerAdvanced: denoise a latent with a MODEL, guided by conditionings, with
progress, latent previews and interrupt checks on every step."""

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
from flowscope.nodes.sd.sampling.samplers import SAMPLER_NAMES
from flowscope.nodes.sd.sampling.schedules import SCHEDULER_NAMES

SEED_MAX = 0xFFFFFFFFFFFFFFFF
PREVIEW_SIZE = 512
# Latent previews cost a conversion and a JPEG; one every quarter second is plenty to watch.
PREVIEW_INTERVAL_S = 0.25


def _schedule(model: DiffusionModel) -> DiscreteSchedule:
    return DiscreteSchedule(model.alphas_cumprod, prediction=model.family.prediction)


def sample(
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
    """The common body of both KSampler nodes."""
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


def _common_inputs() -> dict[str, Any]:
    """The inputs both KSamplers share, in ComfyUI's order."""
    return {
        "steps": (
            "INT",
            {"default": 20, "min": 1, "max": 10000, "tooltip": "The number of denoising steps."},
        ),
        "cfg": (
            "FLOAT",
            {
                "default": 8.0,
                "min": 0.0,
                "max": 100.0,
                "step": 0.1,
                "round": 0.01,
                "tooltip": "Classifier-free guidance scale: higher follows the prompt more "
                "closely; too high hurts quality.",
            },
        ),
        "sampler_name": (
            list(SAMPLER_NAMES),
            {"tooltip": "The algorithm used when sampling."},
        ),
        "scheduler": (
            list(SCHEDULER_NAMES),
            {"tooltip": "How noise is removed over the steps."},
        ),
        "positive": ("CONDITIONING", {"tooltip": "What to include in the image."}),
        "negative": ("CONDITIONING", {"tooltip": "What to exclude from the image."}),
        "latent_image": ("LATENT", {"tooltip": "The latent image to denoise."}),
    }


class KSampler:
    DESCRIPTION = (
        "Uses the provided model, positive and negative conditioning to denoise the latent image."
    )

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {
            "required": {
                "model": ("MODEL", {"tooltip": "The model used for denoising the input latent."}),
                "seed": (
                    "INT",
                    {
                        "default": 0,
                        "min": 0,
                        "max": SEED_MAX,
                        "control_after_generate": True,
                        "tooltip": "The random seed used for creating the noise.",
                    },
                ),
                **_common_inputs(),
                "denoise": (
                    "FLOAT",
                    {
                        "default": 1.0,
                        "min": 0.0,
                        "max": 1.0,
                        "step": 0.01,
                        "tooltip": "The amount of denoising applied; lower values keep more of "
                        "the input latent (image to image).",
                    },
                ),
            }
        }

    RETURN_TYPES = ("LATENT",)
    OUTPUT_TOOLTIPS = ("The denoised latent.",)
    FUNCTION = "sample"
    CATEGORY = "sampling"

    def sample(
        self,
        model: DiffusionModel,
        seed: int,
        steps: int,
        cfg: float,
        sampler_name: str,
        scheduler: str,
        positive: Conditioning,
        negative: Conditioning,
        latent_image: Latent,
        denoise: float = 1.0,
    ) -> tuple[Latent]:
        return (
            sample(
                model,
                seed=seed,
                steps=steps,
                cfg=cfg,
                sampler_name=sampler_name,
                scheduler=scheduler,
                positive=positive,
                negative=negative,
                latent=latent_image,
                denoise=denoise,
            ),
        )


class KSamplerAdvanced:
    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {
            "required": {
                "model": ("MODEL",),
                "add_noise": (["enable", "disable"],),
                "noise_seed": (
                    "INT",
                    {"default": 0, "min": 0, "max": SEED_MAX, "control_after_generate": True},
                ),
                **_common_inputs(),
                "start_at_step": ("INT", {"default": 0, "min": 0, "max": 10000}),
                "end_at_step": ("INT", {"default": 10000, "min": 0, "max": 10000}),
                "return_with_leftover_noise": (["disable", "enable"],),
            }
        }

    RETURN_TYPES = ("LATENT",)
    FUNCTION = "sample"
    CATEGORY = "sampling"

    def sample(
        self,
        model: DiffusionModel,
        add_noise: str,
        noise_seed: int,
        steps: int,
        cfg: float,
        sampler_name: str,
        scheduler: str,
        positive: Conditioning,
        negative: Conditioning,
        latent_image: Latent,
        start_at_step: int,
        end_at_step: int,
        return_with_leftover_noise: str,
        denoise: float = 1.0,
    ) -> tuple[Latent]:
        return (
            sample(
                model,
                seed=noise_seed,
                steps=steps,
                cfg=cfg,
                sampler_name=sampler_name,
                scheduler=scheduler,
                positive=positive,
                negative=negative,
                latent=latent_image,
                denoise=denoise,
                add_noise=add_noise != "disable",
                start_step=start_at_step,
                end_step=end_at_step,
                force_full_denoise=return_with_leftover_noise != "enable",
            ),
        )


NODE_CLASSES: tuple[type, ...] = (KSampler, KSamplerAdvanced)

DISPLAY_NAMES = {"KSampler": "KSampler", "KSamplerAdvanced": "KSampler (Advanced)"}
