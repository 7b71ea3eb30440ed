"""The names the SD nodes offer in their combo inputs: samplers, schedulers and latent upscale
methods. Plain data, so declaring the nodes (and `/object_info`) never imports torch; the torch
implementations check their registries against these lists when they are imported."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

# ComfyUI's order; `samplers.py` implements each one.
SAMPLER_NAMES: list[str] = [
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

# ComfyUI's order; `schedules.py` implements each one.
SCHEDULER_NAMES: list[str] = [
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

# The image resize methods (ComfyUI's list, without lanczos) plus spherical "bislerp".
LATENT_UPSCALE_METHODS: list[str] = ["nearest-exact", "bilinear", "area", "bicubic", "bislerp"]


def check_implemented(kind: str, implemented: Iterable[str], offered: Sequence[str]) -> None:
    """Raise when an implementation's registry and the combo list that offers it disagree, so
    a name added on one side only fails at import instead of when a user picks it."""
    implemented_set, offered_set = set(implemented), set(offered)
    twice = sorted({name for name in offered if list(offered).count(name) > 1})
    if implemented_set == offered_set and not twice:
        return
    missing = sorted(offered_set - implemented_set)
    unlisted = sorted(implemented_set - offered_set)
    raise RuntimeError(
        f"the {kind} combo list and the {kind} implementations disagree: offered but not "
        f"implemented {missing}, implemented but not offered {unlisted}, listed twice {twice} "
        "(the list lives in flowscope/nodes/sd/choices.py)"
    )
