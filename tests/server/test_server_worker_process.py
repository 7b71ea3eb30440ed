"""A server whose worker is a child process (`flowscope serve`'s default): the queue routes reach
it (/interrupt, /free), /readyz and /metrics see it, its events land in the server's telemetry,
and it never outlives its server."""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from engine_harness import link, node
from process_server import install_test_pack, live_process_server, serve
from server_harness import LiveServer

from flowscope.cli.serve import add_serve_arguments, add_worker_arguments, worker_process_command
from flowscope.jobs import WorkerProcess
from flowscope.jobs.link import LINK_FD_FLAG
from flowscope.telemetry.setup import TelemetryOptions

pytestmark = pytest.mark.slow


def chain(value: int) -> dict[str, Any]:
    return {"1": node("StubInt", value=value), "2": node("Collect", value=link("1"))}


def until_interrupted() -> dict[str, Any]:
    return {"1": node("UntilInterrupted", seconds=30.0), "2": node("Collect", value=link("1"))}


@pytest.fixture
def server(tmp_path: Path) -> Iterator[LiveServer]:
    options = TelemetryOptions(log_file=tmp_path / "logs" / "events.jsonl")
    with live_process_server(tmp_path, telemetry=options) as running:
        yield running


def process_of(server: LiveServer) -> WorkerProcess:
    (worker,) = server.ctx.workers
    assert isinstance(worker, WorkerProcess)
    return worker


def wait_running(server: LiveServer, job_id: str) -> None:
    deadline = time.monotonic() + 30
    while [item[1] for item in server.client.get("/queue").json()["queue_running"]] != [job_id]:
        assert time.monotonic() < deadline, f"{job_id} never started"
        time.sleep(0.02)


def test_interrupt_reaches_the_child(server: LiveServer) -> None:
    job_id = server.submit(until_interrupted())["prompt_id"]
    wait_running(server, job_id)
    assert server.client.post("/interrupt", json={"prompt_id": "another"}).status_code == 200
    time.sleep(0.1)
    assert job_id not in server.client.get("/history").json()
    assert server.client.post("/interrupt", json={"prompt_id": job_id}).status_code == 200
    entry = server.wait_history(job_id, timeout_s=10)
    assert entry["status"]["messages"][-1][0] == "execution_interrupted"
    # An empty body interrupts whatever runs.
    job_id = server.submit(until_interrupted())["prompt_id"]
    wait_running(server, job_id)
    assert server.client.post("/api/interrupt").status_code == 200
    entry = server.wait_history(job_id, timeout_s=10)
    assert entry["status"]["messages"][-1][0] == "execution_interrupted"


def test_free_memory_reaches_the_child(server: LiveServer) -> None:
    def cached(job_id: str) -> list[str]:
        messages = dict(server.wait_history(job_id)["status"]["messages"])
        return sorted(messages["execution_cached"]["nodes"])

    assert cached(server.submit(chain(5))["prompt_id"]) == []
    assert cached(server.submit(chain(5))["prompt_id"]) == ["1", "2"]
    assert server.client.post("/free", json={"free_memory": True}).status_code == 200
    assert cached(server.submit(chain(5))["prompt_id"]) == []


def test_readiness_metrics_and_logs_include_the_child(server: LiveServer, tmp_path: Path) -> None:
    assert server.client.get("/readyz").json()["workers"] == 1
    job_id = server.submit(chain(3))["prompt_id"]
    server.wait_history(job_id)
    deadline = time.monotonic() + 10
    while 'flowscope_jobs_total{outcome="success"} 1.0' not in (
        metrics := server.client.get("/metrics").text
    ):
        assert time.monotonic() < deadline, metrics
        time.sleep(0.05)
    executions = [line for line in metrics.splitlines() if "node_executions_total{" in line]
    assert {'node_type="StubInt"', 'node_type="Collect"'} <= {
        label for line in executions for label in line.split("{")[1].split(",")
    }
    # The child's events are written by the server's own event log.
    log = tmp_path / "logs" / "events.jsonl"
    wanted = {"job.queued", "job.started", "node.started", "node.succeeded", "job.succeeded"}
    while True:
        lines = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
        actions = {line["event.action"] for line in lines if line.get("job.id") == job_id}
        if wanted <= actions:
            break
        assert time.monotonic() < deadline, actions
        time.sleep(0.05)


def test_a_killed_child_is_not_ready_until_it_is_back(server: LiveServer) -> None:
    worker = process_of(server)
    first = worker.pid
    assert first is not None
    os.kill(first, signal.SIGKILL)
    deadline = time.monotonic() + 5
    while (ready := server.client.get("/readyz")).status_code == 200:
        assert time.monotonic() < deadline, "still ready with its worker gone"
        time.sleep(0.01)
    assert ready.json()["problems"] == ["no worker is running"]
    deadline = time.monotonic() + 60
    while server.client.get("/readyz").status_code != 200:
        assert time.monotonic() < deadline, "the worker process did not come back"
        time.sleep(0.05)
    assert worker.pid != first
    job_id = server.submit(chain(9))["prompt_id"]
    assert server.wait_history(job_id)["outputs"]["2"]["value"] == [9]


def children_of(pid: int) -> list[int]:
    """Child process ids (ps exits 1 when there are none)."""
    found = subprocess.run(
        ["ps", "-o", "pid=", "--ppid", str(pid)], check=False, capture_output=True, text=True
    )
    return [int(line) for line in found.stdout.split()]


def test_a_killed_server_takes_its_worker_process_with_it(tmp_path: Path) -> None:
    with serve(install_test_pack(tmp_path)) as (process, client):
        job_id = client.post("/prompt", json={"prompt": until_interrupted()}).json()["prompt_id"]
        deadline = time.monotonic() + 30
        while [i[1] for i in client.get("/queue").json()["queue_running"]] != [job_id]:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        (child,) = children_of(process.pid)
        process.kill()
        process.wait(10)
    deadline = time.monotonic() + 10
    while Path(f"/proc/{child}").exists() and "Z" not in _state(child):
        assert time.monotonic() < deadline, "the worker process outlived its server"
        time.sleep(0.05)


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except (OSError, IndexError):
        return "gone"


def test_the_worker_command_carries_the_servers_options(tmp_path: Path) -> None:
    def parser(add: Any) -> argparse.ArgumentParser:
        built = argparse.ArgumentParser()
        built.add_argument("--base-directory")
        add(built)
        return built

    serve_args = parser(add_serve_arguments).parse_args(
        [
            "--base-directory",
            str(tmp_path),
            "--input-directory",
            str(tmp_path / "in"),
            "--output-directory",
            str(tmp_path / "out"),
            "--extra-model-paths-config",
            "a.yaml",
            "--extra-model-paths-config",
            "b.yaml",
            "--cache-lru",
            "7",
            "--disable-metadata",
            "--cpu",
            "--log-inputs",
            "full",
            "--worker-nice",
            "5",
        ]
    )
    command = worker_process_command(serve_args, "sqlite:///x.db")
    assert command[:4] == [sys.executable, "-m", "flowscope.cli", "worker"]
    worker_args = parser(add_worker_arguments).parse_args([*command[4:], LINK_FD_FLAG, "9"])
    assert worker_args.base_directory == str(tmp_path)
    assert worker_args.input_directory == str(tmp_path / "in")
    assert worker_args.output_directory == str(tmp_path / "out")
    assert worker_args.temp_directory is None
    assert worker_args.extra_model_paths_config == ["a.yaml", "b.yaml"]
    assert worker_args.cache_lru == 7
    assert worker_args.disable_metadata and worker_args.cpu
    assert worker_args.database_url == "sqlite:///x.db"
    assert worker_args.log_inputs == "full"
    assert worker_args.nice == 5
    assert worker_args.link_fd == 9


def test_serve_with_worker_threads_runs_jobs_in_its_own_process(tmp_path: Path) -> None:
    with serve(install_test_pack(tmp_path), "--worker-threads") as (process, client):
        job_id = client.post("/prompt", json={"prompt": chain(4)}).json()["prompt_id"]
        deadline = time.monotonic() + 30
        while job_id not in (history := client.get(f"/history/{job_id}").json()):
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert children_of(process.pid) == []
    assert history[job_id]["flowscope"]["worker_id"].split(":")[1] == str(process.pid)
    assert isinstance(client, httpx.Client)
