"""The model flags of `serve`, `worker` and `run` (ComfyUI's `--cpu`, `--force-fp16`,
`--force-fp32`, plus ours), turned into the `ModelManager` the Stable Diffusion pack loads
through."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from flowscope.models.folders import ModelFolders
    from flowscope.models.manager import ModelManager, ModelSettings

_GB = 1024**3
_DTYPE_FLAGS = (("force_fp32", "fp32"), ("force_fp16", "fp16"), ("force_bf16", "bf16"))


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("models")
    group.add_argument("--cpu", action="store_true", help="run models on the CPU only")
    precision = group.add_mutually_exclusive_group()
    precision.add_argument(
        "--force-fp32", action="store_true", help="compute in fp32 (default: fp16 on GPUs)"
    )
    precision.add_argument("--force-fp16", action="store_true", help="compute in fp16")
    precision.add_argument(
        "--force-bf16", action="store_true", help="compute in bf16 where the device supports it"
    )
    group.add_argument(
        "--allow-pickle",
        action="store_true",
        help="load .ckpt/.pt/.bin pickles (tensors only, torch.load(weights_only=True)); "
        "refused by default because unpickling can run code",
    )
    group.add_argument(
        "--model-budget",
        type=_positive_gb,
        metavar="GB",
        help="memory for loaded models before the least recently used are unloaded "
        "(default: 75%% of the GPU's memory, or half the RAM on the CPU)",
    )


def model_settings(args: argparse.Namespace) -> ModelSettings:
    from flowscope.models.manager import ModelSettings

    dtype = next((dtype for flag, dtype in _DTYPE_FLAGS if getattr(args, flag)), None)
    budget = round(args.model_budget * _GB) if args.model_budget is not None else None
    return ModelSettings(
        force_cpu=args.cpu, allow_pickle=args.allow_pickle, budget_bytes=budget, dtype=dtype
    )


def model_manager(args: argparse.Namespace, folders: ModelFolders) -> ModelManager:
    from flowscope.models.manager import ModelManager

    return ModelManager(folders, model_settings(args))


def model_arguments(args: argparse.Namespace) -> list[str]:
    """The flags that give another process (a server's worker) the same model settings."""
    flags = [f"--{flag.replace('_', '-')}" for flag, _ in _DTYPE_FLAGS if getattr(args, flag)]
    if args.cpu:
        flags.append("--cpu")
    if args.allow_pickle:
        flags.append("--allow-pickle")
    if args.model_budget is not None:
        flags += ["--model-budget", repr(args.model_budget)]
    return flags


def _positive_gb(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of GB: {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be more than 0 GB: {text!r}")
    return value
