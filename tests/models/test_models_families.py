"""Kind and family detection, and configs inferred from shapes: on the tiny files, and on the
key / shape sets of the real SD1.5, SD2.1, SDXL base and refiner architectures (built on the
meta device, converted to the original layout; nothing allocated)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import torch

from flowscope.models.families import (
    Family,
    ModelKind,
    detect_checkpoint_family,
    detect_kind,
    infer_controlnet_config,
)
from flowscope.models.files import ModelFileError, read_state_dict
from flowscope.models.layouts import controlnet_to_original
from flowscope.models.tiny import (
    REAL_CONFIGS,
    TINY_TEXT,
    TINY_UNETS,
    TinyModels,
    build_components,
    checkpoint_state_dict,
    create_tiny_models,
)

os.environ["HF_HUB_OFFLINE"] = "1"
torch.set_num_threads(1)
SOURCE = Path("real.safetensors")
# Shapes cannot tell attention heads: these are the families' conventions, as in the real configs.
TEXT_FIELDS = ("hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads")


def _shapes(module: torch.nn.Module) -> dict[str, tuple[int, ...]]:
    return {key: tuple(value.shape) for key, value in module.state_dict().items()}


@pytest.fixture(scope="module")
def real() -> dict[Family, dict[str, torch.Tensor]]:
    """The original-layout key / shape set of each real family."""
    out = {}
    with torch.device("meta"):
        for family, configs in REAL_CONFIGS.items():
            unet, vae, encoders = build_components(family, configs)
            out[family] = checkpoint_state_dict(family, unet, vae, encoders)
    return out


@pytest.fixture(scope="module")
def tiny_files(tmp_path_factory: pytest.TempPathFactory) -> dict[Family, TinyModels]:
    directory = tmp_path_factory.mktemp("tiny")
    return {family: create_tiny_models(directory, family) for family in (Family.SD1, Family.SDXL)}


def _rebuilt_shapes(detected: Any) -> dict[str, dict[str, tuple[int, ...]]]:
    from diffusers import AutoencoderKL, UNet2DConditionModel

    with torch.device("meta"):
        return {
            "unet": _shapes(UNet2DConditionModel(**detected.unet_config)),
            "vae": _shapes(AutoencoderKL(**detected.vae_config)),
        }


@pytest.mark.parametrize(
    ("family", "encoders", "scaling", "heads"),
    [
        (Family.SD1, ("clip_l",), 0.18215, 8),
        (Family.SD2, ("clip_h",), 0.18215, [5, 10, 20, 20]),
        (Family.SDXL, ("clip_l", "clip_g"), 0.13025, [5, 10, 20]),
        (Family.SDXL_REFINER, ("clip_g",), 0.13025, [6, 12, 24, 24]),
    ],
)
def test_real_architectures_are_detected_with_configs_that_rebuild_them(
    real: dict[Family, dict[str, torch.Tensor]],
    family: Family,
    encoders: tuple[str, ...],
    scaling: float,
    heads: Any,
) -> None:
    from diffusers import AutoencoderKL, UNet2DConditionModel

    state_dict = real[family]
    assert detect_kind(state_dict) is ModelKind.CHECKPOINT
    detected = detect_checkpoint_family(state_dict, source=SOURCE)
    assert detected.family is family
    assert detected.text_encoders == encoders
    assert detected.vae_scaling_factor == scaling == detected.vae_config["scaling_factor"]
    assert detected.prediction == "epsilon"  # shape-only weights cannot be probed
    assert detected.unet_config["attention_head_dim"] == heads
    configs = REAL_CONFIGS[family]
    with torch.device("meta"):
        expected_unet = _shapes(UNet2DConditionModel(**configs.unet))
        expected_vae = _shapes(AutoencoderKL(**configs.vae))
    rebuilt = _rebuilt_shapes(detected)
    assert rebuilt["unet"] == expected_unet
    assert rebuilt["vae"] == expected_vae
    for name in encoders:
        for field in (*TEXT_FIELDS, "hidden_act", "vocab_size", "max_position_embeddings"):
            assert detected.text_configs[name][field] == configs.text[name][field]
    if "clip_g" in encoders:
        assert detected.text_configs["clip_g"]["projection_dim"] == 1280
    if family in (Family.SDXL, Family.SDXL_REFINER):
        assert detected.unet_config["addition_time_embed_dim"] == 256


def test_sd2_v_prediction_follows_comfyuis_probe(
    real: dict[Family, dict[str, torch.Tensor]],
) -> None:
    state_dict = dict(real[Family.SD2])
    probe = "model.diffusion_model.output_blocks.11.1.transformer_blocks.0.norm1.bias"
    assert probe in state_dict
    generator = torch.Generator().manual_seed(0)
    state_dict[probe] = torch.randn(320, generator=generator) * 0.2
    assert detect_checkpoint_family(state_dict, source=SOURCE).prediction == "v_prediction"
    state_dict[probe] = torch.randn(320, generator=generator) * 0.01
    assert detect_checkpoint_family(state_dict, source=SOURCE).prediction == "epsilon"


def test_a_v_pred_key_marks_v_prediction_in_any_family(
    real: dict[Family, dict[str, torch.Tensor]],
) -> None:
    state_dict = {**real[Family.SDXL], "v_pred": torch.tensor([])}
    assert detect_checkpoint_family(state_dict, source=SOURCE).prediction == "v_prediction"


def test_sd2_saved_with_sgm_prefixes_is_still_sd2(
    real: dict[Family, dict[str, torch.Tensor]],
) -> None:
    moved = {
        key.replace("cond_stage_model.model.", "conditioner.embedders.0.model."): value
        for key, value in real[Family.SD2].items()
    }
    detected = detect_checkpoint_family(moved, source=SOURCE)
    assert detected.family is Family.SD2
    assert detected.text_encoders == ("clip_h",)


def test_tiny_files_are_detected_with_the_configs_they_were_built_from(
    tiny_files: dict[Family, TinyModels],
) -> None:
    for family, files in tiny_files.items():
        state_dict = read_state_dict(files.checkpoint)
        detected = detect_checkpoint_family(state_dict, source=files.checkpoint)
        assert detected.family is family
        for key, value in TINY_UNETS[family].items():
            if key != "sample_size":
                assert detected.unet_config[key] == value, key
        assert detected.vae_config["block_out_channels"] == [32, 32, 64, 64]
        assert detected.vae_config["latent_channels"] == 4
        for name, config in TINY_TEXT[family].items():
            assert {k: detected.text_configs[name][k] for k in config} == config
        assert detect_kind(read_state_dict(files.controlnet)) is ModelKind.CONTROLNET
        for lora in (files.lora_kohya, files.lora_kohya_ldm, files.lora_peft):
            assert detect_kind(read_state_dict(lora)) is ModelKind.LORA


def test_controlnets_give_their_family_and_a_config_that_rebuilds_them(
    tiny_files: dict[Family, TinyModels],
) -> None:
    from diffusers import ControlNetModel, UNet2DConditionModel

    for family, files in tiny_files.items():
        detected, config = infer_controlnet_config(read_state_dict(files.controlnet))
        assert detected is family
        assert config["conditioning_embedding_out_channels"] == [8, 16, 16, 32]
    for family in (Family.SD1, Family.SDXL):
        unet_config = REAL_CONFIGS[family].unet
        with torch.device("meta"):
            unet = UNet2DConditionModel(**unet_config)
            controlnet = ControlNetModel.from_unet(unet, load_weights_from_unet=False)
        original = controlnet_to_original(controlnet.state_dict(), controlnet.config)
        assert "control_model.input_hint_block.14.weight" in original
        detected, config = infer_controlnet_config(original)
        assert detected is family
        with torch.device("meta"):
            rebuilt = ControlNetModel(**config)
        assert _shapes(rebuilt) == _shapes(controlnet)


def test_kinds_of_other_files() -> None:
    weight = torch.zeros(1)
    assert detect_kind({"encoder.down.0.block.0.conv1.weight": weight}) is ModelKind.VAE
    assert detect_kind({"encoder.down_blocks.0.resnets.0.conv1.weight": weight}) is ModelKind.VAE
    assert detect_kind({"first_stage_model.encoder.conv_in.weight": weight}) is ModelKind.VAE
    assert detect_kind({"controlnet_cond_embedding.conv_in.weight": weight}) is (
        ModelKind.CONTROLNET
    )
    assert detect_kind({"input_hint_block.0.weight": weight}) is ModelKind.CONTROLNET
    lora_keys = [
        "lora_unet_down_blocks_0_attentions_0_proj_in.lora_down.weight",
        "unet.down_blocks.0.attentions.0.proj_in.lora_A.weight",
        "base_model.model.down_blocks.0.attentions.0.proj_in.lora_B.weight",
    ]
    for key in lora_keys:
        assert detect_kind({key: weight, "model.diffusion_model.x": weight}) is ModelKind.LORA
    assert detect_kind({"lora_te_text_model_encoder_layers_0_mlp_fc1.alpha": weight}) is (
        ModelKind.LORA
    )
    assert detect_kind({"something.else": weight}) is ModelKind.UNKNOWN
    assert detect_kind({}) is ModelKind.UNKNOWN


def test_files_that_are_not_loadable_checkpoints_say_why(
    real: dict[Family, dict[str, torch.Tensor]],
) -> None:
    sd1 = real[Family.SD1]
    lora = {"lora_unet_x.lora_down.weight": torch.zeros(1)}
    with pytest.raises(ModelFileError, match=r"real\.safetensors: .*looks like a lora"):
        detect_checkpoint_family(lora, source=SOURCE)
    no_vae = {k: v for k, v in sd1.items() if not k.startswith("first_stage_model.")}
    with pytest.raises(ModelFileError, match="no VAE weights"):
        detect_checkpoint_family(no_vae, source=SOURCE)
    no_text = {k: v for k, v in sd1.items() if not k.startswith("cond_stage_model.")}
    with pytest.raises(ModelFileError, match="no text encoder weights"):
        detect_checkpoint_family(no_text, source=SOURCE)
    broken = {k: v for k, v in sd1.items() if not k.endswith("input_blocks.4.0.in_layers.2.weight")}
    with pytest.raises(ModelFileError, match="incomplete or odd"):
        detect_checkpoint_family(broken, source=SOURCE)
