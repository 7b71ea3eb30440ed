"""Assembling a running server from its options: folders, node packs, telemetry, the job store,
the WebSocket hub, the workers and the app. `flowscope serve`, the tests and the benchmarks all
start a server through `build_runtime`.

Workers are threads of this process unless worker processes are given (`flowscope serve` starts
one `flowscope worker` child per worker): their events then arrive over their links onto the
same bus, so the WebSocket messages, logs and metrics are the same either way.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from fastapi import FastAPI

from flowscope.jobs.handles import WorkerHandle
from flowscope.jobs.leases import make_worker_id
from flowscope.jobs.model import JobOutcome, QueuedJob
from flowscope.jobs.store import JobStore
from flowscope.jobs.worker_process import WorkerProcess
from flowscope.models import ModelFolders
from flowscope.models.manager import ModelManager
from flowscope.nodes.catalog import load_catalog
from flowscope.nodes.registry import NodeRegistry
from flowscope.server.app import create_app
from flowscope.server.context import ServerContext
from flowscope.server.messages import ExecutionMessages
from flowscope.server.settings import ServerSettings, default_database_url
from flowscope.server.submitter import Submitter
from flowscope.server.websocket import WebSocketHub
from flowscope.storage.directories import Directories
from flowscope.telemetry.bus import EventBus
from flowscope.telemetry.log_inputs import LogInputs
from flowscope.telemetry.setup import Telemetry, TelemetryOptions, start_telemetry

if TYPE_CHECKING:
    from flowscope.jobs.worker import Worker


class ServerListener:
    """What the server does when a worker starts or finishes a job: the WebSocket messages and
    the queue metrics."""

    def __init__(self, messages: ExecutionMessages, telemetry: Telemetry | None) -> None:
        self.messages = messages
        self.telemetry = telemetry

    def job_started(self, job: QueuedJob) -> None:
        if self.telemetry is not None:
            waited = max(0.0, time.time() - job.created_at_ms / 1000)
            self.telemetry.metrics.observe_queue_wait(waited, job.trace_id)
        self.messages.job_started(job)

    def job_finished(self, job: QueuedJob, outcome: JobOutcome) -> None:
        self.messages.job_finished(job, outcome)

    def worker_waiting(self) -> None:
        """Nothing to do: the WebSocket status follows the queue, not the worker."""


@dataclass
class ServerRuntime:
    ctx: ServerContext
    app: FastAPI
    messages: ExecutionMessages
    recovered: list[str] = field(default_factory=list)

    def stop(self, timeout_s: float = 10.0) -> None:
        """Graceful: stop taking jobs, let the running one finish (interrupting it at the
        deadline), flush telemetry, close the store."""
        for worker in self.ctx.workers:
            worker.stop(timeout_s)
        if self.ctx.submitter is not None:
            self.ctx.submitter.close()
        self.messages.close()
        self.ctx.store.close()
        if self.ctx.telemetry is not None:
            self.ctx.telemetry.close()
        shutil.rmtree(self.ctx.directories.temp, ignore_errors=True)


def build_runtime(
    settings: ServerSettings,
    directories: Directories,
    *,
    registry: NodeRegistry | None = None,
    telemetry: TelemetryOptions | None = None,
    database_url: str | None = None,
    cache: str = "classic",
    log_inputs: LogInputs = "preview",
    lease_s: float = 30.0,
    logstore_path: Path | None = None,
    model_folders: ModelFolders | None = None,
    models: ModelManager | None = None,
    worker_processes: Sequence[WorkerProcess] | None = None,
    fresh_temp: bool = True,
) -> ServerRuntime:
    """`models`: what the Stable Diffusion pack of `registry` loads through (worker threads
    unload it on `/free`, and its `model.*` events join the server's); built from the model
    folders when the registry is built here. `worker_processes`: run jobs in these (spawned
    or not; started with the app) instead of `settings.workers` threads. `fresh_temp`: empty
    the temp folder (ComfyUI's holds previews of the last session only); False when the caller
    did so before spawning the workers."""
    if fresh_temp:
        shutil.rmtree(directories.temp, ignore_errors=True)
    directories.ensure()
    if model_folders is None:
        model_folders = ModelFolders.from_directories(directories, settings.extra_model_paths)
    if registry is None:
        models = models or ModelManager(model_folders)
        registry, _packs = load_catalog(
            directories,
            save_metadata=not settings.disable_metadata,
            extra_custom_node_folders=model_folders.extra_custom_node_folders,
            models=models,
        )
    bus = EventBus()
    if models is not None:
        models.attach_bus(bus)
    running_telemetry = start_telemetry(bus, telemetry) if telemetry is not None else None
    store = JobStore(database_url or default_database_url(directories), bus=bus)
    recovered = store.recover()
    hub = WebSocketHub(
        queue_remaining=store.queue_remaining,
        server_flags={
            "supports_preview_metadata": True,
            "max_upload_size": settings.max_upload_size,
        },
    )
    messages = ExecutionMessages(hub, preview_size=settings.preview_size)
    messages.attach(bus)
    listener = ServerListener(messages, running_telemetry)
    workers: list[WorkerHandle]
    if worker_processes is not None:
        for process in worker_processes:
            process.attach(bus, store, listener)
        workers = list(worker_processes)
    else:
        workers = list(
            _worker_threads(
                settings.workers,
                store,
                registry,
                bus,
                listener,
                cache=cache,
                log_inputs=log_inputs,
                lease_s=lease_s,
                unload_models=models.free if models is not None else None,
            )
        )
    if logstore_path is None and telemetry is not None:
        logstore_path = telemetry.logstore
    ctx = ServerContext(
        settings=settings,
        directories=directories,
        registry=registry,
        bus=bus,
        store=store,
        hub=hub,
        model_folders=model_folders,
        workers=workers,
        telemetry=running_telemetry,
        submitter=Submitter(store),
        logstore_path=logstore_path,
    )
    return ServerRuntime(ctx, create_app(ctx), messages, [str(item) for item in recovered])


def _worker_threads(
    count: int,
    store: JobStore,
    registry: NodeRegistry,
    bus: EventBus,
    listener: ServerListener,
    *,
    cache: str,
    log_inputs: LogInputs,
    lease_s: float,
    unload_models: Callable[[], None] | None,
) -> list[Worker]:
    # Imported here: a server whose workers are processes never loads the engine itself.
    from flowscope.engine import Executor, cache_from_spec
    from flowscope.jobs.worker import Worker

    return [
        Worker(
            store,
            Executor(registry, bus=bus, cache=cache_from_spec(cache), log_inputs=log_inputs),
            registry,
            worker_id=make_worker_id(index),
            bus=bus,
            listener=listener,
            lease_s=lease_s,
            unload_models=unload_models,
        )
        for index in range(count)
    ]
