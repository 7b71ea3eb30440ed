"""LoRA files: kohya (diffusers- or LDM-named keys, LoCon convolutions), peft and diffusers
layouts read into low-rank weight patches named by the parameters of the modules we load."""

from __future__ import annotations

import functools
import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from flowscope.models.families import CheckpointFamily
from flowscope.models.files import ModelFileError, read_state_dict
from flowscope.models.layouts import unet_module_map

UNET = "unet"


class LoraShapeError(ModelFileError):
    """A LoRA update whose shape cannot fit the weight it is applied to."""


@dataclass(frozen=True, eq=False)  # compared by identity: the tensors have no truth value
class LoraPatch:
    """One low-rank update of one weight: `up @ down * alpha / rank`, optionally through a
    LoCon `mid` kernel. `source` and `key` say where it came from, for error messages."""

    up: Tensor
    down: Tensor
    alpha: float | None
    mid: Tensor | None = None
    source: Path | None = None
    key: str = ""

    @property
    def rank(self) -> int:
        return int(self.down.shape[0])

    @property
    def scale(self) -> float:
        """alpha / rank, or 1 when the file stores no alpha (as ComfyUI does)."""
        return 1.0 if self.alpha is None else self.alpha / self.rank

    def delta(self, weight: Tensor) -> Tensor:
        """The update for `weight`, with its shape, dtype and device (linear and conv)."""
        problem = _shape_problem(self, tuple(weight.shape))
        if problem is not None:
            raise LoraShapeError(
                self.source or Path("<LoRA>"),
                f"LoRA weights {self.key or '(unnamed)'}: {problem}; the LoRA was made for "
                "another model (family or size): use one made for this checkpoint",
            )
        compute = torch.float64 if weight.dtype == torch.float64 else torch.float32
        up = self.up.to(device=weight.device, dtype=compute).flatten(1)
        down = self.down.to(device=weight.device, dtype=compute)
        if self.mid is not None:
            # Tucker-decomposed LoCon: down (1×1) → mid (k×k) → up (1×1) as one k×k kernel.
            mid = self.mid.to(device=weight.device, dtype=compute)
            down = torch.einsum("abhw,bi->aihw", mid, down.flatten(1))
        product = (up @ down.flatten(1)) * self.scale
        return product.reshape(weight.shape).to(dtype=weight.dtype)


def _shape_problem(patch: LoraPatch, weight_shape: tuple[int, ...]) -> str | None:
    """Why `patch` cannot update a weight of `weight_shape`, or None when it can."""
    up, down, mid = tuple(patch.up.shape), tuple(patch.down.shape), patch.mid
    if len(up) < 2 or len(down) < 2 or math.prod(up[2:]) != 1:
        return f"up {up} and down {down} are not a low-rank pair"
    inner = down[0]
    columns = math.prod(down[1:])
    if mid is not None:
        # Tucker LoCon: down [rank, in, 1, 1] -> mid [rank_out, rank, kh, kw] -> up.
        if mid.ndim != 4 or mid.shape[1] != down[0] or math.prod(down[2:]) != 1:
            return f"its mid kernel {tuple(mid.shape)} does not fit down {down}"
        inner = int(mid.shape[0])
        columns *= int(mid.shape[2] * mid.shape[3])
    if up[1] != inner:
        return f"up {up} and down {down} have different ranks"
    if not weight_shape or up[0] != weight_shape[0] or up[0] * columns != math.prod(weight_shape):
        return (
            f"an update from up {up} and down {down} does not fit a weight of shape {weight_shape}"
        )
    return None


@dataclass(frozen=True)
class LoraFile:
    """A LoRA file placed on a checkpoint family's modules."""

    source: Path
    unet: dict[str, LoraPatch]  # UNet2DConditionModel parameter name -> patch
    # "clip_l" | "clip_g" | "clip_h" (only those patched) -> parameter name -> patch. Names are
    # those of the loaded class: transformers 5's CLIPTextModel says `encoder.layers.0...`,
    # CLIPTextModelWithProjection (clip_g) `text_model.encoder.layers.0...`.
    text_encoders: dict[str, dict[str, LoraPatch]]
    unmatched: tuple[str, ...]  # keys we could not place (unknown module or shape), sorted


def read_lora(path: Path, family: CheckpointFamily, *, allow_pickle: bool = False) -> LoraFile:
    """Read a LoRA file and place every low-rank pair on `family`'s UNet or text encoders.

    Keys whose module does not exist in this family's models, or whose shapes do not fit it,
    go to `unmatched` (as ComfyUI skips them) rather than failing the whole file."""
    state_dict = read_state_dict(path, allow_pickle=allow_pickle)
    groups, unmatched = _group(state_dict)
    targets = _Targets(family)
    unet: dict[str, LoraPatch] = {}
    text: dict[str, dict[str, LoraPatch]] = {}
    for prefix, parts in sorted(groups.items()):
        keys = [key for key, _ in parts.values()]
        placed = _place(prefix, targets) if {"up", "down"} <= parts.keys() else None
        if placed is None or "dora_scale" in parts:
            unmatched.extend(keys)
            continue
        component, module = placed
        patch = _patch(parts, key=prefix, source=path)
        parameter = f"{module}.weight"
        shape = targets.names(component).shapes[module]
        patches = unet if component == UNET else text.setdefault(component, {})
        if parameter in patches or _shape_problem(patch, shape) is not None:
            unmatched.extend(keys)
            continue
        patches[parameter] = patch
    return LoraFile(
        source=path,
        unet=unet,
        text_encoders={name: patches for name, patches in text.items() if patches},
        unmatched=tuple(sorted(unmatched)),
    )


# --- grouping the keys of a file ----------------------------------------------------------------

# The last part of a key names its role in the pair: kohya / LoCon, peft, diffusers.
_ROLE_SUFFIXES = (
    (".lora_linear_layer.down.weight", "down"),
    (".lora_linear_layer.up.weight", "up"),
    (".lora.down.weight", "down"),
    (".lora.up.weight", "up"),
    (".lora_down.weight", "down"),
    (".lora_up.weight", "up"),
    (".lora_mid.weight", "mid"),
    (".lora_A.weight", "down"),
    (".lora_B.weight", "up"),
    (".alpha", "alpha"),
    (".dora_scale", "dora_scale"),
)
# diffusers' old attention-processor layout: `...attn1.processor.to_q_lora.down.weight`.
_PROCESSOR_KEY = re.compile(r"^(?P<prefix>.+_lora)\.(?P<role>down|up)\.weight$")

_Parts = dict[str, tuple[str, Tensor]]  # role -> (key in the file, tensor)


def _group(state_dict: Mapping[str, Tensor]) -> tuple[dict[str, _Parts], list[str]]:
    groups: dict[str, _Parts] = {}
    unknown: list[str] = []
    for key, tensor in state_dict.items():
        split = _split_role(key)
        if split is None:
            unknown.append(key)
            continue
        prefix, role = split
        groups.setdefault(prefix, {})[role] = (key, tensor)
    return groups, unknown


def _split_role(key: str) -> tuple[str, str] | None:
    for suffix, role in _ROLE_SUFFIXES:
        if key.endswith(suffix):
            return key[: -len(suffix)], role
    match = _PROCESSOR_KEY.match(key)
    if match is not None:
        return match["prefix"], match["role"]
    return None


def _patch(parts: _Parts, *, key: str, source: Path) -> LoraPatch:
    alpha = parts.get("alpha")
    mid = parts.get("mid")
    up, down = parts["up"][1], parts["down"][1]
    if alpha is not None and alpha[1].numel() != 1:
        raise ModelFileError(
            source,
            f"{alpha[0]} should be one number (the LoRA alpha) but has shape "
            f"{tuple(alpha[1].shape)}: the file is not a LoRA or is damaged",
        )
    return LoraPatch(
        up=up,
        down=down,
        alpha=None if alpha is None else float(alpha[1].float().item()),
        mid=None if mid is None else mid[1],
        source=source,
        key=key,
    )


# --- placing a pair on a module -----------------------------------------------------------------

_KOHYA_TEXT = (("lora_te1_", 0), ("lora_te2_", 1), ("lora_te_", 0))
_PEFT_COMPONENTS = (("unet.", None), ("text_encoder.", 0), ("text_encoder_2.", 1))
_PEFT_WRAPPER = "base_model.model."
# Old processor names -> the module they update, in the UNet and in a CLIP text model.
_UNET_PROCESSORS = {
    "to_q_lora": "to_q",
    "to_k_lora": "to_k",
    "to_v_lora": "to_v",
    "to_out_lora": "to_out.0",
}
_TEXT_PROCESSORS = {
    "to_q_lora": "q_proj",
    "to_k_lora": "k_proj",
    "to_v_lora": "v_proj",
    "to_out_lora": "out_proj",
}


def _place(prefix: str, targets: _Targets) -> tuple[str, str] | None:
    """(component, module name) for the pair stored under `prefix`, or None."""
    if prefix.startswith("lora_unet_"):
        return _found(UNET, targets.unet_kohya(prefix.removeprefix("lora_unet_")))
    for kohya, slot in _KOHYA_TEXT:
        if prefix.startswith(kohya):
            encoder = targets.encoder_in_slot(slot)
            if encoder is None:
                return None
            return _found(encoder, targets.names(encoder).kohya(prefix.removeprefix(kohya)))
    name = prefix.removeprefix(_PEFT_WRAPPER)
    component: str | None = UNET
    for peft, peft_slot in _PEFT_COMPONENTS:
        if name.startswith(peft):
            name = name.removeprefix(peft)
            component = UNET if peft_slot is None else targets.encoder_in_slot(peft_slot)
            break
    else:
        if name.startswith("text_model."):  # a text encoder saved on its own
            component = targets.encoder_in_slot(0)
    if component is None:
        return None
    name = name.removeprefix(_PEFT_WRAPPER)
    processors = _UNET_PROCESSORS if component == UNET else _TEXT_PROCESSORS
    head, _, last = name.rpartition(".")
    if last in processors:
        name = f"{head.removesuffix('.processor')}.{processors[last]}"
    return _found(component, targets.names(component).dotted(name))


def _found(component: str, module: str | None) -> tuple[str, str] | None:
    return None if module is None else (component, module)


@dataclass(frozen=True)
class _ModuleNames:
    """The weighted modules of one model: their names, weight shapes and kohya spellings."""

    shapes: dict[str, tuple[int, ...]]
    underscored: dict[str, str]  # kohya spelling -> module name (ambiguous spellings left out)
    aliases: dict[str, str] = field(default_factory=dict)  # other dotted spelling -> module name

    @classmethod
    def of(cls, module: torch.nn.Module, *, strip: str = "") -> _ModuleNames:
        shapes = {
            name.removesuffix(".weight"): tuple(parameter.shape)
            for name, parameter in module.named_parameters()
            if name.endswith(".weight")
        }
        aliases = {name.removeprefix(strip): name for name in shapes} if strip else {}
        return cls(shapes, _underscored({**{n: n for n in shapes}, **aliases}), aliases)

    def dotted(self, name: str) -> str | None:
        if name in self.shapes:
            return name
        return self.aliases.get(name.removeprefix("text_model."))

    def kohya(self, name: str) -> str | None:
        return self.underscored.get(name) or self.underscored.get(name.removeprefix("text_model_"))


def _underscored(spellings: Mapping[str, str]) -> dict[str, str]:
    """kohya joins module paths with `_`, which module names also contain: keep only the
    spellings that name exactly one module."""
    found: dict[str, set[str]] = {}
    for spelling, module in spellings.items():
        found.setdefault(spelling.replace(".", "_"), set()).add(module)
    return {key: next(iter(modules)) for key, modules in found.items() if len(modules) == 1}


class _Targets:
    """The module names of one checkpoint family's UNet and text encoders."""

    def __init__(self, family: CheckpointFamily) -> None:
        self.family = family
        self._unet_config = _canonical(family.unet_config)

    def names(self, component: str) -> _ModuleNames:
        if component == UNET:
            return _unet_names(self._unet_config)
        config = _canonical(self.family.text_configs[component])
        return _text_names(component, config)

    def unet_kohya(self, name: str) -> str | None:
        names = _unet_names(self._unet_config)
        module = names.kohya(name)
        if module is None:  # LDM-named (`input_blocks_1_1_...`), as most SD1/SDXL LoRAs are
            module = _ldm_underscored(self._unet_config).get(name)
        return module if module in names.shapes else None

    def encoder_in_slot(self, slot: int) -> str | None:
        """kohya's te1/te2 and diffusers' text_encoder/text_encoder_2: slot 1 is always the
        OpenCLIP-G encoder (the refiner's only one), slot 0 the first other encoder."""
        encoders = self.family.text_encoders
        if slot == 1:
            return "clip_g" if "clip_g" in encoders else None
        return next((name for name in encoders if name != "clip_g"), None)


def _canonical(config: Mapping[str, Any]) -> str:
    return json.dumps(config, sort_keys=True, default=list)


@functools.lru_cache(maxsize=8)
def _unet_names(config: str) -> _ModuleNames:
    from diffusers import UNet2DConditionModel

    model_class: Any = UNet2DConditionModel  # diffusers' from_config is untyped
    with torch.device("meta"):
        unet = model_class.from_config(json.loads(config))
    return _ModuleNames.of(unet)


@functools.lru_cache(maxsize=8)
def _ldm_underscored(config: str) -> dict[str, str]:
    return _underscored(unet_module_map(json.loads(config)))


@functools.lru_cache(maxsize=8)
def _text_names(encoder: str, config: str) -> _ModuleNames:
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    model_class = CLIPTextModelWithProjection if encoder == "clip_g" else CLIPTextModel
    with torch.device("meta"):
        model = model_class(CLIPTextConfig(**json.loads(config)))
    # Files say `text_model.encoder...`; transformers 5's CLIPTextModel has no `text_model`
    # level, so both spellings are accepted.
    return _ModuleNames.of(model, strip="text_model.")
