"""A third-party ComfyUI API client from PyPI (`comfy-api-simplified`), unmodified, against a
real flowscope server: submit by node title, wait over the WebSocket, fetch the images."""

from __future__ import annotations

import io
import json
from pathlib import Path

from comfy_api_simplified import ComfyApiWrapper, ComfyWorkflowWrapper
from PIL import Image
from server_harness import live_server

WORKFLOW = {
    "1": {
        "class_type": "EmptyImage",
        "inputs": {"width": 16, "height": 8, "batch_size": 2, "color": 0},
        "_meta": {"title": "Canvas"},
    },
    "2": {"class_type": "ImageInvert", "inputs": {"image": ["1", 0]}, "_meta": {"title": "Invert"}},
    "3": {
        "class_type": "SaveImage",
        "inputs": {"images": ["2", 0], "filename_prefix": "client"},
        "_meta": {"title": "Save Image"},
    },
}


def test_comfy_api_simplified_runs_a_workflow_and_fetches_its_images(tmp_path: Path) -> None:
    saved = tmp_path / "workflow_api.json"
    saved.write_text(json.dumps(WORKFLOW))
    with live_server(tmp_path / "data") as server:
        api = ComfyApiWrapper(server.url)
        workflow = ComfyWorkflowWrapper(str(saved))
        workflow.set_node_param("Canvas", "color", 0x102030)
        images = api.queue_and_wait_images(workflow, "Save Image")
        queue = api.get_queue()

    assert sorted(images) == ["client_00001_.png", "client_00002_.png"]
    for data in images.values():
        image = Image.open(io.BytesIO(data)).convert("RGB")
        assert image.size == (16, 8)
        assert image.getpixel((0, 0)) == (0xFF - 0x10, 0xFF - 0x20, 0xFF - 0x30)
    assert queue == {"queue_running": [], "queue_pending": []}
