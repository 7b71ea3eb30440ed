"""`flowscope serve` as a process: graceful SIGTERM, queued jobs surviving a restart, and a job
whose server was killed mid-run re-queued once, then failed with a clear status."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from engine_harness import link, node
from process_server import command, install_test_pack, serve

pytestmark = pytest.mark.slow


@pytest.fixture
def base(tmp_path: Path) -> Path:
    return install_test_pack(tmp_path)


def chain(value: int) -> dict[str, Any]:
    return {"1": node("StubInt", value=value), "2": node("Collect", value=link("1"))}


def wait(client: httpx.Client, job_id: str, timeout_s: float = 30) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        found = client.get(f"/history/{job_id}").json()
        if job_id in found:
            entry: dict[str, Any] = found[job_id]
            return entry
        time.sleep(0.05)
    raise AssertionError(f"{job_id} did not finish")


def wait_running(client: httpx.Client, job_id: str) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        running = client.get("/queue").json()["queue_running"]
        if [item[1] for item in running] == [job_id]:
            return
        time.sleep(0.05)
    raise AssertionError(f"{job_id} never started")


def test_queued_jobs_survive_a_graceful_restart(base: Path) -> None:
    with serve(base, "--workers", "0") as (process, client):
        ids = [
            client.post("/prompt", json={"prompt": chain(i)}).json()["prompt_id"] for i in range(3)
        ]
        process.send_signal(signal.SIGTERM)
        assert process.wait(20) == 0
    with serve(base) as (_process, client):
        entries = [wait(client, job_id) for job_id in ids]
    assert [entry["outputs"]["2"]["value"] for entry in entries] == [[0], [1], [2]]


def test_a_job_running_when_the_server_died_is_requeued_once_then_failed(base: Path) -> None:
    slow = {"1": node("UntilInterrupted", seconds=60.0), "2": node("Collect", value=link("1"))}
    with serve(base) as (process, client):
        job_id = client.post("/prompt", json={"prompt": slow}).json()["prompt_id"]
        wait_running(client, job_id)
        process.kill()  # no chance to clean up: the job is left "running" in the store
        process.wait(10)
    with serve(base) as (process, client):
        wait_running(client, job_id)  # re-queued and started again
        process.kill()
        process.wait(10)
    with serve(base) as (_process, client):
        entry = wait(client, job_id)
        assert client.get("/queue").json() == {"queue_running": [], "queue_pending": []}
    assert entry["status"]["status_str"] == "error"
    kind, payload = entry["status"]["messages"][-1]
    assert kind == "execution_error"
    assert "not retried" in payload["exception_message"]


def test_a_requeued_job_that_then_succeeds_says_so(base: Path) -> None:
    short = {"1": node("Sleep", value=1, seconds=3.0), "2": node("Collect", value=link("1"))}
    with serve(base) as (process, client):
        job_id = client.post("/prompt", json={"prompt": short}).json()["prompt_id"]
        wait_running(client, job_id)
        os.kill(process.pid, signal.SIGKILL)
        process.wait(10)
    with serve(base) as (_process, client):
        entry = wait(client, job_id)
    assert entry["status"]["status_str"] == "success"
    assert entry["flowscope"]["attempts"] == 2
    assert "requeued" in str(entry["flowscope"]).lower() or "re-queued" in str(entry).lower()


def test_port_in_use_is_a_clear_error(base: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            command("serve", base, "--port", str(port)),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    assert result.returncode == 1
    assert "cannot listen" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_worker_process_runs_jobs_from_the_same_store(base: Path) -> None:
    with serve(base, "--workers", "0") as (_process, client):
        worker = subprocess.Popen(
            command("worker", base, "--no-logstore"),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        try:
            job_id = client.post("/prompt", json={"prompt": chain(7)}).json()["prompt_id"]
            entry = wait(client, job_id, timeout_s=60)
            worker.send_signal(signal.SIGTERM)
            assert worker.wait(30) == 0
        finally:
            if worker.poll() is None:
                worker.kill()
                worker.wait(10)
    assert entry["outputs"]["2"]["value"] == [7]
    assert entry["flowscope"]["worker_id"].split(":")[1] == str(worker.pid)


def test_https_with_the_tls_flags(base: Path, tmp_path: Path) -> None:
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=127.0.0.1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
    )
    tls = ("--tls-keyfile", str(key), "--tls-certfile", str(cert))
    with serve(base, *tls, scheme="https") as (_process, client):
        job_id = client.post("/prompt", json={"prompt": chain(3)}).json()["prompt_id"]
        assert wait(client, job_id)["status"]["status_str"] == "success"
