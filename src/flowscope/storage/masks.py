"""The mask editor's save (`/upload/mask`): the mask's alpha channel copied into the original
image, written as PNG with the original's text chunks (workflow, prompt) kept."""

from __future__ import annotations

import io
from pathlib import Path
from typing import BinaryIO

from flowscope.storage.image_variants import ImageVariantError, open_image


class MaskError(ValueError):
    """The mask cannot be applied to the original (e.g. their sizes differ)."""


def merge_mask_alpha(original: Path, mask: BinaryIO) -> bytes:
    """PNG bytes: `original` as RGBA with its alpha replaced by `mask`'s alpha. ImageVariantError
    when either is not a readable image, MaskError when the sizes differ."""
    from PIL.PngImagePlugin import PngInfo

    with open_image(original) as original_image, open_image(mask, "the mask") as mask_image:
        try:
            metadata = PngInfo()
            for key, value in getattr(original_image, "text", {}).items():
                metadata.add_text(key, value)
            merged = original_image.convert("RGBA")
            alpha = mask_image.convert("RGBA").getchannel("A")
        except (OSError, SyntaxError, ValueError) as exc:
            raise ImageVariantError(f"could not decode the images: {exc}") from exc
        if alpha.size != merged.size:
            raise MaskError(
                f"the mask is {alpha.size[0]}x{alpha.size[1]} but {original.name} is "
                f"{merged.size[0]}x{merged.size[1]}; they must be the same size"
            )
        merged.putalpha(alpha)
        buffer = io.BytesIO()
        merged.save(buffer, format="PNG", compress_level=4, pnginfo=metadata)
        return buffer.getvalue()
