"""`flowscope models`: write the tiny test / demo models (`create-tiny`) and say what a weight
file is (`detect`)."""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from flowscope.cli import DEFAULT_BASE_DIRECTORY
from flowscope.cli.display import make_console
from flowscope.storage.directories import Directories


def add_models_command(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    models = commands.add_parser(
        "models",
        help="create the tiny demo models, or detect what a model file is",
        description="Model-file tools: `create-tiny` writes small random-weight models (a "
        "checkpoint, LoRAs and a ControlNet) in ComfyUI's folder layout; `detect` reads a "
        "weight file and says its kind and family.",
    )
    actions = models.add_subparsers(dest="models_command", required=True, metavar="ACTION")
    tiny = actions.add_parser(
        "create-tiny",
        help="write tiny random-weight SD models (checkpoint, LoRAs, ControlNet)",
        description="Write checkpoints/tiny-FAMILY.safetensors (original single-file layout), "
        "loras/tiny-FAMILY-lora-{kohya,kohya-ldm,peft}.safetensors and "
        "controlnet/tiny-FAMILY-controlnet.safetensors under DIR.",
    )
    tiny.add_argument(
        "directory",
        nargs="?",
        metavar="DIR",
        help="the models folder to write into (default BASE/models)",
    )
    tiny.add_argument("--family", choices=["sd1", "sdxl"], default="sd1", help="default sd1")
    tiny.add_argument("--seed", type=int, default=0, help="weights are deterministic per seed")
    tiny.add_argument(
        "--base-directory",
        default=DEFAULT_BASE_DIRECTORY,
        help=f"data folder whose models/ DIR defaults to (default {DEFAULT_BASE_DIRECTORY})",
    )
    detect = actions.add_parser(
        "detect",
        help="say what a weight file is (kind, family, prediction, text encoders)",
        description="Read a weight file and print its kind (checkpoint, controlnet, lora, vae) "
        "and, for checkpoints, the family and the configs inferred from its shapes.",
    )
    detect.add_argument("file", type=Path, metavar="FILE")
    detect.add_argument(
        "--allow-pickle",
        action="store_true",
        help="also read .ckpt/.pt pickles (with torch.load(weights_only=True))",
    )
    detect.add_argument("--json", action="store_true", help="print JSON")


def models_command(args: argparse.Namespace) -> int:
    if args.models_command == "create-tiny":
        return _create_tiny(args)
    return _detect(args)


def _create_tiny(args: argparse.Namespace) -> int:
    from flowscope.models.tiny import create_tiny_models

    directory = (
        Path(args.directory) if args.directory else Directories.under(args.base_directory).models
    )
    started = time.perf_counter()
    import diffusers  # noqa: F401  (timed apart: importing it takes longer than the work)
    import transformers  # noqa: F401

    imported = time.perf_counter()
    paths = create_tiny_models(directory, args.family, seed=args.seed)
    done = time.perf_counter()
    console = make_console()
    for label, path in (
        ("checkpoint", paths.checkpoint),
        ("LoRA (kohya, diffusers names)", paths.lora_kohya),
        ("LoRA (kohya, LDM names)", paths.lora_kohya_ldm),
        ("LoRA (peft)", paths.lora_peft),
        ("ControlNet", paths.controlnet),
    ):
        console.print(f"{label:30} {path}")
    console.print(
        f"tiny {args.family} models written in {done - imported:.2f} s "
        f"(+ {imported - started:.2f} s importing diffusers)"
    )
    return 0


def _detect(args: argparse.Namespace) -> int:
    from flowscope.models.families import (
        ModelKind,
        detect_checkpoint_family,
        detect_kind,
        infer_controlnet_config,
    )
    from flowscope.models.files import ModelFileError, read_state_dict

    console = make_console()
    err = make_console(stderr=True)
    try:
        state_dict = read_state_dict(args.file, allow_pickle=args.allow_pickle)
        kind = detect_kind(state_dict)
        report: dict[str, Any] = {"file": str(args.file), "kind": kind.value}
        if kind is ModelKind.CHECKPOINT:
            family = detect_checkpoint_family(state_dict, source=args.file)
            report |= {
                "family": family.family.value,
                "prediction": family.prediction,
                "text_encoders": list(family.text_encoders),
                "vae_scaling_factor": family.vae_scaling_factor,
                "unet_config": family.unet_config,
                "vae_config": family.vae_config,
                "text_configs": family.text_configs,
            }
        elif kind is ModelKind.CONTROLNET and any(
            k.startswith("control_model.") for k in state_dict
        ):
            controlnet_family, config = infer_controlnet_config(state_dict)
            report |= {"family": controlnet_family.value, "controlnet_config": config}
    except ModelFileError as error:
        err.print(f"[red]error:[/] {error}")
        return 1
    if args.json:
        console.print_json(data=report)
        return 0
    console.print(f"{report['file']}: {report['kind']}", highlight=False)
    for key in ("family", "prediction", "text_encoders", "vae_scaling_factor"):
        if key in report:
            value = report[key]
            shown = ", ".join(value) if isinstance(value, list) else value
            console.print(f"  {key:20} {shown}", highlight=False)
    return 0
