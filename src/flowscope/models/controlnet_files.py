"""ControlNet files: original (`control_model.input_hint_block...`) or diffusers
(`controlnet_cond_embedding...`) layout, SD1/SD2/SDXL, loaded into a diffusers ControlNetModel."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import torch
from torch import Tensor

from flowscope.models.families import Family, infer_controlnet_config
from flowscope.models.files import ModelFileError, read_state_dict
from flowscope.models.layouts import (
    CONTROLNET_PREFIX,
    LayoutError,
    controlnet_to_diffusers,
    controlnet_to_original,
)

if TYPE_CHECKING:
    from diffusers import ControlNetModel

_DIFFUSERS_MARKER = "controlnet_cond_embedding.conv_in.weight"
_ORIGINAL_MARKER = "input_hint_block.0.weight"


@dataclass
class LoadedControlNet:
    source: Path
    family: Family
    model: ControlNetModel


def load_controlnet(
    path: Path, *, allow_pickle: bool = False, dtype: torch.dtype = torch.float32
) -> LoadedControlNet:
    """Load a ControlNet file of either layout. The config (widths, depths, heads, the SDXL
    size embedding) is inferred from the shapes by `families.infer_controlnet_config`, the
    one place that knows the families' conventions; ModelFileError names the file otherwise."""
    state_dict = read_state_dict(path, allow_pickle=allow_pickle)
    try:
        if _DIFFUSERS_MARKER in state_dict:
            weights = state_dict
            original = controlnet_to_original(weights, _diffusers_skeleton(weights), prefix="")
            family, config = infer_controlnet_config(original, prefix="")
        else:
            prefix = (
                CONTROLNET_PREFIX if f"{CONTROLNET_PREFIX}{_ORIGINAL_MARKER}" in state_dict else ""
            )
            if f"{prefix}{_ORIGINAL_MARKER}" not in state_dict:
                raise ModelFileError(path, _not_a_controlnet(state_dict))
            family, config = infer_controlnet_config(state_dict, prefix=prefix)
            # Stray keys (a whole training checkpoint's) are left out; missing ones fail below.
            weights = controlnet_to_diffusers(state_dict, config, prefix=prefix, strict=False)
    except ModelFileError:
        raise
    except (KeyError, IndexError, StopIteration, LayoutError, ValueError) as error:
        raise ModelFileError(
            path, f"a ControlNet whose weights are incomplete or of an unknown shape ({error})"
        ) from error
    model: Any = _build(path, config, weights, dtype)
    return LoadedControlNet(source=path, family=family, model=model.eval())


def _build(
    path: Path, config: Mapping[str, Any], weights: Mapping[str, Tensor], dtype: torch.dtype
) -> ControlNetModel:
    from diffusers import ControlNetModel

    model_class: Any = ControlNetModel  # diffusers' from_config is untyped
    # Built on the meta device and given the file's tensors: no random initialisation.
    with torch.device("meta"):
        model: Any = model_class.from_config(dict(config))
    # Cast here rather than with `model.to()`, which diffusers answers with a warning.
    cast_weights = {
        key: value.to(dtype) if value.is_floating_point() else value
        for key, value in weights.items()
    }
    result = model.load_state_dict(cast_weights, strict=False, assign=True)
    if result.missing_keys or result.unexpected_keys:
        raise ModelFileError(
            path,
            "the ControlNet's weights do not match the model its shapes describe "
            f"(missing: {_few(result.missing_keys)}; unexpected: {_few(result.unexpected_keys)})",
        )
    leftover = [name for name, tensor in model.state_dict().items() if tensor.is_meta]
    if leftover:
        raise ModelFileError(path, f"the ControlNet lacks weights for {_few(leftover)}")
    return cast("ControlNetModel", model)


def _few(names: list[str]) -> str:
    if not names:
        return "none"
    more = f" and {len(names) - 3} more" if len(names) > 3 else ""
    return ", ".join(names[:3]) + more


def _not_a_controlnet(state_dict: Mapping[str, Tensor]) -> str:
    keys = list(state_dict)
    if any(key.startswith("lora_controlnet") for key in keys):
        return "a Control-LoRA, which is not supported; use a full ControlNet"
    return (
        "not a ControlNet: it has neither input_hint_block (original layout) nor "
        "controlnet_cond_embedding (diffusers layout) weights"
    )


def _count(keys: list[str], pattern: str) -> int:
    compiled = re.compile(pattern)
    return len({m.group(1) for key in keys if (m := compiled.match(key)) is not None})


def _diffusers_skeleton(state_dict: Mapping[str, Tensor]) -> dict[str, Any]:
    """The block structure of a diffusers-layout ControlNet: what naming its modules in the
    original layout needs (widths and heads are then read from the renamed weights)."""
    keys = list(state_dict)
    levels = _count(keys, r"down_blocks\.(\d+)\.")
    attention = [
        f"down_blocks.{i}.attentions.0.proj_in.weight" in state_dict for i in range(levels)
    ]
    depth = [
        _count(keys, rf"down_blocks\.{i}\.attentions\.0\.transformer_blocks\.(\d+)\.") or 1
        for i in range(levels)
    ]
    mid_depth = _count(keys, r"mid_block\.attentions\.0\.transformer_blocks\.(\d+)\.")
    if mid_depth:
        mid: str | None = "UNetMidBlock2DCrossAttn"
        depth[-1] = mid_depth  # diffusers gives the middle block the last level's depth
    else:
        mid = "UNetMidBlock2D" if "mid_block.resnets.0.conv1.weight" in state_dict else None
    embedding = _count(keys, r"controlnet_cond_embedding\.blocks\.(\d+)\.") // 2 + 1
    skeleton: dict[str, Any] = {
        "down_block_types": ["CrossAttnDownBlock2D" if a else "DownBlock2D" for a in attention],
        "block_out_channels": [
            int(state_dict[f"down_blocks.{i}.resnets.0.conv1.weight"].shape[0])
            for i in range(levels)
        ],
        "layers_per_block": _count(keys, r"down_blocks\.0\.resnets\.(\d+)\."),
        "transformer_layers_per_block": depth,
        "mid_block_type": mid,
        "conditioning_embedding_out_channels": [0] * embedding,  # only the count matters here
    }
    if "add_embedding.linear_1.weight" in state_dict:
        skeleton["addition_embed_type"] = "text_time"
    return skeleton
