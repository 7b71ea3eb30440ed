"""Image tensor nodes: create, resize, invert, batch and crop IMAGE values ([B,H,W,C], 0..1)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from PIL import Image

if TYPE_CHECKING:
    # Imported where used: the server lists these nodes without loading torch (~1.5 s).
    import torch

# ComfyUI's MAX_RESOLUTION: the largest width/height its image and mask widgets accept.
MAX_RESOLUTION = 16384

UPSCALE_METHODS = ["nearest-exact", "bilinear", "area", "bicubic", "lanczos"]
CROP_METHODS = ["disabled", "center"]


def as_image_batch(image: torch.Tensor, node: str, name: str = "image") -> torch.Tensor:
    """A [B,H,W,C] view of an IMAGE; a single [H,W,C] image becomes a batch of one."""
    if image.ndim == 3:
        return image.unsqueeze(0)
    if image.ndim != 4:
        raise ValueError(
            f"{node}: input {name!r} must be an IMAGE shaped [batch, height, width, channels]; "
            f"got a tensor of shape {tuple(image.shape)}"
        )
    return image


def center_crop(samples: torch.Tensor, width: int, height: int) -> torch.Tensor:
    """Trim [B,C,H,W] samples to the target aspect ratio, keeping the middle (ComfyUI's rule)."""
    old_height, old_width = samples.shape[-2], samples.shape[-1]
    old_aspect = old_width / old_height
    new_aspect = width / height
    x = y = 0
    if old_aspect > new_aspect:
        x = round((old_width - old_width * (new_aspect / old_aspect)) / 2)
    elif old_aspect < new_aspect:
        y = round((old_height - old_height * (old_aspect / new_aspect)) / 2)
    return samples.narrow(-2, y, old_height - 2 * y).narrow(-1, x, old_width - 2 * x)


def _lanczos(samples: torch.Tensor, width: int, height: int) -> torch.Tensor:
    """Lanczos through PIL, one 8-bit plane at a time, so any channel count works."""
    import numpy as np
    import torch

    frames = []
    for frame in samples:
        planes = []
        for plane in frame:
            pixels = np.clip(255.0 * plane.detach().cpu().float().numpy(), 0, 255).astype(np.uint8)
            resized = Image.fromarray(pixels).resize(
                (width, height), resample=Image.Resampling.LANCZOS
            )
            planes.append(torch.from_numpy(np.asarray(resized, dtype=np.float32) / 255.0))
        frames.append(torch.stack(planes))
    return torch.stack(frames).to(device=samples.device, dtype=samples.dtype)


def resize_samples(
    samples: torch.Tensor, width: int, height: int, method: str, crop: str
) -> torch.Tensor:
    """Resize [B,C,H,W] samples the way ComfyUI's `common_upscale` does (no antialiasing)."""
    import torch

    if method not in UPSCALE_METHODS:
        raise ValueError(
            f"unknown upscale_method {method!r}; expected one of {', '.join(UPSCALE_METHODS)}"
        )
    if crop == "center":
        samples = center_crop(samples, width, height)
    if method == "lanczos":
        return _lanczos(samples, width, height)
    return torch.nn.functional.interpolate(samples, size=(height, width), mode=method)


def resize_images(
    images: torch.Tensor, width: int, height: int, method: str, crop: str
) -> torch.Tensor:
    """Resize an IMAGE batch [B,H,W,C] to width x height."""
    return resize_samples(images.movedim(-1, 1), width, height, method, crop).movedim(1, -1)


class EmptyImage:
    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {
            "required": {
                "width": ("INT", {"default": 512, "min": 1, "max": MAX_RESOLUTION, "step": 1}),
                "height": ("INT", {"default": 512, "min": 1, "max": MAX_RESOLUTION, "step": 1}),
                "batch_size": ("INT", {"default": 1, "min": 1, "max": 4096}),
                "color": (
                    "INT",
                    {"default": 0, "min": 0, "max": 0xFFFFFF, "step": 1, "display": "color"},
                ),
            }
        }

    RETURN_TYPES = ("IMAGE",)
    FUNCTION = "generate"
    CATEGORY = "image"

    def generate(
        self, width: int, height: int, batch_size: int = 1, color: int = 0
    ) -> tuple[torch.Tensor]:
        import torch

        rgb = torch.tensor(
            [((color >> 16) & 0xFF) / 0xFF, ((color >> 8) & 0xFF) / 0xFF, (color & 0xFF) / 0xFF],
            dtype=torch.float32,
        )
        return (rgb.expand(batch_size, height, width, 3).clone(),)


class ImageScale:
    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {
            "required": {
                "image": ("IMAGE",),
                "upscale_method": (list(UPSCALE_METHODS),),
                "width": ("INT", {"default": 512, "min": 0, "max": MAX_RESOLUTION, "step": 1}),
                "height": ("INT", {"default": 512, "min": 0, "max": MAX_RESOLUTION, "step": 1}),
                "crop": (list(CROP_METHODS),),
            }
        }

    RETURN_TYPES = ("IMAGE",)
    FUNCTION = "upscale"
    CATEGORY = "image/upscaling"

    def upscale(
        self, image: torch.Tensor, upscale_method: str, width: int, height: int, crop: str
    ) -> tuple[torch.Tensor]:
        image = as_image_batch(image, "ImageScale")
        if width == 0 and height == 0:
            return (image,)
        old_height, old_width = image.shape[1], image.shape[2]
        # A zero side keeps the aspect ratio of the input.
        if width == 0:
            width = max(1, round(old_width * height / old_height))
        elif height == 0:
            height = max(1, round(old_height * width / old_width))
        return (resize_images(image, width, height, upscale_method, crop),)


class ImageScaleBy:
    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {
            "required": {
                "image": ("IMAGE",),
                "upscale_method": (list(UPSCALE_METHODS),),
                "scale_by": ("FLOAT", {"default": 1.0, "min": 0.01, "max": 8.0, "step": 0.01}),
            }
        }

    RETURN_TYPES = ("IMAGE",)
    FUNCTION = "upscale"
    CATEGORY = "image/upscaling"

    def upscale(
        self, image: torch.Tensor, upscale_method: str, scale_by: float
    ) -> tuple[torch.Tensor]:
        image = as_image_batch(image, "ImageScaleBy")
        # At least one pixel: a tiny image scaled down must not become empty.
        width = max(1, round(image.shape[2] * scale_by))
        height = max(1, round(image.shape[1] * scale_by))
        return (resize_images(image, width, height, upscale_method, "disabled"),)


class ImageInvert:
    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {"required": {"image": ("IMAGE",)}}

    RETURN_TYPES = ("IMAGE",)
    FUNCTION = "invert"
    CATEGORY = "image"

    def invert(self, image: torch.Tensor) -> tuple[torch.Tensor]:
        return (1.0 - image,)


def _pad_alpha(image: torch.Tensor, channels: int) -> torch.Tensor:
    """Add opaque alpha so an RGB batch can join an RGBA one."""
    import torch

    missing = channels - image.shape[-1]
    return torch.nn.functional.pad(image, (0, missing), mode="constant", value=1.0)


class ImageBatch:
    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {"required": {"image1": ("IMAGE",), "image2": ("IMAGE",)}}

    RETURN_TYPES = ("IMAGE",)
    FUNCTION = "batch"
    CATEGORY = "image"

    def batch(self, image1: torch.Tensor, image2: torch.Tensor) -> tuple[torch.Tensor]:
        import torch

        image1 = as_image_batch(image1, "ImageBatch", "image1")
        image2 = as_image_batch(image2, "ImageBatch", "image2")
        # RGB joined with RGBA: pad the RGB side with opaque alpha instead of failing.
        if image1.shape[-1] < image2.shape[-1]:
            image1 = _pad_alpha(image1, image2.shape[-1])
        elif image2.shape[-1] < image1.shape[-1]:
            image2 = _pad_alpha(image2, image1.shape[-1])
        if image1.shape[1:] != image2.shape[1:]:
            image2 = resize_images(image2, image1.shape[2], image1.shape[1], "bilinear", "center")
        return (torch.cat((image1, image2.to(image1.dtype)), dim=0),)


class ImageCrop:
    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {
            "required": {
                "image": ("IMAGE",),
                "width": ("INT", {"default": 512, "min": 1, "max": MAX_RESOLUTION, "step": 1}),
                "height": ("INT", {"default": 512, "min": 1, "max": MAX_RESOLUTION, "step": 1}),
                "x": ("INT", {"default": 0, "min": 0, "max": MAX_RESOLUTION, "step": 1}),
                "y": ("INT", {"default": 0, "min": 0, "max": MAX_RESOLUTION, "step": 1}),
            }
        }

    RETURN_TYPES = ("IMAGE",)
    FUNCTION = "crop"
    CATEGORY = "image/transform"

    def crop(
        self, image: torch.Tensor, width: int, height: int, x: int, y: int
    ) -> tuple[torch.Tensor]:
        image = as_image_batch(image, "ImageCrop")
        # An origin past the edge is clamped so the result keeps at least one pixel.
        x = min(x, image.shape[2] - 1)
        y = min(y, image.shape[1] - 1)
        return (image[:, y : y + height, x : x + width, :],)


class RebatchImages:
    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {
            "required": {
                "images": ("IMAGE", {}),
                "batch_size": ("INT", {"default": 1, "min": 1, "max": 4096}),
            }
        }

    RETURN_TYPES = ("IMAGE",)
    OUTPUT_IS_LIST = (True,)
    INPUT_IS_LIST = True
    FUNCTION = "rebatch"
    CATEGORY = "image/batch"

    def rebatch(self, images: list[torch.Tensor], batch_size: list[int]) -> tuple[list[Any]]:
        import torch

        size = batch_size[0]
        frames = [frame for batch in images for frame in as_image_batch(batch, "RebatchImages")]
        batches: list[torch.Tensor] = []
        current: list[torch.Tensor] = []
        for frame in frames:
            # A frame of another size starts a new batch (ComfyUI fails on torch.cat instead).
            if current and (len(current) == size or frame.shape != current[0].shape):
                batches.append(torch.stack(current))
                current = []
            current.append(frame)
        if current:
            batches.append(torch.stack(current))
        return (batches,)


NODE_CLASSES: tuple[type, ...] = (
    EmptyImage,
    ImageScale,
    ImageScaleBy,
    ImageInvert,
    ImageBatch,
    ImageCrop,
    RebatchImages,
)

# EmptyImage has no display name upstream, so it shows as "EmptyImage".
DISPLAY_NAMES = {
    "ImageScale": "Upscale Image",
    "ImageScaleBy": "Upscale Image By",
    "ImageInvert": "Invert Image",
    "ImageBatch": "Batch Images",
    "ImageCrop": "Image Crop",
    "RebatchImages": "Rebatch Images",
}
