"""The tiny-model world the SD workflow tests run in: `sd_support`'s harness (the tiny models and
the catalog bound to them) plus an engine that records events; and ComfyUI's default graph,
small."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sd_support import make_sd_harness

from flowscope.engine import Executor, JobRequest, JobResult
from flowscope.engine.cache import cache_from_spec
from flowscope.graph.validation import validate_prompt
from flowscope.models.families import Family
from flowscope.models.manager import ModelManager
from flowscope.models.tiny import TinyModels
from flowscope.nodes.registry import NodeRegistry
from flowscope.storage.directories import Directories
from flowscope.telemetry import EventBus, InMemorySubscriber


@dataclass
class SDWorld:
    directories: Directories
    tiny: TinyModels
    models: ModelManager
    registry: NodeRegistry
    bus: EventBus
    events: InMemorySubscriber
    executor: Executor

    def run(self, prompt: dict[str, Any], **request: Any) -> JobResult:
        validation = validate_prompt(prompt, self.registry.schema)
        assert validation.ok, (validation.error, validation.node_errors)
        assert not validation.node_errors, validation.node_errors
        self.events.clear()
        return self.executor.execute(
            JobRequest(prompt=validation.prompt, outputs=validation.outputs, **request)
        )


def make_world(base: Path, family: Family) -> SDWorld:
    harness = make_sd_harness(base, family)
    bus = EventBus()
    harness.models.attach_bus(bus)
    events = InMemorySubscriber(bus)
    executor = Executor(harness.registry, bus=bus, cache=cache_from_spec("none"))
    return SDWorld(
        harness.directories,
        harness.tiny,
        harness.models,
        harness.registry,
        bus,
        events,
        executor,
    )


def text_to_image(
    ckpt: str,
    *,
    seed: int = 1,
    steps: int = 3,
    size: int = 64,
    sampler: str = "euler",
    scheduler: str = "normal",
    cfg: float = 7.0,
    batch: int = 1,
    prefix: str = "test",
    positive: str = "a red cat",
    negative: str = "blurry",
) -> dict[str, Any]:
    """ComfyUI's default text-to-image graph (API format), small."""
    return {
        "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": ckpt}},
        "6": {"class_type": "CLIPTextEncode", "inputs": {"text": positive, "clip": ["4", 1]}},
        "7": {"class_type": "CLIPTextEncode", "inputs": {"text": negative, "clip": ["4", 1]}},
        "5": {
            "class_type": "EmptyLatentImage",
            "inputs": {"width": size, "height": size, "batch_size": batch},
        },
        "3": {
            "class_type": "KSampler",
            "inputs": {
                "model": ["4", 0],
                "seed": seed,
                "steps": steps,
                "cfg": cfg,
                "sampler_name": sampler,
                "scheduler": scheduler,
                "positive": ["6", 0],
                "negative": ["7", 0],
                "latent_image": ["5", 0],
                "denoise": 1.0,
            },
        },
        "8": {"class_type": "VAEDecode", "inputs": {"samples": ["3", 0], "vae": ["4", 2]}},
        "9": {"class_type": "SaveImage", "inputs": {"images": ["8", 0], "filename_prefix": prefix}},
    }
