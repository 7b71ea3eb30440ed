"""Classifier-free guidance over ComfyUI conditionings: turns (x, σ) into the guided x₀ prediction
a sampler steps with, calling the UNet (and any ControlNets) once per step when the positive and
negative conditionings can share a batch."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from flowscope.models.components import ControlHint, Placement
from flowscope.models.families import CheckpointFamily, Family
from flowscope.nodes.builtin.images import resize_samples
from flowscope.nodes.sd.sampling.model_sampling import DiscreteSchedule

Conditioning = list[list[Any]]  # ComfyUI's [[cond tensor, {"pooled_output": ..., ...}], ...]

# SDXL refiner's aesthetic-score conditioning (ComfyUI's and diffusers' defaults).
_REFINER_SCORE = {"positive": 6.0, "negative": 2.5}


@dataclass
class _Eval:
    """One conditioning entry to evaluate at every step."""

    embeds: torch.Tensor  # [1, L, D]
    pooled: torch.Tensor | None
    options: dict[str, Any]
    strength: float
    kind: str  # "positive" | "negative"
    hints: list[ControlHint]

    def batch_key(self) -> tuple[Any, ...]:
        hints = tuple(
            (id(h.control), id(h.image), h.strength, h.start_percent, h.end_percent)
            for h in self.hints
        )
        return (tuple(self.embeds.shape), self.pooled is None, hints)


def _evals(conditioning: Conditioning, kind: str) -> list[_Eval]:
    evals = []
    for index, entry in enumerate(conditioning):
        if not isinstance(entry, list | tuple) or len(entry) < 2:
            raise ValueError(
                f"{kind} conditioning entry {index} is not a [tensor, options] pair; "
                "connect a CLIPTextEncode (or another CONDITIONING output)"
            )
        embeds, options = entry[0], dict(entry[1] or {})
        hint = options.get("control")
        evals.append(
            _Eval(
                embeds=embeds,
                pooled=options.get("pooled_output"),
                options=options,
                strength=float(options.get("strength", 1.0)),
                kind=kind,
                hints=hint.chain() if isinstance(hint, ControlHint) else [],
            )
        )
    return evals


class GuidedDenoiser:
    """x₀ = uncond + cfg·(cond − uncond) with ComfyUI's conditioning semantics: several entries
    of one side are averaged by strength, ControlNets act between their start and end percent,
    cfg 1 skips the negative side."""

    def __init__(
        self,
        unet: torch.nn.Module,
        schedule: DiscreteSchedule,
        positive: Conditioning,
        negative: Conditioning,
        cfg: float,
        *,
        family: CheckpointFamily,
        placement: Placement,
    ) -> None:
        self.unet = unet
        self.schedule = schedule
        self.cfg = cfg
        self.family = family
        self.placement = placement
        self.positive = _evals(positive, "positive")
        self.negative = [] if math.isclose(cfg, 1.0) else _evals(negative, "negative")
        if not self.positive:
            raise ValueError("the positive conditioning is empty")
        self._hint_cache: dict[tuple[int, tuple[int, ...]], torch.Tensor] = {}

    def __call__(self, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        evals = self.positive + self.negative
        outputs = self._run_batched(evals, x, sigma)
        cond = _weighted_mean(outputs[: len(self.positive)], self.positive)
        if not self.negative:
            return cond
        uncond = _weighted_mean(outputs[len(self.positive) :], self.negative)
        return uncond + (cond - uncond) * self.cfg

    # -- model calls --------------------------------------------------------------------
    def _run_batched(
        self, evals: Sequence[_Eval], x: torch.Tensor, sigma: torch.Tensor
    ) -> list[torch.Tensor]:
        groups: dict[tuple[Any, ...], list[int]] = {}
        for index, item in enumerate(evals):
            groups.setdefault(item.batch_key(), []).append(index)
        outputs: list[torch.Tensor | None] = [None] * len(evals)
        for indices in groups.values():
            denoised = self._run_group([evals[i] for i in indices], x, sigma)
            for i, chunk in zip(indices, denoised.chunk(len(indices)), strict=True):
                outputs[i] = chunk
        return [out for out in outputs if out is not None]

    def _run_group(
        self, group: Sequence[_Eval], x: torch.Tensor, sigma: torch.Tensor
    ) -> torch.Tensor:
        batch = x.shape[0]
        copies = len(group)
        device, dtype = self.placement.device, self.placement.dtype
        sigma_batch = sigma.reshape(-1).expand(batch) if sigma.numel() == 1 else sigma
        x_in = self.schedule.calculate_input(sigma_batch.reshape(-1, 1, 1, 1), x)
        x_model = x_in.repeat(copies, 1, 1, 1).to(device=device, dtype=dtype)
        timesteps = self.schedule.timestep(sigma_batch).float().repeat(copies).to(device)
        embeds = torch.cat([item.embeds.expand(batch, -1, -1) for item in group])
        embeds = embeds.to(device=device, dtype=dtype)
        added = self._added_conditions(group, x, batch)
        kwargs: dict[str, Any] = {"encoder_hidden_states": embeds}
        if added is not None:
            kwargs["added_cond_kwargs"] = added
        residuals = self._control_residuals(group[0].hints, x_model, timesteps, sigma, kwargs)
        if residuals is not None:
            kwargs["down_block_additional_residuals"], kwargs["mid_block_additional_residual"] = (
                residuals
            )
        output = self.unet(x_model, timesteps, return_dict=False, **kwargs)[0]
        repeated_sigma = sigma_batch.repeat(copies).reshape(-1, 1, 1, 1)
        return self.schedule.calculate_denoised(
            repeated_sigma, output.float().to(x.device), x.repeat(copies, 1, 1, 1)
        )

    def _added_conditions(
        self, group: Sequence[_Eval], x: torch.Tensor, batch: int
    ) -> dict[str, torch.Tensor] | None:
        """SDXL's extra inputs: the pooled text embedding and the size/crop (or aesthetic
        score) ids; the sizes default to the latent's pixel size, as ComfyUI does."""
        if self.family.family not in (Family.SDXL, Family.SDXL_REFINER):
            return None
        device, dtype = self.placement.device, self.placement.dtype
        text_embeds, time_ids = [], []
        for item in group:
            if item.pooled is None:
                raise ValueError(
                    f"the {item.kind} conditioning has no pooled output, which SDXL needs; "
                    "encode the prompt with this checkpoint's CLIP"
                )
            height = float(item.options.get("height", x.shape[2] * 8))
            width = float(item.options.get("width", x.shape[3] * 8))
            crop_h = float(item.options.get("crop_h", 0))
            crop_w = float(item.options.get("crop_w", 0))
            if self.family.family is Family.SDXL_REFINER:
                score = float(item.options.get("aesthetic_score", _REFINER_SCORE[item.kind]))
                ids = [height, width, crop_h, crop_w, score]
            else:
                target_h = float(item.options.get("target_height", height))
                target_w = float(item.options.get("target_width", width))
                ids = [height, width, crop_h, crop_w, target_h, target_w]
            text_embeds.append(item.pooled.reshape(1, -1).expand(batch, -1))
            time_ids.append(torch.tensor([ids]).expand(batch, -1))
        return {
            "text_embeds": torch.cat(text_embeds).to(device=device, dtype=dtype),
            "time_ids": torch.cat(time_ids).to(device=device, dtype=dtype),
        }

    def _control_residuals(
        self,
        hints: Sequence[ControlHint],
        x_model: torch.Tensor,
        timesteps: torch.Tensor,
        sigma: torch.Tensor,
        unet_kwargs: dict[str, Any],
    ) -> tuple[list[torch.Tensor], torch.Tensor] | None:
        current = float(sigma.reshape(-1)[0])
        down: list[torch.Tensor] | None = None
        mid: torch.Tensor | None = None
        for hint in hints:
            high = self.schedule.percent_to_sigma(hint.start_percent)
            low = self.schedule.percent_to_sigma(hint.end_percent)
            if not (low <= current <= high) or hint.strength == 0:
                continue
            image = self._hint_image(hint, x_model)
            kwargs = {
                "encoder_hidden_states": unet_kwargs["encoder_hidden_states"],
                "controlnet_cond": image,
                "conditioning_scale": hint.strength,
                "return_dict": False,
            }
            if "added_cond_kwargs" in unet_kwargs:
                kwargs["added_cond_kwargs"] = unet_kwargs["added_cond_kwargs"]
            block_residuals, mid_residual = hint.control.model(x_model, timesteps, **kwargs)
            if down is None or mid is None:
                down, mid = list(block_residuals), mid_residual
            else:
                down = [a + b for a, b in zip(down, block_residuals, strict=True)]
                mid = mid + mid_residual
        return None if down is None or mid is None else (down, mid)

    def _hint_image(self, hint: ControlHint, x_model: torch.Tensor) -> torch.Tensor:
        """The control image at the latent's pixel size (nearest-exact, centre crop, as
        ComfyUI), repeated to the batch; cached per shape for the whole sampling run."""
        key = (id(hint), tuple(x_model.shape))
        cached = self._hint_cache.get(key)
        if cached is not None:
            return cached
        image = hint.image
        if image.ndim == 3:
            image = image.unsqueeze(0)
        samples = image[..., :3].movedim(-1, 1).float()
        height, width = x_model.shape[2] * 8, x_model.shape[3] * 8
        samples = resize_samples(samples, width, height, "nearest-exact", "center")
        batch = x_model.shape[0]
        if samples.shape[0] != batch:
            repeats = math.ceil(batch / samples.shape[0])
            samples = samples.repeat(repeats, 1, 1, 1)[:batch]
        result = samples.to(device=self.placement.device, dtype=self.placement.dtype)
        self._hint_cache[key] = result
        return result


def _weighted_mean(outputs: Sequence[torch.Tensor], evals: Sequence[_Eval]) -> torch.Tensor:
    if len(outputs) == 1:
        return outputs[0]
    total = sum(item.strength for item in evals) or 1.0
    result = outputs[0] * evals[0].strength
    for output, item in zip(outputs[1:], evals[1:], strict=True):
        result = result + output * item.strength
    return result / total
