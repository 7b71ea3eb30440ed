"""Original (LDM / SGM) ⇄ diffusers key layouts: round trips are the identity, and the
original → diffusers direction agrees with diffusers' own single-file converters, at tiny and
at real sizes (real sizes on the meta device: nothing allocated)."""

from __future__ import annotations

import os
from typing import Any

import pytest
import torch

from flowscope.models.families import Family
from flowscope.models.layouts import (
    TEXT_TOWERS,
    LayoutError,
    clip_to_transformers,
    controlnet_to_diffusers,
    controlnet_to_original,
    input_block_count,
    openclip_to_original,
    openclip_to_transformers,
    unet_module_map,
    unet_to_diffusers,
    unet_to_original,
    vae_to_diffusers,
    vae_to_original,
)
from flowscope.models.tiny import (
    REAL_CONFIGS,
    build_components,
    tiny_components,
    tiny_controlnet,
)

os.environ["HF_HUB_OFFLINE"] = "1"
torch.set_num_threads(1)


@pytest.fixture(scope="module")
def tiny() -> dict[Family, Any]:
    return {family: tiny_components(family, seed=3) for family in (Family.SD1, Family.SDXL)}


@pytest.fixture(scope="module")
def real_unets() -> dict[Family, Any]:
    with torch.device("meta"):
        return {
            family: build_components(family, REAL_CONFIGS[family])[0]
            for family in (Family.SD1, Family.SD2, Family.SDXL, Family.SDXL_REFINER)
        }


def test_unet_module_map_names_the_real_modules_of_sd15_and_sdxl() -> None:
    sd15 = unet_module_map(REAL_CONFIGS[Family.SD1].unet)
    assert sd15["input_blocks.1.1.transformer_blocks.0.attn1.to_q"] == (
        "down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q"
    )
    assert sd15["input_blocks.4.0.skip_connection"] == "down_blocks.1.resnets.0.conv_shortcut"
    assert sd15["input_blocks.3.0.op"] == "down_blocks.0.downsamplers.0.conv"
    assert sd15["middle_block.1.proj_out"] == "mid_block.attentions.0.proj_out"
    assert sd15["output_blocks.2.1.conv"] == "up_blocks.0.upsamplers.0.conv"  # no attention
    assert sd15["output_blocks.5.2.conv"] == "up_blocks.1.upsamplers.0.conv"
    assert sd15["output_blocks.11.1.transformer_blocks.0.ff.net.2"] == (
        "up_blocks.3.attentions.2.transformer_blocks.0.ff.net.2"
    )
    assert sd15["input_blocks.7.0.emb_layers.1"] == "down_blocks.2.resnets.0.time_emb_proj"
    assert "input_blocks.2.0.skip_connection" not in sd15  # same width in and out
    assert "label_emb.0.0" not in sd15
    sdxl = unet_module_map(REAL_CONFIGS[Family.SDXL].unet)
    assert sdxl["label_emb.0.0"] == "add_embedding.linear_1"
    assert sdxl["label_emb.0.2"] == "add_embedding.linear_2"
    assert sdxl["input_blocks.4.1.transformer_blocks.1.attn2.to_k"] == (
        "down_blocks.1.attentions.0.transformer_blocks.1.attn2.to_k"
    )
    assert sdxl["middle_block.1.transformer_blocks.9.attn1.to_out.0"] == (
        "mid_block.attentions.0.transformer_blocks.9.attn1.to_out.0"
    )
    assert sdxl["output_blocks.2.2.conv"] == "up_blocks.0.upsamplers.0.conv"
    assert "input_blocks.1.1.proj_in" not in sdxl  # SDXL's first level has no attention
    assert input_block_count(REAL_CONFIGS[Family.SD1].unet) == 12
    assert input_block_count(REAL_CONFIGS[Family.SDXL].unet) == 9


@pytest.mark.parametrize("family", list(Family))
def test_real_size_unet_round_trips_and_agrees_with_diffusers(
    real_unets: dict[Family, Any], family: Family
) -> None:
    from diffusers.loaders.single_file_utils import convert_ldm_unet_checkpoint

    unet = real_unets[family]
    weights = unet.state_dict()
    modules = dict(unet.named_modules())
    mapping = unet_module_map(unet.config)
    assert all(path in modules for path in mapping.values())
    original = unet_to_original(weights, unet.config)
    assert all(key.startswith("model.diffusion_model.") for key in original)
    back = unet_to_diffusers(original, unet.config)
    assert back.keys() == weights.keys()
    assert all(back[key] is weights[key] for key in weights)
    theirs = convert_ldm_unet_checkpoint(original, dict(unet.config))
    assert theirs.keys() == weights.keys()
    assert all(theirs[key] is weights[key] for key in weights)


@pytest.mark.parametrize("family", [Family.SD1, Family.SDXL])
def test_tiny_unet_round_trip_is_the_identity(tiny: dict[Family, Any], family: Family) -> None:
    unet = tiny[family][0]
    weights = unet.state_dict()
    back = unet_to_diffusers(unet_to_original(weights, unet.config), unet.config)
    assert back.keys() == weights.keys()
    assert all(torch.equal(back[k], weights[k]) for k in weights)


def test_unknown_unet_weights_are_reported_or_dropped(tiny: dict[Family, Any]) -> None:
    unet = tiny[Family.SD1][0]
    original = unet_to_original(unet.state_dict(), unet.config)
    original["model.diffusion_model.input_blocks.99.0.weight"] = torch.zeros(1)
    with pytest.raises(LayoutError, match=r"input_blocks\.99\.0\.weight"):
        unet_to_diffusers(original, unet.config)
    tolerant = unet_to_diffusers(original, unet.config, strict=False)
    assert tolerant.keys() == unet.state_dict().keys()


def test_vae_round_trip_reshapes_attention_and_agrees_with_diffusers(
    tiny: dict[Family, Any],
) -> None:
    from diffusers.loaders.single_file_utils import convert_ldm_vae_checkpoint

    vae = tiny[Family.SD1][1]
    weights = vae.state_dict()
    original = vae_to_original(weights, vae.config)
    assert original["first_stage_model.encoder.mid.attn_1.q.weight"].shape == (64, 64, 1, 1)
    assert "first_stage_model.decoder.up.3.upsample.conv.weight" in original
    assert "first_stage_model.decoder.up.0.upsample.conv.weight" not in original
    assert "first_stage_model.encoder.down.2.block.0.nin_shortcut.weight" in original
    assert "first_stage_model.encoder.norm_out.weight" in original
    back = vae_to_diffusers(original, vae.config)
    theirs = convert_ldm_vae_checkpoint(original, dict(vae.config))
    for converted in (back, theirs):
        assert converted.keys() == weights.keys()
        assert all(torch.equal(converted[k], weights[k]) for k in weights)


def test_real_size_vae_has_the_real_original_key_set() -> None:
    with torch.device("meta"):
        vae = build_components(Family.SD1, REAL_CONFIGS[Family.SD1])[1]
    original = vae_to_original(vae.state_dict(), vae.config)
    assert len(original) == 248  # what SD 1.5's first_stage_model holds
    assert original["first_stage_model.decoder.mid.attn_1.proj_out.weight"].shape == (
        512,
        512,
        1,
        1,
    )
    assert "first_stage_model.decoder.up.0.block.0.nin_shortcut.weight" in original
    assert "first_stage_model.decoder.up.2.block.2.conv2.weight" in original
    assert "first_stage_model.quant_conv.weight" in original


def test_openclip_round_trip_splits_qkv_transposes_projection_and_agrees_with_diffusers(
    tiny: dict[Family, Any],
) -> None:
    from diffusers.loaders.single_file_utils import convert_open_clip_checkpoint

    clip_g = tiny[Family.SDXL][2]["clip_g"]
    weights = clip_g.state_dict()
    prefix = TEXT_TOWERS[Family.SDXL][1].prefix
    original = openclip_to_original(weights, prefix)
    fused = original[f"{prefix}transformer.resblocks.1.attn.in_proj_weight"]
    assert fused.shape == (96, 32)
    q = weights["text_model.encoder.layers.1.self_attn.q_proj.weight"]
    v = weights["text_model.encoder.layers.1.self_attn.v_proj.weight"]
    assert torch.equal(fused[:32], q) and torch.equal(fused[64:], v)
    projection = original[f"{prefix}text_projection"]
    assert torch.equal(projection, weights["text_projection.weight"].T)
    assert f"{prefix}ln_final.weight" in original and f"{prefix}positional_embedding" in original
    back = openclip_to_transformers(original, prefix, with_projection=True)
    theirs = convert_open_clip_checkpoint(clip_g, original, prefix=prefix)
    for converted in (back, theirs):
        assert converted.keys() == weights.keys()
        assert all(torch.equal(converted[k], weights[k]) for k in weights)
    without = openclip_to_transformers(original, prefix, with_projection=False)
    assert "text_projection.weight" not in without


def test_clip_l_keys_with_or_without_the_text_model_level_are_read(
    tiny: dict[Family, Any],
) -> None:
    clip_l = tiny[Family.SD1][2]["clip_l"]
    prefix = TEXT_TOWERS[Family.SD1][0].prefix
    canonical = {
        (k if k.startswith("text_model.") else f"text_model.{k}"): v
        for k, v in clip_l.state_dict().items()
    }
    old_style = {f"{prefix}{k.removeprefix('text_model.')}": v for k, v in canonical.items()}
    old_style[f"{prefix}embeddings.position_ids"] = torch.arange(77)[None]
    new_style = {f"{prefix}{k}": v for k, v in canonical.items()}
    for stored in (old_style, new_style):
        assert clip_to_transformers(stored, prefix).keys() == canonical.keys()


def test_controlnet_round_trip_and_agreement_with_diffusers(tiny: dict[Family, Any]) -> None:
    from diffusers.loaders.single_file_utils import convert_controlnet_checkpoint

    for family in (Family.SD1, Family.SDXL):
        controlnet = tiny_controlnet(tiny[family][0], seed=3)
        weights = controlnet.state_dict()
        original = controlnet_to_original(weights, controlnet.config)
        zero_convs = {k for k in original if ".zero_convs." in k and k.endswith(".weight")}
        assert len(zero_convs) == input_block_count(controlnet.config)
        assert "control_model.middle_block_out.0.weight" in original
        assert "control_model.input_hint_block.14.weight" in original
        back = controlnet_to_diffusers(original, controlnet.config)
        assert back.keys() == weights.keys()
        assert all(torch.equal(back[k], weights[k]) for k in weights)
        if family is Family.SD1:  # diffusers' converter knows no SDXL size embedding
            theirs = convert_controlnet_checkpoint(original, dict(controlnet.config))
            assert theirs.keys() == weights.keys()
            assert all(torch.equal(theirs[k], weights[k]) for k in weights)
