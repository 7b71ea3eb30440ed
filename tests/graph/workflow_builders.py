"""Builders for editor workflows and `/object_info`-shaped node definitions (spec §8)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from flowscope.graph.workflow import workflow_to_prompt

FIXTURES = Path(__file__).parent / "fixtures"

SAMPLERS = ["euler", "euler_ancestral", "heun", "dpmpp_2m", "dpmpp_2m_sde", "ddim"]
SCHEDULERS = ["simple", "karras", "exponential", "normal"]
MAX_RESOLUTION = 16384


def object_info(
    name: str,
    display_name: str,
    required: Mapping[str, Any],
    optional: Mapping[str, Any] | None = None,
    output: tuple[Any, ...] = (),
    output_name: tuple[str, ...] | None = None,
    output_node: bool = False,
    hidden: Mapping[str, str] | None = None,
    category: str = "testing",
) -> dict[str, Any]:
    """One `/object_info` entry, as the server serialises it (tuples become lists)."""
    inputs: dict[str, Any] = {"required": json.loads(json.dumps(required))}
    order: dict[str, list[str]] = {"required": list(required)}
    if optional:
        inputs["optional"] = json.loads(json.dumps(optional))
        order["optional"] = list(optional)
    if hidden:
        inputs["hidden"] = dict(hidden)
        order["hidden"] = list(hidden)
    outputs = list(output)
    return {
        "input": inputs,
        "input_order": order,
        "output": outputs,
        "output_is_list": [False] * len(outputs),
        "output_name": list(output_name or [o if isinstance(o, str) else "COMBO" for o in outputs]),
        "name": name,
        "display_name": display_name,
        "description": "",
        "python_module": "nodes",
        "category": category,
        "output_node": output_node,
    }


_IMAGE_HIDDEN = {"prompt": "PROMPT", "extra_pnginfo": "EXTRA_PNGINFO"}

DEFINITIONS: dict[str, dict[str, Any]] = {
    "CheckpointLoaderSimple": object_info(
        "CheckpointLoaderSimple",
        "Load Checkpoint",
        {
            "ckpt_name": (
                [
                    "dreamshaper_8.safetensors",
                    "sd15.safetensors",
                    "v1-5-pruned-emaonly-fp16.safetensors",
                ],
                {"tooltip": "The name of the checkpoint (model) to load."},
            )
        },
        output=("MODEL", "CLIP", "VAE"),
        category="loaders",
    ),
    "CLIPTextEncode": object_info(
        "CLIPTextEncode",
        "CLIP Text Encode (Prompt)",
        {
            "text": ("STRING", {"multiline": True, "dynamicPrompts": True}),
            "clip": ("CLIP", {"tooltip": "The CLIP model used for encoding the text."}),
        },
        output=("CONDITIONING",),
        category="conditioning",
    ),
    "EmptyLatentImage": object_info(
        "EmptyLatentImage",
        "Empty Latent Image",
        {
            "width": ("INT", {"default": 512, "min": 16, "max": MAX_RESOLUTION, "step": 8}),
            "height": ("INT", {"default": 512, "min": 16, "max": MAX_RESOLUTION, "step": 8}),
            "batch_size": ("INT", {"default": 1, "min": 1, "max": 4096}),
        },
        output=("LATENT",),
        category="latent",
    ),
    "KSampler": object_info(
        "KSampler",
        "KSampler",
        {
            "model": ("MODEL",),
            "seed": (
                "INT",
                {"default": 0, "min": 0, "max": 0xFFFFFFFFFFFFFFFF, "control_after_generate": True},
            ),
            "steps": ("INT", {"default": 20, "min": 1, "max": 10000}),
            "cfg": (
                "FLOAT",
                {"default": 8.0, "min": 0.0, "max": 100.0, "step": 0.1, "round": 0.01},
            ),
            "sampler_name": (SAMPLERS,),
            "scheduler": (SCHEDULERS,),
            "positive": ("CONDITIONING",),
            "negative": ("CONDITIONING",),
            "latent_image": ("LATENT",),
            "denoise": ("FLOAT", {"default": 1.0, "min": 0.0, "max": 1.0, "step": 0.01}),
        },
        output=("LATENT",),
        category="sampling",
    ),
    "VAEDecode": object_info(
        "VAEDecode",
        "VAE Decode",
        {"samples": ("LATENT",), "vae": ("VAE",)},
        output=("IMAGE",),
        category="latent",
    ),
    "VAEEncode": object_info(
        "VAEEncode",
        "VAE Encode",
        {"pixels": ("IMAGE",), "vae": ("VAE",)},
        output=("LATENT",),
        category="latent",
    ),
    "SaveImage": object_info(
        "SaveImage",
        "Save Image",
        {"images": ("IMAGE",), "filename_prefix": ("STRING", {"default": "ComfyUI"})},
        hidden=_IMAGE_HIDDEN,
        output_node=True,
        category="image",
    ),
    "PreviewImage": object_info(
        "PreviewImage",
        "Preview Image",
        {"images": ("IMAGE",)},
        hidden=_IMAGE_HIDDEN,
        output_node=True,
        category="image",
    ),
    "EmptyImage": object_info(
        "EmptyImage",
        "EmptyImage",
        {
            "width": ("INT", {"default": 512, "min": 1, "max": MAX_RESOLUTION, "step": 1}),
            "height": ("INT", {"default": 512, "min": 1, "max": MAX_RESOLUTION, "step": 1}),
            "batch_size": ("INT", {"default": 1, "min": 1, "max": 4096}),
            "color": ("INT", {"default": 0, "min": 0, "max": 0xFFFFFF, "display": "color"}),
        },
        output=("IMAGE",),
        category="image",
    ),
    "ImageInvert": object_info(
        "ImageInvert", "Invert Image", {"image": ("IMAGE",)}, output=("IMAGE",), category="image"
    ),
    "ImageScale": object_info(
        "ImageScale",
        "Upscale Image",
        {
            "image": ("IMAGE",),
            "upscale_method": (["nearest-exact", "bilinear", "area", "bicubic", "lanczos"],),
            "width": ("INT", {"default": 512, "min": 0, "max": MAX_RESOLUTION, "step": 1}),
            "height": ("INT", {"default": 512, "min": 0, "max": MAX_RESOLUTION, "step": 1}),
            "crop": (["disabled", "center"],),
        },
        output=("IMAGE",),
        category="image/upscaling",
    ),
    "LoadImage": object_info(
        "LoadImage",
        "Load Image",
        {"image": (["example.png", "portrait.jpg"], {"image_upload": True})},
        output=("IMAGE", "MASK"),
        category="image",
    ),
    "LoraLoader": object_info(
        "LoraLoader",
        "Load LoRA",
        {
            "model": ("MODEL",),
            "clip": ("CLIP",),
            "lora_name": (["detail-tweaker.safetensors"],),
            "strength_model": (
                "FLOAT",
                {"default": 1.0, "min": -100.0, "max": 100.0, "step": 0.01},
            ),
            "strength_clip": ("FLOAT", {"default": 1.0, "min": -100.0, "max": 100.0, "step": 0.01}),
        },
        output=("MODEL", "CLIP"),
        category="loaders",
    ),
    # V3 node from comfy_extras, presented in the V1 format.
    "PrimitiveInt": object_info(
        "PrimitiveInt",
        "Int",
        {
            "value": (
                "INT",
                {
                    "min": -9223372036854775807,
                    "max": 9223372036854775807,
                    "control_after_generate": True,
                },
            )
        },
        output=("INT",),
        category="utils/primitive",
    ),
    # Custom-node shapes the core pack does not have.
    "JoinStrings": object_info(
        "JoinStrings",
        "Join Strings",
        {"first": ("STRING", {"forceInput": True}), "separator": ("STRING", {"default": ", "})},
        optional={"second": ("STRING", {"forceInput": True})},
        output=("STRING",),
    ),
    "PickStyle": object_info(
        "PickStyle",
        "Pick Style",
        {
            "style": (
                "COMBO",
                {"options": ["photo", "anime", "oil"], "control_after_generate": True},
            ),
            "strength": ("FLOAT", {"default": 0.5}),
        },
        output=("STRING",),
    ),
    "AddNoise": object_info(
        "AddNoise",
        "Add Noise",
        {
            "image": ("IMAGE",),
            "amount": ("INT", {"default": 4, "min": 0, "max": 64}),
            "strength": ("FLOAT", {"default": 0.5}),
        },
        output=("IMAGE",),
    ),
    "SeededThing": object_info(
        "SeededThing",
        "Seeded Thing",
        {"seed": ("INT", {"default": 0}), "label": ("STRING", {"default": ""})},
        optional={"noise_seed": ("INT", {"default": 0, "control_after_generate": False})},
        output=("INT",),
    ),
    "LoadFrames": object_info(
        "LoadFrames",
        "Load Frames",
        {"video": (["clip.mp4", "walk.webm"], {"video_upload": True})},
        optional={"frame": ("INT", {"default": 0})},
        output=("IMAGE",),
    ),
    "PathEditor": object_info(
        "PathEditor",
        "Path Editor",
        {"points": ("STRING", {"default": "[]"}), "closed": ("BOOLEAN", {"default": False})},
        output=("STRING",),
    ),
    "MaskedBlend": object_info(
        "MaskedBlend",
        "Masked Blend",
        {"mask": ("MASK",), "image": ("IMAGE",), "overlay": ("IMAGE,MASK",)},
        output=("IMAGE", "MASK"),
    ),
    "DynamicBatch": object_info(
        "DynamicBatch",
        "Dynamic Batch",
        {"inputcount": ("INT", {"default": 2, "min": 2})},
        output=("IMAGE",),
    ),
    "NoDisplayName": {
        "input": {"required": {"x": ["INT", {"default": 1}]}},
        "output": ["INT"],
        "name": "NoDisplayName",
    },
}


def definitions(class_type: str) -> Mapping[str, Any] | None:
    return DEFINITIONS.get(class_type)


def load_fixture(name: str) -> dict[str, Any]:
    with (FIXTURES / name).open(encoding="utf-8") as handle:
        data: dict[str, Any] = json.load(handle)
    return data


def convert(workflow: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    return workflow_to_prompt(workflow, definitions)


# -- builders for small hand-made workflows, shaped like the editor's schema 0.4 ---------------


def node(
    node_id: int,
    node_type: str,
    *,
    inputs: list[dict[str, Any]] | None = None,
    outputs: list[dict[str, Any]] | None = None,
    widgets: Any = None,
    mode: int = 0,
    title: str | None = None,
) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "id": node_id,
        "type": node_type,
        "pos": [node_id * 50, 0],
        "size": [200, 100],
        "flags": {},
        "order": node_id,
        "mode": mode,
        "inputs": inputs or [],
        "outputs": outputs or [],
        "properties": {"Node name for S&R": node_type},
    }
    if title is not None:
        entry["title"] = title
    if widgets is not None:
        entry["widgets_values"] = widgets
    return entry


def inp(
    name: str, slot_type: str, link: int | None = None, *, widget: bool = False
) -> dict[str, Any]:
    entry: dict[str, Any] = {"localized_name": name, "name": name, "type": slot_type, "link": link}
    if widget:
        entry["widget"] = {"name": name}
    return entry


def out(name: str, slot_type: str, links: list[int] | None = None) -> dict[str, Any]:
    return {"localized_name": name, "name": name, "type": slot_type, "links": links or []}


def reroute(node_id: int, link_in: int | None, links_out: list[int]) -> dict[str, Any]:
    return node(
        node_id, "Reroute", inputs=[inp("", "*", link_in)], outputs=[out("", "*", links_out)]
    )


def workflow(
    nodes: list[dict[str, Any]],
    links: list[list[Any]],
    subgraphs: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    return {
        "id": "00000000-0000-4000-8000-000000000000",
        "revision": 0,
        "last_node_id": max([n["id"] for n in nodes if isinstance(n["id"], int)], default=0),
        "last_link_id": max([link[0] for link in links], default=0),
        "nodes": nodes,
        "links": links,
        "groups": [],
        "config": {},
        "extra": {"ds": {"scale": 1, "offset": [0, 0]}, "frontendVersion": "1.27.10"},
        "definitions": {"subgraphs": subgraphs or []},
        "version": 0.4,
    }


def subgraph(
    sub_id: str,
    name: str,
    nodes: list[dict[str, Any]],
    links: list[dict[str, Any]],
    inputs: list[tuple[str, str, list[int]]],
    outputs: list[tuple[str, str, list[int]]],
) -> dict[str, Any]:
    return {
        "id": sub_id,
        "version": 1,
        "state": {"lastGroupId": 0, "lastNodeId": 99, "lastLinkId": 99, "lastRerouteId": 0},
        "revision": 0,
        "config": {},
        "name": name,
        "inputNode": {"id": -10, "bounding": [0, 0, 120, 60]},
        "outputNode": {"id": -20, "bounding": [600, 0, 120, 60]},
        "inputs": [
            {"id": f"in-{i}", "name": n, "type": t, "linkIds": ids}
            for i, (n, t, ids) in enumerate(inputs)
        ],
        "outputs": [
            {"id": f"out-{i}", "name": n, "type": t, "linkIds": ids}
            for i, (n, t, ids) in enumerate(outputs)
        ],
        "widgets": [],
        "nodes": nodes,
        "links": links,
        "groups": [],
        "extra": {},
    }


def link_obj(
    link_id: int, origin: int, origin_slot: int, target: int, target_slot: int, t: str
) -> dict[str, Any]:
    return {
        "id": link_id,
        "origin_id": origin,
        "origin_slot": origin_slot,
        "target_id": target,
        "target_slot": target_slot,
        "type": t,
    }


def image_chain(middle: list[dict[str, Any]], links: list[list[Any]]) -> dict[str, Any]:
    """EmptyImage (1) → `middle` → PreviewImage (99), wired by `links`."""
    source = node(1, "EmptyImage", outputs=[out("IMAGE", "IMAGE", [1])], widgets=[8, 8, 1, 0])
    sink_link = next(link[0] for link in links if link[3] == 99)
    sink = node(99, "PreviewImage", inputs=[inp("images", "IMAGE", sink_link)])
    return workflow([source, *middle, sink], links)
