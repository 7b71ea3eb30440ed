"""The tiny model files: ComfyUI's folder layout, the original key layout, deterministic per
seed, an 8× VAE into 4 channels, LoRAs that describe one update in three layouts, and a
ControlNet whose zero convolutions are not zero."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import torch

from flowscope.models.families import Family, infer_controlnet_config
from flowscope.models.files import read_state_dict
from flowscope.models.layouts import controlnet_to_diffusers, unet_module_map
from flowscope.models.tiny import (
    LORA_ALPHA,
    LORA_RANK,
    TinyModels,
    create_tiny_models,
    tiny_components,
    tiny_controlnet,
)

os.environ["HF_HUB_OFFLINE"] = "1"
torch.set_num_threads(1)
PREFIXES = {
    Family.SD1: ("model.diffusion_model.", "first_stage_model.", "cond_stage_model.transformer."),
    Family.SDXL: (
        "model.diffusion_model.",
        "first_stage_model.",
        "conditioner.embedders.0.transformer.text_model.",
        "conditioner.embedders.1.model.",
    ),
}
KOHYA_TEXT = {Family.SD1: ("lora_te_",), Family.SDXL: ("lora_te1_", "lora_te2_")}
PEFT_TEXT = {Family.SD1: ("text_encoder.",), Family.SDXL: ("text_encoder.", "text_encoder_2.")}


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[Family, TinyModels]:
    directory = tmp_path_factory.mktemp("models")
    return {family: create_tiny_models(directory, family) for family in (Family.SD1, Family.SDXL)}


@pytest.fixture(scope="module")
def made() -> dict[Family, Any]:
    return {family: tiny_components(family) for family in (Family.SD1, Family.SDXL)}


@pytest.mark.parametrize("family", [Family.SD1, Family.SDXL])
def test_files_use_comfyuis_folders_and_the_original_key_layout(
    files: dict[Family, TinyModels], family: Family
) -> None:
    paths = files[family]
    root = paths.checkpoint.parent.parent
    name = f"tiny-{family.value}"
    assert paths.checkpoint == root / "checkpoints" / f"{name}.safetensors"
    assert paths.lora_kohya == root / "loras" / f"{name}-lora-kohya.safetensors"
    assert paths.lora_kohya_ldm == root / "loras" / f"{name}-lora-kohya-ldm.safetensors"
    assert paths.lora_peft == root / "loras" / f"{name}-lora-peft.safetensors"
    assert paths.controlnet == root / "controlnet" / f"{name}-controlnet.safetensors"
    checkpoint = read_state_dict(paths.checkpoint)
    for prefix in PREFIXES[family]:
        assert any(key.startswith(prefix) for key in checkpoint), prefix
    assert all(key.startswith(PREFIXES[family]) for key in checkpoint)
    assert "alphas_cumprod" not in checkpoint  # the loader uses SD's schedule
    assert all(value.dtype == torch.float32 for value in checkpoint.values())


def test_same_seed_same_bytes_other_seed_other_weights(
    files: dict[Family, TinyModels], tmp_path: Path
) -> None:
    again = create_tiny_models(tmp_path / "again", Family.SD1)
    other = create_tiny_models(tmp_path / "other", Family.SD1, seed=1)
    first = files[Family.SD1]
    for attribute in ("checkpoint", "lora_kohya", "lora_peft", "controlnet"):
        original = getattr(first, attribute).read_bytes()
        assert getattr(again, attribute).read_bytes() == original
        assert getattr(other, attribute).read_bytes() != original


@pytest.mark.parametrize("family", [Family.SD1, Family.SDXL])
def test_latents_are_8x_smaller_with_4_channels_and_the_unet_runs(
    made: dict[Family, Any], family: Family
) -> None:
    unet, vae, encoders = made[family]
    image = torch.rand(1, 3, 64, 64) * 2 - 1
    with torch.no_grad():
        latent = vae.encode(image).latent_dist.mean
        assert latent.shape == (1, 4, 8, 8)
        ids = torch.full((1, 77), 49407)
        ids[0, 0] = 49406
        outputs = [encoders[name](ids) for name in encoders]
        context = torch.cat([o.last_hidden_state for o in outputs], dim=-1)
        extra = {}
        if family is Family.SDXL:
            time_ids = torch.tensor([[64.0, 64, 0, 0, 64, 64]])
            extra = {"text_embeds": outputs[-1].text_embeds, "time_ids": time_ids}
        noise = unet(latent, torch.tensor([999]), context, added_cond_kwargs=extra).sample
    assert context.shape == (1, 77, 32 if family is Family.SD1 else 64)
    assert noise.shape == latent.shape and torch.isfinite(noise).all()


def _lora_updates(
    state_dict: dict[str, torch.Tensor], *, up: str, down: str
) -> dict[str, torch.Tensor]:
    """module name -> the full update it adds (up @ down × alpha / rank)."""
    out = {}
    for key, value in state_dict.items():
        if not key.endswith(f".{down}.weight"):
            continue
        module = key.removesuffix(f".{down}.weight")
        alpha = state_dict.get(f"{module}.alpha")
        scale = float(alpha) / value.shape[0] if alpha is not None else 1.0
        out[module] = state_dict[f"{module}.{up}.weight"] @ value * scale
    return out


@pytest.mark.parametrize("family", [Family.SD1, Family.SDXL])
def test_the_three_lora_layouts_describe_one_nonzero_update_of_every_attention_projection(
    files: dict[Family, TinyModels], made: dict[Family, Any], family: Family
) -> None:
    unet, _, encoders = made[family]
    kohya = read_state_dict(files[family].lora_kohya)
    ldm = read_state_dict(files[family].lora_kohya_ldm)
    peft = read_state_dict(files[family].lora_peft)
    alphas = [v for k, v in kohya.items() if k.endswith(".alpha")]
    assert alphas and all(float(a) == LORA_ALPHA == LORA_RANK / 2 for a in alphas)
    for key, value in kohya.items():
        if not key.endswith(".alpha"):
            assert LORA_RANK in value.shape and value.abs().min() > 0, key
    assert not any(k.endswith(".alpha") for k in peft)

    targets = [
        name
        for name, _ in unet.named_modules()
        if name.endswith(("to_q", "to_k", "to_v", "to_out.0")) and ".attn" in name
    ]
    to_ldm = {new: old for old, new in unet_module_map(unet.config).items()}
    by_kohya = _lora_updates(kohya, up="lora_up", down="lora_down")
    by_ldm = _lora_updates(ldm, up="lora_up", down="lora_down")
    by_peft = _lora_updates(peft, up="lora_B", down="lora_A")
    for name in targets:
        update = by_kohya["lora_unet_" + name.replace(".", "_")]
        assert update.shape == unet.get_submodule(name).weight.shape
        torch.testing.assert_close(by_ldm["lora_unet_" + to_ldm[name].replace(".", "_")], update)
        torch.testing.assert_close(by_peft[f"unet.{name}"], update)
    text_targets = 0
    for (encoder, model), kohya_prefix, peft_prefix in zip(
        encoders.items(), KOHYA_TEXT[family], PEFT_TEXT[family], strict=True
    ):
        layers = model.config.num_hidden_layers
        for layer in range(layers):
            for part in ("q_proj", "k_proj", "v_proj", "out_proj"):
                module = f"text_model.encoder.layers.{layer}.self_attn.{part}"
                update = by_kohya[kohya_prefix + module.replace(".", "_")]
                torch.testing.assert_close(by_ldm[kohya_prefix + module.replace(".", "_")], update)
                torch.testing.assert_close(by_peft[peft_prefix + module], update)
                text_targets += 1
        del encoder
    assert len(by_kohya) == len(by_ldm) == len(by_peft) == len(targets) + text_targets


@pytest.mark.parametrize("family", [Family.SD1, Family.SDXL])
def test_controlnet_is_in_the_original_layout_and_has_an_effect(
    files: dict[Family, TinyModels], made: dict[Family, Any], family: Family
) -> None:
    from diffusers import ControlNetModel

    state_dict = read_state_dict(files[family].controlnet)
    assert all(key.startswith("control_model.") for key in state_dict)
    for part in ("input_hint_block.0.", "zero_convs.0.0.", "middle_block_out.0.", "time_embed."):
        assert any(key.startswith(f"control_model.{part}") for key in state_dict), part
    zero_convs = [
        v for k, v in state_dict.items() if ".zero_convs." in k or "middle_block_out" in k
    ]
    assert all(v.abs().sum() > 0 for v in zero_convs)
    detected, config = infer_controlnet_config(state_dict)
    assert detected is family
    model = ControlNetModel(**config)
    model.load_state_dict(controlnet_to_diffusers(state_dict, config), strict=True)
    expected = tiny_controlnet(made[family][0])
    assert all(
        torch.equal(a, b)
        for a, b in zip(model.state_dict().values(), expected.state_dict().values(), strict=True)
    )
    context = torch.randn(1, 77, config["cross_attention_dim"])
    extra = {}
    if family is Family.SDXL:
        extra = {"text_embeds": torch.randn(1, 32), "time_ids": torch.ones(1, 6)}
    with torch.no_grad():
        out = model(
            torch.randn(1, 4, 8, 8),
            torch.tensor([10]),
            context,
            controlnet_cond=torch.rand(1, 3, 64, 64),
            added_cond_kwargs=extra,
        )
    assert all(r.abs().sum() > 0 for r in out.down_block_res_samples)
    assert out.mid_block_res_sample.abs().sum() > 0
