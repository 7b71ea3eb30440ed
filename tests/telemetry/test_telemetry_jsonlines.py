"""The JSON-lines sink: one ECS document per line, UTF-8, never failing on odd values, written
off the emitting thread, recovering from write errors; fed by real engine jobs."""

from __future__ import annotations

import json
import math
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from flowscope.engine import Executor, JobRequest
from flowscope.graph.validation import validate_prompt
from flowscope.nodes.catalog import load_catalog
from flowscope.storage.directories import Directories
from flowscope.telemetry import Action, Event, EventBus, InMemorySubscriber, Level
from flowscope.telemetry.document import DocumentBuilder, ServiceInfo
from flowscope.telemetry.pipeline import TelemetryPipeline
from flowscope.telemetry.sinks.jsonlines import JsonLinesSink, LineEncoder, encode_line

torch.set_num_threads(1)

SERVICE = ServiceInfo(environment="test", node_name="gpu-1", host_name="host-a")


def event(action: Action = Action.WORKER_STARTED, **fields: Any) -> Event:
    return Event(action, action.value, time.time_ns(), Level.INFO, fields)


def lines_of(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def run_chain(bus: EventBus, tmp_path: Path) -> str:
    """A real job on the built-in nodes: PrimitiveInt -> IntMath -> PreviewAny."""
    registry, _ = load_catalog(Directories.under(tmp_path / "base"))
    prompt = {
        "1": {"class_type": "PrimitiveInt", "inputs": {"value": 41}},
        "2": {
            "class_type": "IntMath",
            "inputs": {"a": ["1", 0], "b": 1, "operation": "add"},
            "_meta": {"title": "Add one"},
        },
        "3": {"class_type": "PreviewAny", "inputs": {"source": ["2", 0]}},
    }
    validation = validate_prompt(prompt, registry.schema)
    assert validation.ok, validation.error
    result = Executor(registry, bus=bus).execute(
        JobRequest(prompt=validation.prompt, outputs=validation.outputs, job_id="job-42")
    )
    assert result.status == "success", result.error
    return "job-42"


def test_a_real_job_becomes_one_ecs_document_per_line(tmp_path: Path) -> None:
    path = tmp_path / "logs" / "events.jsonl"  # the directory does not exist yet
    bus = EventBus()
    seen = InMemorySubscriber(bus)
    pipeline = TelemetryPipeline(bus, [JsonLinesSink(path, service=SERVICE)])
    job_id = run_chain(bus, tmp_path)
    pipeline.close()

    documents = lines_of(path)
    assert [d["event.action"] for d in documents] == seen.actions()
    assert documents[0]["event.action"] == "job.started"
    assert documents[-1]["event.action"] == "job.succeeded"
    assert [d["event.sequence"] for d in documents] == list(range(1, len(documents) + 1))
    for document in documents:
        assert document["job.id"] == job_id
        assert document["service.name"] == "flowscope"
        assert document["service.environment"] == "test"
        assert document["service.node.name"] == "gpu-1"
        assert document["host.name"] == "host-a"
        assert document["@timestamp"].endswith("Z")
        assert len(document["trace.id"]) == 32
    assert len({d["event.id"] for d in documents}) == len(documents)
    (added,) = [
        d for d in documents if d["event.action"] == "node.succeeded" and d["node.id"] == "2"
    ]
    assert added["node.type"] == "IntMath"
    assert added["node.title"] == "Add one"
    assert added["node.inputs"] == {"b": 1, "operation": "add"}  # constants only, as an object
    assert added["event.duration"] > 0
    assert math.isclose(added["node.duration_ms"], added["event.duration"] / 1e6)
    # The same event.id the in-process subscribers saw: one id per event, for every sink.
    assert [d["event.id"] for d in documents] == [e.get("event.id") for e in seen.events]


def test_lines_are_compact_utf8_not_ascii_escapes(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    sink = JsonLinesSink(path)
    sink.offer(event(**{"node.title": "Échantillonneur — 採樣器"}))
    sink.close()
    raw = path.read_bytes()
    assert "Échantillonneur — 採樣器".encode() in raw
    assert b'"event.action":"worker.started"' in raw  # no spaces after separators
    assert raw.count(b"\n") == 1


class Unprintable:
    def __str__(self) -> str:
        raise RuntimeError("no")


@pytest.mark.parametrize(
    ("value", "written"),
    [
        (Path("/models/x.safetensors"), "/models/x.safetensors"),
        (frozenset({3}), "frozenset({3})"),
        (float("nan"), "nan"),
        (float("inf"), "inf"),
        ({("tuple", "key"): 1}, {"('tuple', 'key')": 1}),
        (b"\x00\xff", "b'\\x00\\xff'"),
        (Unprintable(), "<unprintable Unprintable>"),
        ("lone \udcff surrogate", "lone \udcff surrogate"),
    ],
)
def test_odd_values_become_text_and_the_line_stays_valid_json(value: Any, written: Any) -> None:
    line = encode_line({"message": "m", "odd": value, "after": 1})
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    line.decode("utf-8")  # strict: valid UTF-8 whatever went in
    document = json.loads(line)
    assert document["odd"] == written
    assert document["after"] == 1


def test_the_event_encoder_writes_odd_values_as_the_document_path_does() -> None:
    """The per-event encoder (orjson around the event's fields) falls back to the careful walk
    for what orjson would write otherwise: NaN and infinities, datetimes, huge integers."""
    encode = LineEncoder(SERVICE)
    odd = {
        "x.nan": float("nan"),
        "x.inf": float("-inf"),
        "x.when": datetime(2026, 11, 23, 18, 0, tzinfo=UTC),
        "x.huge": 2**70,
        "x.none": None,
        "x.path": Path("/models/x.safetensors"),
    }
    document = json.loads(encode(event(**odd)))
    assert document["x.nan"] == "nan" and document["x.inf"] == "-inf"
    assert document["x.when"] == "2026-11-23 18:00:00+00:00"  # str(), as json.dumps(default=str)
    assert document["x.huge"] == 2**70
    assert document["x.none"] is None
    assert document["x.path"] == "/models/x.safetensors"
    message = Event(Action.WORKER_STARTED, "lone \udcff", 1, Level.INFO, {"a": 1})
    assert json.loads(encode(message))["message"] == "lone \udcff"


_FIELD_VALUES = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(),
        st.floats(),
        st.text(),
    ),
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)


@given(
    message=st.text(),
    fields=st.dictionaries(
        st.one_of(st.sampled_from(["job.id", "node.id", "message", "service.name"]), st.text()),
        _FIELD_VALUES,
        max_size=6,
    ),
)
def test_the_event_encoder_and_the_document_path_agree(
    message: str, fields: dict[str, Any]
) -> None:
    event_ = Event(Action.NODE_SUCCEEDED, message, 1_763_900_000_123_456_789, Level.INFO, fields)
    line = LineEncoder(SERVICE)(event_)
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    line.decode("utf-8")  # strict
    expected = encode_line(DocumentBuilder(SERVICE)(event_))
    assert _same(json.loads(line), json.loads(expected))


def _same(a: Any, b: Any) -> bool:
    """Equal, with NaN equal to NaN (json.loads reads neither file's "nan" text back as one)."""
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


def test_a_reference_cycle_is_cut_not_fatal() -> None:
    loop: dict[str, Any] = {"name": "loop"}
    loop["self"] = loop
    document = json.loads(encode_line({"node.outputs": loop}))
    depth = 0
    node = document["node.outputs"]
    while isinstance(node, dict):
        node, depth = node["self"], depth + 1
    assert 1 < depth <= 40
    assert isinstance(node, str)


def test_stdout_only_and_both(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    to_stdout = JsonLinesSink(None, stdout=True)
    to_stdout.offer(event(**{"job.id": "a"}))
    to_stdout.close()
    out = capsys.readouterr().out.splitlines()
    assert [json.loads(line)["job.id"] for line in out] == ["a"]

    path = tmp_path / "events.jsonl"
    both = JsonLinesSink(path, stdout=True)
    both.offer(event(**{"job.id": "b"}))
    both.close()
    assert [json.loads(line)["job.id"] for line in capsys.readouterr().out.splitlines()] == ["b"]
    assert [d["job.id"] for d in lines_of(path)] == ["b"]


def test_needs_an_output() -> None:
    with pytest.raises(ValueError, match="path"):
        JsonLinesSink(None)


def test_a_path_that_cannot_be_a_file_fails_at_start_up(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="give a writable file path") as failure:
        JsonLinesSink(tmp_path)  # a directory
    assert str(tmp_path) in str(failure.value)


def test_appends_to_the_file_of_an_earlier_run(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    for run in ("first", "second"):
        sink = JsonLinesSink(path)
        sink.offer(event(**{"job.id": run}))
        sink.close()
    assert [d["job.id"] for d in lines_of(path)] == ["first", "second"]


def test_disk_full_drops_and_counts_the_batch_then_recovers(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    path.symlink_to("/dev/full")  # writes fail with ENOSPC, as on a full disk
    bus = EventBus()
    reports = InMemorySubscriber(bus, [Action.TELEMETRY_DROPPED])
    sink = JsonLinesSink(path, flush_interval_s=0.01)
    pipeline = TelemetryPipeline(bus, [sink], report_interval_s=3600)

    for i in range(3):
        bus.emit(event(**{"event.sequence": i}))
    assert sink.wait_idle()
    assert sink.dropped == 3
    assert sink.last_error is not None and "No space left" in sink.last_error

    path.unlink()  # space again: the sink reopens the file by itself
    pipeline.report_drops()
    (report,) = reports.events
    assert report.level is Level.WARN
    assert report.fields == {
        "telemetry.sink": "jsonlines",
        "telemetry.dropped": 3,
        "event.id": report.get("event.id"),
    }
    for i in range(3, 5):
        bus.emit(event(**{"event.sequence": i}))
    pipeline.close()

    documents = lines_of(path)
    assert [d["event.action"] for d in documents] == ["telemetry.dropped"] + ["worker.started"] * 2
    assert documents[0]["telemetry.dropped"] == 3
    assert [d["event.sequence"] for d in documents[1:]] == [3, 4]
    assert sink.dropped == 3


def test_the_emitter_only_enqueues(tmp_path: Path) -> None:
    """Encoding and writing happen on the sink's thread: offer returns before any I/O."""
    path = tmp_path / "events.jsonl"
    sink = JsonLinesSink(path, flush_interval_s=3600, batch_size=10_000)
    for i in range(100):
        assert sink.offer(event(**{"event.sequence": i}))
    assert sink.pending == 100
    assert path.stat().st_size == 0  # opened (at start-up), nothing written yet
    sink.close()
    assert len(lines_of(path)) == 100


def test_refuses_and_counts_when_the_queue_is_full(tmp_path: Path) -> None:
    sink = JsonLinesSink(tmp_path / "events.jsonl", capacity=5, flush_interval_s=3600)
    accepted = [sink.offer(event()) for _ in range(8)]
    assert accepted == [True] * 5 + [False] * 3
    assert sink.dropped == 3
    sink.close()
    assert len(lines_of(tmp_path / "events.jsonl")) == 5
