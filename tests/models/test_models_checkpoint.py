"""Loading the tiny single-file checkpoints and standalone VAEs: the modules come back equal to
the ones the files were made from (weights and outputs), offline, with the SD schedule."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import save_file

from flowscope.models.checkpoint import (
    LoadedCheckpoint,
    load_checkpoint,
    load_vae,
    scaled_linear_alphas_cumprod,
)
from flowscope.models.families import Family
from flowscope.models.files import ModelFileError, read_state_dict
from flowscope.models.layouts import vae_to_original
from flowscope.models.tiny import TinyModels, create_tiny_models, tiny_components

os.environ["HF_HUB_OFFLINE"] = "1"
torch.set_num_threads(1)
SEED = 5


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[Family, TinyModels]:
    directory = tmp_path_factory.mktemp("models")
    return {f: create_tiny_models(directory, f, seed=SEED) for f in (Family.SD1, Family.SDXL)}


@pytest.fixture(scope="module")
def made() -> dict[Family, Any]:
    return {f: tiny_components(f, seed=SEED) for f in (Family.SD1, Family.SDXL)}


@pytest.fixture(scope="module")
def loaded(files: dict[Family, TinyModels]) -> dict[Family, LoadedCheckpoint]:
    return {family: load_checkpoint(paths.checkpoint) for family, paths in files.items()}


def _same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    left, right = a.state_dict(), b.state_dict()
    return left.keys() == right.keys() and all(torch.equal(left[k], right[k]) for k in left)


@pytest.mark.parametrize("family", [Family.SD1, Family.SDXL])
def test_loaded_modules_equal_the_ones_the_file_was_made_from(
    made: dict[Family, Any], loaded: dict[Family, LoadedCheckpoint], family: Family
) -> None:
    unet, vae, encoders = made[family]
    checkpoint = loaded[family]
    assert checkpoint.family.family is family
    assert _same_weights(checkpoint.unet, unet)
    assert _same_weights(checkpoint.vae, vae)
    assert checkpoint.text_encoders.keys() == encoders.keys()
    for name, encoder in encoders.items():
        assert type(checkpoint.text_encoders[name]) is type(encoder)
        assert _same_weights(checkpoint.text_encoders[name], encoder)
    assert not any(p.requires_grad for p in checkpoint.unet.parameters())
    assert not any(p.is_meta for p in checkpoint.unet.parameters())
    assert not checkpoint.unet.training and not checkpoint.vae.training


@pytest.mark.parametrize("family", [Family.SD1, Family.SDXL])
def test_loaded_modules_compute_what_the_originals_compute(
    made: dict[Family, Any], loaded: dict[Family, LoadedCheckpoint], family: Family
) -> None:
    # Equal weights are not enough: the inferred configs (attention heads, activations,
    # projections) must describe the same computation.
    unet, vae, encoders = made[family]
    checkpoint = loaded[family]
    generator = torch.Generator().manual_seed(1)
    ids = torch.randint(0, 49408, (2, 77), generator=generator)
    ids[:, 10] = 49407
    contexts = []
    pooled = None
    with torch.no_grad():
        for name, encoder in encoders.items():
            ours = checkpoint.text_encoders[name](ids, output_hidden_states=True)
            theirs = encoder(ids, output_hidden_states=True)
            assert torch.equal(ours.hidden_states[-2], theirs.hidden_states[-2])
            if name == "clip_g":
                assert torch.equal(ours.text_embeds, theirs.text_embeds)
                pooled = theirs.text_embeds
            contexts.append(theirs.last_hidden_state)
        context = torch.cat(contexts, dim=-1)
        latent = torch.randn(2, 4, 8, 8, generator=generator)
        extra = {}
        if family is Family.SDXL:
            sizes = torch.tensor([[64, 64, 0, 0, 64, 64]] * 2, dtype=torch.float32)
            extra = {"added_cond_kwargs": {"text_embeds": pooled, "time_ids": sizes}}
        step = torch.tensor([500, 20])
        expected = unet(latent, step, context, **extra).sample
        got = checkpoint.unet(latent, step, context, **extra).sample
        assert torch.equal(got, expected)
        image = vae.decode(latent).sample
        assert image.shape == (2, 3, 64, 64)
        assert torch.equal(checkpoint.vae.decode(latent).sample, image)


def test_schedule_is_sds_scaled_linear_unless_the_file_stores_one(
    files: dict[Family, TinyModels], loaded: dict[Family, LoadedCheckpoint], tmp_path: Path
) -> None:
    from diffusers import DDPMScheduler

    alphas = loaded[Family.SD1].alphas_cumprod
    assert alphas.dtype == torch.float64 and alphas.shape == (1000,)
    reference = DDPMScheduler(
        beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear"
    ).alphas_cumprod
    torch.testing.assert_close(alphas, reference.double(), atol=1e-6, rtol=0)
    assert torch.equal(alphas, scaled_linear_alphas_cumprod())
    state_dict = read_state_dict(files[Family.SD1].checkpoint)
    stored = torch.linspace(0.999, 0.01, 1000, dtype=torch.float32)
    path = tmp_path / "with-schedule.safetensors"
    save_file({**state_dict, "alphas_cumprod": stored}, path)
    assert torch.equal(load_checkpoint(path).alphas_cumprod, stored.double())


def test_dtype_is_applied_to_every_module(files: dict[Family, TinyModels]) -> None:
    checkpoint = load_checkpoint(files[Family.SDXL].checkpoint, dtype=torch.bfloat16)
    modules = [checkpoint.unet, checkpoint.vae, *checkpoint.text_encoders.values()]
    assert all(p.dtype == torch.bfloat16 for m in modules for p in m.parameters())


def test_standalone_vaes_load_in_every_layout(
    files: dict[Family, TinyModels], made: dict[Family, Any], tmp_path: Path
) -> None:
    vae = made[Family.SD1][1]
    weights = vae.state_dict()
    original = vae_to_original(weights, vae.config, prefix="")
    old_diffusers = {
        key.replace("attentions.0.to_q.", "attentions.0.query.").replace(
            "attentions.0.to_out.0.", "attentions.0.proj_attn."
        ): value
        for key, value in weights.items()
    }
    layouts = {"original": original, "diffusers": weights, "old-diffusers": old_diffusers}
    for name, state_dict in layouts.items():
        path = tmp_path / f"{name}.safetensors"
        save_file({k: v.contiguous() for k, v in state_dict.items()}, path)
        loaded, scaling = load_vae(path)
        assert _same_weights(loaded, vae), name
        assert scaling == 0.18215
    sdxl_vae, scaling = load_vae(files[Family.SDXL].checkpoint)  # a whole checkpoint
    assert scaling == 0.13025
    assert _same_weights(sdxl_vae, made[Family.SDXL][1])


def test_files_that_do_not_fit_name_themselves(
    files: dict[Family, TinyModels], tmp_path: Path
) -> None:
    state_dict = read_state_dict(files[Family.SD1].checkpoint)
    key = "model.diffusion_model.out.2.weight"
    bad = {**state_dict, key: torch.zeros(3, 32, 3, 3)}
    path = tmp_path / "bad-shape.safetensors"
    save_file(bad, path)
    with pytest.raises(ModelFileError, match=r"bad-shape\.safetensors: the UNet weights do not"):
        load_checkpoint(path)
    missing = {k: v for k, v in state_dict.items() if "input_blocks.1.1.proj_out" not in k}
    path = tmp_path / "missing.safetensors"
    save_file(missing, path)
    with pytest.raises(ModelFileError, match=r"missing\.safetensors: the UNet weights"):
        load_checkpoint(path)
    with pytest.raises(ModelFileError, match="looks like a lora"):
        load_checkpoint(files[Family.SD1].lora_kohya)
    with pytest.raises(ModelFileError, match="not a VAE"):
        load_vae(files[Family.SD1].lora_kohya)
