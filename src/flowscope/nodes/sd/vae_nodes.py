"""VAE nodes: latents to images and back, and the masked encode that inpainting starts from."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    # Imported where used: the server lists these nodes without loading torch (~1.5 s).
    import torch

    from flowscope.models.components import ImageAutoencoder
    from flowscope.nodes.sd.latents import Latent

# Pixels per latent pixel for every supported family.
DOWNSCALE = 8


def crop_to_latent_grid(pixels: torch.Tensor) -> torch.Tensor:
    """Trim [B,H,W,C] pixels to multiples of 8 (centred), as the encoder needs."""
    height = (pixels.shape[1] // DOWNSCALE) * DOWNSCALE
    width = (pixels.shape[2] // DOWNSCALE) * DOWNSCALE
    if height == pixels.shape[1] and width == pixels.shape[2]:
        return pixels
    top = (pixels.shape[1] % DOWNSCALE) // 2
    left = (pixels.shape[2] % DOWNSCALE) // 2
    return pixels[:, top : top + height, left : left + width, :]


def _image_batch(pixels: torch.Tensor, node: str) -> torch.Tensor:
    if pixels.ndim == 3:
        pixels = pixels.unsqueeze(0)
    if pixels.ndim != 4:
        raise ValueError(
            f"{node}: 'pixels' must be an IMAGE [batch, height, width, channels]; got shape "
            f"{tuple(pixels.shape)}"
        )
    if pixels.shape[1] < DOWNSCALE or pixels.shape[2] < DOWNSCALE:
        raise ValueError(
            f"{node}: the image is {pixels.shape[2]}×{pixels.shape[1]} pixels; the VAE needs at "
            f"least {DOWNSCALE}×{DOWNSCALE}"
        )
    return pixels


class VAEDecode:
    DESCRIPTION = "Decodes latent images back into pixel space images."

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {
            "required": {
                "samples": ("LATENT", {"tooltip": "The latent to be decoded."}),
                "vae": ("VAE", {"tooltip": "The VAE model used for decoding the latent."}),
            }
        }

    RETURN_TYPES = ("IMAGE",)
    OUTPUT_TOOLTIPS = ("The decoded image.",)
    FUNCTION = "decode"
    CATEGORY = "latent"

    def decode(self, vae: ImageAutoencoder, samples: Latent) -> tuple[torch.Tensor]:
        latent = samples["samples"]
        if latent.ndim == 5:  # video latents [B,C,T,H,W]: frames become a batch
            latent = latent.movedim(2, 1).reshape(-1, latent.shape[1], *latent.shape[-2:])
        return (vae.decode(latent),)


class VAEEncode:
    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {"required": {"pixels": ("IMAGE",), "vae": ("VAE",)}}

    RETURN_TYPES = ("LATENT",)
    FUNCTION = "encode"
    CATEGORY = "latent"

    def encode(self, vae: ImageAutoencoder, pixels: torch.Tensor) -> tuple[Latent]:
        pixels = crop_to_latent_grid(_image_batch(pixels, "VAEEncode"))
        return ({"samples": vae.encode(pixels[..., :3])},)


class VAEEncodeForInpaint:
    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {
            "required": {
                "pixels": ("IMAGE",),
                "vae": ("VAE",),
                "mask": ("MASK",),
                "grow_mask_by": ("INT", {"default": 6, "min": 0, "max": 64, "step": 1}),
            }
        }

    RETURN_TYPES = ("LATENT",)
    FUNCTION = "encode"
    CATEGORY = "latent/inpaint"

    def encode(
        self, vae: ImageAutoencoder, pixels: torch.Tensor, mask: torch.Tensor, grow_mask_by: int = 6
    ) -> tuple[Latent]:
        import torch

        pixels = _image_batch(pixels, "VAEEncodeForInpaint")
        height, width = pixels.shape[1], pixels.shape[2]
        mask = mask.reshape(-1, 1, mask.shape[-2], mask.shape[-1]).float()
        mask = torch.nn.functional.interpolate(mask, size=(height, width), mode="bilinear")
        pixels = crop_to_latent_grid(pixels).clone()
        top = (height % DOWNSCALE) // 2
        left = (width % DOWNSCALE) // 2
        mask = mask[:, :, top : top + pixels.shape[1], left : left + pixels.shape[2]]
        grown = mask
        if grow_mask_by > 0:
            # Dilate, so the sampler also repaints a seam around the masked area.
            kernel = torch.ones((1, 1, grow_mask_by, grow_mask_by))
            padding = grow_mask_by // 2
            grown = torch.nn.functional.conv2d(mask.round(), kernel, padding=padding).clamp(0, 1)
            grown = grown[:, :, : mask.shape[2], : mask.shape[3]]
        # Masked pixels become neutral grey, so the encoder does not leak what was there.
        keep = (1.0 - mask.round()).squeeze(1)
        rgb = pixels[..., :3]
        if keep.shape[0] != rgb.shape[0]:
            keep = keep.expand(rgb.shape[0], -1, -1)
        rgb = (rgb - 0.5) * keep.unsqueeze(-1) + 0.5
        samples = vae.encode(rgb)
        return ({"samples": samples, "noise_mask": grown.round()},)


NODE_CLASSES: tuple[type, ...] = (VAEDecode, VAEEncode, VAEEncodeForInpaint)

DISPLAY_NAMES = {
    "VAEDecode": "VAE Decode",
    "VAEEncode": "VAE Encode",
    "VAEEncodeForInpaint": "VAE Encode (for Inpainting)",
}
