"""Stable Diffusion pack benchmark: flowscope's nodes vs diffusers' own pipeline, same weights,
same process, same work (prompt encoding with classifier-free guidance, sampling, VAE decode).

Cases (issue 5 targets):
  cpu   the tiny SD1 model (`flowscope models create-tiny`), 64×64, 4 euler steps:
        flowscope ≤ 1.1× diffusers' time
  gpu   an SD1.5-shaped random-weight model, 512×512, 20 euler steps, batch 1 and 4:
        it/s and peak VRAM; flowscope ≥ 0.95× diffusers' it/s (needs CUDA)

flowscope runs the ComfyUI default text-to-image graph through the engine (output cache off, so
every node runs every time; the model cache is warm on both sides). diffusers runs
`StableDiffusionPipeline` with `EulerDiscreteScheduler` built from the same modules.
Run: `.venv/bin/python benchmarks/sd.py [cpu] [gpu] [--runs N]`.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch

from flowscope.engine import Executor, JobRequest
from flowscope.engine.cache import cache_from_spec
from flowscope.graph.validation import validate_prompt
from flowscope.models.components import DiffusionModel, ImageAutoencoder, TextEncoder
from flowscope.models.families import Family
from flowscope.models.folders import ModelFolders
from flowscope.models.manager import ModelManager, ModelSettings
from flowscope.models.text.tokenizer import ClipTokenizer
from flowscope.nodes.catalog import load_catalog
from flowscope.storage.directories import Directories

PROMPT = "a photograph of an astronaut riding a horse"
NEGATIVE = "blurry, watermark"
CFG = 7.5


class KeepImage:
    """An output node that keeps the decoded image and does nothing else (no PNG encode:
    diffusers returns a tensor too)."""

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {"required": {"images": ("IMAGE",)}}

    RETURN_TYPES = ()
    FUNCTION = "keep"
    OUTPUT_NODE = True
    CATEGORY = "benchmark"

    def keep(self, images: torch.Tensor) -> dict[str, Any]:
        return {}


def text_to_image(ckpt: str, size: int, steps: int, batch: int, seed: int) -> dict[str, Any]:
    """ComfyUI's default text-to-image graph (API format)."""
    return {
        "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": ckpt}},
        "6": {"class_type": "CLIPTextEncode", "inputs": {"text": PROMPT, "clip": ["4", 1]}},
        "7": {"class_type": "CLIPTextEncode", "inputs": {"text": NEGATIVE, "clip": ["4", 1]}},
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
                "cfg": CFG,
                "sampler_name": "euler",
                "scheduler": "normal",
                "positive": ["6", 0],
                "negative": ["7", 0],
                "latent_image": ["5", 0],
                "denoise": 1.0,
            },
        },
        "8": {"class_type": "VAEDecode", "inputs": {"samples": ["3", 0], "vae": ["4", 2]}},
        "9": {"class_type": "KeepImage", "inputs": {"images": ["8", 0]}},
    }


def diffusers_pipeline(
    model: DiffusionModel, clip: TextEncoder, vae: ImageAutoencoder, work: Path
) -> Any:
    """diffusers' StableDiffusionPipeline over the very modules flowscope loaded."""
    from diffusers import EulerDiscreteScheduler, StableDiffusionPipeline
    from transformers import CLIPTokenizer

    tokenizer = ClipTokenizer.shipped()
    vocab = work / "vocab.json"
    merges = work / "merges.txt"
    vocab.write_text(json.dumps(dict(tokenizer.vocab)))
    merges.write_text("#version: 0.2\n" + "\n".join(f"{a} {b}" for a, b in tokenizer.merges))
    scheduler = EulerDiscreteScheduler(
        beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear"
    )
    pipe = StableDiffusionPipeline(
        vae=vae.vae,
        text_encoder=clip.encoders["clip_l"].module,
        tokenizer=CLIPTokenizer(vocab=str(vocab), merges=str(merges), model_max_length=77),
        unet=model.unet.module,
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe


def timed(run: Callable[[], None], sync: Callable[[], None]) -> float:
    sync()
    start = time.perf_counter()
    run()
    sync()
    return time.perf_counter() - start


def compare(
    executor: Executor,
    registry: Any,
    pipe: Any,
    *,
    ckpt: str,
    size: int,
    steps: int,
    batch: int,
    runs: int,
    device: torch.device,
) -> dict[str, float]:
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    counter = iter(range(10**9))

    def ours() -> None:
        seed = next(counter)
        validation = validate_prompt(text_to_image(ckpt, size, steps, batch, seed), registry.schema)
        result = executor.execute(JobRequest(prompt=validation.prompt, outputs=validation.outputs))
        if result.status != "success":
            raise RuntimeError(f"flowscope run failed: {result}")

    def theirs() -> None:
        pipe(
            PROMPT,
            negative_prompt=NEGATIVE,
            height=size,
            width=size,
            num_inference_steps=steps,
            guidance_scale=CFG,
            num_images_per_prompt=batch,
            generator=torch.Generator().manual_seed(next(counter)),
            output_type="pt",
        )

    ours()  # warm-up: first loads, kernel selection
    theirs()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    flowscope_times, diffusers_times = [], []
    peaks: dict[str, int] = {}
    for _ in range(runs):  # alternate, so drift hits both sides alike
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats()
        flowscope_times.append(timed(ours, sync))
        if device.type == "cuda":
            peaks["flowscope"] = max(peaks.get("flowscope", 0), torch.cuda.max_memory_allocated())
            torch.cuda.reset_peak_memory_stats()
        diffusers_times.append(timed(theirs, sync))
        if device.type == "cuda":
            peaks["diffusers"] = max(peaks.get("diffusers", 0), torch.cuda.max_memory_allocated())
    ours_s = statistics.median(flowscope_times)
    theirs_s = statistics.median(diffusers_times)
    return {
        "flowscope_s": ours_s,
        "diffusers_s": theirs_s,
        "ratio": ours_s / theirs_s,
        "flowscope_its": steps / ours_s,
        "diffusers_its": steps / theirs_s,
        "flowscope_peak": peaks.get("flowscope", 0),
        "diffusers_peak": peaks.get("diffusers", 0),
    }


def engine_with(models: ModelManager, base: Path) -> tuple[Executor, Any]:
    registry, _ = load_catalog(Directories.under(base), models=models)
    registry.register_mappings({"KeepImage": KeepImage}, {}, python_module="benchmark")
    return Executor(registry, cache=cache_from_spec("none")), registry


def cpu_case(runs: int) -> list[tuple[str, dict[str, float]]]:
    from flowscope.models.tiny import create_tiny_models

    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        directories = Directories.under(base)
        directories.ensure()
        tiny = create_tiny_models(directories.models, Family.SD1)
        models = ModelManager(
            ModelFolders.from_directories(directories), ModelSettings(force_cpu=True)
        )
        executor, registry = engine_with(models, base)
        model, clip, vae = models.checkpoint(tiny.checkpoint.name)
        pipe = diffusers_pipeline(model, clip, vae, base)
        row = compare(
            executor,
            registry,
            pipe,
            ckpt=tiny.checkpoint.name,
            size=64,
            steps=4,
            batch=1,
            runs=runs,
            device=torch.device("cpu"),
        )
        executor.close()
    return [("cpu tiny 64² ×4 steps", row)]


def write_sd15_checkpoint(path: Path) -> None:
    """An SD1.5-shaped single-file checkpoint (original layout, fp16) with random weights."""
    from safetensors.torch import save_file

    from flowscope.models.tiny import REAL_CONFIGS, build_components, checkpoint_state_dict

    torch.manual_seed(0)
    unet, vae, encoders = build_components(Family.SD1, REAL_CONFIGS[Family.SD1])
    state = checkpoint_state_dict(Family.SD1, unet, vae, encoders)
    save_file({k: v.half().contiguous() for k, v in state.items()}, str(path))


def gpu_case(runs: int, size: int, steps: int) -> list[tuple[str, dict[str, float]]]:
    if not torch.cuda.is_available():
        print("gpu: no CUDA device here; skipped (run this case on a GPU machine)")
        return []
    device = torch.device("cuda")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        directories = Directories.under(base)
        directories.ensure()
        write_sd15_checkpoint(directories.models / "checkpoints" / "sd15-random.safetensors")
        models = ModelManager(ModelFolders.from_directories(directories))
        executor, registry = engine_with(models, base)
        model, clip, vae = models.checkpoint("sd15-random.safetensors")
        pipe = diffusers_pipeline(model, clip, vae, base).to(device)
        for batch in (1, 4):
            row = compare(
                executor,
                registry,
                pipe,
                ckpt="sd15-random.safetensors",
                size=size,
                steps=steps,
                batch=batch,
                runs=runs,
                device=device,
            )
            rows.append((f"gpu sd15 {size}² ×{steps} b{batch}", row))
        executor.close()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("cases", nargs="*", default=["cpu", "gpu"], choices=["cpu", "gpu"])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--size", type=int, default=512, help="gpu case image size")
    parser.add_argument("--steps", type=int, default=20, help="gpu case steps")
    args = parser.parse_args()
    print(
        f"# {platform.node()} · {platform.processor() or platform.machine()} · "
        f"torch {torch.__version__} · threads {torch.get_num_threads()} · {sys.version.split()[0]}"
    )
    if torch.cuda.is_available():
        print(f"# GPU: {torch.cuda.get_device_name()}")
    rows: list[tuple[str, dict[str, float]]] = []
    if "cpu" in args.cases:
        rows += cpu_case(args.runs)
    if "gpu" in args.cases:
        rows += gpu_case(args.runs, args.size, args.steps)
    print(
        f"{'case':<26}{'flowscope':>11}{'diffusers':>11}{'ratio':>8}{'it/s ours':>11}"
        f"{'it/s theirs':>12}{'VRAM ours':>11}{'VRAM theirs':>12}"
    )
    for name, row in rows:
        print(
            f"{name:<26}{row['flowscope_s'] * 1e3:>9.1f}ms{row['diffusers_s'] * 1e3:>9.1f}ms"
            f"{row['ratio']:>7.2f}×{row['flowscope_its']:>11.2f}{row['diffusers_its']:>12.2f}"
            f"{row['flowscope_peak'] / 2**30:>9.2f}GB{row['diffusers_peak'] / 2**30:>10.2f}GB"
        )


if __name__ == "__main__":
    main()
