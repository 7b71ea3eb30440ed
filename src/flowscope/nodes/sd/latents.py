"""Latent nodes: empty latents, resizing them, and the noise mask that confines sampling."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from flowscope.nodes.builtin.images import CROP_METHODS, MAX_RESOLUTION, center_crop, resize_samples
from flowscope.nodes.sd.choices import LATENT_UPSCALE_METHODS

if TYPE_CHECKING:
    # Imported where used: the server lists these nodes without loading torch (~1.5 s).
    import torch

Latent = dict[str, Any]

LATENT_CHANNELS = 4


class EmptyLatentImage:
    DESCRIPTION = "Create a new batch of empty latent images to be denoised via sampling."

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        side = {"default": 512, "min": 16, "max": MAX_RESOLUTION, "step": 8}
        return {
            "required": {
                "width": ("INT", {**side, "tooltip": "The width of the latent images in pixels."}),
                "height": (
                    "INT",
                    {**side, "tooltip": "The height of the latent images in pixels."},
                ),
                "batch_size": (
                    "INT",
                    {"default": 1, "min": 1, "max": 4096, "tooltip": "The number of images."},
                ),
            }
        }

    RETURN_TYPES = ("LATENT",)
    OUTPUT_TOOLTIPS = ("The empty latent image batch.",)
    FUNCTION = "generate"
    CATEGORY = "latent"

    def generate(self, width: int, height: int, batch_size: int = 1) -> tuple[Latent]:
        import torch

        samples = torch.zeros([batch_size, LATENT_CHANNELS, height // 8, width // 8])
        return ({"samples": samples},)


def slerp(start: torch.Tensor, end: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Spherical interpolation of channel vectors (dim 1), magnitudes interpolated linearly:
    keeps latents' per-pixel norm, which bilinear blending shrinks."""
    import torch

    start_norm = start.norm(dim=1, keepdim=True)
    end_norm = end.norm(dim=1, keepdim=True)
    a = start / start_norm.clamp_min(1e-12)
    b = end / end_norm.clamp_min(1e-12)
    dot = (a * b).sum(dim=1, keepdim=True).clamp(-1.0, 1.0)
    omega = torch.acos(dot)
    sin_omega = torch.sin(omega)
    # Nearly parallel vectors: linear interpolation is exact enough and avoids 0/0.
    near = sin_omega.abs() < 1e-5
    safe = torch.where(near, torch.ones_like(sin_omega), sin_omega)
    direction = (torch.sin((1.0 - weight) * omega) * a + torch.sin(weight * omega) * b) / safe
    direction = torch.where(near, a * (1.0 - weight) + b * weight, direction)
    return direction * (start_norm * (1.0 - weight) + end_norm * weight)


def _bislerp_axis(samples: torch.Tensor, size: int, axis: int) -> torch.Tensor:
    import torch

    old = samples.shape[axis]
    if old == size:
        return samples
    # Sample centres, as align_corners=False bilinear does.
    position = ((torch.arange(size, dtype=torch.float64) + 0.5) * old / size - 0.5).clamp(
        0, old - 1
    )
    low = position.floor().long()
    high = (low + 1).clamp(max=old - 1)
    weight = (position - low).to(samples.dtype)
    shape = [1] * samples.ndim
    shape[axis] = size
    return slerp(
        samples.index_select(axis, low), samples.index_select(axis, high), weight.reshape(shape)
    )


def bislerp(samples: torch.Tensor, width: int, height: int) -> torch.Tensor:
    """Resize [B,C,H,W] latents with separable spherical interpolation."""
    return _bislerp_axis(_bislerp_axis(samples.float(), width, 3), height, 2)


def upscale_latent(
    samples: torch.Tensor, method: str, width: int, height: int, crop: str
) -> torch.Tensor:
    """Resize [B,C,H,W] latents to width × height latent pixels."""
    if method == "bislerp":
        if crop == "center":
            samples = center_crop(samples, width, height)
        return bislerp(samples, width, height)
    return resize_samples(samples, width, height, method, crop)


class LatentUpscale:
    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        side = {"default": 512, "min": 0, "max": MAX_RESOLUTION, "step": 8}
        return {
            "required": {
                "samples": ("LATENT",),
                "upscale_method": (list(LATENT_UPSCALE_METHODS),),
                "width": ("INT", side),
                "height": ("INT", side),
                "crop": (list(CROP_METHODS),),
            }
        }

    RETURN_TYPES = ("LATENT",)
    FUNCTION = "upscale"
    CATEGORY = "latent"

    def upscale(
        self, samples: Latent, upscale_method: str, width: int, height: int, crop: str
    ) -> tuple[Latent]:
        if width == 0 and height == 0:
            return (samples,)
        latent = samples["samples"]
        # A zero side keeps the aspect ratio; sizes are pixels, at least 64.
        if width == 0:
            height = max(64, height)
            width = max(64, round(latent.shape[-1] * height / latent.shape[-2]))
        elif height == 0:
            width = max(64, width)
            height = max(64, round(latent.shape[-2] * width / latent.shape[-1]))
        else:
            width, height = max(64, width), max(64, height)
        result = dict(samples)
        result["samples"] = upscale_latent(latent, upscale_method, width // 8, height // 8, crop)
        return (result,)


class LatentUpscaleBy:
    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {
            "required": {
                "samples": ("LATENT",),
                "upscale_method": (list(LATENT_UPSCALE_METHODS),),
                "scale_by": ("FLOAT", {"default": 1.5, "min": 0.01, "max": 8.0, "step": 0.01}),
            }
        }

    RETURN_TYPES = ("LATENT",)
    FUNCTION = "upscale"
    CATEGORY = "latent"

    def upscale(self, samples: Latent, upscale_method: str, scale_by: float) -> tuple[Latent]:
        latent = samples["samples"]
        width = max(1, round(latent.shape[-1] * scale_by))
        height = max(1, round(latent.shape[-2] * scale_by))
        result = dict(samples)
        result["samples"] = upscale_latent(latent, upscale_method, width, height, "disabled")
        return (result,)


class SetLatentNoiseMask:
    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {"required": {"samples": ("LATENT",), "mask": ("MASK",)}}

    RETURN_TYPES = ("LATENT",)
    FUNCTION = "set_mask"
    CATEGORY = "latent/inpaint"

    def set_mask(self, samples: Latent, mask: torch.Tensor) -> tuple[Latent]:
        result = dict(samples)
        result["noise_mask"] = mask.reshape(-1, 1, mask.shape[-2], mask.shape[-1])
        return (result,)


NODE_CLASSES: tuple[type, ...] = (
    EmptyLatentImage,
    LatentUpscale,
    LatentUpscaleBy,
    SetLatentNoiseMask,
)

DISPLAY_NAMES = {
    "EmptyLatentImage": "Empty Latent Image",
    "LatentUpscale": "Upscale Latent",
    "LatentUpscaleBy": "Upscale Latent By",
    "SetLatentNoiseMask": "Set Latent Noise Mask",
}
