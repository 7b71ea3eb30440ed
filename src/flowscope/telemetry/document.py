"""Turning an event into the document sinks write: the flat ECS object of spec §1, with the
fields that are the same for every event of this process (service, host) added."""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass, field
from typing import Any

from flowscope import __version__
from flowscope.telemetry.events import Event


@dataclass(frozen=True)
class ServiceInfo:
    """`service.*` and `host.name`, stamped on every document."""

    name: str = "flowscope"
    version: str = __version__
    environment: str = field(default_factory=lambda: os.environ.get("FLOWSCOPE_ENV", "dev"))
    node_name: str = field(default_factory=socket.gethostname)
    host_name: str = field(default_factory=socket.gethostname)

    def fields(self) -> dict[str, Any]:
        return {
            "service.name": self.name,
            "service.version": self.version,
            "service.environment": self.environment,
            "service.node.name": self.node_name,
            "host.name": self.host_name,
        }


class DocumentBuilder:
    """Builds ECS documents for one sink; `ServiceInfo` fields come first, event fields win."""

    def __init__(self, service: ServiceInfo | None = None) -> None:
        self._static = (service or ServiceInfo()).fields()

    def __call__(self, event: Event) -> dict[str, Any]:
        document = event.to_ecs()
        for key, value in self._static.items():
            document.setdefault(key, value)
        return document
