"""What a weight file is (checkpoint, ControlNet, LoRA, VAE) and, for Stable Diffusion
checkpoints, which family and which diffusers / transformers configs its shapes describe."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any, Literal

import torch

from flowscope.models.files import ModelFileError
from flowscope.models.layouts import (
    CONTROLNET_PREFIX,
    TEXT_TOWERS,
    UNET_PREFIX,
    VAE_PREFIX,
    TextTower,
    has_prefix,
)

Prediction = Literal["epsilon", "v_prediction"]


class ModelKind(StrEnum):
    CHECKPOINT = "checkpoint"
    CONTROLNET = "controlnet"
    LORA = "lora"
    VAE = "vae"
    UNKNOWN = "unknown"


class Family(StrEnum):
    SD1 = "sd1"
    SD2 = "sd2"
    SDXL = "sdxl"
    SDXL_REFINER = "sdxl_refiner"


@dataclass(frozen=True)
class CheckpointFamily:
    family: Family
    prediction: Prediction
    vae_scaling_factor: float  # 0.18215 SD1/SD2, 0.13025 SDXL/refiner
    text_encoders: tuple[str, ...]  # ("clip_l",), ("clip_h",), ("clip_l", "clip_g"), ("clip_g",)
    unet_config: dict[str, Any]  # a diffusers UNet2DConditionModel config, inferred from shapes
    vae_config: dict[str, Any]  # an AutoencoderKL config, inferred from shapes
    text_configs: dict[str, dict[str, Any]]  # per encoder: a transformers CLIPTextConfig dict


VAE_SCALING_FACTORS = {
    Family.SD1: 0.18215,
    Family.SD2: 0.18215,
    Family.SDXL: 0.13025,
    Family.SDXL_REFINER: 0.13025,
}
# SDXL's UNet adds embeddings of its size / crop conditioning: 6 numbers (base) or 5 (refiner:
# size, crop and an aesthetic score), each embedded with `addition_time_embed_dim` channels.
_TIME_IDS = {Family.SDXL: 6, Family.SDXL_REFINER: 5}
# ComfyUI's SD2 v-prediction probe: the spread of this bias in the last output attention.
_V_PROBE_STD = 0.09

_LORA_MARKERS = (
    ".lora_down.",
    ".lora_up.",
    ".lora_A.",
    ".lora_B.",
    ".lora.down.",
    ".lora.up.",
    ".hada_w1_a",
    ".lokr_w1",
)


# --- kinds ---------------------------------------------------------------------------------------


def detect_kind(state_dict: Mapping[str, torch.Tensor]) -> ModelKind:
    """Which kind of SD weight file these keys describe (layouts: original or diffusers)."""
    keys = list(state_dict)
    if any(marker in key for key in keys for marker in _LORA_MARKERS):
        return ModelKind.LORA
    if any(key.startswith("lora_") and key.endswith(".alpha") for key in keys):
        return ModelKind.LORA
    if has_prefix(keys, CONTROLNET_PREFIX) or any(
        key.startswith(("input_hint_block.", "controlnet_cond_embedding.")) for key in keys
    ):
        return ModelKind.CONTROLNET
    if has_prefix(keys, UNET_PREFIX):
        return ModelKind.CHECKPOINT
    vae_markers = ("encoder.down.0.block.0.conv1.weight", "encoder.down_blocks.0.resnets.0.")
    if any(key.startswith(marker) for key in keys for marker in vae_markers):
        return ModelKind.VAE
    if any(key.startswith(VAE_PREFIX + "encoder.") for key in keys):
        return ModelKind.VAE
    return ModelKind.UNKNOWN


# --- checkpoints ---------------------------------------------------------------------------------


def text_towers(
    state_dict: Mapping[str, torch.Tensor],
) -> tuple[Family, tuple[TextTower, ...]] | None:
    """The family the text encoders of a checkpoint say, and where they are; None if none."""
    keys = list(state_dict)
    sdxl = TEXT_TOWERS[Family.SDXL]
    if all(has_prefix(keys, tower.prefix) for tower in sdxl):
        return Family.SDXL, sdxl
    refiner = TEXT_TOWERS[Family.SDXL_REFINER]
    if has_prefix(keys, refiner[0].prefix):
        # SD2 checkpoints saved by SGM code keep their OpenCLIP-H there too; only the refiner's
        # UNet has the size / aesthetic-score embedding.
        if UNET_PREFIX + "label_emb.0.0.weight" in state_dict:
            return Family.SDXL_REFINER, refiner
        return Family.SD2, (TextTower("clip_h", refiner[0].prefix, openclip=True),)
    for family in (Family.SD2, Family.SD1):
        towers = TEXT_TOWERS[family]
        if has_prefix(keys, towers[0].prefix):
            return family, towers
    return None


def detect_checkpoint_family(
    state_dict: Mapping[str, torch.Tensor], *, source: Path
) -> CheckpointFamily:
    """Family, prediction type and model configs of a single-file SD checkpoint (original
    layout). Raises ModelFileError naming `source` when it is not one we can load."""
    kind = detect_kind(state_dict)
    if kind is not ModelKind.CHECKPOINT:
        raise ModelFileError(
            source, f"not a Stable Diffusion checkpoint (it looks like a {kind.value} file)"
        )
    if not has_prefix(state_dict, VAE_PREFIX):
        raise ModelFileError(
            source,
            "this checkpoint has no VAE weights (first_stage_model.*); load its UNet as a "
            "diffusion model with a separate VAE instead",
        )
    found = text_towers(state_dict)
    if found is None:
        raise ModelFileError(
            source,
            "this checkpoint has no text encoder weights (cond_stage_model.* or "
            "conditioner.embedders.*); load its UNet as a diffusion model with separate text "
            "encoders instead",
        )
    family, towers = found
    try:
        text_configs = {
            tower.name: infer_text_config(state_dict, tower, projection=tower.name == "clip_g")
            for tower in towers
        }
        pooled = text_configs.get("clip_g", {}).get("projection_dim")
        unet_config = infer_unet_config(state_dict, UNET_PREFIX, family=family, pooled_dim=pooled)
        vae_config = infer_vae_config(state_dict, VAE_PREFIX)
    except (KeyError, ValueError, IndexError) as error:
        raise ModelFileError(
            source, f"the {family.value} checkpoint's weights are incomplete or odd: {error}"
        ) from error
    vae_config["scaling_factor"] = VAE_SCALING_FACTORS[family]
    return CheckpointFamily(
        family=family,
        prediction=detect_prediction(state_dict, family, unet_config),
        vae_scaling_factor=VAE_SCALING_FACTORS[family],
        text_encoders=tuple(tower.name for tower in towers),
        unet_config=unet_config,
        vae_config=vae_config,
        text_configs=text_configs,
    )


def detect_prediction(
    state_dict: Mapping[str, torch.Tensor], family: Family, unet_config: Mapping[str, Any]
) -> Prediction:
    """ComfyUI's rules: a `v_pred` key marks v-prediction in any family; an SD2 model with 4
    input channels is v-prediction when the bias of `norm1` in its last output attention
    (`output_blocks.11.1...` at real sizes) spreads with std > 0.09. Shape-only (meta) weights
    cannot be probed and count as epsilon."""
    if "v_pred" in state_dict:
        return "v_prediction"
    if family is not Family.SD2 or unet_config.get("in_channels") != 4:
        return "epsilon"
    probes = sorted(
        (int(match.group(1)), key)
        for key in state_dict
        if (match := _PROBE.fullmatch(key)) is not None
    )
    if not probes:
        return "epsilon"
    bias = state_dict[probes[-1][1]]
    if bias.device.type == "meta":
        return "epsilon"
    spread = float(torch.std(bias.float(), unbiased=False))
    return "v_prediction" if spread > _V_PROBE_STD else "epsilon"


_PROBE = re.compile(
    re.escape(UNET_PREFIX) + r"output_blocks\.(\d+)\.1\.transformer_blocks\.0\.norm1\.bias"
)


# --- UNet ----------------------------------------------------------------------------------------


def _indices(keys: Iterable[str], pattern: str) -> list[int]:
    """Distinct integers captured by the one group of `pattern`, sorted."""
    compiled = re.compile(pattern)
    return sorted({int(m.group(1)) for key in keys if (m := compiled.match(key)) is not None})


def _depth(state_dict: Mapping[str, torch.Tensor], block: str) -> int:
    blocks = _indices(state_dict, re.escape(block) + r"\.transformer_blocks\.(\d+)\.")
    return len(blocks)


def _heads(channels: int, family: Family) -> int:
    """Attention heads per block. Shapes do not say this; we use the families' conventions:
    SD1 has 8 heads everywhere, SD2 / SDXL heads of 64 channels. Widths that do not divide
    (tiny test models) fall back to the nearest rule that does, down to one head."""
    if family is Family.SD1:
        return 8 if channels % 8 == 0 else 1
    if channels % 64 == 0:
        return channels // 64
    return 8 if channels % 8 == 0 else 1


def infer_unet_config(
    state_dict: Mapping[str, torch.Tensor],
    prefix: str,
    *,
    family: Family,
    pooled_dim: int | None = None,
) -> dict[str, Any]:
    """A diffusers UNet2DConditionModel config from the shapes of an original-layout UNet under
    `prefix`. ControlNets (`control_model.`) share the encoder half, which is all that is read
    when there are no `output_blocks`."""
    keys = [key[len(prefix) :] for key in state_dict if key.startswith(prefix)]
    shape = {key: tuple(state_dict[prefix + key].shape) for key in keys}
    conv_in = shape["input_blocks.0.0.weight"]
    blocks = _indices(keys, r"input_blocks\.(\d+)\.")
    channels: list[int] = []
    layers: list[int] = []
    attention: list[bool] = []
    depth: list[int] = []
    current = 0
    level_attention = False
    level_depth = 1
    for index in blocks[1:]:
        if f"input_blocks.{index}.0.op.weight" in shape:
            channels.append(current)
            attention.append(level_attention)
            depth.append(level_depth)
            level_attention, level_depth = False, 1
            continue
        if len(layers) == len(channels):
            layers.append(0)
        layers[-1] += 1
        current = shape[f"input_blocks.{index}.0.in_layers.2.weight"][0]
        if f"input_blocks.{index}.1.proj_in.weight" in shape:
            level_attention = True
            level_depth = _depth(shape, f"input_blocks.{index}.1")
    channels.append(current)
    attention.append(level_attention)
    depth.append(level_depth)
    mid_depth = _depth(shape, "middle_block.1")
    if mid_depth and not attention[-1]:
        depth[-1] = mid_depth  # diffusers takes the middle block's depth from the last level

    attention_key = next((key for key in keys if key.endswith(".attn2.to_k.weight")), None)
    proj_in = next((key for key in keys if key.endswith(".proj_in.weight")), None)
    if attention_key is None or proj_in is None:
        raise ValueError("the UNet has no cross-attention layers")
    heads = [_heads(c, family) for c in channels]
    config: dict[str, Any] = {
        "sample_size": 128 if family in (Family.SDXL, Family.SDXL_REFINER) else 64,
        "in_channels": conv_in[1],
        "out_channels": shape["out.2.weight"][0] if "out.2.weight" in shape else conv_in[1],
        "down_block_types": ["CrossAttnDownBlock2D" if a else "DownBlock2D" for a in attention],
        "block_out_channels": channels,
        "layers_per_block": layers[0] if len(set(layers)) == 1 else layers,
        "transformer_layers_per_block": depth,
        "cross_attention_dim": shape[attention_key][1],
        "attention_head_dim": heads[0] if len(set(heads)) == 1 else heads,
        "use_linear_projection": len(shape[proj_in]) == 2,
        "mid_block_type": "UNetMidBlock2DCrossAttn" if mid_depth else None,
        "upcast_attention": family is Family.SD2,
    }
    if "out.2.weight" in shape:
        config.update(_up_blocks(shape, layers, depth))
    if "label_emb.0.0.weight" in shape:
        config.update(_label_embedding(shape["label_emb.0.0.weight"][1], family, pooled_dim))
    return config


def _up_blocks(
    shape: Mapping[str, tuple[int, ...]], layers: list[int], depth: list[int]
) -> dict[str, Any]:
    index = 0
    types: list[str] = []
    per_layer: list[list[int]] = []
    for down_layers in reversed(layers):
        level: list[int] = []
        for _ in range(down_layers + 1):
            has_attention = f"output_blocks.{index}.1.proj_in.weight" in shape
            level.append(_depth(shape, f"output_blocks.{index}.1") if has_attention else 0)
            index += 1
        types.append("CrossAttnUpBlock2D" if any(level) else "UpBlock2D")
        per_layer.append([d or 1 for d in level])
    out: dict[str, Any] = {"up_block_types": types}
    expected = [[d] * (n + 1) for d, n in zip(reversed(depth), reversed(layers), strict=True)]
    attention_levels = [t.startswith("CrossAttn") for t in types]
    if any(
        has and got != want
        for has, got, want in zip(attention_levels, per_layer, expected, strict=True)
    ):
        out["reverse_transformer_layers_per_block"] = per_layer
    return out


def _label_embedding(adm_in: int, family: Family, pooled_dim: int | None) -> dict[str, Any]:
    if family not in _TIME_IDS or pooled_dim is None:
        raise ValueError(f"a {family.value} UNet with a label embedding is not supported")
    time_ids = _TIME_IDS[family]
    time_dim, rest = divmod(adm_in - pooled_dim, time_ids)
    if rest or time_dim <= 0:
        raise ValueError(
            f"label embedding input {adm_in} does not fit a pooled width of {pooled_dim} plus "
            f"{time_ids} time ids"
        )
    return {
        "addition_embed_type": "text_time",
        "addition_time_embed_dim": time_dim,
        "projection_class_embeddings_input_dim": adm_in,
    }


def infer_controlnet_config(
    state_dict: Mapping[str, torch.Tensor], prefix: str = CONTROLNET_PREFIX
) -> tuple[Family, dict[str, Any]]:
    """The family and diffusers ControlNetModel config of an original-layout ControlNet under
    `prefix`. SDXL ControlNets carry the size embedding (`label_emb`); among the others a
    1024-wide cross attention means SD2, anything else SD1."""
    label = f"{prefix}label_emb.0.0.weight"
    family = Family.SDXL if label in state_dict else Family.SD1
    adm_in = state_dict[label].shape[1] if label in state_dict else None
    cross = next((v.shape[1] for k, v in state_dict.items() if k.endswith(".attn2.to_k.weight")), 0)
    if family is Family.SD1 and cross == 1024:
        family = Family.SD2
    unet = infer_unet_config(state_dict, prefix, family=family, pooled_dim=_sdxl_pooled(adm_in))
    hint = _indices(state_dict, re.escape(prefix) + r"input_hint_block\.(\d+)\.weight")
    hint_channels = [state_dict[f"{prefix}input_hint_block.{i}.weight"].shape[0] for i in hint]
    # conv_in, then per stage a conv keeping the width and a strided conv widening it, conv_out.
    embedding = [hint_channels[0], *hint_channels[2:-1:2]]
    config: dict[str, Any] = {
        key: unet[key]
        for key in (
            "in_channels",
            "down_block_types",
            "block_out_channels",
            "layers_per_block",
            "transformer_layers_per_block",
            "cross_attention_dim",
            "attention_head_dim",
            "use_linear_projection",
            "upcast_attention",
            "addition_embed_type",
            "addition_time_embed_dim",
            "projection_class_embeddings_input_dim",
        )
        if key in unet
    }
    config["conditioning_channels"] = state_dict[f"{prefix}input_hint_block.0.weight"].shape[1]
    config["conditioning_embedding_out_channels"] = embedding
    return family, config


def _sdxl_pooled(adm_in: int | None) -> int | None:
    """SDXL ControlNets have no text encoder to read the pooled width from: real ones embed
    6 time ids of 256 channels; smaller (test) ones use the convention of `tiny.py`, time ids
    half as wide as the pooled vector (adm = pooled + 6 * pooled / 4)."""
    if adm_in is None:
        return None
    if adm_in > 6 * 256:
        return adm_in - 6 * 256
    return adm_in * 2 // 5


# --- VAE -----------------------------------------------------------------------------------------


def infer_vae_config(state_dict: Mapping[str, torch.Tensor], prefix: str) -> dict[str, Any]:
    """An AutoencoderKL config from the shapes of an original-layout VAE under `prefix`."""
    levels = _indices(state_dict, re.escape(prefix) + r"encoder\.down\.(\d+)\.")
    channels = [
        state_dict[f"{prefix}encoder.down.{level}.block.0.conv1.weight"].shape[0]
        for level in levels
    ]
    layers = _indices(state_dict, re.escape(prefix) + r"encoder\.down\.0\.block\.(\d+)\.")
    return {
        "in_channels": state_dict[f"{prefix}encoder.conv_in.weight"].shape[1],
        "out_channels": state_dict[f"{prefix}decoder.conv_out.weight"].shape[0],
        "down_block_types": ["DownEncoderBlock2D"] * len(channels),
        "up_block_types": ["UpDecoderBlock2D"] * len(channels),
        "block_out_channels": channels,
        "layers_per_block": len(layers),
        "latent_channels": state_dict[f"{prefix}decoder.conv_in.weight"].shape[1],
        "sample_size": 512,
        "scaling_factor": VAE_SCALING_FACTORS[Family.SD1],
    }


def infer_diffusers_vae_config(state_dict: Mapping[str, torch.Tensor]) -> dict[str, Any]:
    """An AutoencoderKL config from the shapes of a VAE already in diffusers' layout."""
    levels = _indices(state_dict, r"encoder\.down_blocks\.(\d+)\.")
    channels = [
        state_dict[f"encoder.down_blocks.{level}.resnets.0.conv1.weight"].shape[0]
        for level in levels
    ]
    layers = _indices(state_dict, r"encoder\.down_blocks\.0\.resnets\.(\d+)\.")
    return {
        "in_channels": state_dict["encoder.conv_in.weight"].shape[1],
        "out_channels": state_dict["decoder.conv_out.weight"].shape[0],
        "down_block_types": ["DownEncoderBlock2D"] * len(channels),
        "up_block_types": ["UpDecoderBlock2D"] * len(channels),
        "block_out_channels": channels,
        "layers_per_block": len(layers),
        "latent_channels": state_dict["decoder.conv_in.weight"].shape[1],
        "sample_size": 512,
        "scaling_factor": VAE_SCALING_FACTORS[Family.SD1],
    }


# --- text encoders -------------------------------------------------------------------------------


def clip_heads(width: int) -> int:
    """Attention heads of a CLIP text tower: real towers use heads of 64 channels (CLIP-L 12,
    OpenCLIP-H 16, bigG 20); narrower test towers use heads of 16 channels."""
    if width % 64 == 0:
        return width // 64
    return width // 16 if width % 16 == 0 else 1


def infer_text_config(
    state_dict: Mapping[str, torch.Tensor], tower: TextTower, *, projection: bool
) -> dict[str, Any]:
    """A transformers CLIPTextConfig dict from one text tower's shapes."""
    p = tower.prefix
    if tower.openclip:
        vocab, width = state_dict[f"{p}token_embedding.weight"].shape
        positions = state_dict[f"{p}positional_embedding"].shape[0]
        layer_pattern = re.escape(p) + r"transformer\.resblocks\.(\d+)\."
        intermediate = state_dict[f"{p}transformer.resblocks.0.mlp.c_fc.weight"].shape[0]
        activation = "gelu"
        projection_key = f"{p}text_projection"
    else:
        base = (
            p
            if f"{p}text_model.embeddings.token_embedding.weight" not in state_dict
            else (f"{p}text_model.")
        )
        vocab, width = state_dict[f"{base}embeddings.token_embedding.weight"].shape
        positions = state_dict[f"{base}embeddings.position_embedding.weight"].shape[0]
        layer_pattern = re.escape(base) + r"encoder\.layers\.(\d+)\."
        intermediate = state_dict[f"{base}encoder.layers.0.mlp.fc1.weight"].shape[0]
        activation = "quick_gelu"
        projection_key = f"{p}text_projection.weight"
    config: dict[str, Any] = {
        "vocab_size": int(vocab),
        "hidden_size": int(width),
        "intermediate_size": int(intermediate),
        "num_hidden_layers": len(_indices(state_dict, layer_pattern)),
        "num_attention_heads": clip_heads(int(width)),
        "max_position_embeddings": int(positions),
        "hidden_act": activation,
        "layer_norm_eps": 1e-5,
        "bos_token_id": 49406,
        "eos_token_id": 49407,
        "pad_token_id": 1,
    }
    if projection:
        matrix = state_dict[projection_key]
        # OpenCLIP stores [width, projection]; transformers' linear weight is [projection, width].
        config["projection_dim"] = int(matrix.shape[1] if tower.openclip else matrix.shape[0])
    return config
