"""The queue routes over a real server: /prompt, /queue, /interrupt, /history, with ComfyUI's
shapes and our stricter handling of bad input."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import testing_nodes
from engine_harness import link, node
from server_harness import LiveServer, live_server


@pytest.fixture
def server(tmp_path: Path) -> Iterator[LiveServer]:
    with live_server(tmp_path) as running:
        yield running


@pytest.fixture
def idle_server(tmp_path: Path) -> Iterator[LiveServer]:
    """No worker: jobs stay queued."""
    with live_server(tmp_path, workers=0) as running:
        yield running


def chain(value: int) -> dict[str, Any]:
    return {
        "1": node("StubInt", value=value),
        "2": node("AddInt", a=link("1"), b=1),
        "3": node("Collect", value=link("2")),
    }


def test_a_submitted_prompt_runs_and_its_history_has_comfyui_shape(server: LiveServer) -> None:
    reply = server.submit(chain(41), client_id="c1")
    assert set(reply) == {"prompt_id", "number", "node_errors"}
    assert reply["node_errors"] == {}
    uuid.UUID(reply["prompt_id"])  # a canonical UUID
    entry = server.wait_history(reply["prompt_id"])
    assert entry["outputs"] == {"3": {"value": [42]}}
    assert entry["status"]["status_str"] == "success"
    assert entry["status"]["completed"] is True
    kinds = [message[0] for message in entry["status"]["messages"]]
    assert kinds == ["execution_start", "execution_cached", "execution_success"]
    number, job_id, prompt, extra_data, outputs = entry["prompt"]
    assert (number, job_id, outputs) == (reply["number"], reply["prompt_id"], ["3"])
    assert prompt == chain(41)
    assert extra_data["client_id"] == "c1"
    assert isinstance(extra_data["create_time"], int)
    assert entry["meta"]["3"]["node_id"] == "3"
    # Per-node timings live under a key ComfyUI clients ignore.
    timed = {record["node_id"]: record for record in entry["flowscope"]["nodes"]}
    assert set(timed) == {"1", "2", "3"}
    assert all(record["duration_ms"] >= 0 for record in timed.values())


def test_every_route_is_also_under_api(server: LiveServer) -> None:
    reply = server.client.post("/api/prompt", json={"prompt": chain(1)}).json()
    server.wait_history(reply["prompt_id"])
    assert reply["prompt_id"] in server.client.get("/api/history").json()
    assert server.client.get("/api/queue").json() == {"queue_running": [], "queue_pending": []}


@pytest.mark.parametrize(
    ("body", "error_type", "fragment"),
    [
        (b"{not json", "invalid_json", "not valid JSON"),
        (b"", "invalid_json", "empty"),
        (b"[1, 2]", "invalid_json", "JSON object"),
        (b"\xff\xfe", "invalid_json", "UTF-8"),
        (b'{"client_id": "x"}', "no_prompt", "No prompt provided"),
        (b'{"prompt": {}, "prompt_id": "not-a-uuid"}', "invalid_prompt_id", "UUID"),
        (b'{"prompt": {}, "extra_data": []}', "invalid_extra_data", "extra_data"),
        (b'{"prompt": {}, "number": "high"}', "invalid_number", "number"),
    ],
)
def test_malformed_submissions_get_400_with_a_message(
    server: LiveServer, body: bytes, error_type: str, fragment: str
) -> None:
    response = server.client.post(
        "/prompt", content=body, headers={"content-type": "application/json"}
    )
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["type"] == error_type
    assert fragment in error["message"]
    assert server.client.get("/prompt").status_code == 200  # still serving


def test_invalid_graphs_get_comfyui_validation_errors(server: LiveServer) -> None:
    unknown = server.client.post("/prompt", json={"prompt": {"1": node("NoSuchNode")}})
    assert unknown.status_code == 400
    body = unknown.json()
    assert body["error"]["type"] == "invalid_prompt"  # ComfyUI: an unregistered class_type
    assert "NoSuchNode" in body["error"]["message"]

    bad_input = {"1": node("StubInt", value="seven"), "2": node("Collect", value=link("1"))}
    response = server.client.post("/prompt", json={"prompt": bad_input})
    assert response.status_code == 400
    body = response.json()
    assert body["error"]["type"] == "prompt_outputs_failed_validation"
    (problem,) = body["node_errors"]["1"]["errors"]
    assert problem["type"] == "invalid_input_type"
    assert problem["extra_info"]["input_name"] == "value"

    cycle = {"1": node("AddInt", a=link("2"), b=1), "2": node("AddInt", a=link("1"), b=1)}
    cycle["3"] = node("Collect", value=link("2"))
    assert server.client.post("/prompt", json={"prompt": cycle}).status_code == 400
    assert server.client.get("/queue").json()["queue_pending"] == []


def test_a_job_is_stored_before_its_id_is_returned(idle_server: LiveServer) -> None:
    reply = idle_server.submit(chain(5))
    _running, pending = idle_server.ctx.store.queue()
    assert [job.job_id for job in pending] == [reply["prompt_id"]]


def test_priority_number_and_front_follow_comfyui(idle_server: LiveServer) -> None:
    first = idle_server.submit(chain(1))["prompt_id"]
    second = idle_server.submit(chain(2))["prompt_id"]
    urgent = idle_server.submit(chain(3), front=True)["prompt_id"]
    explicit = idle_server.submit(chain(4), number=-1000)["prompt_id"]
    pending = idle_server.client.get("/queue").json()["queue_pending"]
    assert [item[1] for item in pending] == [explicit, urgent, first, second]
    assert idle_server.client.get("/prompt").json() == {"exec_info": {"queue_remaining": 4}}


def test_queue_delete_and_clear(idle_server: LiveServer) -> None:
    ids = [idle_server.submit(chain(i))["prompt_id"] for i in range(3)]
    assert idle_server.client.post("/queue", json={"delete": [ids[1]]}).status_code == 200
    pending = idle_server.client.get("/queue").json()["queue_pending"]
    assert [item[1] for item in pending] == [ids[0], ids[2]]
    assert idle_server.client.post("/queue", json={"clear": True}).status_code == 200
    assert idle_server.client.get("/queue").json()["queue_pending"] == []
    bad = idle_server.client.post("/queue", json={"delete": "all"})
    assert bad.status_code == 400


def test_secrets_stay_out_of_queue_and_history(server: LiveServer) -> None:
    extra = {"api_key_comfy_org": "sk-secret", "auth_token_comfy_org": "tok", "note": "kept"}
    job_id = server.submit(chain(2), extra_data=extra)["prompt_id"]
    entry = server.wait_history(job_id)
    extra_data = entry["prompt"][3]
    assert extra_data["note"] == "kept"
    assert "api_key_comfy_org" not in extra_data
    assert "auth_token_comfy_org" not in extra_data
    assert "sk-secret" not in server.client.get("/history").text


def test_history_paging_and_deletion(server: LiveServer) -> None:
    ids = [server.submit(chain(100 + i))["prompt_id"] for i in range(5)]
    for job_id in ids:
        server.wait_history(job_id)
    assert list(server.client.get("/history").json()) == ids
    assert list(server.client.get("/history", params={"max_items": 2}).json()) == ids[-2:]
    paged = server.client.get("/history", params={"max_items": 2, "offset": 1}).json()
    assert list(paged) == ids[1:3]
    assert server.client.get("/history/unknown").json() == {}
    server.client.post("/history", json={"delete": [ids[0]]})
    assert list(server.client.get("/history").json()) == ids[1:]
    server.client.post("/history", json={"clear": True})
    assert server.client.get("/history").json() == {}
    assert server.client.get("/history", params={"max_items": -1}).status_code == 400


def test_interrupt_stops_the_running_job(server: LiveServer) -> None:
    started = threading.Event()
    testing_nodes.HOOKS["started"] = lambda _value: started.set()
    try:
        prompt = {
            "1": node("UntilInterrupted", seconds=20.0),
            "2": node("Collect", value=link("1")),
        }
        job_id = server.submit(prompt)["prompt_id"]
        assert started.wait(10)
        other = server.client.post("/interrupt", json={"prompt_id": str(uuid.uuid4())})
        assert other.status_code == 200  # another id: nothing happens
        time.sleep(0.05)
        assert job_id not in server.client.get("/history").json()
        began = time.monotonic()
        assert server.client.post("/interrupt", json={"prompt_id": job_id}).status_code == 200
        entry = server.wait_history(job_id)
        assert time.monotonic() - began < 5
    finally:
        testing_nodes.HOOKS.pop("started", None)
    assert entry["status"]["status_str"] == "error"
    assert entry["status"]["completed"] is False
    assert entry["status"]["messages"][-1][0] == "execution_interrupted"


def test_a_failing_node_is_reported_in_history(server: LiveServer) -> None:
    prompt = {"1": node("Fail", value=1, message="boom"), "2": node("Collect", value=link("1"))}
    job_id = server.submit(prompt)["prompt_id"]
    entry = server.wait_history(job_id)
    assert entry["status"]["status_str"] == "error"
    kind, payload = entry["status"]["messages"][-1]
    assert kind == "execution_error"
    assert payload["node_id"] == "1"
    assert payload["node_type"] == "Fail"
    assert "boom" in payload["exception_message"]


def test_request_bodies_over_the_limit_get_413(tmp_path: Path) -> None:
    with live_server(tmp_path, max_upload_size=1024) as server:
        big = {"prompt": chain(1), "extra_data": {"pad": "x" * 4096}}
        response = server.client.post("/prompt", json=big)
        assert response.status_code == 413
        assert "limit" in response.json()["error"]["message"]
        assert server.client.get("/prompt").status_code == 200
