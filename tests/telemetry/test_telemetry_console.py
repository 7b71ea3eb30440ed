"""The console sink: one readable line per event at the chosen level, colour only on a terminal,
and a broken stream never raises into the emitter."""

from __future__ import annotations

import io
import os
import time
from pathlib import Path
from typing import Any

import pytest
import torch

from flowscope.engine import Executor, JobRequest
from flowscope.graph.validation import validate_prompt
from flowscope.nodes.catalog import load_catalog
from flowscope.storage.directories import Directories
from flowscope.telemetry import Action, Event, EventBus, Level
from flowscope.telemetry.pipeline import TelemetryPipeline
from flowscope.telemetry.sinks.console import ConsoleSink, format_line, wants_color

torch.set_num_threads(1)

# 12:00:01.234 local time today, whatever the machine's time zone.
NOON = time.mktime((*time.localtime()[:3], 12, 0, 1, 0, 0, -1))
NOON_NS = int(NOON) * 1_000_000_000 + 234_567_000


def event(action: Action, level: Level = Level.INFO, message: str = "", **fields: Any) -> Event:
    return Event(action, message or action.value, NOON_NS, level, fields)


def test_node_succeeded() -> None:
    line = format_line(
        event(
            Action.NODE_SUCCEEDED,
            **{
                "job.id": "3f2a9c1e-7d41-4f0e-9a55-0c1d2e3f4a5b",
                "node.id": "12",
                "node.type": "KSampler",
                "node.duration_ms": 1234.5,
                "event.duration": 1_234_500_000,
            },
        )
    )
    assert line == "12:00:01.234 INFO  node.succeeded   job=3f2a9c1e… node=#12 KSampler 1234.5 ms"


def test_node_failed_shows_the_error_on_the_same_line() -> None:
    line = format_line(
        event(
            Action.NODE_FAILED,
            Level.ERROR,
            **{
                "job.id": "job1",
                "node.id": "7",
                "node.type": "VAEDecode",
                "node.title": "Decode (hi-res)",
                "event.duration": 2_000_000,
                "error.type": "torch.OutOfMemoryError",
                "error.message": "CUDA out of memory.\nTried to allocate 2 GiB",
            },
        )
    )
    assert line == (
        '12:00:01.234 ERROR node.failed      job=job1 node=#7 VAEDecode "Decode (hi-res)" 2.0 ms'
        " — torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2 GiB"
    )


@pytest.mark.parametrize(
    ("built", "tail"),
    [
        (
            event(Action.NODE_CACHED, **{"node.id": "4", "node.type": "Load", "node.cached": True}),
            "node.cached      node=#4 Load cached",
        ),
        (
            event(
                Action.NODE_PROGRESS,
                Level.DEBUG,
                **{"node.id": "3", "node.type": "KSampler", "node.progress.value": 5},
                **{"node.progress.max": 20},
            ),
            "node.progress    node=#3 KSampler 5/20",
        ),
        (
            event(Action.JOB_SUCCEEDED, **{"job.id": "abc", "event.duration": 3_000_000_000}),
            "job.succeeded    job=abc 3000.0 ms",
        ),
        (
            event(
                Action.TELEMETRY_DROPPED,
                Level.WARN,
                "sink fluentd dropped 12 events",
                **{"telemetry.sink": "fluentd", "telemetry.dropped": 12},
            ),
            "telemetry.dropped sink fluentd dropped 12 events",
        ),
    ],
)
def test_other_actions(built: Event, tail: str) -> None:
    line = format_line(built)
    assert line.startswith("12:00:01.234 ")
    assert line.endswith(tail)


def test_colour_marks_the_level() -> None:
    line = format_line(event(Action.NODE_FAILED, Level.ERROR), color=True)
    assert "\x1b[1;31mERROR\x1b[0m" in line
    assert "\x1b[" not in format_line(event(Action.NODE_FAILED, Level.ERROR))


def test_colour_by_default_only_on_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    main, secondary = os.openpty()
    with os.fdopen(secondary, "w") as terminal:
        monkeypatch.delenv("NO_COLOR", raising=False)
        assert wants_color(terminal)
        assert ConsoleSink(terminal).color
        monkeypatch.setenv("NO_COLOR", "1")
        assert not wants_color(terminal)
    os.close(main)
    assert not ConsoleSink(io.StringIO()).color


def test_min_level_filters_without_counting_drops() -> None:
    stream = io.StringIO()
    sink = ConsoleSink(stream, min_level=Level.WARN)
    for level in Level:
        assert sink.offer(event(Action.NODE_BLOCKED, level, f"blocked at {level}"))
    sink.close()
    assert sink.dropped == 0
    assert [line.split()[1] for line in stream.getvalue().splitlines()] == ["WARN", "ERROR"]


def test_a_closed_stream_never_raises_into_the_emitter() -> None:
    stream = io.StringIO()
    stream.close()
    bus = EventBus()
    sink = ConsoleSink(stream, flush_interval_s=0.01)
    pipeline = TelemetryPipeline(bus, [sink], report_interval_s=3600)
    for _ in range(3):
        bus.emit(event(Action.WORKER_STARTED))
    assert sink.wait_idle()
    pipeline.close()
    assert bus.subscriber_errors == 0
    assert sink.dropped >= 3
    assert sink.last_error is not None and "closed" in sink.last_error


def test_a_real_job_reads_as_one_line_per_event(tmp_path: Path) -> None:
    registry, _ = load_catalog(Directories.under(tmp_path))
    prompt = {
        "1": {"class_type": "PrimitiveInt", "inputs": {"value": 1}},
        "2": {"class_type": "PreviewAny", "inputs": {"source": ["1", 0]}},
    }
    validation = validate_prompt(prompt, registry.schema)
    stream = io.StringIO()
    bus = EventBus()
    pipeline = TelemetryPipeline(bus, [ConsoleSink(stream)])
    Executor(registry, bus=bus).execute(
        JobRequest(prompt=validation.prompt, outputs=validation.outputs, job_id="0123456789")
    )
    pipeline.close()
    lines = stream.getvalue().splitlines()
    assert [line.split()[2] for line in lines] == [
        "job.started",
        "node.started",
        "node.succeeded",
        "node.started",
        "node.succeeded",
        "job.succeeded",
    ]
    assert all(" job=01234567…" in line for line in lines)
    assert " node=#1 PrimitiveInt " in lines[2]
    assert lines[2].endswith(" ms")


def test_text_from_a_workflow_cannot_drive_the_terminal() -> None:
    line = format_line(
        event(
            Action.NODE_FAILED,
            Level.ERROR,
            **{
                "job.id": "\x1b[2J",
                "node.id": "1",
                "node.type": "Custom",
                "node.title": "evil\x1b]0;owned\x07 title",
                "error.message": "red \x1b[31m text\r\nnext line" + "x" * 600,
            },
        )
    )
    assert "\x1b" not in line and "\x07" not in line and "\r" not in line and "\n" not in line
    assert '"evil]0;owned title"' in line
    assert line.endswith("x…")
