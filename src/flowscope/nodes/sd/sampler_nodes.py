"""KSampler and KSamplerAdvanced: denoise a latent with a MODEL, guided by conditionings, with
progress, latent previews and interrupt checks on every step (the body is in `denoise.py`)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from flowscope.nodes.sd.choices import SAMPLER_NAMES, SCHEDULER_NAMES

if TYPE_CHECKING:
    from flowscope.models.components import DiffusionModel
    from flowscope.nodes.sd.guidance import Conditioning
    from flowscope.nodes.sd.latents import Latent

SEED_MAX = 0xFFFFFFFFFFFFFFFF


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
        # Imported here: listing the nodes must not load torch (~1.5 s); running one may.
        from flowscope.nodes.sd.denoise import denoise_latent

        return (
            denoise_latent(
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
        from flowscope.nodes.sd.denoise import denoise_latent

        return (
            denoise_latent(
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
