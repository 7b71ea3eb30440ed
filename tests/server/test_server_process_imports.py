"""`flowscope serve` with its worker in a child process never loads torch itself: listing the
nodes (the SD pack included), the editor's start-up calls and trivial jobs leave it out, which
keeps a restart fast and the HTTP process small. The worker loads it when a job needs it."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from process_server import serve

from flowscope.models.tiny import create_tiny_models

pytestmark = pytest.mark.slow

TRIVIAL = {
    "1": {"class_type": "PrimitiveInt", "inputs": {"value": 5}},
    "2": {"class_type": "PreviewAny", "inputs": {"source": ["1", 0]}},
}


def mapped_libraries(pid: int) -> set[str]:
    """The shared objects a process has loaded (Linux)."""
    lines = Path(f"/proc/{pid}/maps").read_text().splitlines()
    return {Path(line.split()[-1]).name for line in lines if line.rstrip().endswith(".so")}


def loads_torch(pid: int) -> bool:
    return any(name.startswith("libtorch") for name in mapped_libraries(pid))


def children(pid: int) -> list[int]:
    return [int(child) for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def test_the_server_process_serves_the_editor_and_jobs_without_torch(tmp_path: Path) -> None:
    create_tiny_models(tmp_path / "models")
    with serve(tmp_path, "--cpu") as (process, client):
        info = client.get("/object_info").json()
        assert (
            "tiny-sd1.safetensors"
            in info["CheckpointLoaderSimple"]["input"]["required"]["ckpt_name"][0]
        )
        assert info["KSampler"]["input"]["required"]["sampler_name"][0][0] == "euler"
        stats = client.get("/system_stats").json()
        assert stats["system"]["pytorch_version"].startswith("2.")
        assert [device["type"] for device in stats["devices"]] == ["cpu"]
        job_id = client.post("/prompt", json={"prompt": TRIVIAL}).json()["prompt_id"]
        deadline = time.monotonic() + 60
        while job_id not in client.get(f"/history/{job_id}").json():
            assert time.monotonic() < deadline, "the trivial job did not finish"
            time.sleep(0.05)
        (worker,) = children(process.pid)
        assert not loads_torch(process.pid)
        assert not loads_torch(worker)  # nothing it ran needed torch

        # A job that does need it: the worker loads torch, the server still does not.
        latent = {
            "1": {
                "class_type": "EmptyLatentImage",
                "inputs": {"width": 64, "height": 64, "batch_size": 1},
            }
        }
        latent["2"] = {"class_type": "PreviewAny", "inputs": {"source": ["1", 0]}}
        job_id = client.post("/prompt", json={"prompt": latent}).json()["prompt_id"]
        while job_id not in (entry := client.get(f"/history/{job_id}").json()):
            assert time.monotonic() < deadline + 60, "the latent job did not finish"
            time.sleep(0.05)
        assert entry[job_id]["status"]["status_str"] == "success"
        assert loads_torch(worker)
        assert not loads_torch(process.pid)
