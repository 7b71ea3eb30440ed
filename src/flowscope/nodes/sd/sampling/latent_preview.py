"""Cheap latent previews while sampling: a per-family linear map from the 4 latent channels to
RGB (ComfyUI's "latent2rgb" factors), no decoder weights needed."""

from __future__ import annotations

import torch
from PIL import Image
from torch import Tensor

# Rows: latent channels; columns: R, G, B. Fitted by ComfyUI to the sampling-space (scaled)
# latents of each family's VAE; SD2 shares SD1's VAE, the SDXL refiner SDXL's.
_SD1_FACTORS = (
    (0.3512, 0.2297, 0.3227),
    (0.3250, 0.4974, 0.2350),
    (-0.2829, 0.1762, 0.2721),
    (-0.2120, -0.2616, -0.7177),
)
_SDXL_FACTORS = (
    (0.3651, 0.4232, 0.4341),
    (-0.2533, -0.0042, 0.1068),
    (0.1076, 0.1111, -0.0362),
    (-0.3165, -0.2492, -0.2188),
)
_SDXL_BIAS = (0.1084, -0.0175, -0.0011)

LatentRgbFactors = tuple[tuple[tuple[float, float, float], ...], tuple[float, float, float] | None]

LATENT_RGB_FACTORS: dict[str, LatentRgbFactors] = {
    "sd1": (_SD1_FACTORS, None),
    "sd2": (_SD1_FACTORS, None),
    "sdxl": (_SDXL_FACTORS, _SDXL_BIAS),
    "sdxl_refiner": (_SDXL_FACTORS, _SDXL_BIAS),
}


def latent_to_rgb(latent: Tensor, family: str) -> Image.Image:
    """An RGB preview of the first item of `latent` ([B,4,h,w] or [4,h,w]), one pixel per
    latent pixel (e.g. 64x64 for a 512x512 image)."""
    entry = LATENT_RGB_FACTORS.get(str(family))
    if entry is None:
        raise ValueError(f"no latent preview factors for family {family!r}")
    factors, bias = entry
    item = latent[0] if latent.ndim == 4 else latent
    if item.ndim != 3 or item.shape[0] != len(factors):
        raise ValueError(
            f"expected a latent with {len(factors)} channels, got shape {tuple(latent.shape)}"
        )
    weights = torch.tensor(factors, dtype=torch.float32)
    rgb = item.detach().to("cpu", torch.float32).movedim(0, -1) @ weights
    if bias is not None:
        rgb = rgb + torch.tensor(bias, dtype=torch.float32)
    pixels = ((rgb + 1.0) / 2.0).clamp(0, 1).mul(255).to(torch.uint8)
    return Image.fromarray(pixels.numpy())  # uint8 [h, w, 3]: RGB
