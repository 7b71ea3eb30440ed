"""Whole workflows through the engine on the tiny models: ComfyUI's default text-to-image graph
(API and editor formats), the demo workflows `make serve` offers, every sampler and scheduler,
determinism, interrupt, LoRA and ControlNet effects, and clear errors for bad model files."""

from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image
from sd_world import SDWorld, text_to_image

from flowscope.graph.workflow import workflow_to_prompt
from flowscope.nodes.sd.sampling.samplers import SAMPLER_NAMES
from flowscope.nodes.sd.sampling.schedules import SCHEDULER_NAMES
from flowscope.telemetry import Action

REPO = Path(__file__).resolve().parents[3]
DEFAULT_WORKFLOW = REPO / "tests" / "graph" / "fixtures" / "txt2img_v04.json"


def saved_images(world: SDWorld, prefix: str) -> list[Path]:
    return sorted(world.directories.output.glob(f"{prefix}_*.png"))


def pixels(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"))


def run_ok(world: SDWorld, prompt: dict[str, Any]) -> None:
    result = world.run(prompt)
    assert result.status == "success", (result.status, result.error)


# -- the default workflow ------------------------------------------------------------------
def default_ui_workflow(ckpt: str, prefix: str) -> dict[str, Any]:
    """ComfyUI's default text-to-image workflow as the editor saves it, pointed at the tiny
    model and made small (64×64, 3 steps)."""
    workflow = json.loads(DEFAULT_WORKFLOW.read_text())
    for node in workflow["nodes"]:
        if node["type"] == "CheckpointLoaderSimple":
            node["widgets_values"] = [ckpt]
        elif node["type"] == "EmptyLatentImage":
            node["widgets_values"] = [64, 64, 1]
        elif node["type"] == "KSampler":
            node["widgets_values"][2] = 3  # steps
        elif node["type"] == "SaveImage":
            node["widgets_values"] = [prefix]
    return workflow


def test_default_workflow_in_editor_format_saves_a_png_with_the_workflow(sd1: SDWorld) -> None:
    workflow = default_ui_workflow(sd1.tiny.checkpoint.name, "default-ui")
    prompt = workflow_to_prompt(workflow, sd1.registry.node_info)
    result = sd1.run(prompt, extra_data={"extra_pnginfo": {"workflow": workflow}})
    assert result.status == "success", result.error
    (path,) = saved_images(sd1, "default-ui")
    with Image.open(path) as image:
        assert image.size == (64, 64)
        assert json.loads(image.info["workflow"])["nodes"] == workflow["nodes"]
        assert json.loads(image.info["prompt"])["3"]["class_type"] == "KSampler"
    # Random weights, but a real image: not constant, not NaN-black.
    assert pixels(path).std() > 1.0


def test_default_workflow_in_api_format_runs_and_reports_every_node(sd1: SDWorld) -> None:
    run_ok(sd1, text_to_image(sd1.tiny.checkpoint.name, prefix="default-api"))
    assert len(saved_images(sd1, "default-api")) == 1
    succeeded = {e.get("node.id") for e in sd1.events.of(Action.NODE_SUCCEEDED)}
    assert succeeded == {"3", "4", "5", "6", "7", "8", "9"}
    progress = [e for e in sd1.events.of(Action.NODE_PROGRESS) if e.get("node.id") == "3"]
    assert progress, "the sampler reports progress"


def test_sdxl_default_workflow_runs(sdxl: SDWorld) -> None:
    run_ok(sdxl, text_to_image(sdxl.tiny.checkpoint.name, prefix="xl"))
    (path,) = saved_images(sdxl, "xl")
    assert pixels(path).shape == (64, 64, 3)


# -- determinism -----------------------------------------------------------------------------
def test_same_seed_gives_a_bit_identical_image_and_another_seed_differs(sd1: SDWorld) -> None:
    ckpt = sd1.tiny.checkpoint.name
    for prefix, seed in (("seed-a", 5), ("seed-b", 5), ("seed-c", 6)):
        run_ok(sd1, text_to_image(ckpt, seed=seed, prefix=prefix))
    first, again, other = (pixels(saved_images(sd1, p)[0]) for p in ("seed-a", "seed-b", "seed-c"))
    assert np.array_equal(first, again)
    assert not np.array_equal(first, other)


# -- every sampler and scheduler -------------------------------------------------------------
@pytest.mark.parametrize("sampler", SAMPLER_NAMES)
def test_every_sampler_runs_to_a_finite_image(sd1: SDWorld, sampler: str) -> None:
    prefix = f"sampler-{sampler}"
    run_ok(sd1, text_to_image(sd1.tiny.checkpoint.name, sampler=sampler, steps=3, prefix=prefix))
    assert pixels(saved_images(sd1, prefix)[0]).std() > 0


@pytest.mark.parametrize("scheduler", SCHEDULER_NAMES)
def test_every_scheduler_runs_to_a_finite_image(sd1: SDWorld, scheduler: str) -> None:
    prefix = f"scheduler-{scheduler}"
    prompt = text_to_image(sd1.tiny.checkpoint.name, scheduler=scheduler, steps=3, prefix=prefix)
    run_ok(sd1, prompt)
    assert pixels(saved_images(sd1, prefix)[0]).std() > 0


def test_sampler_combo_lists_exactly_what_is_implemented(sd1: SDWorld) -> None:
    info = sd1.registry.node_info("KSampler")
    assert info is not None
    inputs = info["input"]["required"]
    assert inputs["sampler_name"][0] == list(SAMPLER_NAMES)
    assert inputs["scheduler"][0] == list(SCHEDULER_NAMES)
    assert len(SAMPLER_NAMES) == 17 and len(SCHEDULER_NAMES) == 9


# -- interrupt ---------------------------------------------------------------------------------
def test_interrupt_stops_the_sampler_within_one_step(sd1: SDWorld) -> None:
    steps = 40
    prompt = text_to_image(sd1.tiny.checkpoint.name, steps=steps, prefix="interrupted")
    seen: list[float] = []

    def on_event(event: Any) -> None:
        if event.action is Action.NODE_PROGRESS and event.get("node.id") == "3":
            seen.append(event.get("node.progress.value"))
            if len(seen) == 2:
                sd1.executor.interrupt()

    unsubscribe = sd1.bus.subscribe(on_event)
    try:
        result = sd1.run(prompt)
    finally:
        unsubscribe()
    assert result.status == "interrupted"
    assert not saved_images(sd1, "interrupted")
    assert len(seen) < steps


# -- LoRA and ControlNet -----------------------------------------------------------------------
def with_lora(ckpt: str, lora: str, strength: float, prefix: str) -> dict[str, Any]:
    prompt = text_to_image(ckpt, prefix=prefix)
    prompt["10"] = {
        "class_type": "LoraLoader",
        "inputs": {
            "model": ["4", 0],
            "clip": ["4", 1],
            "lora_name": lora,
            "strength_model": strength,
            "strength_clip": strength,
        },
    }
    prompt["3"]["inputs"]["model"] = ["10", 0]
    prompt["6"]["inputs"]["clip"] = ["10", 1]
    prompt["7"]["inputs"]["clip"] = ["10", 1]
    return prompt


def test_lora_layouts_agree_and_change_the_image_and_the_base_model_is_untouched(
    sd1: SDWorld,
) -> None:
    ckpt = sd1.tiny.checkpoint.name
    tiny = sd1.tiny
    for lora, prefix in (
        (tiny.lora_kohya.name, "lora-kohya"),
        (tiny.lora_kohya_ldm.name, "lora-ldm"),
        (tiny.lora_peft.name, "lora-peft"),
    ):
        run_ok(sd1, with_lora(ckpt, lora, 1.0, prefix))
    run_ok(sd1, with_lora(ckpt, tiny.lora_kohya.name, 0.0, "lora-off"))
    run_ok(sd1, text_to_image(ckpt, prefix="lora-none"))
    kohya, ldm, peft, off, none = (
        pixels(saved_images(sd1, p)[0])
        for p in ("lora-kohya", "lora-ldm", "lora-peft", "lora-off", "lora-none")
    )
    # The three files hold the same update: the same image (up to float rounding of the
    # different factorisations' products).
    assert np.abs(kohya.astype(int) - ldm.astype(int)).max() <= 1
    assert np.abs(kohya.astype(int) - peft.astype(int)).max() <= 1
    assert not np.array_equal(kohya, none)
    # Strength 0 is the model itself, and running with a LoRA left no trace on the shared model.
    assert np.array_equal(off, none)


def test_controlnet_changes_the_image_and_respects_its_step_range(sd1: SDWorld) -> None:
    ckpt = sd1.tiny.checkpoint.name

    def controlled(prefix: str, strength: float, start: float, end: float) -> dict[str, Any]:
        prompt = text_to_image(ckpt, prefix=prefix)
        prompt["11"] = {
            "class_type": "ControlNetLoader",
            "inputs": {"control_net_name": sd1.tiny.controlnet.name},
        }
        prompt["12"] = {
            "class_type": "EmptyImage",
            "inputs": {"width": 64, "height": 64, "batch_size": 1, "color": 0xFF8000},
        }
        prompt["13"] = {
            "class_type": "ControlNetApplyAdvanced",
            "inputs": {
                "positive": ["6", 0],
                "negative": ["7", 0],
                "control_net": ["11", 0],
                "image": ["12", 0],
                "strength": strength,
                "start_percent": start,
                "end_percent": end,
            },
        }
        prompt["3"]["inputs"]["positive"] = ["13", 0]
        prompt["3"]["inputs"]["negative"] = ["13", 1]
        return prompt

    run_ok(sd1, controlled("cn-on", 1.0, 0.0, 1.0))
    run_ok(sd1, controlled("cn-zero", 0.0, 0.0, 1.0))
    run_ok(sd1, controlled("cn-never", 1.0, 1.0, 1.0))
    run_ok(sd1, text_to_image(ckpt, prefix="cn-none"))
    on, zero, never, none = (
        pixels(saved_images(sd1, p)[0]) for p in ("cn-on", "cn-zero", "cn-never", "cn-none")
    )
    assert not np.array_equal(on, none)
    assert np.array_equal(zero, none)
    assert np.array_equal(never, none)


# -- image to image, inpainting, upscaling -----------------------------------------------------
def test_image_to_image_with_partial_denoise_keeps_the_input_close(sd1: SDWorld) -> None:
    source = sd1.directories.input / "i2i.png"
    Image.fromarray(np.tile(np.arange(64, dtype=np.uint8)[None, :, None] * 4, (64, 1, 3))).save(
        source
    )
    prompt = text_to_image(sd1.tiny.checkpoint.name, prefix="i2i")
    prompt["20"] = {"class_type": "LoadImage", "inputs": {"image": "i2i.png"}}
    prompt["21"] = {"class_type": "VAEEncode", "inputs": {"pixels": ["20", 0], "vae": ["4", 2]}}
    prompt["3"]["inputs"]["latent_image"] = ["21", 0]
    prompt["3"]["inputs"]["denoise"] = 0.0
    run_ok(sd1, prompt)
    (path,) = saved_images(sd1, "i2i")
    assert pixels(path).shape == (64, 64, 3)


def test_inpainting_graph_and_hires_fix_graph_run(sd1: SDWorld) -> None:
    ckpt = sd1.tiny.checkpoint.name
    prompt = text_to_image(ckpt, prefix="inpaint")
    prompt["20"] = {
        "class_type": "EmptyImage",
        "inputs": {"width": 64, "height": 64, "batch_size": 1, "color": 0x336699},
    }
    prompt["22"] = {
        "class_type": "SolidMask",
        "inputs": {"value": 1.0, "width": 32, "height": 32},
    }
    prompt["21"] = {
        "class_type": "VAEEncodeForInpaint",
        "inputs": {"pixels": ["20", 0], "vae": ["4", 2], "mask": ["22", 0], "grow_mask_by": 6},
    }
    prompt["3"]["inputs"]["latent_image"] = ["21", 0]
    run_ok(sd1, prompt)

    hires = text_to_image(ckpt, prefix="hires")
    hires["30"] = {
        "class_type": "LatentUpscaleBy",
        "inputs": {"samples": ["3", 0], "upscale_method": "bislerp", "scale_by": 2.0},
    }
    hires["31"] = copy.deepcopy(hires["3"])
    hires["31"]["inputs"].update({"latent_image": ["30", 0], "denoise": 0.5})
    hires["8"]["inputs"]["samples"] = ["31", 0]
    run_ok(sd1, hires)
    with Image.open(saved_images(sd1, "hires")[0]) as image:
        assert image.size == (128, 128)


# -- the demo workflows `make serve` offers ----------------------------------------------------
@pytest.mark.parametrize(
    "name", ["sd-text-to-image.json", "sd-image-to-image-lora-controlnet.json"]
)
def test_demo_workflows_run_on_the_tiny_model(sd1: SDWorld, name: str) -> None:
    shutil.copy(REPO / "examples" / "flowscope-demo-input.png", sd1.directories.input)
    workflow = json.loads((REPO / "examples" / name).read_text())
    for node in workflow["nodes"]:  # keep the test quick: fewer steps, smaller image
        if node["type"] == "KSampler":
            node["widgets_values"][2] = 2
        if node["type"] == "EmptyLatentImage":
            node["widgets_values"][:2] = [64, 64]
    (save,) = [node for node in workflow["nodes"] if node["type"] == "SaveImage"]
    prefix = save["widgets_values"][0]
    run_ok(sd1, workflow_to_prompt(workflow, sd1.registry.node_info))
    (path,) = saved_images(sd1, prefix)
    assert pixels(path).std() > 0


# -- bad model files ---------------------------------------------------------------------------
def test_a_truncated_checkpoint_fails_the_node_with_a_message_naming_the_file(
    sd1: SDWorld,
) -> None:
    broken = sd1.directories.models / "checkpoints" / "broken.safetensors"
    data = sd1.tiny.checkpoint.read_bytes()
    broken.write_bytes(data[: len(data) // 3])
    result = sd1.run(text_to_image("broken.safetensors", prefix="broken"))
    assert result.status == "error"
    (failed,) = sd1.events.of(Action.NODE_FAILED)
    assert failed.get("node.id") == "4"
    assert "broken.safetensors" in failed.get("error.message")


def test_a_pickle_checkpoint_is_refused_with_the_way_to_allow_it(sd1: SDWorld) -> None:
    pickled = sd1.directories.models / "checkpoints" / "old.ckpt"
    torch.save({"state_dict": {"x": torch.zeros(1)}}, pickled)
    result = sd1.run(text_to_image("old.ckpt", prefix="old"))
    assert result.status == "error"
    (failed,) = sd1.events.of(Action.NODE_FAILED)
    message = failed.get("error.message")
    assert "old.ckpt" in message and "pickle" in message.lower()
