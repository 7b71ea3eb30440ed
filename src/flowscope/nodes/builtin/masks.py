"""Mask nodes: MASK values ([B,H,W] float in 0..1), and conversion to and from IMAGE."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from flowscope.nodes.builtin.images import MAX_RESOLUTION, as_image_batch

if TYPE_CHECKING:
    # Imported where used: the server lists these nodes without loading torch (~1.5 s).
    import torch

CHANNELS = ["red", "green", "blue", "alpha"]


def as_mask_batch(mask: torch.Tensor) -> torch.Tensor:
    """A [B,H,W] view of a MASK; [H,W] masks (allowed by ComfyUI) become a batch of one."""
    return mask.reshape((-1, mask.shape[-2], mask.shape[-1]))


class SolidMask:
    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {
            "required": {
                "value": ("FLOAT", {"default": 1.0, "min": 0.0, "max": 1.0, "step": 0.01}),
                "width": ("INT", {"default": 512, "min": 1, "max": MAX_RESOLUTION, "step": 1}),
                "height": ("INT", {"default": 512, "min": 1, "max": MAX_RESOLUTION, "step": 1}),
            }
        }

    CATEGORY = "mask"
    RETURN_TYPES = ("MASK",)
    FUNCTION = "solid"

    def solid(self, value: float, width: int, height: int) -> tuple[torch.Tensor]:
        import torch

        return (torch.full((1, height, width), value, dtype=torch.float32),)


class InvertMask:
    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {"required": {"mask": ("MASK",)}}

    CATEGORY = "mask"
    RETURN_TYPES = ("MASK",)
    FUNCTION = "invert"

    def invert(self, mask: torch.Tensor) -> tuple[torch.Tensor]:
        return (1.0 - mask,)


class ImageToMask:
    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {"required": {"image": ("IMAGE",), "channel": (list(CHANNELS),)}}

    CATEGORY = "mask"
    RETURN_TYPES = ("MASK",)
    FUNCTION = "image_to_mask"

    def image_to_mask(self, image: torch.Tensor, channel: str) -> tuple[torch.Tensor]:
        image = as_image_batch(image, "ImageToMask")
        if channel not in CHANNELS:
            raise ValueError(
                f"ImageToMask: unknown channel {channel!r}; expected one of {', '.join(CHANNELS)}"
            )
        index = CHANNELS.index(channel)
        if index >= image.shape[-1]:
            raise ValueError(
                f"ImageToMask: the image has {image.shape[-1]} channels, so it has no "
                f"{channel!r} channel; pick red, green or blue, or pass an image with alpha"
            )
        return (image[:, :, :, index],)


class MaskToImage:
    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {"required": {"mask": ("MASK",)}}

    CATEGORY = "mask"
    RETURN_TYPES = ("IMAGE",)
    FUNCTION = "mask_to_image"

    def mask_to_image(self, mask: torch.Tensor) -> tuple[torch.Tensor]:
        # A real copy, not an expanded view: downstream nodes may write into their inputs.
        return (as_mask_batch(mask).unsqueeze(-1).repeat(1, 1, 1, 3),)


NODE_CLASSES: tuple[type, ...] = (SolidMask, InvertMask, ImageToMask, MaskToImage)

DISPLAY_NAMES = {
    "ImageToMask": "Convert Image to Mask",
    "MaskToImage": "Convert Mask to Image",
}
