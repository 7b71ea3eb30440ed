"""Latent and VAE nodes on their own: shapes, ComfyUI's sizing rules, bislerp, masks."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from sd_world import SDWorld

from flowscope.nodes.sd.latents import (
    EmptyLatentImage,
    LatentUpscale,
    LatentUpscaleBy,
    SetLatentNoiseMask,
    bislerp,
    slerp,
)
from flowscope.nodes.sd.vae_nodes import VAEDecode, VAEEncode, VAEEncodeForInpaint

torch.set_num_threads(1)


def test_empty_latent_is_zeros_at_an_eighth_of_the_size() -> None:
    (latent,) = EmptyLatentImage().generate(width=512, height=768, batch_size=3)
    assert latent["samples"].shape == (3, 4, 96, 64)
    assert not latent["samples"].any()


def test_latent_upscale_keeps_the_aspect_ratio_when_one_side_is_zero() -> None:
    latent = {"samples": torch.randn(1, 4, 8, 16)}
    (wide,) = LatentUpscale().upscale(latent, "bilinear", width=0, height=128, crop="disabled")
    assert wide["samples"].shape == (1, 4, 16, 32)
    (same,) = LatentUpscale().upscale(latent, "bilinear", width=0, height=0, crop="disabled")
    assert same["samples"] is latent["samples"]
    # Sizes are at least 64 pixels (8 latent pixels), as in ComfyUI.
    (tiny,) = LatentUpscale().upscale(latent, "nearest-exact", width=8, height=8, crop="center")
    assert tiny["samples"].shape == (1, 4, 8, 8)


@pytest.mark.parametrize("method", ["nearest-exact", "bilinear", "area", "bicubic", "bislerp"])
def test_latent_upscale_by_scales_both_sides_and_keeps_other_keys(method: str) -> None:
    mask = torch.ones(1, 1, 8, 8)
    latent = {"samples": torch.randn(2, 4, 8, 12), "noise_mask": mask}
    (result,) = LatentUpscaleBy().upscale(latent, method, 1.5)
    assert result["samples"].shape == (2, 4, 12, 18)
    assert result["noise_mask"] is mask
    assert torch.isfinite(result["samples"]).all()


def test_bislerp_keeps_channel_norms_where_bilinear_shrinks_them() -> None:
    torch.manual_seed(0)
    samples = torch.randn(1, 4, 6, 6)
    up = bislerp(samples, 12, 12)
    blurred = torch.nn.functional.interpolate(samples, size=(12, 12), mode="bilinear")
    norms = samples.norm(dim=1).mean()
    assert abs(float(up.norm(dim=1).mean() - norms)) < abs(
        float(blurred.norm(dim=1).mean() - norms)
    )
    # Same size: unchanged.
    assert torch.equal(bislerp(samples, 6, 6), samples.float())


@settings(max_examples=60)
@given(weight=st.floats(0.0, 1.0), seed=st.integers(0, 2**16))
def test_slerp_ends_at_its_endpoints_and_interpolates_norms(weight: float, seed: int) -> None:
    generator = torch.Generator().manual_seed(seed)
    start = torch.randn(3, 4, 1, 1, generator=generator)
    end = torch.randn(3, 4, 1, 1, generator=generator)
    w = torch.tensor(weight)
    mixed = slerp(start, end, w)
    expected_norm = start.norm(dim=1) * (1 - weight) + end.norm(dim=1) * weight
    assert torch.allclose(mixed.norm(dim=1), expected_norm, atol=1e-4)
    assert torch.allclose(slerp(start, end, torch.tensor(0.0)), start, atol=1e-5)
    assert torch.allclose(slerp(start, end, torch.tensor(1.0)), end, atol=1e-5)


def test_set_latent_noise_mask_reshapes_the_mask() -> None:
    latent = {"samples": torch.zeros(1, 4, 8, 8)}
    (masked,) = SetLatentNoiseMask().set_mask(latent, torch.ones(16, 16))
    assert masked["noise_mask"].shape == (1, 1, 16, 16)
    assert "noise_mask" not in latent


def test_vae_round_trip_shapes_and_pixel_cropping(sd1: SDWorld) -> None:
    _model, _clip, vae = sd1.models.checkpoint(sd1.tiny.checkpoint.name)
    pixels = torch.rand(2, 70, 67, 3)
    (latent,) = VAEEncode().encode(vae, pixels)
    assert latent["samples"].shape == (2, 4, 8, 8)  # cropped to 64×64 first
    (image,) = VAEDecode().decode(vae, latent)
    assert image.shape == (2, 64, 64, 3)
    assert float(image.min()) >= 0.0 and float(image.max()) <= 1.0
    # Encoding is deterministic (the posterior mean).
    (again,) = VAEEncode().encode(vae, pixels)
    assert torch.equal(again["samples"], latent["samples"])


def test_vae_encode_rejects_an_image_smaller_than_one_latent_pixel(sd1: SDWorld) -> None:
    _model, _clip, vae = sd1.models.checkpoint(sd1.tiny.checkpoint.name)
    with pytest.raises(ValueError, match="at least 8×8"):
        VAEEncode().encode(vae, torch.rand(1, 4, 4, 3))


def test_inpaint_encode_greys_the_masked_pixels_and_grows_the_noise_mask(sd1: SDWorld) -> None:
    _model, _clip, vae = sd1.models.checkpoint(sd1.tiny.checkpoint.name)
    pixels = torch.rand(1, 64, 64, 3)
    mask = torch.zeros(64, 64)
    mask[16:32, 16:32] = 1.0
    (latent,) = VAEEncodeForInpaint().encode(vae, pixels, mask, grow_mask_by=6)
    noise_mask = latent["noise_mask"]
    assert noise_mask.shape == (1, 1, 64, 64)
    assert float(noise_mask.sum()) > float(mask.sum())  # grown by the dilation
    assert set(noise_mask.unique().tolist()) <= {0.0, 1.0}
    (plain,) = VAEEncodeForInpaint().encode(vae, pixels, mask, grow_mask_by=0)
    assert torch.equal(plain["noise_mask"][0, 0], mask)
    # The masked area was encoded as grey: the same latent as an image grey there.
    greyed = pixels.clone()
    greyed[:, 16:32, 16:32, :] = 0.5
    (reference,) = VAEEncode().encode(vae, greyed)
    assert torch.allclose(plain["samples"], reference["samples"], atol=1e-5)
