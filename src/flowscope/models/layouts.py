"""Key names of Stable Diffusion weights: the original single-file layout (LDM / SGM, what
civitai `.safetensors` files hold) ⇄ the diffusers / transformers module layout, both ways."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, TypeAlias

import torch

StateDict: TypeAlias = dict[str, torch.Tensor]

UNET_PREFIX = "model.diffusion_model."
VAE_PREFIX = "first_stage_model."
CONTROLNET_PREFIX = "control_model."


@dataclass(frozen=True)
class TextTower:
    """Where one text encoder lives in a single-file checkpoint, and in which layout."""

    name: str  # "clip_l" | "clip_h" | "clip_g"
    prefix: str
    openclip: bool  # OpenCLIP layout (`transformer.resblocks.N...`); else transformers' CLIP layout


# Per family (the values of `families.Family`), the text towers in conditioning order.
TEXT_TOWERS: dict[str, tuple[TextTower, ...]] = {
    "sd1": (TextTower("clip_l", "cond_stage_model.transformer.", openclip=False),),
    "sd2": (TextTower("clip_h", "cond_stage_model.model.", openclip=True),),
    "sdxl": (
        TextTower("clip_l", "conditioner.embedders.0.transformer.", openclip=False),
        TextTower("clip_g", "conditioner.embedders.1.model.", openclip=True),
    ),
    "sdxl_refiner": (TextTower("clip_g", "conditioner.embedders.0.model.", openclip=True),),
}


# --- UNet ----------------------------------------------------------------------------------------

_RESNET_PARTS = (
    ("in_layers.0", "norm1"),
    ("in_layers.2", "conv1"),
    ("emb_layers.1", "time_emb_proj"),
    ("out_layers.0", "norm2"),
    ("out_layers.3", "conv2"),
)
_TRANSFORMER_PARTS = (
    "norm1",
    "attn1",
    "attn1.to_q",
    "attn1.to_k",
    "attn1.to_v",
    "attn1.to_out.0",
    "norm2",
    "attn2",
    "attn2.to_q",
    "attn2.to_k",
    "attn2.to_v",
    "attn2.to_out.0",
    "norm3",
    "ff.net.0.proj",
    "ff.net.2",
)


def _per_block(value: Any, count: int) -> list[int]:
    if isinstance(value, int):
        return [value] * count
    return [int(v) for v in value]


@dataclass(frozen=True)
class _UnetShape:
    channels: list[int]
    down_layers: list[int]
    down_attention: list[bool]
    down_depth: list[int]
    up_layers: list[int]  # resnets per up block (layers + 1)
    up_attention: list[bool]
    up_depth: list[list[int]]  # per up block, per layer
    mid: str | None
    label_embedding: str | None  # "add_embedding" | "class_embedding" | None

    @classmethod
    def of(cls, config: Mapping[str, Any]) -> _UnetShape:
        down_types = list(config.get("down_block_types") or _DEFAULT_DOWN)
        count = len(down_types)
        up_types = list(config.get("up_block_types") or _DEFAULT_UP)
        channels = [int(c) for c in config.get("block_out_channels") or (320, 640, 1280, 1280)]
        layers = _per_block(config.get("layers_per_block", 2), count)
        depth = _per_block(config.get("transformer_layers_per_block", 1), count)
        reverse = config.get("reverse_transformer_layers_per_block")
        up_layers = [n + 1 for n in reversed(layers)]
        if reverse is None:
            up_depth = [[d] * n for d, n in zip(reversed(depth), up_layers, strict=True)]
        else:
            up_depth = [_per_block(d, n) for d, n in zip(reverse, up_layers, strict=True)]
        label = None
        if config.get("addition_embed_type") == "text_time":
            label = "add_embedding"
        elif config.get("class_embed_type") in ("projection", "timestep"):
            label = "class_embedding"
        return cls(
            channels=channels,
            down_layers=layers,
            down_attention=[t.startswith("CrossAttn") for t in down_types],
            down_depth=depth,
            up_layers=up_layers,
            up_attention=[t.startswith("CrossAttn") for t in up_types],
            up_depth=up_depth,
            mid=config.get("mid_block_type", "UNetMidBlock2DCrossAttn"),
            label_embedding=label,
        )


_DEFAULT_DOWN = ("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",)
_DEFAULT_UP = ("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3


def _add_resnet(pairs: dict[str, str], original: str, diffusers: str, *, shortcut: bool) -> None:
    pairs[original] = diffusers
    for old, new in _RESNET_PARTS:
        pairs[f"{original}.{old}"] = f"{diffusers}.{new}"
    if shortcut:
        pairs[f"{original}.skip_connection"] = f"{diffusers}.conv_shortcut"


def _add_attention(pairs: dict[str, str], original: str, diffusers: str, depth: int) -> None:
    pairs[original] = diffusers
    for part in ("norm", "proj_in", "proj_out"):
        pairs[f"{original}.{part}"] = f"{diffusers}.{part}"
    for block in range(depth):
        name = f"transformer_blocks.{block}"
        pairs[f"{original}.{name}"] = f"{diffusers}.{name}"
        for part in _TRANSFORMER_PARTS:
            pairs[f"{original}.{name}.{part}"] = f"{diffusers}.{name}.{part}"


def _encoder_half(pairs: dict[str, str], shape: _UnetShape) -> None:
    """time embedding, label embedding, conv_in, down blocks and the middle block: the part a
    ControlNet shares with its UNet."""
    pairs["time_embed.0"] = "time_embedding.linear_1"
    pairs["time_embed.2"] = "time_embedding.linear_2"
    if shape.label_embedding is not None:
        pairs["label_emb.0.0"] = f"{shape.label_embedding}.linear_1"
        pairs["label_emb.0.2"] = f"{shape.label_embedding}.linear_2"
    pairs["input_blocks.0.0"] = "conv_in"
    index = 1
    in_channels = shape.channels[0]
    last = len(shape.channels) - 1
    for level, out_channels in enumerate(shape.channels):
        for layer in range(shape.down_layers[level]):
            diffusers = f"down_blocks.{level}"
            _add_resnet(
                pairs,
                f"input_blocks.{index}.0",
                f"{diffusers}.resnets.{layer}",
                shortcut=in_channels != out_channels,
            )
            if shape.down_attention[level]:
                _add_attention(
                    pairs,
                    f"input_blocks.{index}.1",
                    f"{diffusers}.attentions.{layer}",
                    shape.down_depth[level],
                )
            in_channels = out_channels
            index += 1
        if level < last:
            pairs[f"input_blocks.{index}.0"] = f"down_blocks.{level}.downsamplers.0"
            pairs[f"input_blocks.{index}.0.op"] = f"down_blocks.{level}.downsamplers.0.conv"
            index += 1
    if shape.mid == "UNetMidBlock2DCrossAttn":
        _add_resnet(pairs, "middle_block.0", "mid_block.resnets.0", shortcut=False)
        _add_attention(pairs, "middle_block.1", "mid_block.attentions.0", shape.down_depth[-1])
        _add_resnet(pairs, "middle_block.2", "mid_block.resnets.1", shortcut=False)
    elif shape.mid == "UNetMidBlock2D":
        _add_resnet(pairs, "middle_block.0", "mid_block.resnets.0", shortcut=False)
        _add_resnet(pairs, "middle_block.1", "mid_block.resnets.1", shortcut=False)


def input_block_count(unet_config: Mapping[str, Any]) -> int:
    """How many `input_blocks.N` the original layout has (= a ControlNet's zero convs)."""
    shape = _UnetShape.of(unet_config)
    return 1 + sum(shape.down_layers) + len(shape.channels) - 1


def unet_module_map(unet_config: Mapping[str, Any]) -> dict[str, str]:
    """Every original-layout UNet module path (no `model.diffusion_model.` prefix, no `.weight`)
    -> its diffusers `UNet2DConditionModel` module path, for this diffusers UNet config.

    e.g. `input_blocks.1.1.transformer_blocks.0.attn1.to_q` ->
    `down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q`. Containers (`input_blocks.1.0`,
    `input_blocks.1.1`, `...transformer_blocks.0`) are included as well as the layers."""
    shape = _UnetShape.of(unet_config)
    pairs: dict[str, str] = {}
    _encoder_half(pairs, shape)
    index = 0
    last = len(shape.channels) - 1
    for level in range(last + 1):
        for layer in range(shape.up_layers[level]):
            # Every up resnet takes a skip connection: its input is wider than its output.
            _add_resnet(
                pairs,
                f"output_blocks.{index}.0",
                f"up_blocks.{level}.resnets.{layer}",
                shortcut=True,
            )
            if shape.up_attention[level]:
                _add_attention(
                    pairs,
                    f"output_blocks.{index}.1",
                    f"up_blocks.{level}.attentions.{layer}",
                    shape.up_depth[level][layer],
                )
            index += 1
        if level < last:
            slot = 2 if shape.up_attention[level] else 1
            upsampler = f"output_blocks.{index - 1}.{slot}"
            pairs[upsampler] = f"up_blocks.{level}.upsamplers.0"
            pairs[f"{upsampler}.conv"] = f"up_blocks.{level}.upsamplers.0.conv"
    pairs["out.0"] = "conv_norm_out"
    pairs["out.2"] = "conv_out"
    return pairs


# --- renaming by module maps --------------------------------------------------------------------


class LayoutError(ValueError):
    """Weights whose names do not fit the expected layout (the message lists a few)."""


def _rename(
    state_dict: Mapping[str, torch.Tensor],
    modules: Mapping[str, str],
    *,
    source_prefix: str,
    target_prefix: str,
    strict: bool,
) -> StateDict:
    out: StateDict = {}
    unplaced: list[str] = []
    for key, value in state_dict.items():
        if not key.startswith(source_prefix):
            continue
        module, _, parameter = key[len(source_prefix) :].rpartition(".")
        target = modules.get(module)
        if target is None:
            unplaced.append(key)
            continue
        out[f"{target_prefix}{target}.{parameter}"] = value
    if strict and unplaced:
        raise LayoutError(_unplaced_message(unplaced))
    return out


def _unplaced_message(keys: list[str]) -> str:
    shown = ", ".join(keys[:5])
    more = f" and {len(keys) - 5} more" if len(keys) > 5 else ""
    return f"weights that fit no module of the expected model: {shown}{more}"


def _inverse(modules: Mapping[str, str]) -> dict[str, str]:
    return {new: old for old, new in modules.items()}


def unet_to_diffusers(
    state_dict: Mapping[str, torch.Tensor],
    unet_config: Mapping[str, Any],
    *,
    prefix: str = UNET_PREFIX,
    strict: bool = True,
) -> StateDict:
    """The UNet weights under `prefix` (original layout) as `UNet2DConditionModel` keys."""
    modules = unet_module_map(unet_config)
    return _rename(state_dict, modules, source_prefix=prefix, target_prefix="", strict=strict)


def unet_to_original(
    state_dict: Mapping[str, torch.Tensor],
    unet_config: Mapping[str, Any],
    *,
    prefix: str = UNET_PREFIX,
) -> StateDict:
    """`UNet2DConditionModel` weights as original-layout keys under `prefix`."""
    modules = _inverse(unet_module_map(unet_config))
    return _rename(state_dict, modules, source_prefix="", target_prefix=prefix, strict=True)


# --- ControlNet ----------------------------------------------------------------------------------


def _controlnet_as_unet(config: Mapping[str, Any]) -> dict[str, Any]:
    unet = dict(config)
    down = list(config.get("down_block_types") or _DEFAULT_DOWN)
    unet["up_block_types"] = [t.replace("Down", "Up") for t in reversed(down)]
    unet.setdefault("mid_block_type", "UNetMidBlock2DCrossAttn")
    return unet


def controlnet_module_map(controlnet_config: Mapping[str, Any]) -> dict[str, str]:
    """Original ControlNet module paths (no `control_model.` prefix) -> diffusers
    `ControlNetModel` module paths: the UNet's encoder half plus `zero_convs.N.0`,
    `middle_block_out.0` and the `input_hint_block` convolutions."""
    unet = _controlnet_as_unet(controlnet_config)
    pairs: dict[str, str] = {}
    _encoder_half(pairs, _UnetShape.of(unet))
    for index in range(input_block_count(unet)):
        pairs[f"zero_convs.{index}.0"] = f"controlnet_down_blocks.{index}"
    pairs["middle_block_out.0"] = "controlnet_mid_block"
    hint = list(controlnet_config.get("conditioning_embedding_out_channels") or (16, 32, 96, 256))
    # The hint block is one Sequential of conv, SiLU, conv, SiLU, ...: convs at even indices.
    pairs["input_hint_block.0"] = "controlnet_cond_embedding.conv_in"
    blocks = 2 * (len(hint) - 1)
    for block in range(blocks):
        pairs[f"input_hint_block.{2 * (block + 1)}"] = f"controlnet_cond_embedding.blocks.{block}"
    pairs[f"input_hint_block.{2 * (blocks + 1)}"] = "controlnet_cond_embedding.conv_out"
    return pairs


def controlnet_to_diffusers(
    state_dict: Mapping[str, torch.Tensor],
    controlnet_config: Mapping[str, Any],
    *,
    prefix: str = CONTROLNET_PREFIX,
    strict: bool = True,
) -> StateDict:
    """ControlNet weights under `prefix` (original layout) as `ControlNetModel` keys."""
    modules = controlnet_module_map(controlnet_config)
    return _rename(state_dict, modules, source_prefix=prefix, target_prefix="", strict=strict)


def controlnet_to_original(
    state_dict: Mapping[str, torch.Tensor],
    controlnet_config: Mapping[str, Any],
    *,
    prefix: str = CONTROLNET_PREFIX,
) -> StateDict:
    """`ControlNetModel` weights as original-layout keys under `prefix`."""
    modules = _inverse(controlnet_module_map(controlnet_config))
    return _rename(state_dict, modules, source_prefix="", target_prefix=prefix, strict=True)


# --- VAE -----------------------------------------------------------------------------------------

_VAE_RESNET_PARTS = (("norm1", "norm1"), ("conv1", "conv1"), ("norm2", "norm2"), ("conv2", "conv2"))
_VAE_ATTENTION_PARTS = (
    ("norm", "group_norm"),
    ("q", "to_q"),
    ("k", "to_k"),
    ("v", "to_v"),
    ("proj_out", "to_out.0"),
)
# Attention projections: 1×1 convolutions in the original VAE, linear layers in diffusers.
_VAE_PROJECTIONS = frozenset({"to_q", "to_k", "to_v", "to_out.0"})


def _vae_resnet(pairs: dict[str, str], original: str, diffusers: str, *, shortcut: bool) -> None:
    for old, new in _VAE_RESNET_PARTS:
        pairs[f"{original}.{old}"] = f"{diffusers}.{new}"
    if shortcut:
        pairs[f"{original}.nin_shortcut"] = f"{diffusers}.conv_shortcut"


def _vae_mid(pairs: dict[str, str], side: str) -> None:
    _vae_resnet(pairs, f"{side}.mid.block_1", f"{side}.mid_block.resnets.0", shortcut=False)
    _vae_resnet(pairs, f"{side}.mid.block_2", f"{side}.mid_block.resnets.1", shortcut=False)
    for old, new in _VAE_ATTENTION_PARTS:
        pairs[f"{side}.mid.attn_1.{old}"] = f"{side}.mid_block.attentions.0.{new}"


def vae_module_map(vae_config: Mapping[str, Any]) -> dict[str, str]:
    """Original VAE module paths (no `first_stage_model.` prefix) -> `AutoencoderKL` paths."""
    channels = [int(c) for c in vae_config.get("block_out_channels") or (64,)]
    layers = int(vae_config.get("layers_per_block", 1))
    last = len(channels) - 1
    pairs: dict[str, str] = {}
    for side in ("encoder", "decoder"):
        pairs[f"{side}.conv_in"] = f"{side}.conv_in"
        pairs[f"{side}.conv_out"] = f"{side}.conv_out"
        pairs[f"{side}.norm_out"] = f"{side}.conv_norm_out"
        _vae_mid(pairs, side)
    in_channels = channels[0]
    for level, out_channels in enumerate(channels):
        for layer in range(layers):
            _vae_resnet(
                pairs,
                f"encoder.down.{level}.block.{layer}",
                f"encoder.down_blocks.{level}.resnets.{layer}",
                shortcut=in_channels != out_channels,
            )
            in_channels = out_channels
        if level < last:
            pairs[f"encoder.down.{level}.downsample.conv"] = (
                f"encoder.down_blocks.{level}.downsamplers.0.conv"
            )
    reversed_channels = list(reversed(channels))
    in_channels = reversed_channels[0]
    for index, out_channels in enumerate(reversed_channels):
        level = last - index  # the original numbers decoder levels from the highest resolution
        for layer in range(layers + 1):
            _vae_resnet(
                pairs,
                f"decoder.up.{level}.block.{layer}",
                f"decoder.up_blocks.{index}.resnets.{layer}",
                shortcut=in_channels != out_channels,
            )
            in_channels = out_channels
        if index < last:
            pairs[f"decoder.up.{level}.upsample.conv"] = (
                f"decoder.up_blocks.{index}.upsamplers.0.conv"
            )
    pairs["quant_conv"] = "quant_conv"
    pairs["post_quant_conv"] = "post_quant_conv"
    return pairs


def vae_to_diffusers(
    state_dict: Mapping[str, torch.Tensor],
    vae_config: Mapping[str, Any],
    *,
    prefix: str = VAE_PREFIX,
    strict: bool = True,
) -> StateDict:
    """VAE weights under `prefix` (original layout) as `AutoencoderKL` keys (attention 1×1
    convolutions become linear weights)."""
    modules = vae_module_map(vae_config)
    renamed = _rename(state_dict, modules, source_prefix=prefix, target_prefix="", strict=strict)
    for key, value in renamed.items():
        module = key.rpartition(".")[0]
        if _is_vae_projection(module) and value.ndim > 2:
            renamed[key] = value.reshape(value.shape[0], value.shape[1])
    return renamed


def vae_to_original(
    state_dict: Mapping[str, torch.Tensor],
    vae_config: Mapping[str, Any],
    *,
    prefix: str = VAE_PREFIX,
) -> StateDict:
    """`AutoencoderKL` weights as original-layout keys under `prefix` (1×1 conv attention)."""
    modules = _inverse(vae_module_map(vae_config))
    out: StateDict = {}
    for key, value in state_dict.items():
        module = key.rpartition(".")[0]
        if _is_vae_projection(module) and value.ndim == 2:
            value = value.reshape(*value.shape, 1, 1)
        out[key] = value
    return _rename(out, modules, source_prefix="", target_prefix=prefix, strict=True)


def _is_vae_projection(module: str) -> bool:
    return ".mid_block.attentions.0." in module and module.split("attentions.0.")[1] in (
        _VAE_PROJECTIONS
    )


# --- text encoders -------------------------------------------------------------------------------

# Kept by the original files but not weights of a transformers CLIP model.
_TEXT_NON_WEIGHTS = ("position_ids", "logit_scale", "attn_mask")


def clip_to_transformers(state_dict: Mapping[str, torch.Tensor], prefix: str) -> StateDict:
    """A CLIP text tower stored in transformers' layout under `prefix` (SD1, SDXL's clip_l)
    as `CLIPTextModel` keys. Old files without the `text_model.` level are accepted."""
    out: StateDict = {}
    for key, value in state_dict.items():
        if not key.startswith(prefix):
            continue
        name = key[len(prefix) :]
        if name.endswith(_TEXT_NON_WEIGHTS):
            continue
        if not name.startswith(("text_model.", "text_projection.")):
            name = f"text_model.{name}"
        out[name] = value
    return out


def canonical_text_keys(state_dict: Mapping[str, torch.Tensor]) -> StateDict:
    """transformers text weights under the names of its checkpoint files (`text_model.…`):
    transformers 5's `CLIPTextModel` has no `text_model` level; `...WithProjection` has."""
    return {
        key if key.startswith(("text_model.", "text_projection.")) else f"text_model.{key}": value
        for key, value in state_dict.items()
    }


def fit_text_keys(state_dict: Mapping[str, torch.Tensor], model_keys: Iterable[str]) -> StateDict:
    """Canonical text weight names (`text_model.…`) renamed to fit a model whose own parameter
    names are `model_keys` (with or without the `text_model.` level)."""
    canonical = canonical_text_keys(state_dict)
    if any(key.startswith("text_model.") for key in model_keys):
        return canonical
    return {key.removeprefix("text_model."): value for key, value in canonical.items()}


def clip_to_original(state_dict: Mapping[str, torch.Tensor], prefix: str) -> StateDict:
    """`CLIPTextModel` weights under `prefix` (the original files keep transformers' names)."""
    return {
        f"{prefix}{key}": value
        for key, value in canonical_text_keys(state_dict).items()
        if not key.endswith(_TEXT_NON_WEIGHTS)
    }


_OPENCLIP_LAYER_PARTS = (
    ("ln_1", "layer_norm1"),
    ("ln_2", "layer_norm2"),
    ("attn.out_proj", "self_attn.out_proj"),
    ("mlp.c_fc", "mlp.fc1"),
    ("mlp.c_proj", "mlp.fc2"),
)
_OPENCLIP_QKV = ("q_proj", "k_proj", "v_proj")


def openclip_to_transformers(
    state_dict: Mapping[str, torch.Tensor], prefix: str, *, with_projection: bool
) -> StateDict:
    """An OpenCLIP text tower under `prefix` (SD2's clip_h, SDXL's clip_g) as transformers
    `CLIPTextModel` / `CLIPTextModelWithProjection` keys: the fused `in_proj` is split into
    q/k/v and `text_projection` (used as `x @ P`) is transposed into a linear weight."""
    out: StateDict = {}
    layer_marker = "transformer.resblocks."
    for key, value in state_dict.items():
        if not key.startswith(prefix):
            continue
        name = key[len(prefix) :]
        if name == "token_embedding.weight":
            out["text_model.embeddings.token_embedding.weight"] = value
        elif name == "positional_embedding":
            out["text_model.embeddings.position_embedding.weight"] = value
        elif name.startswith("ln_final."):
            out[f"text_model.final_layer_norm.{name.rpartition('.')[2]}"] = value
        elif name == "text_projection":
            if with_projection:
                out["text_projection.weight"] = value.T.contiguous()
        elif name.startswith(layer_marker):
            index, _, rest = name[len(layer_marker) :].partition(".")
            base = f"text_model.encoder.layers.{index}"
            if rest in ("attn.in_proj_weight", "attn.in_proj_bias"):
                kind = "weight" if rest.endswith("weight") else "bias"
                for part, chunk in zip(_OPENCLIP_QKV, value.chunk(3, dim=0), strict=True):
                    out[f"{base}.self_attn.{part}.{kind}"] = chunk.contiguous()
                continue
            module, _, parameter = rest.rpartition(".")
            for old, new in _OPENCLIP_LAYER_PARTS:
                if module == old:
                    out[f"{base}.{new}.{parameter}"] = value
                    break
    return out


def openclip_to_original(state_dict: Mapping[str, torch.Tensor], prefix: str) -> StateDict:
    """transformers CLIP text weights as an OpenCLIP tower under `prefix` (fused q/k/v,
    `text_projection` as a [width, projection] matrix)."""
    out: StateDict = {}
    layer_marker = "text_model.encoder.layers."
    fused: dict[str, dict[str, torch.Tensor]] = {}
    for key, value in canonical_text_keys(state_dict).items():
        if key == "text_model.embeddings.token_embedding.weight":
            out[f"{prefix}token_embedding.weight"] = value
        elif key == "text_model.embeddings.position_embedding.weight":
            out[f"{prefix}positional_embedding"] = value
        elif key.startswith("text_model.final_layer_norm."):
            out[f"{prefix}ln_final.{key.rpartition('.')[2]}"] = value
        elif key == "text_projection.weight":
            out[f"{prefix}text_projection"] = value.T.contiguous()
        elif key.startswith(layer_marker):
            index, _, rest = key[len(layer_marker) :].partition(".")
            base = f"{prefix}transformer.resblocks.{index}"
            module, _, parameter = rest.rpartition(".")
            attention = module.removeprefix("self_attn.")
            if attention in _OPENCLIP_QKV:
                fused.setdefault(f"{base}.attn.in_proj_{parameter}", {})[attention] = value
                continue
            for old, new in _OPENCLIP_LAYER_PARTS:
                if module == new:
                    out[f"{base}.{old}.{parameter}"] = value
                    break
            else:
                raise LayoutError(_unplaced_message([key]))
        elif not key.endswith(_TEXT_NON_WEIGHTS):
            raise LayoutError(_unplaced_message([key]))
    for name, parts in fused.items():
        out[name] = torch.cat([parts[p] for p in _OPENCLIP_QKV], dim=0)
    return out


def text_to_transformers(
    state_dict: Mapping[str, torch.Tensor], tower: TextTower, *, with_projection: bool
) -> StateDict:
    """One text tower of a checkpoint as transformers keys, whichever its layout."""
    if tower.openclip:
        return openclip_to_transformers(state_dict, tower.prefix, with_projection=with_projection)
    return clip_to_transformers(state_dict, tower.prefix)


def text_to_original(state_dict: Mapping[str, torch.Tensor], tower: TextTower) -> StateDict:
    """transformers text weights as one tower of an original checkpoint."""
    if tower.openclip:
        return openclip_to_original(state_dict, tower.prefix)
    return clip_to_original(state_dict, tower.prefix)


def has_prefix(keys: Iterable[str], prefix: str) -> bool:
    return any(key.startswith(prefix) for key in keys)
