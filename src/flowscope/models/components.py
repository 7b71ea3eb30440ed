"""The values that MODEL, CLIP, VAE and CONTROL_NET sockets carry: loaded components plus what a
node chain did to them (LoRA patches, the last CLIP layer), cheap to clone so every node's output
is its own value while the weights stay shared."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import torch

from flowscope.models.families import CheckpointFamily, Family
from flowscope.models.patching import PatchedModule, WeightPatch

if TYPE_CHECKING:
    from flowscope.models.text.encoding import TextEncoderSpec
    from flowscope.models.text.tokenizer import ClipTokenizer

EmbeddingLookup = Callable[[str], "dict[str, torch.Tensor] | None"]

# Which encoders pad with the end token, and whether an intermediate layer gets the final layer
# norm: ComfyUI's per-family text-encoder settings.
_PAD_WITH_END = {"clip_l": True, "clip_h": False, "clip_g": False}


@dataclass(frozen=True)
class Placement:
    """Where a model computes: the device and the dtype its weights are used in."""

    device: torch.device
    dtype: torch.dtype


@dataclass
class DiffusionModel:
    """A MODEL: the denoising UNet of one checkpoint, its noise schedule and its patches."""

    name: str
    family: CheckpointFamily
    unet: PatchedModule
    alphas_cumprod: torch.Tensor
    placement: Placement

    def clone(self) -> DiffusionModel:
        return replace(self, unet=self.unet.clone())

    def with_patches(self, patches: Mapping[str, WeightPatch], strength: float) -> DiffusionModel:
        """A clone with `patches` added at `strength` (the original is unchanged)."""
        model = self.clone()
        if strength != 0:
            model.unet.add_patches(patches, strength)
        return model

    @property
    def latent_family(self) -> str:
        return "sdxl" if self.family.family in (Family.SDXL, Family.SDXL_REFINER) else "sd1"


@dataclass
class TextEncoder:
    """A CLIP: the checkpoint's text encoders, their tokenizer, the chosen layer and patches."""

    name: str
    family: CheckpointFamily
    encoders: dict[str, PatchedModule]
    tokenizer: ClipTokenizer
    placement: Placement
    layer_idx: int | None = None  # None: the family's default; -1 last, -2 penultimate, ...
    embeddings: EmbeddingLookup | None = field(default=None, repr=False)

    def clone(self) -> TextEncoder:
        return replace(self, encoders={name: m.clone() for name, m in self.encoders.items()})

    def with_last_layer(self, layer_idx: int) -> TextEncoder:
        encoder = self.clone()
        encoder.layer_idx = layer_idx
        return encoder

    def with_patches(
        self, patches: Mapping[str, Mapping[str, WeightPatch]], strength: float
    ) -> TextEncoder:
        encoder = self.clone()
        if strength != 0:
            for name, module_patches in patches.items():
                if name in encoder.encoders:
                    encoder.encoders[name].add_patches(module_patches, strength)
        return encoder

    def encode(self, text: str) -> tuple[torch.Tensor, torch.Tensor | None]:
        """ComfyUI's CLIPTextEncode: (cond [1, 77·chunks, width], pooled or None)."""
        from contextlib import ExitStack

        from flowscope.models.text.encoding import encode_text

        with ExitStack() as stack, torch.inference_mode():
            specs = [
                self._spec(name, stack.enter_context(module.applied(self.placement.device)))
                for name, module in self.encoders.items()
            ]
            cond, pooled = encode_text(
                text, specs, embedding_lookup=self.embeddings, tokenizer=self.tokenizer
            )
        return cond.float().cpu(), None if pooled is None else pooled.float().cpu()

    def _spec(self, name: str, module: torch.nn.Module) -> TextEncoderSpec:
        from flowscope.models.text.encoding import TextEncoderSpec

        sdxl = self.family.family in (Family.SDXL, Family.SDXL_REFINER)
        if self.layer_idx is not None:
            # CLIPSetLastLayer: that hidden state (-1 is the last layer's).
            layer, layer_idx = "hidden", self.layer_idx
        elif sdxl or self.family.family is Family.SD2:
            # SDXL's encoders and SD2's OpenCLIP-H use the penultimate layer by default.
            layer, layer_idx = "hidden", -2
        else:
            layer, layer_idx = "last", None
        return TextEncoderSpec(
            name=name,
            model=module,
            pad_with_end=_PAD_WITH_END.get(name, False),
            layer=layer,  # type: ignore[arg-type]
            layer_idx=layer_idx,
            layer_norm_hidden_state=not sdxl,
        )


@dataclass
class ImageAutoencoder:
    """A VAE: pixels ⇄ latents. LATENT values between nodes are the VAE's own (unscaled)
    latents, as in ComfyUI; the sampler scales them by the model's factor."""

    name: str
    vae: Any  # diffusers AutoencoderKL
    placement: Placement

    def encode(self, pixels: torch.Tensor) -> torch.Tensor:
        """IMAGE [B,H,W,C] in 0..1 → LATENT samples [B,4,H/8,W/8]. The mean of the posterior:
        the same pixels always give the same latent."""
        device, dtype = self.placement.device, self.placement.dtype
        batch = pixels[..., :3].movedim(-1, 1).to(device=device, dtype=dtype) * 2.0 - 1.0
        with torch.inference_mode():
            posterior = self.vae.encode(batch).latent_dist
            latent = posterior.mean
        return latent.float().cpu()

    def decode(self, samples: torch.Tensor) -> torch.Tensor:
        """LATENT samples → IMAGE [B,H,W,3] in 0..1."""
        device, dtype = self.placement.device, self.placement.dtype
        with torch.inference_mode():
            pixels = self.vae.decode(samples.to(device=device, dtype=dtype)).sample
        return ((pixels.float().cpu() + 1.0) / 2.0).clamp(0.0, 1.0).movedim(1, -1)


@dataclass
class ControlNet:
    """A CONTROL_NET: a loaded ControlNet model and the family it was trained for."""

    name: str
    family: Family
    model: Any  # diffusers ControlNetModel
    placement: Placement


@dataclass
class ControlHint:
    """One ControlNet applied to a conditioning: what the sampler needs at every step.
    `previous` chains ControlNets applied one after another (their residuals add up)."""

    control: ControlNet
    image: torch.Tensor  # IMAGE [B,H,W,C]
    strength: float
    start_percent: float = 0.0
    end_percent: float = 1.0
    previous: ControlHint | None = None

    def chain(self) -> list[ControlHint]:
        hints: list[ControlHint] = []
        hint: ControlHint | None = self
        while hint is not None:  # iterative: chains can be long
            hints.append(hint)
            hint = hint.previous
        return hints
