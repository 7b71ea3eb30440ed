"""ForwardSink end to end with the test receiver (Fluentd and Fluent Bit cannot run here):
documents and times as shipped, batching by size and time, keepalive, the shared-key handshake
in both servers' styles, user auth, TLS, and real engine events."""

from __future__ import annotations

import ssl
from collections.abc import Callable
from pathlib import Path

import pytest
from forward_helpers import Certificate, EventSource
from forward_receiver import ForwardReceiver

from flowscope.telemetry import Action, EventBus
from flowscope.telemetry.document import ServiceInfo
from flowscope.telemetry.forward import ForwardSink
from flowscope.telemetry.pipeline import TelemetryPipeline

Receivers = Callable[..., ForwardReceiver]
Sinks = Callable[..., ForwardSink]
KEY = "flowscope-test-key"


@pytest.mark.parametrize("compress", [True, False])
def test_events_arrive_as_ecs_documents_with_nanosecond_times(
    receivers: Receivers, sinks: Sinks, compress: bool
) -> None:
    receiver = receivers()
    service = ServiceInfo(environment="test", node_name="gpu-1", host_name="host-1")
    sink = sinks(receiver.port, tag="flowscope.events", compress=compress, service=service)
    source = EventSource(sink)
    ids = source.emit(25)
    assert sink.wait_delivered(5)
    requests = receiver.acked_requests()
    assert {r.mode for r in requests} == {
        "CompressedPackedForward" if compress else "PackedForward"
    }
    assert {r.tag for r in requests} == {"flowscope.events"}
    entries = [entry for r in requests for entry in r.entries]
    assert [record["event.id"] for _, record in entries] == ids
    for (time, record), event in zip(entries, source.events, strict=True):
        assert time.ns == event.time_ns  # EventTime keeps the nanoseconds
        assert record == {**service.fields(), **event.to_ecs()}
    assert sink.delivered == 25 and sink.spooled_events == 0 and sink.dropped == 0
    assert not list((sink.spool.directory).glob("*.fwd"))


def test_batches_by_size_and_by_time(receivers: Receivers, sinks: Sinks) -> None:
    receiver = receivers()
    sink = sinks(receiver.port, batch_size=10, flush_interval_s=0.2)
    source = EventSource(sink)
    source.emit(25)
    assert sink.wait_delivered(5)
    sizes = [len(r.entries) for r in receiver.acked_requests()]
    assert sum(sizes) == 25 and max(sizes) == 10
    assert all(r.option["size"] == len(r.entries) for r in receiver.acked_requests())
    before = len(sizes)
    source.emit(3)  # far below batch_size: the flush interval sends them
    assert receiver.wait_for(lambda: len(receiver.acked_records()) == 28, 2)
    assert [len(r.entries) for r in receiver.acked_requests()[before:]] == [3]


def test_one_keepalive_connection_carries_every_chunk(receivers: Receivers, sinks: Sinks) -> None:
    receiver = receivers()
    sink = sinks(receiver.port, batch_size=10)
    EventSource(sink).emit(200)
    assert sink.wait_delivered(5)
    assert len(receiver.acked_requests()) >= 20
    assert receiver.connections == 1 and sink.sender.connections == 1
    assert sink.sender.resent_chunks == 0 and sink.last_error is None


def test_a_server_without_keepalive_gets_a_connection_per_chunk(
    receivers: Receivers, sinks: Sinks
) -> None:
    receiver = receivers(shared_key=KEY, keepalive=False)
    sink = sinks(receiver.port, shared_key=KEY, batch_size=10)
    ids = EventSource(sink).emit(30)
    assert sink.wait_delivered(5)
    assert [r["event.id"] for r in receiver.acked_records()] == ids
    assert receiver.connections == len(receiver.acked_requests()) >= 3
    assert sink.last_error is None


@pytest.mark.parametrize("style", ["fluentd", "fluent-bit"])
def test_shared_key_handshake_in_each_servers_style(
    receivers: Receivers, sinks: Sinks, style: str
) -> None:
    receiver = receivers(shared_key=KEY, style=style, self_hostname="collector-1")
    sink = sinks(receiver.port, shared_key=KEY, self_hostname="worker-1")
    ids = EventSource(sink).emit(10)
    assert sink.wait_delivered(5)
    assert [r["event.id"] for r in receiver.acked_records()] == ids


@pytest.mark.parametrize(
    ("style", "reason"),
    [
        ("fluentd", "rejected our credentials: shared_key mismatch"),
        ("fluent-bit", "closed the connection after our PING"),
    ],
)
def test_a_wrong_key_is_reported_and_nothing_is_lost(
    receivers: Receivers, sinks: Sinks, style: str, reason: str
) -> None:
    receiver = receivers(shared_key=KEY, style=style)
    sink = sinks(receiver.port, shared_key="not-the-key")
    EventSource(sink).emit(5)
    assert receiver.wait_for(lambda: receiver.auth_failures >= 2, 5)
    assert sink.last_error is not None and reason in sink.last_error
    assert f"127.0.0.1:{receiver.port}" in sink.last_error
    assert receiver.requests == [] and sink.delivered == 0
    assert sink.spooled_events == 5  # kept for when the key is fixed


def test_user_authentication(receivers: Receivers, sinks: Sinks, tmp_path: Path) -> None:
    receiver = receivers(shared_key=KEY, users={"alice": "s3cret"})
    good = sinks(receiver.port, shared_key=KEY, username="alice", password="s3cret")
    assert len(EventSource(good).emit(4)) == 4
    assert good.wait_delivered(5)
    bad = sinks(
        receiver.port, shared_key=KEY, username="alice", password="wrong", spool_dir=tmp_path / "b"
    )
    EventSource(bad).emit(1)
    assert receiver.wait_for(lambda: bad.last_error is not None, 5)
    assert "username/password mismatch" in str(bad.last_error)
    assert len(receiver.acked_records()) == 4


def test_tls_with_shared_key(receivers: Receivers, sinks: Sinks, certificate: Certificate) -> None:
    receiver = receivers(shared_key=KEY, tls=certificate.server_context())
    sink = sinks(receiver.port, shared_key=KEY, tls=certificate.client_context())
    ids = EventSource(sink).emit(50)
    assert sink.wait_delivered(5)
    assert [r["event.id"] for r in receiver.acked_records()] == ids


def test_an_untrusted_certificate_is_reported(
    receivers: Receivers, sinks: Sinks, certificate: Certificate
) -> None:
    receiver = receivers(tls=certificate.server_context())
    sink = sinks(receiver.port, tls=ssl.create_default_context())  # system CAs only
    EventSource(sink).emit(1)
    assert receiver.wait_for(lambda: sink.last_error is not None, 5)
    assert "certificate" in str(sink.last_error) and "not trusted" in str(sink.last_error)
    assert receiver.requests == [] and sink.spooled_events == 1


def test_bad_settings_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="need a shared_key"):
        ForwardSink("127.0.0.1", spool_dir=tmp_path, username="alice", password="x")
    with pytest.raises(ValueError, match="tag must not be empty"):
        ForwardSink("127.0.0.1", spool_dir=tmp_path, tag="")


def test_a_real_job_is_shipped(receivers: Receivers, sinks: Sinks, tmp_path: Path) -> None:
    import torch

    from flowscope.engine import Executor, JobRequest
    from flowscope.graph.validation import validate_prompt
    from flowscope.nodes.catalog import load_catalog
    from flowscope.storage.directories import Directories

    torch.set_num_threads(1)
    receiver = receivers()
    sink = sinks(receiver.port)
    bus = EventBus()
    pipeline = TelemetryPipeline(bus, [sink])
    registry, _ = load_catalog(Directories.under(tmp_path / "base"))
    prompt = {
        "1": {"class_type": "PrimitiveInt", "inputs": {"value": 4}},
        "2": {"class_type": "IntMath", "inputs": {"a": ["1", 0], "b": 3, "operation": "add"}},
        "3": {"class_type": "PreviewAny", "inputs": {"source": ["2", 0]}},
    }
    validation = validate_prompt(prompt, registry.schema)
    Executor(registry, bus=bus).execute(
        JobRequest(prompt=validation.prompt, outputs=validation.outputs, job_id="job-fwd")
    )
    pipeline.close(5)  # closes the sink too: everything is delivered first
    records = receiver.acked_records()
    actions = [r["event.action"] for r in records]
    assert actions[0] == Action.JOB_STARTED and actions[-1] == Action.JOB_SUCCEEDED
    assert actions.count(Action.NODE_SUCCEEDED) == 3
    assert {r["job.id"] for r in records} == {"job-fwd"}
    assert len({r["trace.id"] for r in records}) == 1
    assert len({r["event.id"] for r in records}) == len(records)
    assert [r["event.sequence"] for r in records] == sorted(r["event.sequence"] for r in records)
