"""Latent previews: the per-family linear latent-to-RGB approximation."""

from __future__ import annotations

import pytest
import torch

from flowscope.nodes.sd.sampling import latent_to_rgb

torch.set_num_threads(1)


def test_preview_is_an_rgb_image_one_pixel_per_latent_pixel() -> None:
    image = latent_to_rgb(torch.zeros(2, 4, 12, 20), "sd1")
    assert image.mode == "RGB"
    assert image.size == (20, 12)


def test_a_zero_latent_is_mid_grey_for_sd1_and_tinted_by_sdxls_bias() -> None:
    assert latent_to_rgb(torch.zeros(4, 2, 2), "sd1").getpixel((0, 0)) == (127, 127, 127)
    # SDXL adds (0.1084, -0.0175, -0.0011) before mapping -1..1 to 0..255.
    assert latent_to_rgb(torch.zeros(4, 2, 2), "sdxl").getpixel((1, 1)) == (141, 125, 127)


def test_each_channel_maps_through_its_row_of_factors() -> None:
    latent = torch.zeros(1, 4, 1, 2)
    latent[0, 3, 0, 1] = 1.0  # SD1's 4th channel: (-0.2120, -0.2616, -0.7177)
    image = latent_to_rgb(latent, "sd2")
    assert image.getpixel((0, 0)) == (127, 127, 127)
    assert image.getpixel((1, 0)) == (100, 94, 35)


def test_only_the_first_batch_item_is_shown_and_values_saturate() -> None:
    latent = torch.stack([torch.full((4, 3, 3), 50.0), torch.full((4, 3, 3), -50.0)])
    shown = latent_to_rgb(latent, "sdxl_refiner")
    assert shown.getpixel((0, 0)) == latent_to_rgb(latent[:1], "sdxl").getpixel((0, 0))
    assert set(shown.getpixel((2, 2))) <= {0, 255}


def test_unknown_families_and_shapes_are_refused() -> None:
    with pytest.raises(ValueError, match="family 'sd3'"):
        latent_to_rgb(torch.zeros(1, 4, 2, 2), "sd3")
    with pytest.raises(ValueError, match="4 channels"):
        latent_to_rgb(torch.zeros(1, 16, 2, 2), "sd1")
