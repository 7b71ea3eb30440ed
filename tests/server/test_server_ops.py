"""Operations routes: health, readiness, /metrics, the telemetry query API, and the request
guard (origin, CORS, cache headers, `http.request` events)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from engine_harness import link, node
from server_harness import LiveServer, live_server

from flowscope.telemetry.setup import TelemetryOptions


def chain(value: int) -> dict[str, Any]:
    return {"1": node("StubInt", value=value), "2": node("Collect", value=link("1"))}


def telemetry(base: Path) -> TelemetryOptions:
    return TelemetryOptions(log_file=base / "logs" / "events.jsonl", logstore=base / "logstore.db")


def wait_for_events(server: LiveServer, query: str, count: int) -> dict[str, Any]:
    deadline = time.monotonic() + 20
    while True:
        response = server.client.get("/api/flowscope/logs", params={"q": query})
        if response.status_code == 200 and response.json()["total"] >= count:
            found: dict[str, Any] = response.json()
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"{query!r}: fewer than {count} events ({response.text})")
        time.sleep(0.1)


def test_health_and_readiness(tmp_path: Path) -> None:
    with live_server(tmp_path) as server:
        assert server.client.get("/healthz").json()["status"] == "ok"
        ready = server.client.get("/readyz")
        assert ready.status_code == 200
        assert ready.json()["workers"] == 1


def test_not_ready_without_a_worker_or_with_a_full_queue(tmp_path: Path) -> None:
    with live_server(tmp_path / "a", workers=0, ready_max_queue=2) as server:
        assert server.client.get("/readyz").status_code == 200  # workers=0 is by design
        server.submit(chain(1))
        server.submit(chain(2))
        full = server.client.get("/readyz")
        assert full.status_code == 503
        assert "2 jobs queued" in full.json()["problems"][0]
    with live_server(tmp_path / "b") as server:
        for worker in server.ctx.workers:
            worker.stop(5)
        dead = server.client.get("/readyz")
        assert dead.status_code == 503
        assert dead.json()["problems"] == ["no worker is running"]


def test_metrics_and_the_telemetry_query_api(tmp_path: Path) -> None:
    with live_server(tmp_path, telemetry=telemetry(tmp_path)) as server:
        failing = {
            "1": node("Fail", value=1, message="kaput"),
            "2": node("Collect", value=link("1")),
        }
        ok_id = server.submit(chain(5))["prompt_id"]
        bad_id = server.submit(failing)["prompt_id"]
        server.wait_history(ok_id)
        server.wait_history(bad_id)

        # Metrics are updated on the telemetry thread, a moment after the job.
        deadline = time.monotonic() + 10
        while (
            "flowscope_node_duration_seconds_bucket"
            not in (metrics := server.client.get("/metrics")).text
        ):
            assert time.monotonic() < deadline, metrics.text
            time.sleep(0.05)
        assert metrics.status_code == 200
        openmetrics = server.client.get(
            "/metrics", headers={"accept": "application/openmetrics-text;version=1.0.0"}
        )
        assert openmetrics.headers["content-type"].startswith("application/openmetrics-text")

        found = wait_for_events(server, f"job.id:{bad_id} AND level:error", 2)
        assert {e["event.action"] for e in found["events"]} == {"node.failed", "job.failed"}
        assert any("kaput" in e.get("error.message", "") for e in found["events"])

        bad = server.client.get("/api/flowscope/logs", params={"q": "level:(error"})
        assert bad.status_code == 400
        assert bad.json()["error"]["type"] == "invalid_query"
        assert isinstance(bad.json()["position"], int)

        wait_for_events(server, f"job.id:{ok_id} AND event.action:job.succeeded", 1)
        timeline = server.client.get(f"/api/flowscope/jobs/{ok_id}/timeline").json()
        assert [span["node_id"] for span in timeline["spans"]] == ["1", "2"]
        assert timeline["status"] == "succeeded"
        assert server.client.get("/api/flowscope/jobs/nothing/timeline").status_code == 404

        stats = server.client.get("/api/flowscope/stats/nodes").json()["nodes"]
        assert {row["node_type"] for row in stats} >= {"StubInt", "Collect", "Fail"}

        requests = wait_for_events(
            server, "event.action:http.request AND url.path:/prompt AND http.request.method:POST", 2
        )
        assert {e["http.response.status_code"] for e in requests["events"]} == {200}

        unknown = server.client.post("/prompt", json={"prompt": {"1": node("NoSuchNode")}})
        assert unknown.status_code == 400
        (rejected,) = wait_for_events(server, "event.action:job.rejected", 1)["events"]
        assert rejected["error.type"] == "invalid_prompt"
        assert rejected["job.id"]


def test_the_query_api_says_when_the_log_store_is_off(tmp_path: Path) -> None:
    with live_server(tmp_path) as server:
        response = server.client.get("/api/flowscope/logs", params={"q": "level:error"})
        assert response.status_code == 404
        assert "log store" in response.json()["error"]["message"]
        assert server.client.get("/metrics").status_code == 404


def test_cross_origin_requests_to_loopback_are_refused(tmp_path: Path) -> None:
    with live_server(tmp_path) as server:
        evil = server.client.post(
            "/prompt", json={"prompt": chain(1)}, headers={"origin": "http://evil.example"}
        )
        assert evil.status_code == 403
        same = server.client.get("/queue", headers={"origin": server.url})
        assert same.status_code == 200
        assert server.client.get("/queue").status_code == 200  # no Origin: API clients


def test_cors_header_opt_in(tmp_path: Path) -> None:
    with live_server(tmp_path, cors_origin="https://app.example") as server:
        response = server.client.get("/queue", headers={"origin": "https://app.example"})
        assert response.status_code == 200
        assert response.headers["access-control-allow-origin"] == "https://app.example"
        preflight = server.client.options("/prompt", headers={"origin": "https://app.example"})
        assert preflight.status_code == 200
        assert "POST" in preflight.headers["access-control-allow-methods"]


def test_cache_headers_follow_comfyui(tmp_path: Path) -> None:
    with live_server(tmp_path) as server:
        missing = server.client.get("/view", params={"filename": "nothing.png"})
        assert missing.status_code == 404
        assert missing.headers["cache-control"] == "public, max-age=3600"
