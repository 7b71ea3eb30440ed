"""Real servers with worker processes: `flowscope serve` itself as a process (`serve`), and
`build_runtime` with a `WorkerProcess` behind uvicorn in this process (`live_process_server`).
The test node pack is installed as a custom node pack, so the server and its `flowscope worker`
children all load it."""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
from server_harness import LiveServer

from flowscope.jobs import WorkerProcess
from flowscope.nodes.catalog import load_catalog
from flowscope.server.runtime import build_runtime
from flowscope.server.settings import ServerSettings, default_database_url
from flowscope.storage.directories import Directories
from flowscope.telemetry.setup import TelemetryOptions

SUPPORT = Path(__file__).parent
START_S = 60.0  # the child loads torch (the SD pack) before it takes jobs


def install_test_pack(base: Path) -> Path:
    (base / "custom_nodes").mkdir(parents=True, exist_ok=True)
    shutil.copy(SUPPORT / "testing_nodes.py", base / "custom_nodes" / "testing_nodes.py")
    return base


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def command(verb: str, base: Path, *extra: str) -> list[str]:
    """`flowscope VERB` on `base`, run from this interpreter."""
    return [sys.executable, "-m", "flowscope.cli", verb, "--base-directory", str(base), *extra]


@contextmanager
def serve(
    base: Path, *extra: str, scheme: str = "http"
) -> Iterator[tuple[subprocess.Popen[bytes], httpx.Client]]:
    """`flowscope serve` on `base` (a free port, no log store), once it answers /healthz."""
    port = free_port()
    process = subprocess.Popen(
        command("serve", base, "--port", str(port), "--no-logstore", *extra),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    # A self-signed certificate in the TLS test: nothing to verify it against.
    client = httpx.Client(base_url=f"{scheme}://127.0.0.1:{port}", timeout=10, verify=False)
    deadline = time.monotonic() + 60
    while True:
        try:
            if client.get("/healthz").status_code == 200:
                break
        except httpx.TransportError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            output = process.stdout.read().decode() if process.stdout else ""
            raise AssertionError(f"the server did not start:\n{output}")
        time.sleep(0.1)
    try:
        yield process, client
    finally:
        client.close()
        if process.poll() is None:
            process.kill()
        process.wait(10)


@contextmanager
def live_process_server(
    base: Path,
    *worker_flags: str,
    telemetry: TelemetryOptions | None = None,
    **settings: Any,
) -> Iterator[LiveServer]:
    """`worker_flags`: more `flowscope worker` options (say `--cpu`)."""
    directories = Directories.under(install_test_pack(base))
    directories.ensure()
    registry, packs = load_catalog(directories)
    assert not [pack.error for pack in packs if pack.error]
    worker = command(
        "worker", base, "--database-url", default_database_url(directories), *worker_flags
    )
    processes = [WorkerProcess(worker) for _ in range(settings.get("workers", 1))]
    runtime = build_runtime(
        ServerSettings(**settings),
        directories,
        registry=registry,
        telemetry=telemetry,
        worker_processes=processes,
    )
    server = LiveServer(runtime).start()
    try:
        deadline = time.monotonic() + START_S
        while not all(process.alive for process in processes):
            assert time.monotonic() < deadline, "the worker process did not come up"
            time.sleep(0.02)
        yield server
    finally:
        server.stop()
