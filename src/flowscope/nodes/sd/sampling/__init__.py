"""Sampling for the Stable Diffusion pack: noise schedules, samplers, seeded noise, the KSampler
procedure and latent previews; torch only (no diffusers)."""

from flowscope.nodes.sd.sampling.ksampler import plan_sigmas, sample_latent, sampler_sigmas
from flowscope.nodes.sd.sampling.latent_preview import latent_to_rgb
from flowscope.nodes.sd.sampling.model_sampling import DiscreteSchedule, Prediction
from flowscope.nodes.sd.sampling.noise import prepare_noise
from flowscope.nodes.sd.sampling.samplers import (
    SAMPLER_NAMES,
    Denoiser,
    StepCallback,
    run_sampler,
)
from flowscope.nodes.sd.sampling.schedules import SCHEDULER_NAMES, compute_sigmas

__all__ = [
    "SAMPLER_NAMES",
    "SCHEDULER_NAMES",
    "Denoiser",
    "DiscreteSchedule",
    "Prediction",
    "StepCallback",
    "compute_sigmas",
    "latent_to_rgb",
    "plan_sigmas",
    "prepare_noise",
    "run_sampler",
    "sample_latent",
    "sampler_sigmas",
]
