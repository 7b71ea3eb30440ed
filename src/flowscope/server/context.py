"""What every router needs, passed explicitly (no global server instance): the settings, the
folders, the node registry, the job store, the worker, the WebSocket hub and the event bus."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from flowscope.models import ModelFolders
from flowscope.nodes.registry import NodeRegistry
from flowscope.server.settings import ServerSettings
from flowscope.storage.directories import Directories
from flowscope.telemetry.bus import EventBus

if TYPE_CHECKING:
    from flowscope.jobs.handles import WorkerHandle
    from flowscope.jobs.store import JobStore
    from flowscope.server.submitter import Submitter
    from flowscope.server.websocket import WebSocketHub
    from flowscope.telemetry.setup import Telemetry


@dataclass
class ServerContext:
    settings: ServerSettings
    directories: Directories
    registry: NodeRegistry
    bus: EventBus
    store: JobStore
    hub: WebSocketHub
    model_folders: ModelFolders
    workers: list[WorkerHandle] = field(default_factory=list)  # threads or child processes
    telemetry: Telemetry | None = None
    submitter: Submitter | None = None  # stores POST /prompt jobs in batches
    logstore_path: Path | None = None  # the telemetry query API reads it when set
    started_at: float = field(default_factory=time.time)
