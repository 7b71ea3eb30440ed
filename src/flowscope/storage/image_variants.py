"""The converted images `/view` can answer instead of the file itself: a `preview` (`webp;90`,
`jpeg;80`) and a single-`channel` PNG (`rgb`, `a`), with ComfyUI's rules, plus a small cache so a
gallery asking for the same preview again does not re-encode it."""

from __future__ import annotations

import io
import os
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

PREVIEW_FORMATS = ("webp", "jpeg")
DEFAULT_QUALITY = 90
CHANNELS = ("rgba", "rgb", "a")
ALPHA_MODES = frozenset({"RGBA", "LA", "PA", "RGBa", "La"})
CACHE_BYTES = 64 * 1024 * 1024


class ImageVariantError(ValueError):
    """The file cannot be decoded as an image, so no variant of it can be made."""


@dataclass(frozen=True)
class ImageVariant:
    data: bytes
    media_type: str


@dataclass(frozen=True)
class VariantRequest:
    """What `/view`'s `preview` and `channel` ask for; `kind` None means the file as it is."""

    kind: str | None  # "preview" or "channel"
    format: str = "png"
    quality: int = DEFAULT_QUALITY
    channel: str = "rgba"


def variant_request(preview: str | None, channel: str | None) -> VariantRequest:
    """ComfyUI's reading of the query: any `preview` gives a webp or jpeg (webp when the format is
    unknown or an alpha channel is wanted; quality from the last `;` part, else 90); otherwise
    `channel=rgb` or `channel=a` gives a PNG; anything else serves the file unchanged."""
    channel = channel or ""
    if preview is not None:
        parts = preview.split(";")
        image_format = parts[0] if parts[0] in PREVIEW_FORMATS else "webp"
        if "a" in channel:
            image_format = "webp"
        quality = DEFAULT_QUALITY
        if parts[-1].isdigit():
            quality = min(max(int(parts[-1]), 1), 100)
        return VariantRequest("preview", image_format, quality, channel)
    if channel in ("rgb", "a"):
        return VariantRequest("channel", "png", channel=channel)
    return VariantRequest(None)


def make_variant(path: Path, request: VariantRequest) -> ImageVariant:
    """Encode the variant of the image at `path`; ImageVariantError when it is not an image."""
    with open_image(path) as image:
        try:
            image.load()
            if request.kind == "preview":
                return _preview(image, request)
            if request.channel == "rgb":
                return _png(image.convert("RGB"))
            return _png(_alpha_image(image))
        except (OSError, SyntaxError, ValueError) as exc:  # PIL's ways of saying "damaged"
            raise ImageVariantError(f"{path.name} could not be converted: {exc}") from exc


def _preview(image: Any, request: VariantRequest) -> ImageVariant:
    if request.format == "jpeg" or request.channel == "rgb":
        image = image.convert("RGB")
    elif image.mode not in ("RGB", "RGBA"):
        image = image.convert("RGBA" if _has_alpha(image) else "RGB")
    buffer = io.BytesIO()
    image.save(buffer, format=request.format.upper(), quality=request.quality)
    return ImageVariant(buffer.getvalue(), f"image/{request.format}")


def _alpha_image(image: Any) -> Any:
    from PIL import Image

    # Black, with the source's alpha; an image without alpha is fully opaque.
    if _has_alpha(image):
        alpha = image.convert("RGBA").getchannel("A")
    else:
        alpha = Image.new("L", image.size, 255)
    result = Image.new("RGBA", image.size)
    result.putalpha(alpha)
    return result


def _has_alpha(image: Any) -> bool:
    return image.mode in ALPHA_MODES or "transparency" in image.info


def _png(image: Any) -> ImageVariant:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", compress_level=1)
    return ImageVariant(buffer.getvalue(), "image/png")


def open_image(source: Path | BinaryIO, name: str | None = None) -> Any:
    """A PIL image (lazy), or ImageVariantError when `source` is not a decodable image."""
    from PIL import Image

    what = name or (source.name if isinstance(source, Path) else "the file")
    try:
        return Image.open(source)
    except Image.DecompressionBombError as exc:
        raise ImageVariantError(f"{what} has too many pixels to decode safely") from exc
    except (OSError, SyntaxError, ValueError) as exc:  # UnidentifiedImageError is an OSError
        raise ImageVariantError(f"{what} is not an image that can be read") from exc


class VariantCache:
    """Recently made variants, keyed by the file's identity (path, size, mtime) and the request,
    so a changed file is never answered from the cache. Bounded by total bytes."""

    def __init__(self, max_bytes: int = CACHE_BYTES) -> None:
        self.max_bytes = max_bytes
        self._entries: OrderedDict[tuple[Any, ...], ImageVariant] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def get_or_make(
        self,
        path: Path,
        stat: os.stat_result,
        request: VariantRequest,
        make: Callable[[Path, VariantRequest], ImageVariant] = make_variant,
    ) -> ImageVariant:
        key = (str(path), stat.st_ino, stat.st_size, stat.st_mtime_ns, request)
        with self._lock:
            found = self._entries.get(key)
            if found is not None:
                self._entries.move_to_end(key)
                return found
        variant = make(path, request)
        size = len(variant.data)
        if size > self.max_bytes:
            return variant
        with self._lock:
            if key not in self._entries:
                self._entries[key] = variant
                self._bytes += size
            while self._bytes > self.max_bytes:
                _, dropped = self._entries.popitem(last=False)
                self._bytes -= len(dropped.data)
        return variant

    def __len__(self) -> int:
        return len(self._entries)
