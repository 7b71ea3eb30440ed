"""Telemetry benchmark: what observing costs the engine.

1. The hot path: one `bus.emit` through the TelemetryPipeline to every sink that exists
   (target: median ≤ 10 µs per event).
2. Sustained load: 50,000 events/s for a few seconds into the JSON lines (and the local log
   store, when present): drops and drain lag (target: zero drops).
3. The engine chain benchmark (`benchmarks/engine.py`'s `chain()`) with every sink on vs the
   in-memory subscriber only (target: ≤ 1.3×).

Sinks are listed in `SINKS`; those not written yet are skipped (ImportError) and named in the
output. The Fluentd forward sink ships to the tests' Forward receiver, run in a child process
(Fluentd itself cannot run here). Run: `.venv/bin/python benchmarks/telemetry.py`.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import platform
import random
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from engine import chain
from flowscope.engine import Executor, JobRequest
from flowscope.engine.gc_tuning import tune_collector
from flowscope.graph.validation import validate_prompt
from flowscope.nodes.catalog import load_catalog
from flowscope.storage.directories import Directories
from flowscope.telemetry import Action, Event, EventBus, InMemorySubscriber, Level
from flowscope.telemetry.document import ServiceInfo
from flowscope.telemetry.ids import new_span_id, new_trace_id
from flowscope.telemetry.pipeline import Sink, TelemetryPipeline
from flowscope.telemetry.sinks.console import ConsoleSink
from flowscope.telemetry.sinks.jsonlines import JsonLinesSink

SERVICE = ServiceInfo(environment="bench")
REPO = Path(__file__).resolve().parent.parent


# -- the sinks ------------------------------------------------------------------------------
@dataclass
class Setting:
    """What the sink factories share: a scratch directory and, lazily, a Forward receiver."""

    directory: Path
    forward_port: int | None = None
    _receiver: Any = None

    def receiver_port(self) -> int:
        if self.forward_port is None:
            self._receiver, self.forward_port = start_forward_receiver()
        return self.forward_port

    def close(self) -> None:
        if self._receiver is not None:
            self._receiver.terminate()
            self._receiver.join(5)


def jsonlines_sink(setting: Setting) -> Sink:
    return JsonLinesSink(setting.directory / "logs" / "events.jsonl", service=SERVICE)


def logstore_sink(setting: Setting) -> Sink:
    from flowscope.logstore.sink import LogStoreSink

    sink: Sink = LogStoreSink(setting.directory / "logstore.db")
    return sink


def metrics_sink(setting: Setting) -> Sink:
    from flowscope.telemetry.sinks.deferred import DeferredSink
    from flowscope.telemetry.sinks.metrics import MetricsSink

    # As start_telemetry() wires it: metric updates happen off the emitting thread.
    return DeferredSink(MetricsSink())


def traces_sink(setting: Setting) -> Sink:
    from flowscope.telemetry.sinks.traces import TraceSink

    # No OTLP endpoint: spans are built (the work) and not exported (no collector here).
    return TraceSink(service=SERVICE, capacity=100_000)


def forward_sink(setting: Setting) -> Sink:
    from flowscope.telemetry.forward import ForwardSink

    return ForwardSink(
        "127.0.0.1", setting.receiver_port(), spool_dir=setting.directory / "spool", service=SERVICE
    )


@dataclass
class SinkSpec:
    name: str
    make: Callable[[Setting], Sink]
    sustained: bool = False  # part of the 50,000 events/s figure


# Every sink the server can run, in the order the pipeline offers to them. Add new ones here.
SINKS = [
    SinkSpec("jsonlines", jsonlines_sink, sustained=True),
    SinkSpec("logstore", logstore_sink, sustained=True),
    SinkSpec("metrics", metrics_sink),
    SinkSpec("traces", traces_sink),
    SinkSpec("forward", forward_sink),
]


def available(specs: list[SinkSpec], setting: Setting) -> tuple[list[SinkSpec], dict[str, str]]:
    """The specs whose sink can be built here, and why each other one cannot."""
    usable: list[SinkSpec] = []
    missing: dict[str, str] = {}
    for spec in specs:
        try:
            spec.make(setting).close(5.0)
        except ImportError as exc:
            missing[spec.name] = f"not present ({exc.name or exc})"
        except Exception as exc:  # a sink whose constructor changed: say so, measure the rest
            missing[spec.name] = f"could not be built: {type(exc).__name__}: {exc}"
        else:
            usable.append(spec)
    return usable, missing


def _serve_forward(port_out: Any) -> None:
    sys.path.insert(0, str(REPO / "tests" / "telemetry" / "forward"))
    from forward_receiver import ForwardReceiver  # type: ignore[import-not-found]

    receiver = ForwardReceiver().start()
    port_out.send(receiver.port)
    while True:  # keeps what it receives bounded: the benchmark only needs the acks
        time.sleep(0.5)
        with receiver._lock:
            receiver.requests.clear()


def start_forward_receiver() -> tuple[Any, int]:
    context = multiprocessing.get_context("fork")
    parent, child = context.Pipe()
    process = context.Process(target=_serve_forward, args=(child,), daemon=True)
    process.start()
    port: int = parent.recv()
    return process, port


@contextmanager
def pipeline_with(
    bus: EventBus, specs: list[SinkSpec], setting: Setting, *extra: Sink
) -> Iterator[TelemetryPipeline]:
    pipeline = TelemetryPipeline(bus, [*(spec.make(setting) for spec in specs), *extra])
    try:
        yield pipeline
    finally:
        pipeline.close(60.0)


def drain(pipeline: TelemetryPipeline, timeout_s: float = 120.0) -> float:
    """Seconds until every sink has finished with what it was given: written it, and for the
    shipping sinks also delivered it (forward acks, exported spans), whose threads otherwise
    keep working into the next measurement."""
    start = time.perf_counter()
    for sink in pipeline.sinks:
        wait_idle = getattr(sink, "wait_idle", None)
        if wait_idle is not None:
            wait_idle(timeout_s)
        wait_delivered = getattr(sink, "wait_delivered", None)  # the forward sink
        if wait_delivered is not None:
            wait_delivered(timeout_s)
        force_flush = getattr(sink, "force_flush", None)  # the trace sink's span exporter
        if force_flush is not None:
            force_flush(timeout_s)
    return time.perf_counter() - start


def dropped(pipeline: TelemetryPipeline) -> dict[str, int]:
    return {sink.name: sink.dropped for sink in pipeline.sinks}


# -- events shaped like the engine's --------------------------------------------------------
@dataclass
class JobStream:
    """Builds one job's events as `engine/reporting.py` does: job.started, started/succeeded
    per node, job.succeeded; every event with the job's shared fields. The fields are copied
    from templates made once per job (the same keys, in the same order, as the engine's), so
    that building the load costs the emitter little next to the telemetry being measured."""

    nodes: int = 20
    job_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    trace_id: str = field(default_factory=new_trace_id)
    span_id: str = field(default_factory=new_span_id)
    sequence: int = 0

    def base(self) -> dict[str, Any]:
        """The fields every event of the job carries, with the next sequence number."""
        self.sequence += 1
        return self.shared(self.sequence)

    def shared(self, sequence: int) -> dict[str, Any]:
        return {
            "job.id": self.job_id,
            "trace.id": self.trace_id,
            "transaction.id": self.span_id,
            "workflow.id": "wf-8a2f1e9b",
            "user.id": "alice",
            "event.sequence": sequence,
            "span.id": self.span_id,
        }

    def events(self) -> Iterator[Event]:
        clock = time.time_ns
        yield Event(
            Action.JOB_STARTED,
            "job started",
            clock(),
            Level.INFO,
            {"job.nodes_total": self.nodes, "job.nodes_cached": 0, **self.base()},
        )
        node = {"node.id": "", "node.type": "KSampler", "node.title": "Sampler"}
        started = {**node, **self.shared(0)}
        succeeded = {
            **node,
            "event.outcome": "success",
            "event.duration": 0,
            "node.duration_ms": 0.0,
            "node.cached": False,
            "node.inputs": {},
            "node.outputs": {},
            "process.memory.peak_bytes": 1_234_567_890,
            **self.shared(0),
        }
        inputs = {
            "seed": 1234,
            "steps": 20,
            "cfg": 7.5,
            "sampler_name": "euler",
            "scheduler": "normal",
            "denoise": 1.0,
        }
        outputs = {"0": "LATENT float32[1, 4, 64, 64]"}
        durations = [random.randrange(1_000_000, 50_000_000) for _ in range(self.nodes)]
        for index in range(self.nodes):
            span = new_span_id()
            node_id = str(index)
            fields = started.copy()
            fields["node.id"] = node_id
            fields["event.sequence"] = self.sequence = self.sequence + 1
            fields["span.id"] = span
            yield Event(Action.NODE_STARTED, "node started", clock(), Level.INFO, fields)
            duration = durations[index]
            fields = succeeded.copy()
            fields["node.id"] = node_id
            fields["event.duration"] = duration
            fields["node.duration_ms"] = duration / 1e6
            fields["node.inputs"] = inputs.copy()  # a node's own preview, as the engine's
            fields["node.outputs"] = outputs.copy()
            fields["event.sequence"] = self.sequence = self.sequence + 1
            fields["span.id"] = span
            yield Event(Action.NODE_SUCCEEDED, "node succeeded", clock(), Level.INFO, fields)
        yield Event(
            Action.JOB_SUCCEEDED,
            "job succeeded",
            clock(),
            Level.INFO,
            {"event.outcome": "success", "event.duration": 123_456_789, **self.base()},
        )


def engine_like_events() -> Iterator[Event]:
    while True:
        yield from JobStream().events()


# -- 1. the hot path ------------------------------------------------------------------------
def hot_path(
    label: str, specs: list[SinkSpec], setting: Setting, count: int, extra: list[Sink]
) -> dict[str, Any]:
    bus = EventBus()
    stream = engine_like_events()
    with pipeline_with(bus, specs, setting, *extra) as pipeline:
        # Warm up: sink threads started, files open, code paths hot.
        for _ in range(2_000):
            bus.emit(next(stream))
        drain(pipeline)
        events = [next(stream) for _ in range(count)]
        times = []
        clock = time.perf_counter_ns
        wall = clock()
        for event in events:
            start = clock()
            bus.emit(event)
            times.append(clock() - start)
        wall = clock() - wall
        lag = drain(pipeline)
        lost = sum(dropped(pipeline).values())
    times.sort()
    return {
        "label": label,
        "median": statistics.median(times) / 1e3,
        "p99": times[int(len(times) * 0.99)] / 1e3,
        "mean": wall / count / 1e3,
        "drain": lag,
        "dropped": lost,
    }


# -- 2. sustained load ----------------------------------------------------------------------
def sustained(specs: list[SinkSpec], setting: Setting, rate: int, seconds: float) -> dict[str, Any]:
    bus = EventBus()
    stream = engine_like_events()
    tick_s = 0.01
    per_tick = int(rate * tick_s)
    with pipeline_with(bus, specs, setting) as pipeline:
        emitted = 0
        late_ticks = 0
        cpu = time.process_time()
        start = time.perf_counter()
        ticks = int(seconds / tick_s)
        for tick in range(ticks):
            for _ in range(per_tick):
                bus.emit(next(stream))
            emitted += per_tick
            pause = start + (tick + 1) * tick_s - time.perf_counter()
            if pause > 0:
                time.sleep(pause)
            else:
                late_ticks += 1
        elapsed = time.perf_counter() - start
        # How far behind each sink was when the emitter stopped: what a sink that keeps up
        # has left is at most a window's worth (a fifth of a second at most).
        behind = {
            sink.name: emitted - getattr(sink, "written", 0) - sink.dropped
            for sink in pipeline.sinks
        }
        lag = drain(pipeline)
        cpu = time.process_time() - cpu
        lost = dropped(pipeline)
    return {
        "sinks": "+".join(spec.name for spec in specs),
        "emitted": emitted,
        "rate": emitted / elapsed,
        "late_ticks": late_ticks,
        "ticks": ticks,
        "drain": lag,
        "dropped": lost,
        "behind": behind,
        "cpu": cpu / (elapsed + lag),
    }


def flat_out(spec: SinkSpec, setting: Setting, count: int) -> float:
    """Events per second one sink writes when fed as fast as the emitter can."""
    bus = EventBus()
    stream = engine_like_events()
    events = [next(stream) for _ in range(count)]
    with pipeline_with(bus, [spec], setting) as pipeline:
        sink = pipeline.sinks[0]
        sink_capacity = getattr(sink, "capacity", None)
        if sink_capacity is not None:
            sink.capacity = max(sink_capacity, count)  # type: ignore[attr-defined]
        start = time.perf_counter()
        for event in events:
            bus.emit(event)
        drain(pipeline)
        return count / (time.perf_counter() - start)


# -- 3. the engine chain --------------------------------------------------------------------
def engine_ratio(
    specs: list[SinkSpec], setting: Setting, nodes: int, repeat: int
) -> dict[str, float]:
    registry, _ = load_catalog(Directories.under(setting.directory / "base"))
    tune_collector()

    def run(executor: Executor) -> float:
        fresh = validate_prompt(chain(nodes, random.randrange(10**9)), registry.schema)
        assert fresh.ok, fresh.error
        start = time.perf_counter()
        result = executor.execute(JobRequest(prompt=fresh.prompt, outputs=fresh.outputs))
        elapsed = time.perf_counter() - start
        assert result.status == "success", result.error
        return elapsed

    plain_bus = EventBus()
    plain_events = InMemorySubscriber(plain_bus)
    plain = Executor(registry, bus=plain_bus)
    full_bus = EventBus()
    full_events = InMemorySubscriber(full_bus)
    full = Executor(registry, bus=full_bus)
    plain_times: list[float] = []
    full_times: list[float] = []
    drains: list[float] = []
    with pipeline_with(full_bus, specs, setting) as pipeline:
        run(plain)
        run(full)
        drain(pipeline)
        for _ in range(repeat):  # alternate, so drift in the machine's load hits both alike
            plain_events.clear()
            plain_times.append(run(plain))  # the sinks are idle (drained) meanwhile
            full_events.clear()
            full_times.append(run(full))
            drains.append(drain(pipeline))
        lost = sum(dropped(pipeline).values())
    plain_s, full_s = statistics.median(plain_times), statistics.median(full_times)
    return {
        "plain": plain_s,
        "full": full_s,
        "ratio": full_s / plain_s,
        "best_ratio": min(full_times) / min(plain_times),
        "with_drain": statistics.median(
            [
                (full + lag) / plain
                for full, lag, plain in zip(full_times, drains, plain_times, strict=True)
            ]
        ),
        "drain": statistics.median(drains),
        "dropped": lost,
        "events": len(full_events.events),
    }


# -- the table ------------------------------------------------------------------------------
PARTS = ("hot", "sustained", "engine")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=20_000, help="events per hot-path row")
    parser.add_argument("--rate", type=int, default=50_000, help="sustained events per second")
    parser.add_argument("--seconds", type=float, default=5.0, help="sustained duration")
    parser.add_argument("--nodes", type=int, default=1_000, help="engine chain length")
    parser.add_argument("--repeat", type=int, default=11, help="engine runs per figure (median)")
    parser.add_argument(
        "--part",
        action="append",
        choices=PARTS,
        help="run only this part (repeatable): hot path, sustained load, engine chain",
    )
    parser.add_argument(
        "--all-only",
        action="store_true",
        help="sustained and engine parts: measure only the group of every sink",
    )
    args = parser.parse_args()
    args.part = args.part or list(PARTS)
    torch.set_num_threads(1)

    print(f"flowscope telemetry benchmark — {platform.node()}, {os.cpu_count()} CPUs")
    print(f"python {platform.python_version()}; events shaped like the engine's (20-node jobs)")
    with tempfile.TemporaryDirectory() as scratch:
        setting = Setting(Path(scratch))
        try:
            specs, missing = available(SINKS, setting)
            names = ", ".join(spec.name for spec in specs)
            print(f"sinks measured: {names}")
            for name, why in missing.items():
                print(f"sink {name}: {why}")
            report(args, specs, setting)
        finally:
            setting.close()


def report(args: argparse.Namespace, specs: list[SinkSpec], setting: Setting) -> None:
    if "hot" in args.part:
        report_hot_path(args, specs, setting)
    if "sustained" in args.part:
        report_sustained(args, specs, setting)
    if "engine" in args.part:
        report_engine(args, specs, setting)


def report_hot_path(args: argparse.Namespace, specs: list[SinkSpec], setting: Setting) -> None:
    by_name = {spec.name: spec for spec in specs}
    print()
    print(
        f"1. hot path: bus.emit → pipeline → sinks, {args.events:,} events (target median ≤ 10 µs)"
    )
    header = f"{'sinks':<48}{'median':>9}{'p99':>9}{'mean':>9}{'drain':>9}{'dropped':>9}"
    print(header)
    print("-" * len(header))
    devnull = open(os.devnull, "w")  # noqa: SIM115 (closed below)
    rows: list[tuple[str, list[SinkSpec], list[Sink]]] = [
        ("no sink (pipeline only: ids, sampling)", [], []),
        ("jsonlines (console off)", [by_name["jsonlines"]], []),
        ("jsonlines + console (to /dev/null)", [by_name["jsonlines"]], [ConsoleSink(devnull)]),
    ]
    rows += [(f"{spec.name} alone", [spec], []) for spec in specs if spec.name != "jsonlines"]
    rows.append((f"all: {'+'.join(s.name for s in specs)}", specs, []))
    for label, chosen, extra in rows:
        row = hot_path(label, chosen, setting, args.events, extra)
        print(
            f"{row['label']:<48}{row['median']:>7.2f}µs{row['p99']:>7.1f}µs{row['mean']:>7.2f}µs"
            f"{row['drain']:>8.2f}s{row['dropped']:>9}"
        )
    devnull.close()
    print("median/p99: one emit, timed alone. mean: wall time / events, the sink threads' share")
    print("of the GIL included. drain: time after the last emit until every sink has written all.")


def report_sustained(args: argparse.Namespace, specs: list[SinkSpec], setting: Setting) -> None:
    print()
    sustained_specs = [spec for spec in specs if spec.sustained]
    print(f"2. sustained: {args.rate:,} events/s for {args.seconds:g} s (target: zero drops)")
    groups = [sustained_specs] if args.all_only else [sustained_specs[:1]]
    if not args.all_only and len(sustained_specs) > 1:
        groups.append(sustained_specs)
    for group in groups:
        row = sustained(group, setting, args.rate, args.seconds)
        print(
            f"{row['sinks']}: emitted {row['emitted']:,} at {row['rate']:,.0f}/s "
            f"({row['late_ticks']}/{row['ticks']} 10 ms ticks late), dropped {row['dropped']}, "
            f"drained {row['drain']:.2f} s after the last emit, "
            f"process CPU {row['cpu']:.0%} of one core (writer processes not counted)"
        )
        print(
            "  not yet written when the emitter stopped: "
            + ", ".join(f"{name} {count:,}" for name, count in row["behind"].items())
        )
    for spec in sustained_specs:
        speed = flat_out(spec, setting, 100_000)
        print(f"{spec.name}: flat out {speed:,.0f} events/s (100,000 events, emitter included)")


def report_engine(args: argparse.Namespace, specs: list[SinkSpec], setting: Setting) -> None:
    print()
    print(
        f"3. engine chain N={args.nodes}, median of {args.repeat}: execute() with sinks vs the "
        "in-memory subscriber only (target ≤ 1.3× with every sink)"
    )
    header = (
        f"{'sinks':<48}{'in-memory':>11}{'with sinks':>12}{'ratio':>8}{'best':>7}{'drain':>8}"
        f"{'+drain':>8}{'dropped':>9}"
    )
    print(header)
    print("-" * len(header))
    groups = [] if args.all_only else [[spec] for spec in specs]
    if len(specs) > 1:
        groups.append(specs)
    for group in groups:
        result = engine_ratio(group, setting, args.nodes, args.repeat)
        label = "all: " + "+".join(s.name for s in group) if len(group) > 1 else group[0].name
        print(
            f"{label:<48}{result['plain'] * 1e3:>9.1f}ms{result['full'] * 1e3:>10.1f}ms"
            f"{result['ratio']:>7.2f}×{result['best_ratio']:>6.2f}×{result['drain'] * 1e3:>6.0f}ms"
            f"{result['with_drain']:>7.2f}×{int(result['dropped']):>9}"
        )
    print(
        f"{int(result['events'])} events per job. ratio: median with sinks / median in-memory; "
        "best: fastest / fastest;"
    )
    print(
        "drain: time after execute() returned until every sink had written the job; "
        "+drain: (execute + drain) / in-memory"
    )


if __name__ == "__main__":
    main()
