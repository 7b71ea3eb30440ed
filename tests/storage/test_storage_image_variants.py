"""`/view`'s converted images: previews (webp / jpeg, quality), single channels as PNG, the
cache of recent variants, and clear errors for files that are not images."""

from __future__ import annotations

import io
import os
from pathlib import Path

import pytest
from PIL import Image

from flowscope.storage.image_variants import (
    ImageVariant,
    ImageVariantError,
    VariantCache,
    VariantRequest,
    make_variant,
    variant_request,
)

RED_HALF = (200, 10, 20, 128)


def save(path: Path, image: Image.Image, image_format: str = "PNG") -> Path:
    image.save(path, format=image_format)
    return path


def decode(variant: ImageVariant) -> Image.Image:
    image = Image.open(io.BytesIO(variant.data))
    image.load()
    return image


@pytest.mark.parametrize(
    ("preview", "channel", "expected"),
    [
        (None, None, VariantRequest(None)),
        (None, "rgba", VariantRequest(None)),
        (None, "bogus", VariantRequest(None)),
        (None, "rgb", VariantRequest("channel", "png", channel="rgb")),
        (None, "a", VariantRequest("channel", "png", channel="a")),
        ("webp;90", None, VariantRequest("preview", "webp", 90, "")),
        ("jpeg;80", None, VariantRequest("preview", "jpeg", 80, "")),
        ("jpeg", None, VariantRequest("preview", "jpeg", 90, "")),
        ("gif;70", None, VariantRequest("preview", "webp", 70, "")),
        ("jpeg;999", None, VariantRequest("preview", "jpeg", 100, "")),
        ("jpeg;0", None, VariantRequest("preview", "jpeg", 1, "")),
        ("jpeg;x", None, VariantRequest("preview", "jpeg", 90, "")),
        # ComfyUI: any alpha channel in the request forces webp (jpeg has no alpha).
        ("jpeg;80", "a", VariantRequest("preview", "webp", 80, "a")),
        ("jpeg;80", "rgba", VariantRequest("preview", "webp", 80, "rgba")),
        ("jpeg;80", "rgb", VariantRequest("preview", "jpeg", 80, "rgb")),
    ],
)
def test_the_query_is_read_as_comfyui_reads_it(
    preview: str | None, channel: str | None, expected: VariantRequest
) -> None:
    assert variant_request(preview, channel) == expected


def test_a_webp_preview_keeps_alpha(tmp_path: Path) -> None:
    path = save(tmp_path / "x.png", Image.new("RGBA", (8, 6), RED_HALF))
    variant = make_variant(path, variant_request("webp;100", None))
    image = decode(variant)
    assert (variant.media_type, image.format, image.mode, image.size) == (
        "image/webp",
        "WEBP",
        "RGBA",
        (8, 6),
    )
    assert image.getpixel((3, 3))[3] == 128


def test_a_jpeg_preview_is_rgb_and_quality_changes_its_size(tmp_path: Path) -> None:
    noise = Image.frombytes("RGB", (64, 64), os.urandom(64 * 64 * 3))
    path = save(tmp_path / "noise.png", noise)
    low = make_variant(path, variant_request("jpeg;10", None))
    high = make_variant(path, variant_request("jpeg;95", None))
    assert decode(high).format == "JPEG"
    assert decode(high).mode == "RGB"
    assert high.media_type == "image/jpeg"
    assert len(low.data) < len(high.data)


def test_previews_of_palette_and_grey_images_convert(tmp_path: Path) -> None:
    palette = save(tmp_path / "p.gif", Image.new("P", (4, 4), 3), "GIF")
    grey = save(tmp_path / "g.png", Image.new("I;16", (4, 4), 500))
    for path in (palette, grey):
        for preview in ("webp;80", "jpeg;80"):
            assert decode(make_variant(path, variant_request(preview, None))).size == (4, 4)


def test_the_rgb_channel_drops_alpha_and_keeps_colour(tmp_path: Path) -> None:
    path = save(tmp_path / "x.png", Image.new("RGBA", (3, 3), RED_HALF))
    variant = make_variant(path, variant_request(None, "rgb"))
    image = decode(variant)
    assert (variant.media_type, image.format, image.mode) == ("image/png", "PNG", "RGB")
    assert image.getpixel((1, 1)) == RED_HALF[:3]


def test_the_alpha_channel_is_black_with_the_source_alpha(tmp_path: Path) -> None:
    path = save(tmp_path / "x.png", Image.new("RGBA", (3, 3), RED_HALF))
    image = decode(make_variant(path, variant_request(None, "a")))
    assert image.mode == "RGBA"
    assert image.getpixel((0, 0)) == (0, 0, 0, 128)


def test_an_image_without_alpha_has_an_opaque_alpha_channel(tmp_path: Path) -> None:
    path = save(tmp_path / "x.jpg", Image.new("RGB", (3, 3), (1, 2, 3)), "JPEG")
    image = decode(make_variant(path, variant_request(None, "a")))
    assert image.getpixel((2, 2)) == (0, 0, 0, 255)


def test_grey_with_alpha_keeps_its_alpha(tmp_path: Path) -> None:
    path = save(tmp_path / "la.png", Image.new("LA", (2, 2), (90, 40)))
    assert decode(make_variant(path, variant_request(None, "a"))).getpixel((0, 0)) == (0, 0, 0, 40)


@pytest.mark.parametrize("content", [b"", b"not an image", b"\x89PNG\r\n\x1a\n" + b"\x00" * 40])
def test_a_file_that_is_not_an_image_is_a_clear_error(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "x.png"
    path.write_bytes(content)
    with pytest.raises(ImageVariantError, match=r"x\.png"):
        make_variant(path, variant_request("webp", None))


def test_a_truncated_image_is_a_clear_error(tmp_path: Path) -> None:
    noise = Image.frombytes("RGB", (64, 64), os.urandom(64 * 64 * 3))
    full = save(tmp_path / "full.png", noise).read_bytes()
    path = tmp_path / "cut.png"
    path.write_bytes(full[: len(full) // 2])
    with pytest.raises(ImageVariantError):
        make_variant(path, variant_request(None, "rgb"))


def test_the_cache_answers_repeats_and_notices_changed_files(tmp_path: Path) -> None:
    path = save(tmp_path / "x.png", Image.new("RGBA", (4, 4), RED_HALF))
    calls: list[Path] = []

    def counting(source: Path, request: VariantRequest) -> ImageVariant:
        calls.append(source)
        return make_variant(source, request)

    cache = VariantCache()
    wanted = variant_request("webp;90", None)
    first = cache.get_or_make(path, os.stat(path), wanted, counting)
    again = cache.get_or_make(path, os.stat(path), wanted, counting)
    assert again is first
    assert len(calls) == 1
    cache.get_or_make(path, os.stat(path), variant_request("jpeg;90", None), counting)
    assert len(calls) == 2
    save(path, Image.new("RGBA", (5, 5), RED_HALF))
    os.utime(path, ns=(1, 1))  # a different mtime, whatever the clock resolution
    changed = cache.get_or_make(path, os.stat(path), wanted, counting)
    assert decode(changed).size == (5, 5)
    assert len(calls) == 3


def test_the_cache_stays_within_its_byte_budget(tmp_path: Path) -> None:
    cache = VariantCache(max_bytes=100)

    def fixed(_source: Path, request: VariantRequest) -> ImageVariant:
        return ImageVariant(b"x" * request.quality, "image/webp")

    path = tmp_path / "x.png"
    path.write_bytes(b"")
    info = os.stat(path)
    for quality in (40, 40, 30, 50):
        cache.get_or_make(path, info, VariantRequest("preview", quality=quality), fixed)
    assert len(cache) == 2  # 30 + 50 bytes; the 40-byte one was the least recent
    huge = cache.get_or_make(path, info, VariantRequest("preview", quality=101), fixed)
    assert len(huge.data) == 101
    assert len(cache) == 2  # larger than the whole budget: answered, not kept
