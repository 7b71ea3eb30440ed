"""The jobs API of newer ComfyUI (`/api/jobs`), which the editor's queue and history panels use."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from engine_harness import link, node
from server_harness import live_server


def chain(value: int) -> dict[str, Any]:
    return {"1": node("StubInt", value=value), "2": node("Collect", value=link("1"))}


def saving(value: int) -> dict[str, Any]:
    return {
        "1": node("EmptyImage", width=8, height=8, batch_size=1, color=value),
        "2": node("SaveImage", images=link("1"), filename_prefix="jobs"),
    }


def test_jobs_list_detail_filters_and_pagination(tmp_path: Path) -> None:
    with live_server(tmp_path) as server:
        done = [server.submit(saving(i))["prompt_id"] for i in range(3)]
        failed = server.submit(
            {"1": node("Fail", value=1, message="x"), "2": node("Collect", value=link("1"))}
        )
        for job_id in [*done, failed["prompt_id"]]:
            server.wait_history(job_id)

        listing = server.client.get("/api/jobs").json()
        assert listing["pagination"]["total"] == 4
        assert listing["jobs"][0]["id"] == failed["prompt_id"]  # newest first
        completed = server.client.get("/api/jobs", params={"status": "completed"}).json()
        assert {job["id"] for job in completed["jobs"]} == set(done)
        job = completed["jobs"][0]
        assert job["status"] == "completed"
        assert job["outputs_count"] == 1
        assert job["previewable_outputs_count"] == 1
        assert job["preview_output"]["mediaType"] == "image"
        assert job["preview_output"]["nodeId"] == "2"
        assert job["execution_start_time"] <= job["execution_end_time"]

        failures = server.client.get("/api/jobs", params={"status": "failed"}).json()["jobs"]
        assert failures[0]["execution_error"]["node_type"] == "Fail"

        page = server.client.get("/api/jobs", params={"limit": 2, "offset": 1}).json()
        assert len(page["jobs"]) == 2
        assert page["pagination"] == {"offset": 1, "limit": 2, "total": 4, "has_more": True}

        detail = server.client.get(f"/api/jobs/{done[0]}").json()
        assert detail["outputs"]["2"]["images"][0]["type"] == "output"
        assert detail["workflow"]["prompt"] == saving(0)
        assert detail["execution_status"]["status_str"] == "success"
        assert server.client.get("/api/jobs/nope").status_code == 404
        assert server.client.get("/api/jobs", params={"status": "sleeping"}).status_code == 400


def test_cancelling_pending_jobs_is_idempotent(tmp_path: Path) -> None:
    with live_server(tmp_path, workers=0) as server:
        first, second = (server.submit(chain(i))["prompt_id"] for i in range(2))
        assert server.client.post(f"/api/jobs/{first}/cancel").json() == {"cancelled": True}
        assert server.client.post(f"/api/jobs/{first}/cancel").json() == {"cancelled": False}
        many = server.client.post("/api/jobs/cancel", json={"job_ids": [second, "unknown"]})
        assert many.json()["cancelled"] is True
        assert server.client.get("/queue").json()["queue_pending"] == []
        listed = server.client.get("/api/jobs", params={"status": "cancelled"}).json()["jobs"]
        assert {job["id"] for job in listed} == {first, second}
        assert server.client.post("/api/jobs/cancel", json={"job_ids": "x"}).status_code == 400
