"""Latent previews as ComfyUI's binary WebSocket frames (spec §4.3): type 1 (format + image) for
clients that did not announce `supports_preview_metadata`, type 4 (JSON metadata + image) for
those that did."""

from __future__ import annotations

import io
import json
import struct
from typing import Any

JPEG, PNG = 1, 2
PREVIEW_IMAGE = 1
PREVIEW_IMAGE_WITH_METADATA = 4


def encode_preview(preview: Any, max_size: int) -> tuple[str, bytes] | None:
    """(`"JPEG"`/`"PNG"`, encoded bytes) from what a node passed as its progress preview:
    ComfyUI's `(format, PIL.Image, max_size)` tuple, a PIL image, or `(format, bytes)`.
    Anything else is ignored (None)."""
    image_format = "JPEG"
    image = preview
    if isinstance(preview, tuple) and preview:
        image_format = str(preview[0]).upper()
        image = preview[1] if len(preview) > 1 else None
        if len(preview) > 2 and isinstance(preview[2], int):
            max_size = preview[2]
    if image_format not in ("JPEG", "PNG"):
        image_format = "JPEG"
    if isinstance(image, bytes | bytearray):
        return image_format, bytes(image)
    try:
        from PIL import Image
    except ImportError:  # pragma: no cover - pillow is a dependency
        return None
    if not isinstance(image, Image.Image):
        return None
    if max(image.size) > max_size:
        image = image.copy()
        image.thumbnail((max_size, max_size), Image.Resampling.BILINEAR)
    buffer = io.BytesIO()
    if image_format == "JPEG":
        image.convert("RGB").save(buffer, format="JPEG", quality=95)
    else:
        image.save(buffer, format="PNG", compress_level=1)
    return image_format, buffer.getvalue()


def preview_frame(image_format: str, data: bytes) -> bytes:
    code = PNG if image_format == "PNG" else JPEG
    return struct.pack(">II", PREVIEW_IMAGE, code) + data


def preview_frame_with_metadata(image_format: str, data: bytes, metadata: dict[str, Any]) -> bytes:
    meta = dict(metadata)
    meta["image_type"] = "image/png" if image_format == "PNG" else "image/jpeg"
    encoded = json.dumps(meta).encode()
    return struct.pack(">II", PREVIEW_IMAGE_WITH_METADATA, len(encoded)) + encoded + data
