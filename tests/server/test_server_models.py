"""The server's Stable Diffusion models: the pack loads through the server's `ModelManager` (its
folders, `--cpu` and the other model flags), `model.*` events join the server's telemetry, and
`POST /free` with `unload_models` empties the cache, with the worker as a thread and as a child
process."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from process_server import live_process_server
from sd_world import text_to_image
from server_harness import LiveServer, live_server

from flowscope.models.folders import ModelFolders
from flowscope.models.manager import ModelManager, ModelSettings
from flowscope.models.tiny import create_tiny_models
from flowscope.storage.directories import Directories
from flowscope.telemetry import Action, InMemorySubscriber

CHECKPOINT = "tiny-sd1.safetensors"


@pytest.fixture(autouse=True)
def one_thread() -> None:
    torch.set_num_threads(1)


@pytest.fixture(
    params=["thread", pytest.param("process", marks=pytest.mark.slow)],
    ids=["worker-thread", "worker-process"],
)
def server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[LiveServer]:
    create_tiny_models(tmp_path / "models")
    if request.param == "thread":
        folders = ModelFolders.from_directories(Directories.under(tmp_path))
        models = ModelManager(folders, ModelSettings(force_cpu=True, dtype="fp32"))
        with live_server(tmp_path, models=models) as running:
            yield running
    else:
        with live_process_server(tmp_path, "--cpu", "--force-fp32") as running:
            yield running


def wait_for(events: InMemorySubscriber, action: Action, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not events.of(action):
        assert time.monotonic() < deadline, f"no {action.value} event"
        time.sleep(0.02)


def test_a_generation_loads_through_the_servers_models_and_free_unloads_them(
    server: LiveServer,
) -> None:
    events = InMemorySubscriber(server.ctx.bus)
    job_id = server.submit(text_to_image(CHECKPOINT, steps=1, size=64))["prompt_id"]
    entry = server.wait_history(job_id, timeout_s=60)
    assert entry["status"]["status_str"] == "success", entry["status"]
    (image,) = entry["outputs"]["9"]["images"]
    assert server.client.get("/view", params=image).status_code == 200

    loaded = events.of(Action.MODEL_LOADED)
    assert loaded, "the checkpoint's load reached the server's bus"
    assert {event.get("model.device") for event in loaded} == {"cpu"}
    assert any(CHECKPOINT in str(event.get("model.name")) for event in loaded)
    assert not events.of(Action.MODEL_UNLOADED)

    # Loaded once: the same checkpoint again is a cache hit, not a second load.
    again = server.submit(text_to_image(CHECKPOINT, steps=1, size=64, seed=2))["prompt_id"]
    server.wait_history(again, timeout_s=60)
    assert len(events.of(Action.MODEL_LOADED)) == len(loaded)

    assert server.client.post("/free", json={"unload_models": True}).status_code == 200
    wait_for(events, Action.MODEL_UNLOADED)
    unloaded = {event.get("model.name") for event in events.of(Action.MODEL_UNLOADED)}
    assert unloaded == {event.get("model.name") for event in loaded}
