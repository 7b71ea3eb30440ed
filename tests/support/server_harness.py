"""A real flowscope server for tests: `build_runtime` behind uvicorn on 127.0.0.1 (a free port)
in a background thread, with the built-in nodes plus the test node pack."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import testing_nodes
import uvicorn

from flowscope.models.manager import ModelManager
from flowscope.nodes.catalog import load_catalog
from flowscope.nodes.registry import NodeRegistry
from flowscope.server.http_protocol import JoinedWritesHttpToolsProtocol
from flowscope.server.runtime import ServerRuntime, build_runtime
from flowscope.server.settings import ServerSettings
from flowscope.storage.directories import Directories
from flowscope.telemetry.setup import TelemetryOptions


def registry_for_tests(
    directories: Directories, models: ModelManager | None = None
) -> NodeRegistry:
    registry, _packs = load_catalog(directories, models=models)
    registry.register_mappings(testing_nodes.NODE_CLASS_MAPPINGS, python_module="tests")
    return registry


@contextmanager
def serve_app(app: Any) -> Iterator[str]:
    """Any ASGI `app` behind a real uvicorn on a free 127.0.0.1 port, in a background thread;
    yields its base URL."""
    sock = socket.create_server(("127.0.0.1", 0))
    config = uvicorn.Config(
        app, http=JoinedWritesHttpToolsProtocol, log_level="warning", access_log=False
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the test server did not start")
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


class LiveServer:
    def __init__(self, runtime: ServerRuntime) -> None:
        self.runtime = runtime
        self.ctx = runtime.ctx
        self._socket = socket.create_server(("127.0.0.1", 0))
        self.port = self._socket.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.ws_url = f"ws://127.0.0.1:{self.port}/ws"
        # The protocol `flowscope serve` runs, so every server test goes through it.
        config = uvicorn.Config(
            runtime.app, http=JoinedWritesHttpToolsProtocol, log_level="warning", access_log=False
        )
        self.server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._serve, name="test-server", daemon=True)
        self.client = httpx.Client(base_url=self.url, timeout=30)

    def _serve(self) -> None:
        self.server.run(sockets=[self._socket])

    def start(self) -> LiveServer:
        self._thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("the test server did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        self.client.close()
        self.server.should_exit = True
        self._thread.join(10)
        self.runtime.stop()

    # -- conveniences ----------------------------------------------------------------------
    def submit(self, prompt: dict[str, Any], **body: Any) -> dict[str, Any]:
        response = self.client.post("/prompt", json={"prompt": prompt, **body})
        assert response.status_code == 200, response.text
        result: dict[str, Any] = response.json()
        return result

    def wait_history(self, job_id: str, timeout_s: float = 20.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            entry = self.client.get(f"/history/{job_id}").json()
            if job_id in entry:
                found: dict[str, Any] = entry[job_id]
                return found
            time.sleep(0.01)
        raise AssertionError(f"job {job_id} did not finish within {timeout_s} s")


@contextmanager
def live_server(
    base: Path,
    *,
    telemetry: TelemetryOptions | None = None,
    models: ModelManager | None = None,
    **settings: Any,
) -> Iterator[LiveServer]:
    directories = Directories.under(base)
    directories.ensure()
    runtime = build_runtime(
        ServerSettings(**settings),
        directories,
        registry=registry_for_tests(directories, models),
        telemetry=telemetry,
        models=models,
    )
    server = LiveServer(runtime).start()
    try:
        yield server
    finally:
        server.stop()


async def collect_messages(
    ws_url: str, client_id: str, until: Any, *, timeout_s: float = 20.0
) -> list[Any]:
    """Messages (parsed JSON, or raw bytes for binary frames) until `until(message)` is true."""
    import websockets

    received: list[Any] = []
    async with websockets.connect(f"{ws_url}?clientId={client_id}", max_size=None) as socket_:
        async with asyncio.timeout(timeout_s):
            while True:
                frame = await socket_.recv()
                message = json.loads(frame) if isinstance(frame, str) else frame
                received.append(message)
                if until(message):
                    return received
