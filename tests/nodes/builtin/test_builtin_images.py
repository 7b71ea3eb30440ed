import numpy as np
import pytest
import torch
from PIL import Image

from flowscope.nodes.builtin.images import MAX_RESOLUTION


def gradient(batch: int, height: int, width: int, channels: int = 3) -> torch.Tensor:
    values = torch.arange(batch * height * width * channels, dtype=torch.float32)
    return (values / values.numel()).reshape(batch, height, width, channels)


def test_empty_image_declares_comfyui_inputs(nodes):
    assert nodes["EmptyImage"].INPUT_TYPES() == {
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
    assert MAX_RESOLUTION == 16384
    assert nodes["EmptyImage"].CATEGORY == "image"
    assert nodes["EmptyImage"].RETURN_TYPES == ("IMAGE",)


def test_empty_image_unpacks_rgb_color(run):
    (image,) = run("EmptyImage", width=4, height=3, batch_size=2, color=0xFF8000)
    assert image.shape == (2, 3, 4, 3)
    assert image.dtype == torch.float32
    assert torch.allclose(image[1, 2, 3], torch.tensor([1.0, 128 / 255, 0.0]))
    assert torch.equal(image[0], image[1])


def test_image_scale_zero_side_keeps_aspect_ratio(run):
    image = gradient(2, 4, 8)
    (scaled,) = run(
        "ImageScale", image=image, upscale_method="bilinear", width=0, height=2, crop="disabled"
    )
    assert scaled.shape == (2, 2, 4, 3)
    (scaled,) = run(
        "ImageScale", image=image, upscale_method="bilinear", width=16, height=0, crop="disabled"
    )
    assert scaled.shape == (2, 8, 16, 3)


def test_image_scale_with_both_sides_zero_returns_the_input(run):
    image = gradient(1, 4, 8)
    (scaled,) = run(
        "ImageScale", image=image, upscale_method="area", width=0, height=0, crop="center"
    )
    assert scaled is image


def test_image_scale_nearest_exact_repeats_pixels(run):
    image = gradient(1, 2, 2)
    (scaled,) = run(
        "ImageScale",
        image=image,
        upscale_method="nearest-exact",
        width=4,
        height=4,
        crop="disabled",
    )
    expected = image.repeat_interleave(2, dim=1).repeat_interleave(2, dim=2)
    assert torch.equal(scaled, expected)


def test_image_scale_center_crop_keeps_the_middle(run):
    image = gradient(1, 4, 8)
    (scaled,) = run(
        "ImageScale", image=image, upscale_method="nearest-exact", width=4, height=4, crop="center"
    )
    assert torch.equal(scaled, image[:, :, 2:6, :])


@pytest.mark.parametrize("method", ["nearest-exact", "bilinear", "area", "bicubic", "lanczos"])
def test_image_scale_every_method_resizes_the_whole_batch(run, method):
    image = gradient(3, 6, 5, channels=4)
    (scaled,) = run(
        "ImageScale", image=image, upscale_method=method, width=7, height=3, crop="disabled"
    )
    assert scaled.shape == (3, 3, 7, 4)
    assert scaled.dtype == torch.float32


def test_image_scale_lanczos_matches_pil_rgb_resize(run):
    image = torch.rand(2, 9, 7, 3, generator=torch.Generator().manual_seed(1))
    (scaled,) = run(
        "ImageScale", image=image, upscale_method="lanczos", width=5, height=13, crop="disabled"
    )
    for frame, result in zip(image, scaled, strict=True):
        pixels = np.clip(255.0 * frame.numpy(), 0, 255).astype(np.uint8)
        expected = Image.fromarray(pixels).resize((5, 13), resample=Image.Resampling.LANCZOS)
        assert torch.equal(result, torch.from_numpy(np.asarray(expected, dtype=np.float32) / 255.0))


def test_image_scale_by_multiplies_both_sides(run):
    (scaled,) = run("ImageScaleBy", image=gradient(2, 4, 6), upscale_method="bicubic", scale_by=1.5)
    assert scaled.shape == (2, 6, 9, 3)


def test_image_scale_by_never_produces_an_empty_image(run):
    (scaled,) = run("ImageScaleBy", image=gradient(1, 4, 6), upscale_method="area", scale_by=0.01)
    assert scaled.shape == (1, 1, 1, 3)


def test_image_invert(run):
    image = gradient(2, 2, 3)
    (inverted,) = run("ImageInvert", image=image)
    assert torch.allclose(inverted, 1.0 - image)


def test_image_batch_concatenates_same_size_images(run):
    first, second = gradient(2, 3, 4), torch.ones(1, 3, 4, 3)
    (batch,) = run("ImageBatch", image1=first, image2=second)
    assert batch.shape == (3, 3, 4, 3)
    assert torch.equal(batch[:2], first)
    assert torch.equal(batch[2], second[0])


def test_image_batch_rescales_image2_to_image1(run):
    (batch,) = run(
        "ImageBatch", image1=torch.zeros(1, 4, 6, 3), image2=torch.full((2, 8, 8, 3), 0.5)
    )
    assert batch.shape == (3, 4, 6, 3)
    assert torch.allclose(batch[1:], torch.full((2, 4, 6, 3), 0.5))


def test_image_batch_pads_rgb_with_opaque_alpha_to_join_rgba(run):
    (batch,) = run("ImageBatch", image1=torch.zeros(1, 2, 2, 3), image2=torch.zeros(1, 2, 2, 4))
    assert batch.shape == (2, 2, 2, 4)
    assert torch.equal(batch[0, ..., 3], torch.ones(2, 2))


def test_image_crop_takes_the_region_of_every_image(run):
    image = gradient(2, 6, 8)
    (cropped,) = run("ImageCrop", image=image, width=3, height=2, x=4, y=1)
    assert torch.equal(cropped, image[:, 1:3, 4:7, :])


def test_image_crop_clamps_an_origin_past_the_edge(run):
    image = gradient(1, 6, 8)
    (cropped,) = run("ImageCrop", image=image, width=5, height=5, x=100, y=100)
    assert torch.equal(cropped, image[:, 5:, 7:, :])


def test_rebatch_images_splits_and_joins_batches(nodes, run):
    cls = nodes["RebatchImages"]
    assert cls.INPUT_IS_LIST is True
    assert cls.OUTPUT_IS_LIST == (True,)
    assert cls.INPUT_TYPES()["required"]["batch_size"] == (
        "INT",
        {"default": 1, "min": 1, "max": 4096},
    )
    images = [gradient(3, 2, 2), torch.ones(2, 2, 2, 3)]
    (batches,) = run("RebatchImages", images=images, batch_size=[2])
    assert [b.shape[0] for b in batches] == [2, 2, 1]
    assert torch.equal(torch.cat(batches), torch.cat(images))


def test_rebatch_images_starts_a_new_batch_when_the_size_changes(run):
    images = [torch.zeros(1, 2, 2, 3), torch.zeros(2, 4, 4, 3)]
    (batches,) = run("RebatchImages", images=images, batch_size=[8])
    assert [tuple(b.shape) for b in batches] == [(1, 2, 2, 3), (2, 4, 4, 3)]


def test_unknown_upscale_method_is_a_clear_error(run):
    with pytest.raises(ValueError, match="unknown upscale_method 'cubic'"):
        run("ImageScaleBy", image=gradient(1, 2, 2), upscale_method="cubic", scale_by=2.0)
