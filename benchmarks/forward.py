"""Forward sink benchmark: events per second shipped to a local receiver in PackedForward
batches, with and without gzip, at least once (every chunk spooled to disk, fsynced, and acked).

The receiver runs in its own process (so it does not share our GIL) and only acks: it reads each
request's option map and answers `{"ack": chunk}` without decoding the entries, so the figures
are the sender's. Events go through the real path: EventBus → TelemetryPipeline (event.id) →
ForwardSink (ECS document, msgpack, gzip, spool, socket). Prints a table.

Run: `.venv/bin/python benchmarks/forward.py` (`--events 50000` for a quick run).
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import platform
import random
import socket
import statistics
import tempfile
import threading
import time
from multiprocessing.connection import Connection
from typing import Any

import msgpack

from flowscope.telemetry import Action, Event, EventBus, Level
from flowscope.telemetry.document import DocumentBuilder
from flowscope.telemetry.forward import ForwardSink
from flowscope.telemetry.forward.protocol import encode_chunk
from flowscope.telemetry.pipeline import TelemetryPipeline

NODE_TYPES = [
    "CheckpointLoaderSimple", "CLIPTextEncode", "EmptyLatentImage", "KSampler", "VAEDecode",
    "SaveImage", "LoraLoader", "ControlNetApply", "ImageScale", "PreviewImage",
]  # fmt: skip
NODES_PER_JOB = 20
RNG = random.Random(7)  # the same stream on every run


def node_event(sequence: int, rng: random.Random = RNG) -> Event:
    """A node.succeeded event shaped like the engine's, varied like a real stream: a new job
    (ids, trace) every 20 nodes, mixed node types, random durations, seeds and memory."""
    job = sequence // NODES_PER_JOB
    duration_ns = rng.randrange(1_000_000, 20_000_000_000)
    fields: dict[str, Any] = {
        "event.outcome": "success",
        "event.duration": duration_ns,
        "event.sequence": sequence % NODES_PER_JOB,
        "job.id": f"{job:08x}-5c43-4a4e-9d7e-2f1f1f0d9b11",
        "workflow.id": f"wf-{job % 7:08x}",
        "user.id": f"user-{job % 13}",
        "trace.id": f"{job:016x}{rng.getrandbits(64):016x}",
        "transaction.id": f"{rng.getrandbits(64):016x}",
        "span.id": f"{rng.getrandbits(64):016x}",
        "node.id": str(sequence % NODES_PER_JOB),
        "node.type": rng.choice(NODE_TYPES),
        "node.duration_ms": duration_ns / 1e6,
        "node.cached": False,
        "node.inputs": {
            "seed": rng.getrandbits(48),
            "steps": rng.choice([20, 25, 30]),
            "cfg": rng.choice([5.0, 7.0, 7.5]),
            "sampler_name": rng.choice(["euler", "dpmpp_2m", "ddim"]),
        },
        "node.outputs": {"0": "LATENT [1, 4, 64, 64] float32"},
        "process.memory.peak_bytes": rng.getrandbits(33),
    }
    return Event(Action.NODE_SUCCEEDED, "node finished", time.time_ns(), Level.INFO, fields)


# -- the receiver (its own process) -----------------------------------------------------------
def _ack_only_server(port_out: Connection) -> None:
    listener = socket.create_server(("127.0.0.1", 0))
    port_out.send(listener.getsockname()[1])
    while True:
        conn, _ = listener.accept()
        threading.Thread(target=_ack_requests, args=(conn,), daemon=True).start()


def _ack_requests(conn: socket.socket) -> None:
    conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    decoder = msgpack.Unpacker(raw=True, max_buffer_size=256 << 20)
    with conn:
        while data := conn.recv(1 << 20):
            decoder.feed(data)
            for request in decoder:
                chunk = request[2][b"chunk"].decode()
                conn.sendall(msgpack.packb({"ack": chunk}))


def start_receiver() -> tuple[multiprocessing.process.BaseProcess, int]:
    context = multiprocessing.get_context("spawn")
    parent, child = context.Pipe()
    process = context.Process(target=_ack_only_server, args=(child,), daemon=True)
    process.start()
    port: int = parent.recv()
    return process, port


# -- measurements -------------------------------------------------------------------------------
CONFIGS: list[dict[str, Any]] = [
    # (what is varied, relative to the default ForwardSink: gzip level 6, fsync on)
    {"compress": False, "batch": 100},
    {"compress": False, "batch": 1000},
    {"compress": False, "batch": 1000, "fsync": False},
    {"compress": True, "batch": 100},
    {"compress": True, "batch": 1000},
    {"compress": True, "batch": 1000, "fsync": False},
    {"compress": True, "batch": 1000, "compress_level": 1},
]


def encode_only(batch: int, compress: bool, level: int, repeat: int = 20) -> tuple[float, float]:
    """(events per second to build the documents and encode one chunk, bytes per event)."""
    build = DocumentBuilder()
    events = [node_event(i) for i in range(batch)]
    timings, size = [], 0
    for _ in range(repeat):
        started = time.perf_counter()
        entries = [(e.time_ns, build(e)) for e in events]
        chunk = encode_chunk("flowscope", entries, compress=compress, compress_level=level)
        timings.append(time.perf_counter() - started)
        size = len(chunk.frame)
    return batch / statistics.median(timings), size / batch


def ship(port: int, count: int, config: dict[str, Any]) -> dict[str, float]:
    """Emit `count` events through the pipeline and wait until the receiver acked them all."""
    with tempfile.TemporaryDirectory() as spool_dir:
        sink = ForwardSink(
            "127.0.0.1",
            port,
            spool_dir=spool_dir,
            compress=config["compress"],
            compress_level=config.get("compress_level", 6),
            fsync=config.get("fsync", True),
            batch_size=config["batch"],
            flush_interval_s=0.05,
            capacity=count,  # measure throughput, not the drop policy
            max_spool_bytes=2 << 30,
        )
        bus = EventBus()
        pipeline = TelemetryPipeline(bus, [sink], report_interval_s=3600)
        events = [node_event(i) for i in range(count)]
        cpu_started, started = time.process_time(), time.perf_counter()
        for event in events:
            bus.emit(event)
        emitted = time.perf_counter() - started
        if not sink.wait_delivered(600):
            raise SystemExit(f"not delivered: {sink.spooled_events} events still spooled")
        elapsed = time.perf_counter() - started
        cpu = time.process_time() - cpu_started
        assert sink.delivered == count and sink.dropped == 0, (sink.delivered, sink.dropped)
        pipeline.close(5)
    return {
        "events_per_s": count / elapsed,
        "events_per_cpu_s": count / cpu,
        "emit_us": emitted / count * 1e6,
    }


def describe(config: dict[str, Any]) -> str:
    mode = "CompressedPackedForward" if config["compress"] else "PackedForward"
    extras = []
    if config["compress"] and config.get("compress_level", 6) != 6:
        extras.append(f"gzip -{config['compress_level']}")
    if not config.get("fsync", True):
        extras.append("no fsync")
    return mode + (f" ({', '.join(extras)})" if extras else "")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=3, help="runs per row; the median is shown")
    args = parser.parse_args()

    receiver, port = start_receiver()
    print(
        f"Python {platform.python_version()}, {platform.machine()}, {os.cpu_count()} CPUs, "
        f"msgpack {'.'.join(map(str, msgpack.version))}; {args.events} node.succeeded events "
        f"per run, median of {args.repeat}; receiver: ack-only, in its own process"
    )
    header = (
        f"{'mode':<44}{'batch':>6}{'B/event':>8}{'encode ev/s':>13}"
        f"{'shipped ev/s':>14}{'ev/CPU-s':>10}{'emit µs':>9}"
    )
    print(header)
    print("-" * len(header))
    try:
        for config in CONFIGS:
            level = config.get("compress_level", 6)
            encode_rate, per_event = encode_only(config["batch"], config["compress"], level)
            runs = [ship(port, args.events, config) for _ in range(args.repeat)]

            def median(key: str, runs: list[dict[str, float]] = runs) -> float:
                return statistics.median(run[key] for run in runs)

            print(
                f"{describe(config):<44}{config['batch']:>6}{per_event:>8.0f}"
                f"{encode_rate:>13,.0f}{median('events_per_s'):>14,.0f}"
                f"{median('events_per_cpu_s'):>10,.0f}{median('emit_us'):>9.1f}"
            )
    finally:
        receiver.terminate()
        receiver.join(5)


if __name__ == "__main__":
    main()
