"""Tiny random-weight Stable Diffusion models built in code (no download): a single-file
checkpoint in the original key layout, LoRAs in three layouts and a ControlNet, for tests and
the demo."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from flowscope.models.checkpoint import import_diffusers
from flowscope.models.families import VAE_SCALING_FACTORS, Family
from flowscope.models.layouts import (
    TEXT_TOWERS,
    StateDict,
    controlnet_to_original,
    text_to_original,
    unet_module_map,
    unet_to_original,
    vae_to_original,
)

if TYPE_CHECKING:
    from diffusers import AutoencoderKL, ControlNetModel, UNet2DConditionModel

# --- configs: small widths, but the real latent space, vocabulary and context length ------------

TINY_CLIP_L: dict[str, Any] = {
    "vocab_size": 49408,
    "hidden_size": 32,
    "intermediate_size": 64,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "max_position_embeddings": 77,
    "hidden_act": "quick_gelu",
    "layer_norm_eps": 1e-5,
    "bos_token_id": 49406,
    "eos_token_id": 49407,
    "pad_token_id": 1,
}
TINY_CLIP_G: dict[str, Any] = {**TINY_CLIP_L, "hidden_act": "gelu", "projection_dim": 32}

# Four levels: the VAE downsamples exactly 8× (64×64 pixels ⇄ 8×8 latents) into 4 channels.
TINY_VAE: dict[str, Any] = {
    "in_channels": 3,
    "out_channels": 3,
    "down_block_types": ["DownEncoderBlock2D"] * 4,
    "up_block_types": ["UpDecoderBlock2D"] * 4,
    "block_out_channels": [32, 32, 64, 64],
    "layers_per_block": 1,
    "latent_channels": 4,
    "sample_size": 64,
}

# SD1's shape in miniature: attention at the high-resolution level, none at the lowest.
TINY_SD1_UNET: dict[str, Any] = {
    "sample_size": 8,
    "in_channels": 4,
    "out_channels": 4,
    "down_block_types": ["CrossAttnDownBlock2D", "DownBlock2D"],
    "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D"],
    "block_out_channels": [32, 64],
    "layers_per_block": 2,
    "transformer_layers_per_block": [1, 1],
    "cross_attention_dim": 32,
    "attention_head_dim": 8,
    "use_linear_projection": False,
}
# SDXL's shape in miniature: no attention at the highest resolution, deeper transformers below,
# linear projections and the size conditioning ("text_time": pooled clip_g + 6 time ids).
TINY_SDXL_UNET: dict[str, Any] = {
    "sample_size": 8,
    "in_channels": 4,
    "out_channels": 4,
    "down_block_types": ["DownBlock2D", "CrossAttnDownBlock2D"],
    "up_block_types": ["CrossAttnUpBlock2D", "UpBlock2D"],
    "block_out_channels": [32, 64],
    "layers_per_block": 2,
    "transformer_layers_per_block": [1, 2],
    "cross_attention_dim": 64,  # clip_l (32) and clip_g (32) side by side
    "attention_head_dim": [8, 1],
    "use_linear_projection": True,
    "addition_embed_type": "text_time",
    # A quarter of the pooled width, the rule `families` assumes for small SDXL ControlNets.
    "addition_time_embed_dim": 8,
    "projection_class_embeddings_input_dim": 32 + 6 * 8,
}
TINY_UNETS = {Family.SD1: TINY_SD1_UNET, Family.SDXL: TINY_SDXL_UNET}
TINY_TEXT = {
    Family.SD1: {"clip_l": TINY_CLIP_L},
    Family.SDXL: {"clip_l": TINY_CLIP_L, "clip_g": TINY_CLIP_G},
}
TINY_CONTROLNET_EMBEDDING = (8, 16, 16, 32)  # hint → 3 stride-2 stages → the UNet's width

# --- the real families' shapes: for detection tests at real sizes (built on the meta device,
# nothing allocated) and for full-size random-weight benchmark checkpoints ------------------------

_CLIP_L: dict[str, Any] = {
    **TINY_CLIP_L,
    "hidden_size": 768,
    "intermediate_size": 3072,
    "num_hidden_layers": 12,
    "num_attention_heads": 12,
}
_OPENCLIP_H: dict[str, Any] = {
    **_CLIP_L,
    "hidden_size": 1024,
    "intermediate_size": 4096,
    "num_hidden_layers": 24,
    "num_attention_heads": 16,
    "hidden_act": "gelu",
}
_OPENCLIP_BIG_G: dict[str, Any] = {
    **_CLIP_L,
    "hidden_size": 1280,
    "intermediate_size": 5120,
    "num_hidden_layers": 32,
    "num_attention_heads": 20,
    "hidden_act": "gelu",
    "projection_dim": 1280,
}
_SD_VAE: dict[str, Any] = {
    **TINY_VAE,
    "block_out_channels": [128, 256, 512, 512],
    "layers_per_block": 2,
    "sample_size": 512,
}
_SD15_UNET: dict[str, Any] = {
    "sample_size": 64,
    "in_channels": 4,
    "out_channels": 4,
    "down_block_types": ["CrossAttnDownBlock2D"] * 3 + ["DownBlock2D"],
    "up_block_types": ["UpBlock2D"] + ["CrossAttnUpBlock2D"] * 3,
    "block_out_channels": [320, 640, 1280, 1280],
    "layers_per_block": 2,
    "cross_attention_dim": 768,
    "attention_head_dim": 8,
}
_SD21_UNET: dict[str, Any] = {
    **_SD15_UNET,
    "sample_size": 96,
    "cross_attention_dim": 1024,
    "attention_head_dim": [5, 10, 20, 20],
    "use_linear_projection": True,
    "upcast_attention": True,
}
_SDXL_UNET: dict[str, Any] = {
    "sample_size": 128,
    "in_channels": 4,
    "out_channels": 4,
    "down_block_types": ["DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"],
    "up_block_types": ["CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"],
    "block_out_channels": [320, 640, 1280],
    "layers_per_block": 2,
    "transformer_layers_per_block": [1, 2, 10],
    "cross_attention_dim": 2048,
    "attention_head_dim": [5, 10, 20],
    "use_linear_projection": True,
    "addition_embed_type": "text_time",
    "addition_time_embed_dim": 256,
    "projection_class_embeddings_input_dim": 2816,
}
_SDXL_REFINER_UNET: dict[str, Any] = {
    **_SDXL_UNET,
    "down_block_types": ["DownBlock2D"] + ["CrossAttnDownBlock2D"] * 2 + ["DownBlock2D"],
    "up_block_types": ["UpBlock2D"] + ["CrossAttnUpBlock2D"] * 2 + ["UpBlock2D"],
    "block_out_channels": [384, 768, 1536, 1536],
    "transformer_layers_per_block": 4,
    "cross_attention_dim": 1280,
    "attention_head_dim": [6, 12, 24, 24],
    "projection_class_embeddings_input_dim": 2560,
}


@dataclass(frozen=True)
class ModelConfigs:
    unet: dict[str, Any]
    vae: dict[str, Any]
    text: dict[str, dict[str, Any]]  # per encoder name, a CLIPTextConfig dict


REAL_CONFIGS = {
    Family.SD1: ModelConfigs(_SD15_UNET, _SD_VAE, {"clip_l": _CLIP_L}),
    Family.SD2: ModelConfigs(_SD21_UNET, _SD_VAE, {"clip_h": _OPENCLIP_H}),
    Family.SDXL: ModelConfigs(_SDXL_UNET, _SD_VAE, {"clip_l": _CLIP_L, "clip_g": _OPENCLIP_BIG_G}),
    Family.SDXL_REFINER: ModelConfigs(_SDXL_REFINER_UNET, _SD_VAE, {"clip_g": _OPENCLIP_BIG_G}),
}

LORA_RANK = 4
LORA_ALPHA = LORA_RANK / 2
_UNET_LORA_TARGETS = tuple(
    f".{attention}.{part}"
    for attention in ("attn1", "attn2")
    for part in ("to_q", "to_k", "to_v", "to_out.0")
)
_TEXT_LORA_TARGETS = tuple(f".self_attn.{p}" for p in ("q_proj", "k_proj", "v_proj", "out_proj"))
# kohya's text-encoder prefixes; peft's (diffusers' save_lora_weights) component names.
_KOHYA_TEXT = {
    Family.SD1: {"clip_l": "lora_te_"},
    Family.SDXL: {"clip_l": "lora_te1_", "clip_g": "lora_te2_"},
}
_PEFT_TEXT = {
    Family.SD1: {"clip_l": "text_encoder."},
    Family.SDXL: {"clip_l": "text_encoder.", "clip_g": "text_encoder_2."},
}


@dataclass(frozen=True)
class TinyModels:
    checkpoint: Path
    lora_kohya: Path
    lora_kohya_ldm: Path
    lora_peft: Path
    controlnet: Path


@dataclass(frozen=True)
class TinyLora:
    """One low-rank update per targeted module (diffusers / transformers module names)."""

    unet: dict[str, tuple[torch.Tensor, torch.Tensor]]  # module -> (up [out, r], down [r, in])
    text_encoders: dict[str, dict[str, tuple[torch.Tensor, torch.Tensor]]]
    alpha: float = LORA_ALPHA


@contextmanager
def _seeded(seed: int) -> Iterator[None]:
    """Deterministic weights without disturbing the caller's global random state."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


def _tiny_family(family: Family | str) -> Family:
    chosen = Family(family)
    if chosen not in TINY_UNETS:
        raise ValueError(f"no tiny model for {chosen.value}; choose sd1 or sdxl")
    return chosen


def _perturb(module: torch.nn.Module) -> None:
    """Distinct values in the vectors that start constant (norm scales of one, zero biases), so
    that a layout mistake swapping two of them cannot go unnoticed; matrices start random."""
    with torch.no_grad():
        for parameter in module.parameters():
            if parameter.ndim == 1:
                parameter.add_(torch.randn_like(parameter) * 0.02)


def tiny_components(
    family: Family | str = Family.SD1, seed: int = 0
) -> tuple[UNet2DConditionModel, AutoencoderKL, dict[str, torch.nn.Module]]:
    """The diffusers UNet, VAE and transformers text encoders of the tiny model, before saving."""
    chosen = _tiny_family(family)
    configs = ModelConfigs(TINY_UNETS[chosen], TINY_VAE, TINY_TEXT[chosen])
    with _seeded(seed):
        unet, vae, encoders = build_components(chosen, configs)
        for module in (unet, vae, *encoders.values()):
            _perturb(module)
    return unet, vae, encoders


def build_components(
    family: Family, configs: ModelConfigs
) -> tuple[UNet2DConditionModel, AutoencoderKL, dict[str, torch.nn.Module]]:
    """Randomly initialised modules of these configs, on the current default device (under
    `with torch.device("meta"):` nothing is allocated)."""
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    diffusers = import_diffusers()
    unet = diffusers.UNet2DConditionModel(**configs.unet)
    vae = diffusers.AutoencoderKL(**configs.vae, scaling_factor=VAE_SCALING_FACTORS[family])
    encoders: dict[str, torch.nn.Module] = {}
    for name, config in configs.text.items():
        model_class = CLIPTextModelWithProjection if name == "clip_g" else CLIPTextModel
        encoders[name] = model_class(CLIPTextConfig(**config))
    for module in (unet, vae, *encoders.values()):
        module.eval()
    return unet, vae, encoders


def tiny_controlnet(unet: UNet2DConditionModel, seed: int = 0) -> ControlNetModel:
    """A ControlNet started from `unet` (as training starts), with random, non-zero zero-convs
    and hint embedding so that applying it changes the result."""
    with _seeded(seed + 1):
        controlnet: Any = import_diffusers().ControlNetModel.from_unet(
            unet, conditioning_embedding_out_channels=TINY_CONTROLNET_EMBEDDING
        )
        with torch.no_grad():
            zeroed = [*controlnet.controlnet_down_blocks, controlnet.controlnet_mid_block]
            zeroed.append(controlnet.controlnet_cond_embedding.conv_out)
            for layer in zeroed:
                for parameter in layer.parameters():
                    parameter.copy_(torch.randn_like(parameter) * 0.05)
        controlnet.eval()
    made: ControlNetModel = controlnet
    return made


def tiny_lora(
    unet: torch.nn.Module, text_encoders: Mapping[str, torch.nn.Module], seed: int = 0
) -> TinyLora:
    """Random low-rank updates (up and down both non-zero) for every attention projection of the
    UNet and the text encoders."""

    def pairs(module: torch.nn.Module, targets: tuple[str, ...], prefix: str) -> dict[str, Any]:
        found: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
        for name, layer in module.named_modules():
            if isinstance(layer, torch.nn.Linear) and f".{name}".endswith(targets):
                up = torch.randn(layer.out_features, LORA_RANK) * 0.2
                down = torch.randn(LORA_RANK, layer.in_features) * 0.2
                found[name if name.startswith(prefix) else prefix + name] = (up, down)
        return found

    with _seeded(seed + 2):
        return TinyLora(
            unet=pairs(unet, _UNET_LORA_TARGETS, ""),
            # Text modules under their checkpoint names (`text_model.encoder.layers.N...`), as
            # LoRA trainers write them, whatever the transformers version calls them.
            text_encoders={
                n: pairs(m, _TEXT_LORA_TARGETS, "text_model.") for n, m in text_encoders.items()
            },
        )


# --- files ---------------------------------------------------------------------------------------


def checkpoint_state_dict(
    family: Family,
    unet: torch.nn.Module,
    vae: torch.nn.Module,
    text_encoders: Mapping[str, torch.nn.Module],
) -> StateDict:
    """The single-file checkpoint (original layout) of these diffusers / transformers modules."""
    out = unet_to_original(unet.state_dict(), _config(unet))
    out.update(vae_to_original(vae.state_dict(), _config(vae)))
    for tower in TEXT_TOWERS[family]:
        out.update(text_to_original(text_encoders[tower.name].state_dict(), tower))
    return out


def _config(model: Any) -> Mapping[str, Any]:
    config: Mapping[str, Any] = model.config
    return config


def _kohya_state_dict(family: Family, lora: TinyLora, unet_names: Mapping[str, str]) -> StateDict:
    out: StateDict = {}

    def add(name: str, up: torch.Tensor, down: torch.Tensor) -> None:
        out[f"{name}.lora_up.weight"] = up
        out[f"{name}.lora_down.weight"] = down
        out[f"{name}.alpha"] = torch.tensor(lora.alpha)

    for module, (up, down) in lora.unet.items():
        add("lora_unet_" + unet_names[module].replace(".", "_"), up, down)
    for encoder, modules in lora.text_encoders.items():
        prefix = _KOHYA_TEXT[family][encoder]
        for module, (up, down) in modules.items():
            add(prefix + module.replace(".", "_"), up, down)
    return out


def _peft_state_dict(family: Family, lora: TinyLora) -> StateDict:
    """diffusers' `save_lora_weights` layout: no alpha keys (a scale of 1), so the scale
    alpha / rank is folded into `lora_B` — every layout describes the same update."""
    scale = lora.alpha / LORA_RANK
    out: StateDict = {}
    components = [("unet.", lora.unet)] + [
        (_PEFT_TEXT[family][name], modules) for name, modules in lora.text_encoders.items()
    ]
    for prefix, modules in components:
        for module, (up, down) in modules.items():
            out[f"{prefix}{module}.lora_A.weight"] = down
            out[f"{prefix}{module}.lora_B.weight"] = up * scale
    return out


def create_tiny_models(
    directory: Path, family: Family | str = Family.SD1, *, seed: int = 0
) -> TinyModels:
    """Write the tiny model files under `directory` in ComfyUI's folder layout."""
    from safetensors.torch import save_file

    chosen = _tiny_family(family)
    unet, vae, encoders = tiny_components(chosen, seed)
    controlnet = tiny_controlnet(unet, seed)
    lora = tiny_lora(unet, encoders, seed)
    name = f"tiny-{chosen.value}"
    paths = TinyModels(
        checkpoint=directory / "checkpoints" / f"{name}.safetensors",
        lora_kohya=directory / "loras" / f"{name}-lora-kohya.safetensors",
        lora_kohya_ldm=directory / "loras" / f"{name}-lora-kohya-ldm.safetensors",
        lora_peft=directory / "loras" / f"{name}-lora-peft.safetensors",
        controlnet=directory / "controlnet" / f"{name}-controlnet.safetensors",
    )
    ldm_names = {new: old for old, new in unet_module_map(_config(unet)).items()}
    control: Any = controlnet
    files = {
        paths.checkpoint: checkpoint_state_dict(chosen, unet, vae, encoders),
        paths.lora_kohya: _kohya_state_dict(chosen, lora, {m: m for m in lora.unet}),
        paths.lora_kohya_ldm: _kohya_state_dict(chosen, lora, ldm_names),
        paths.lora_peft: _peft_state_dict(chosen, lora),
        paths.controlnet: controlnet_to_original(control.state_dict(), _config(control)),
    }
    for path, tensors in files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        contiguous = {key: value.detach().contiguous() for key, value in tensors.items()}
        save_file(contiguous, path, metadata={"format": "pt"})
    return paths
