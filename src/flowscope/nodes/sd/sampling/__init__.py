"""Sampling for the Stable Diffusion pack: noise schedules, samplers, seeded noise, the KSampler
procedure and latent previews; torch only (no diffusers). The node declarations import none of
this (their combo lists are in `nodes/sd/choices.py`): it loads when a KSampler runs."""

from flowscope.nodes.sd.choices import SAMPLER_NAMES, SCHEDULER_NAMES
from flowscope.nodes.sd.sampling.ksampler import plan_sigmas, sample_latent, sampler_sigmas
from flowscope.nodes.sd.sampling.latent_preview import latent_to_rgb
from flowscope.nodes.sd.sampling.model_sampling import DiscreteSchedule, Prediction
from flowscope.nodes.sd.sampling.noise import prepare_noise
from flowscope.nodes.sd.sampling.samplers import Denoiser, StepCallback, run_sampler
from flowscope.nodes.sd.sampling.schedules import compute_sigmas

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
