"""The Stable Diffusion pack on the tiny models for tests: a data directory with the tiny files, the
ModelManager + node registry + executor over it, and diffusers pipelines built over the SAME loaded
modules (with a transformers CLIPTokenizer made from our shipped vocabulary), for cross-checks."""

from __future__ import annotations

import importlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from flowscope.engine import Executor, JobRequest, JobResult
from flowscope.graph.validation import validate_prompt
from flowscope.models.components import ControlNet, DiffusionModel, ImageAutoencoder, TextEncoder
from flowscope.models.families import Family
from flowscope.models.folders import ModelFolders
from flowscope.models.manager import ModelManager, ModelSettings
from flowscope.models.text.tokenizer import ClipTokenizer
from flowscope.models.tiny import TinyModels, create_tiny_models
from flowscope.nodes.catalog import load_catalog
from flowscope.nodes.registry import NodeRegistry
from flowscope.storage.directories import Directories

# Nothing in these tests may reach a model hub.
os.environ.setdefault("HF_HUB_OFFLINE", "1")

# SD1's training schedule, as diffusers' scheduler configs for SD1 checkpoints state it.
SD1_SCHEDULER_CONFIG: dict[str, Any] = {
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "num_train_timesteps": 1000,
    "steps_offset": 1,  # what SD1's configs say (unused with "linspace" spacing; avoids a warning)
}


@dataclass
class SDHarness:
    """A data directory holding the tiny models, and the SD pack loading them on the CPU."""

    directories: Directories
    tiny: TinyModels
    models: ModelManager
    registry: NodeRegistry

    def node(self, class_type: str) -> Any:
        """A fresh instance of the registered node class (loader nodes bound to `models`)."""
        cls = self.registry.get(class_type)
        assert cls is not None, f"{class_type} is not registered"
        return cls()

    def checkpoint(self) -> tuple[DiffusionModel, TextEncoder, ImageAutoencoder]:
        """The tiny checkpoint as CheckpointLoaderSimple gives it (shared, cached modules)."""
        loaded: tuple[DiffusionModel, TextEncoder, ImageAutoencoder]
        loaded = self.node("CheckpointLoaderSimple").load_checkpoint(self.tiny.checkpoint.name)
        return loaded

    def controlnet(self) -> ControlNet:
        loaded: tuple[ControlNet] = self.node("ControlNetLoader").load_controlnet(
            self.tiny.controlnet.name
        )
        return loaded[0]

    def unpatch(self) -> None:
        """Restore the shared modules' original weights (a LoRA'd clone leaves its merge in
        place after use), so code calling the modules directly sees the checkpoint's weights."""
        model, clip, _vae = self.checkpoint()
        model.unet.unpatch()
        for encoder in clip.encoders.values():
            encoder.unpatch()

    def run(self, prompt: dict[str, Any], executor: Executor | None = None) -> JobResult:
        """Validate and execute `prompt` (a fresh executor, so no output is cached, unless one is
        given); fails the test on a validation error."""
        validation = validate_prompt(prompt, self.registry.schema)
        assert validation.ok, (validation.error, validation.node_errors)
        assert not validation.node_errors, validation.node_errors
        runner = executor if executor is not None else Executor(self.registry)
        return runner.execute(JobRequest(prompt=validation.prompt, outputs=validation.outputs))


def make_sd_harness(base: Path, family: Family = Family.SD1, *, seed: int = 0) -> SDHarness:
    """Write the tiny models of `family` under `base` (a fresh directory) and load the catalog
    with a CPU, float32 ModelManager over them."""
    directories = Directories.under(base)
    directories.ensure()
    tiny = create_tiny_models(directories.models, family, seed=seed)
    models = ModelManager(
        ModelFolders.from_directories(directories), ModelSettings(force_cpu=True, dtype="fp32")
    )
    registry, _packs = load_catalog(directories, models=models)
    return SDHarness(directories, tiny, models, registry)


def clip_tokenizer(directory: Path, *, pad_token: str | None = None) -> Any:
    """A transformers CLIPTokenizer (what diffusers' pipelines use) over our shipped vocabulary
    and merges, written to `directory`. SDXL's second tokenizer pads with "!" (id 0)."""
    from transformers import CLIPTokenizer

    ours = ClipTokenizer.shipped()
    directory.mkdir(parents=True, exist_ok=True)
    vocab, merges = directory / "vocab.json", directory / "merges.txt"
    vocab.write_text(json.dumps(dict(ours.vocab)), encoding="utf-8")
    lines = ["#version: 0.2", *(" ".join(pair) for pair in ours.merges)]
    merges.write_text("\n".join(lines) + "\n", encoding="utf-8")
    options = {} if pad_token is None else {"pad_token": pad_token}
    return CLIPTokenizer(vocab=str(vocab), merges=str(merges), model_max_length=77, **options)


def diffusers_module() -> Any:
    """diffusers, imported on first use (seconds) and untyped for mypy (it is partly typed)."""
    return importlib.import_module("diffusers")


def euler_scheduler() -> Any:
    """diffusers' EulerDiscreteScheduler with SD1's schedule ("linspace" timesteps)."""
    return diffusers_module().EulerDiscreteScheduler(**SD1_SCHEDULER_CONFIG)


def sd_pipeline(
    model: DiffusionModel,
    clip: TextEncoder,
    vae: ImageAutoencoder,
    tokenizer: Any,
    *,
    scheduler: Any | None = None,
    controlnet: ControlNet | None = None,
    **modules: Any,
) -> Any:
    """diffusers' StableDiffusionPipeline (or StableDiffusionControlNetPipeline with
    `controlnet`) over the very modules these components hold: the UNet, clip_l, the VAE and
    the ControlNet our loaders built. `modules` replaces some of them (e.g. `unet=a_copy`).
    The shared modules' weights are whatever is merged at call time: call
    `SDHarness.unpatch()` first for the checkpoint's own weights."""
    diffusers = diffusers_module()
    parts: dict[str, Any] = {
        "vae": vae.vae,
        "text_encoder": clip.encoders["clip_l"].module,
        "tokenizer": tokenizer,
        "unet": model.unet.module,
        "scheduler": scheduler if scheduler is not None else euler_scheduler(),
        "safety_checker": None,
        "feature_extractor": None,
        "requires_safety_checker": False,
    }
    unknown = set(modules) - {"vae", "text_encoder", "unet"}
    assert not unknown, f"cannot replace {sorted(unknown)}"
    parts.update(modules)
    if controlnet is None:
        pipeline = diffusers.StableDiffusionPipeline(**parts)
    else:
        pipeline = diffusers.StableDiffusionControlNetPipeline(**parts, controlnet=controlnet.model)
    pipeline.set_progress_bar_config(disable=True)
    return pipeline


def sdxl_pipeline(
    model: DiffusionModel,
    clip: TextEncoder,
    vae: ImageAutoencoder,
    tokenizer: Any,
    tokenizer_2: Any,
    *,
    scheduler: Any | None = None,
) -> Any:
    """diffusers' StableDiffusionXLPipeline over these components' modules (clip_l, clip_g).
    Empty prompts are encoded as text, as ComfyUI does (not diffusers' zeros)."""
    pipeline = diffusers_module().StableDiffusionXLPipeline(
        vae=vae.vae,
        text_encoder=clip.encoders["clip_l"].module,
        text_encoder_2=clip.encoders["clip_g"].module,
        tokenizer=tokenizer,
        tokenizer_2=tokenizer_2,
        unet=model.unet.module,
        scheduler=scheduler if scheduler is not None else euler_scheduler(),
        force_zeros_for_empty_prompt=False,
    )
    pipeline.set_progress_bar_config(disable=True)
    return pipeline


def max_difference(a: torch.Tensor, b: torch.Tensor) -> float:
    """The largest absolute element difference (shapes must match)."""
    assert a.shape == b.shape, (tuple(a.shape), tuple(b.shape))
    return float((a.double() - b.double()).abs().max())
