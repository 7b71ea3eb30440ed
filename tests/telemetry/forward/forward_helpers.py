"""Helpers for the Forward sink tests: the recorded captures (copied from
shared/fixtures/forward), a throwaway TLS certificate, an event source with the real telemetry
pipeline in front of the sinks, and the at-least-once check."""

from __future__ import annotations

import json
import socket
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from forward_receiver import ForwardReceiver

from flowscope.telemetry import Action, Event, EventBus, Level
from flowscope.telemetry.forward import ForwardSink, RetryPolicy
from flowscope.telemetry.pipeline import TelemetryPipeline

FIXTURES = Path(__file__).parent / "fixtures"
FLUENTD = FIXTURES / "fluentd-1.16.11"
FLUENT_BIT = FIXTURES / "fluent-bit-5.1.1"
SERVERS = [FLUENTD, FLUENT_BIT]
FAST_RETRY = RetryPolicy(initial_s=0.02, max_s=0.2)
# A scripted server's part on one accepted connection (see the `scripted` fixture).
Script = Callable[[socket.socket], None]


def manifest() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((FIXTURES / "manifest.json").read_text())
    return loaded


def exchange(server_dir: Path, name: str) -> dict[str, Any]:
    """The manifest's record of one exchange, e.g. (FLUENTD, "handshake-ok")."""
    wanted = f"{server_dir.name}/{name}"
    (found,) = [entry for entry in manifest()["exchanges"] if entry["id"] == wanted]
    return found


def fixture_entries() -> list[tuple[int, dict[str, Any]]]:
    """The manifest's three records with their event times in ns, as recorded."""
    inputs = manifest()["inputs"]
    times = [t["seconds"] * 1_000_000_000 + t["nanoseconds"] for t in inputs["event_times"]]
    return list(zip(times, inputs["records"], strict=True))


@dataclass(frozen=True)
class Certificate:
    cert: Path
    key: Path

    def server_context(self) -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.cert, self.key)
        return context

    def client_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.cert))


class EventSource:
    """A bus with the real TelemetryPipeline in front of `sinks`, and a way to emit numbered
    node events through it; returns the `event.id`s the pipeline stamped. The conftest closes
    every source after each test."""

    opened: ClassVar[list[EventSource]] = []

    def __init__(self, *sinks: ForwardSink) -> None:
        self.bus = EventBus()
        self.pipeline = TelemetryPipeline(self.bus, sinks, report_interval_s=3600)
        self.emitted = 0
        self.events: list[Event] = []
        EventSource.opened.append(self)

    def emit(self, count: int, *, job: str = "j-1") -> list[str]:
        ids = []
        for _ in range(count):
            self.emitted += 1
            event = Event(
                Action.NODE_SUCCEEDED,
                "node finished",
                time.time_ns(),
                Level.INFO,
                {
                    "job.id": job,
                    "event.sequence": self.emitted,
                    "node.id": str(self.emitted),
                    "node.type": "KSampler",
                    "event.duration": 1_234_500_000,
                    "node.duration_ms": 1234.5,
                },
            )
            self.bus.emit(event)
            self.events.append(event)
            ids.append(event.get("event.id"))
        return ids

    def close(self) -> None:
        self.pipeline.close(0)


def assert_all_arrived_once_or_more(
    receiver: ForwardReceiver, event_ids: list[str]
) -> list[dict[str, Any]]:
    """Every id is in a chunk the receiver acked; any duplicate is the same document."""
    by_id: dict[str, list[dict[str, Any]]] = {}
    for record in receiver.all_records():
        by_id.setdefault(record["event.id"], []).append(record)
    acked = {record["event.id"] for record in receiver.acked_records()}
    missing = [event_id for event_id in event_ids if event_id not in acked]
    assert not missing, f"{len(missing)} of {len(event_ids)} events never acked"
    for copies in by_id.values():
        assert all(copy == copies[0] for copy in copies)
    return [copy for copies in by_id.values() for copy in copies[1:]]
