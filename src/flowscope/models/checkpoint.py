"""Loading single-file Stable Diffusion checkpoints and standalone VAEs into diffusers /
transformers modules, from configs inferred from the weights (never a model hub)."""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import torch

from flowscope.models.families import (
    VAE_SCALING_FACTORS,
    CheckpointFamily,
    Family,
    detect_checkpoint_family,
    infer_diffusers_vae_config,
    infer_vae_config,
    text_towers,
)
from flowscope.models.files import ModelFileError, read_state_dict
from flowscope.models.layouts import (
    VAE_PREFIX,
    LayoutError,
    StateDict,
    fit_text_keys,
    text_to_transformers,
    unet_to_diffusers,
    vae_to_diffusers,
)

if TYPE_CHECKING:
    from diffusers import AutoencoderKL, UNet2DConditionModel

ModuleT = TypeVar("ModuleT", bound=torch.nn.Module)

# Stable Diffusion's training schedule, used when a checkpoint stores none.
SCALED_LINEAR_START = 0.00085
SCALED_LINEAR_END = 0.012
TRAIN_TIMESTEPS = 1000


@dataclass
class LoadedCheckpoint:
    source: Path
    family: CheckpointFamily
    unet: UNet2DConditionModel
    vae: AutoencoderKL
    # "clip_l": CLIPTextModel, "clip_g": CLIPTextModelWithProjection, "clip_h": CLIPTextModel
    text_encoders: dict[str, torch.nn.Module]
    alphas_cumprod: torch.Tensor  # float64 [1000]


def import_diffusers() -> Any:
    """diffusers, imported when first needed (it takes seconds); it ships no type information."""
    return importlib.import_module("diffusers")


def scaled_linear_alphas_cumprod(
    start: float = SCALED_LINEAR_START,
    end: float = SCALED_LINEAR_END,
    timesteps: int = TRAIN_TIMESTEPS,
) -> torch.Tensor:
    """ᾱ_t of the `scaled_linear` beta schedule (linear in √β), float64."""
    betas = torch.linspace(start**0.5, end**0.5, timesteps, dtype=torch.float64) ** 2
    return torch.cumprod(1.0 - betas, dim=0)


def load_checkpoint(
    path: Path, *, allow_pickle: bool = False, dtype: torch.dtype = torch.float32
) -> LoadedCheckpoint:
    """The UNet, VAE and text encoders of a single-file SD checkpoint (original key layout)."""
    diffusers = import_diffusers()
    path = Path(path)
    state_dict = read_state_dict(path, allow_pickle=allow_pickle)
    family = detect_checkpoint_family(state_dict, source=path)
    unet = _build(
        path,
        "UNet",
        lambda: diffusers.UNet2DConditionModel(**family.unet_config),
        lambda: unet_to_diffusers(state_dict, family.unet_config, strict=False),
        dtype,
    )
    vae = _build(
        path,
        "VAE",
        lambda: diffusers.AutoencoderKL(**family.vae_config),
        lambda: vae_to_diffusers(state_dict, family.vae_config, strict=False),
        dtype,
    )
    return LoadedCheckpoint(
        source=path,
        family=family,
        unet=unet,
        vae=vae,
        text_encoders=_text_encoders(path, state_dict, family, dtype),
        alphas_cumprod=_alphas_cumprod(state_dict),
    )


def _text_encoders(
    path: Path, state_dict: Mapping[str, torch.Tensor], family: CheckpointFamily, dtype: torch.dtype
) -> dict[str, torch.nn.Module]:
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    found = text_towers(state_dict)
    assert found is not None  # detect_checkpoint_family checked it
    encoders: dict[str, torch.nn.Module] = {}
    for tower in found[1]:
        config = CLIPTextConfig(**family.text_configs[tower.name])
        projection = tower.name == "clip_g"
        model_class = CLIPTextModelWithProjection if projection else CLIPTextModel

        def weights(tower: Any = tower, projection: bool = projection) -> StateDict:
            return text_to_transformers(state_dict, tower, with_projection=projection)

        def make(config: Any = config, model_class: Any = model_class) -> torch.nn.Module:
            module: torch.nn.Module = model_class(config)
            return module

        encoders[tower.name] = _build(path, f"text encoder {tower.name}", make, weights, dtype)
    return encoders


def _alphas_cumprod(state_dict: Mapping[str, torch.Tensor]) -> torch.Tensor:
    stored = state_dict.get("alphas_cumprod")
    if stored is not None and stored.shape == (TRAIN_TIMESTEPS,):
        return stored.to(torch.float64)
    return scaled_linear_alphas_cumprod()


def _build(
    path: Path,
    what: str,
    make: Callable[[], ModuleT],
    weights: Callable[[], StateDict],
    dtype: torch.dtype,
) -> ModuleT:
    """Create the module without allocating or initialising weights (meta device), then take the
    file's tensors as its parameters: loading costs no random init and no copy."""
    try:
        converted = weights()
    except LayoutError as error:
        raise ModelFileError(path, f"the {what} weights do not fit: {error}") from error
    with torch.device("meta"):
        module = make()
    if _is_text_model(module):
        converted = fit_text_keys(converted, module.state_dict().keys())
    try:
        module.load_state_dict(converted, strict=True, assign=True)
    except RuntimeError as error:
        raise ModelFileError(
            path, f"the {what} weights do not match the detected model: {_first_line(error)}"
        ) from error
    _materialize_buffers(module)
    if any(p.dtype != dtype for p in module.parameters() if p.is_floating_point()):
        # nn.Module.to itself: diffusers' override warns about fp32 modules these models lack.
        torch.nn.Module.to(module, dtype=dtype)
    module.eval().requires_grad_(False)
    return module


def _is_text_model(module: torch.nn.Module) -> bool:
    return type(module).__name__.startswith("CLIPText")


def _materialize_buffers(module: torch.nn.Module) -> None:
    """Non-persistent buffers are not in any file; recreate the ones these models have."""
    for name, buffer in list(module.named_buffers()):
        if not buffer.is_meta:
            continue
        if name.endswith("position_ids"):
            owner = module.get_submodule(name.rpartition(".")[0]) if "." in name else module
            positions = torch.arange(buffer.shape[-1]).expand((1, -1))
            owner.register_buffer("position_ids", positions, persistent=False)
        else:
            raise RuntimeError(f"cannot recreate the buffer {name} of {type(module).__name__}")


def _first_line(error: BaseException) -> str:
    text = " ".join(str(error).split())
    return text if len(text) <= 400 else text[:400] + " …"


# --- standalone VAEs -----------------------------------------------------------------------------

# Old diffusers files name the VAE attention like this.
_OLD_DIFFUSERS_ATTENTION = {
    "query": "to_q",
    "key": "to_k",
    "value": "to_v",
    "proj_attn": "to_out.0",
}
_OLD_ATTENTION = re.compile(r"(.*\.attentions\.\d+\.)(query|key|value|proj_attn)\.(weight|bias)$")


def load_vae(
    path: Path, *, allow_pickle: bool = False, dtype: torch.dtype = torch.float32
) -> tuple[AutoencoderKL, float]:
    """A standalone VAE file (original keys, optionally under `first_stage_model.`, or diffusers
    keys) and its latent scaling factor. VAE files do not record the factor, and SD1 and SDXL
    VAEs have the same shapes: this answers SD1's 0.18215 unless a whole checkpoint says SDXL."""
    path = Path(path)
    state_dict = read_state_dict(path, allow_pickle=allow_pickle)
    scaling = VAE_SCALING_FACTORS[Family.SD1]
    prefix = VAE_PREFIX if any(k.startswith(VAE_PREFIX) for k in state_dict) else ""
    if prefix and "conditioner.embedders.1.model.positional_embedding" in state_dict:
        scaling = VAE_SCALING_FACTORS[Family.SDXL]
    try:
        if f"{prefix}encoder.down.0.block.0.conv1.weight" in state_dict:
            config = infer_vae_config(state_dict, prefix)

            def convert() -> StateDict:
                return vae_to_diffusers(state_dict, config, prefix=prefix, strict=False)

        elif "encoder.down_blocks.0.resnets.0.conv1.weight" in state_dict:
            config = infer_diffusers_vae_config(state_dict)

            def convert() -> StateDict:
                return _diffusers_vae_weights(state_dict)

        else:
            raise ModelFileError(path, "not a VAE: it has no encoder.down... weights")
    except (KeyError, IndexError) as error:
        raise ModelFileError(path, f"the VAE weights are incomplete: missing {error}") from error
    config["scaling_factor"] = scaling
    autoencoder = import_diffusers().AutoencoderKL
    vae: AutoencoderKL = _build(path, "VAE", lambda: autoencoder(**config), convert, dtype)
    return vae, scaling


def _diffusers_vae_weights(state_dict: Mapping[str, torch.Tensor]) -> StateDict:
    out: StateDict = {}
    for key, value in state_dict.items():
        if not key.startswith(("encoder.", "decoder.", "quant_conv.", "post_quant_conv.")):
            continue
        match = _OLD_ATTENTION.match(key)
        if match is not None:
            key = f"{match.group(1)}{_OLD_DIFFUSERS_ATTENTION[match.group(2)]}.{match.group(3)}"
            if value.ndim > 2:
                value = value.reshape(value.shape[0], value.shape[1])
        out[key] = value
    return out
