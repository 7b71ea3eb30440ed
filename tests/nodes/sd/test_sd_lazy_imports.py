"""The SD pack loads torch only when a node runs: listing every node (what `/object_info` does,
model files included) and setting up the model manager stay torch-free, so a restart serves again
without paying ~1.5 s for torch. The combo lists that make this possible match what is
implemented."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from flowscope.nodes.builtin.images import CROP_METHODS
from flowscope.nodes.sd.choices import LATENT_UPSCALE_METHODS, SAMPLER_NAMES, check_implemented
from flowscope.nodes.sd.latents import LatentUpscale, LatentUpscaleBy

torch.set_num_threads(1)

HEAVY_MODULES = ("torch", "numpy", "diffusers", "transformers", "safetensors")

# Runs in a fresh interpreter: this test process has torch loaded already.
LIST_THEN_RUN = """
import json, sys
from flowscope.models.folders import ModelFolders
from flowscope.models.manager import ModelManager, ModelNotFoundError, ModelSettings
from flowscope.nodes.catalog import load_catalog
from flowscope.storage.directories import Directories
from flowscope.telemetry.bus import EventBus

HEAVY = {heavy!r}

def loaded():
    return sorted(name for name in HEAVY if name in sys.modules)

directories = Directories.under(sys.argv[1])
settings = ModelSettings(force_cpu=True, budget_bytes=1 << 30, dtype="fp32")
models = ModelManager(ModelFolders.from_directories(directories), settings)
models.attach_bus(EventBus())
try:
    models.path("checkpoints", "missing.safetensors")
    missing_error = None
except ModelNotFoundError as error:
    missing_error = str(error)
after_manager = loaded()

registry, packs = load_catalog(directories, models=models)
for entry in registry:
    entry.cls.INPUT_TYPES()
info, errors = registry.object_info()
after_listing = loaded()

empty = registry.get("EmptyLatentImage")
(latent,) = getattr(empty(), empty.FUNCTION)(width=64, height=32, batch_size=2)
print(json.dumps({{
    "after_manager": after_manager,
    "missing_error": missing_error,
    "after_listing": after_listing,
    "node_count": len(info),
    "errors": [error.message for error in errors],
    "checkpoints": info["CheckpointLoaderSimple"]["input"]["required"]["ckpt_name"][0],
    "samplers": info["KSampler"]["input"]["required"]["sampler_name"][0],
    "after_running": loaded(),
    "latent_shape": list(latent["samples"].shape),
}}))
"""


def test_listing_every_sd_node_leaves_torch_unloaded_until_a_node_runs(tmp_path: Path) -> None:
    checkpoints = tmp_path / "models" / "checkpoints"
    checkpoints.mkdir(parents=True)
    (checkpoints / "tiny.safetensors").write_bytes(b"not read while listing")
    script = LIST_THEN_RUN.format(heavy=HEAVY_MODULES)
    result = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)

    assert report["after_manager"] == []
    assert "missing.safetensors" in report["missing_error"]
    assert report["after_listing"] == []
    assert report["errors"] == []
    assert report["node_count"] > 40  # the built-ins and the SD pack were really listed
    assert report["checkpoints"] == ["tiny.safetensors"]
    assert report["samplers"] == SAMPLER_NAMES
    # Laziness, not absence: running a node loads torch and works.
    assert "torch" in report["after_running"]
    assert report["latent_shape"] == [2, 4, 4, 8]


@pytest.mark.parametrize("method", LATENT_UPSCALE_METHODS)
@pytest.mark.parametrize("crop", CROP_METHODS)
def test_every_offered_latent_upscale_method_and_crop_is_implemented(
    method: str, crop: str
) -> None:
    latent = {"samples": torch.randn(1, 4, 8, 12)}
    (resized,) = LatentUpscale().upscale(latent, method, width=128, height=64, crop=crop)
    assert resized["samples"].shape == (1, 4, 8, 16)
    assert torch.isfinite(resized["samples"]).all()
    (scaled,) = LatentUpscaleBy().upscale(latent, method, scale_by=0.5)
    assert scaled["samples"].shape == (1, 4, 4, 6)


@pytest.mark.parametrize(
    ("implemented", "offered", "named"),
    [
        (["euler"], ["euler", "heun"], "offered but not implemented ['heun']"),
        (["euler", "heun"], ["euler"], "implemented but not offered ['heun']"),
        (["euler"], ["euler", "euler"], "listed twice ['euler']"),
    ],
)
def test_a_combo_list_that_disagrees_with_its_implementations_fails_loudly(
    implemented: list[str], offered: list[str], named: str
) -> None:
    with pytest.raises(RuntimeError, match="sampler combo list") as error:
        check_implemented("sampler", implemented, offered)
    assert named in str(error.value)


def test_a_combo_list_that_matches_its_implementations_passes() -> None:
    check_implemented("scheduler", {"karras": None, "simple": None}, ["simple", "karras"])
