"""The mask editor's merge: the mask's alpha goes into the original image, colours and PNG text
chunks (workflow, prompt) stay."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from PIL import Image
from PIL.PngImagePlugin import PngInfo

from flowscope.storage.image_variants import ImageVariantError
from flowscope.storage.masks import MaskError, merge_mask_alpha


def png_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def original_with_metadata(path: Path) -> Path:
    info = PngInfo()
    info.add_text("workflow", '{"nodes": []}')
    info.add_text("prompt", '{"1": {"class_type": "X"}}')
    Image.new("RGB", (4, 3), (10, 20, 30)).save(path, pnginfo=info)
    return path


def test_the_mask_alpha_replaces_the_original_alpha_and_text_is_kept(tmp_path: Path) -> None:
    original = original_with_metadata(tmp_path / "x.png")
    mask = Image.new("RGBA", (4, 3), (0, 0, 0, 255))
    mask.putpixel((1, 1), (0, 0, 0, 0))
    merged = Image.open(io.BytesIO(merge_mask_alpha(original, io.BytesIO(png_bytes(mask)))))
    merged.load()
    assert (merged.format, merged.mode, merged.size) == ("PNG", "RGBA", (4, 3))
    assert merged.getpixel((0, 0)) == (10, 20, 30, 255)
    assert merged.getpixel((1, 1)) == (10, 20, 30, 0)
    assert merged.text == {"workflow": '{"nodes": []}', "prompt": '{"1": {"class_type": "X"}}'}


def test_a_mask_of_another_size_is_refused(tmp_path: Path) -> None:
    original = original_with_metadata(tmp_path / "x.png")
    mask = io.BytesIO(png_bytes(Image.new("RGBA", (5, 5))))
    with pytest.raises(MaskError, match=r"5x5 but x\.png is 4x3"):
        merge_mask_alpha(original, mask)


def test_a_mask_that_is_not_an_image_is_refused(tmp_path: Path) -> None:
    original = original_with_metadata(tmp_path / "x.png")
    with pytest.raises(ImageVariantError, match="the mask"):
        merge_mask_alpha(original, io.BytesIO(b"nope"))


def test_an_original_that_is_not_an_image_is_refused(tmp_path: Path) -> None:
    original = tmp_path / "x.png"
    original.write_bytes(b"nope")
    mask = io.BytesIO(png_bytes(Image.new("RGBA", (4, 3))))
    with pytest.raises(ImageVariantError, match=r"x\.png"):
        merge_mask_alpha(original, mask)
