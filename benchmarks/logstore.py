"""Log store benchmark: insert realistic job and node events, then time the queries people run.

Events are the engine's shapes (job.*, node.* with inputs/outputs previews, memory fields,
debug progress, OOM and ValueError failures) over several workflow templates and node types,
written the way the sink's writer process writes them (`LogStore.insert_events`: rows built
from a plan per event shape, 5,000 per transaction). Prints a table; the figures go into
docs/benchmarks.md.
Run: `.venv/bin/python benchmarks/logstore.py [--events 1000000]`.
"""

from __future__ import annotations

import argparse
import platform
import random
import sqlite3
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from flowscope.logstore import LogStore, job_timeline, node_stats
from flowscope.telemetry.document import ServiceInfo
from flowscope.telemetry.events import Action, Event, Level
from flowscope.telemetry.ids import new_span_id, new_trace_id, uuid7

MS = 1_000_000
EVENTS_PER_JOB = 20.4  # the mean of the mix below, so that the events end about now
# Node type -> (median ms, spread of the log-normal, share of runs served from cache).
NODE_TYPES: dict[str, tuple[float, float, float]] = {
    "CheckpointLoaderSimple": (2200, 0.4, 0.85),
    "LoraLoader": (450, 0.5, 0.7),
    "CLIPTextEncode": (35, 0.5, 0.4),
    "EmptyLatentImage": (1.2, 0.3, 0.6),
    "LoadImage": (25, 0.6, 0.5),
    "ControlNetLoader": (900, 0.4, 0.8),
    "ControlNetApplyAdvanced": (12, 0.5, 0.3),
    "KSampler": (4200, 0.6, 0.05),
    "LatentUpscaleBy": (6, 0.4, 0.0),
    "VAEDecode": (320, 0.5, 0.05),
    "SaveImage": (60, 0.6, 0.0),
}
TEMPLATES: list[list[str]] = [
    [
        "CheckpointLoaderSimple",
        "CLIPTextEncode",
        "CLIPTextEncode",
        "EmptyLatentImage",
        "KSampler",
        "VAEDecode",
        "SaveImage",
    ],
    [
        "CheckpointLoaderSimple",
        "LoraLoader",
        "CLIPTextEncode",
        "CLIPTextEncode",
        "EmptyLatentImage",
        "KSampler",
        "LatentUpscaleBy",
        "KSampler",
        "VAEDecode",
        "SaveImage",
    ],
    [
        "CheckpointLoaderSimple",
        "ControlNetLoader",
        "LoadImage",
        "CLIPTextEncode",
        "CLIPTextEncode",
        "ControlNetApplyAdvanced",
        "EmptyLatentImage",
        "KSampler",
        "VAEDecode",
        "SaveImage",
    ],
]
PROMPTS = [
    "a watercolor painting of a lighthouse at dusk, soft light, highly detailed",
    "portrait of an astronaut in a sunflower field, 35mm photo, bokeh",
    "isometric cozy cabin in the snow, digital art, trending on artstation",
    "product shot of a ceramic mug on a wooden table, studio lighting",
]
OOM = (
    "torch.OutOfMemoryError",
    "CUDA out of memory. Tried to allocate 2.00 GiB. GPU 0 has a total capacity of 23.65 GiB of "
    "which 1.12 GiB is free.",
)
BAD_INPUT = ("ValueError", "VAEDecode: latent has 8 channels but the VAE expects 4")


class Generator:
    """Jobs back to back over the last `days`; events in the order the engine emits them."""

    def __init__(self, total: int, days: float, seed: int = 1) -> None:
        self.rng = random.Random(seed)
        self.total = total
        self.workflows = [f"wf-{self.rng.getrandbits(32):08x}" for _ in range(300)]
        self.users = [f"user-{i:03d}" for i in range(40)]
        self.start_ns = time.time_ns() - int(days * 86_400 * 1e9)
        self.gap_ns = int(days * 86_400 * 1e9 / (total / EVENTS_PER_JOB))
        self.clock = self.start_ns
        self.jobs: list[tuple[str, str, str, str]] = []  # job id, workflow, trace, error type

    def events(self) -> Iterator[Event]:
        produced = 0
        while produced < self.total:
            for event in self.job():
                yield event
                produced += 1
                if produced == self.total:
                    return

    def job(self) -> list[Event]:
        rng = self.rng
        job_id = str(uuid.UUID(int=rng.getrandbits(128), version=4))
        workflow = rng.choice(self.workflows)
        template = TEMPLATES[int(workflow[3:], 16) % len(TEMPLATES)]
        user = rng.choice(self.users)
        trace = new_trace_id()
        job_span = new_span_id()
        base = {
            "job.id": job_id,
            "workflow.id": workflow,
            "user.id": user,
            "trace.id": trace,
            "transaction.id": job_span,
        }
        events: list[Event] = []
        sequence = 0
        t = self.clock

        def emit(action: Action, message: str, level: Level, fields: dict[str, Any]) -> None:
            nonlocal sequence
            sequence += 1
            fields.update(base)
            fields["event.sequence"] = sequence
            fields.setdefault("span.id", job_span)
            fields["event.id"] = uuid7()
            events.append(Event(action, message, t, level, fields))

        emit(
            Action.JOB_STARTED,
            "job started",
            Level.INFO,
            {"job.nodes_total": len(template), "job.nodes_cached": 0},
        )
        failure: tuple[str, str] | None = None
        for index, node_type in enumerate(template):
            median, spread, cached_share = NODE_TYPES[node_type]
            node = {"node.id": str(index + 3), "node.type": node_type, "span.id": new_span_id()}
            if rng.random() < cached_share:
                t += int(0.05 * MS)
                emit(
                    Action.NODE_CACHED,
                    "node served from cache",
                    Level.INFO,
                    {**node, "event.outcome": "success", "node.cached": True},
                )
                continue
            emit(Action.NODE_STARTED, "node started", Level.INFO, dict(node))
            duration = int(rng.lognormvariate(0, spread) * median * MS)
            if node_type == "KSampler":
                for step in (5, 10, 15):  # debug progress, kept at the default sampling rate
                    t += duration // 4
                    emit(
                        Action.NODE_PROGRESS,
                        "node progress",
                        Level.DEBUG,
                        {**node, "node.progress.value": step, "node.progress.max": 20},
                    )
                t += duration - 3 * (duration // 4)
            else:
                t += duration
            roll = rng.random()
            if node_type in ("KSampler", "VAEDecode") and roll < 0.015:
                failure = OOM if roll < 0.012 else BAD_INPUT
                emit(
                    Action.NODE_FAILED,
                    "node failed",
                    Level.ERROR,
                    {
                        **node,
                        "event.outcome": "failure",
                        "event.duration": duration,
                        "node.duration_ms": duration / MS,
                        "node.cached": False,
                        "error.type": failure[0],
                        "error.message": failure[1],
                        "error.stack_trace": f"Traceback (most recent call last):\n  File "
                        f'"nodes.py", line 1492, in {node_type.lower()}\n'
                        f"{failure[0]}: {failure[1]}",
                        **({"error.code": "out_of_memory"} if failure is OOM else {}),
                        "node.inputs": self.inputs(node_type),
                    },
                )
                break
            emit(
                Action.NODE_SUCCEEDED,
                "node succeeded",
                Level.INFO,
                {
                    **node,
                    "event.outcome": "success",
                    "event.duration": duration,
                    "node.duration_ms": duration / MS,
                    "node.cached": False,
                    "node.inputs": self.inputs(node_type),
                    "node.outputs": {"0": "LATENT 1x4x128x128 float16"},
                    "process.memory.peak_bytes": rng.randrange(2_000_000_000, 9_000_000_000),
                    "gpu.memory.peak_bytes": rng.randrange(3_000_000_000, 22_000_000_000),
                },
            )
        duration_ns = t - self.clock
        if failure is None:
            emit(
                Action.JOB_SUCCEEDED,
                "job succeeded",
                Level.INFO,
                {"event.outcome": "success", "event.duration": duration_ns},
            )
        else:
            emit(
                Action.JOB_FAILED,
                "job failed",
                Level.ERROR,
                {
                    "event.outcome": "failure",
                    "event.duration": duration_ns,
                    "error.type": failure[0],
                    "error.message": failure[1],
                },
            )
        self.jobs.append((job_id, workflow, trace, failure[0] if failure else ""))
        self.clock += self.gap_ns
        return events

    def inputs(self, node_type: str) -> dict[str, Any]:
        rng = self.rng
        if node_type == "KSampler":
            return {
                "seed": rng.getrandbits(48),
                "steps": rng.choice([20, 25, 30]),
                "cfg": rng.choice([6.5, 7.0, 8.0]),
                "sampler_name": "dpmpp_2m",
                "scheduler": "karras",
                "denoise": 1.0,
            }
        if node_type == "CLIPTextEncode":
            return {"text": rng.choice(PROMPTS)}
        if node_type == "CheckpointLoaderSimple":
            return {"ckpt_name": "sd_xl_base_1.0.safetensors"}
        if node_type == "SaveImage":
            return {"filename_prefix": "flowscope"}
        return {}


def timed(run: Callable[[], Any], repeat: int) -> tuple[float, Any]:
    """Median wall time in ms over `repeat` runs (after one warm-up), and the last result."""
    result = run()
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        result = run()
        samples.append((time.perf_counter() - start) * 1000)
    return statistics.median(samples), result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--days", type=float, default=30.0, help="time span of the events")
    parser.add_argument("--batch", type=int, default=5_000, help="events per transaction")
    parser.add_argument("--path", help="store file (default: a temporary folder, deleted)")
    args = parser.parse_args()

    folder = tempfile.TemporaryDirectory()
    path = Path(args.path) if args.path else Path(folder.name) / "logstore.db"
    print(
        f"python {sys.version.split()[0]}, SQLite {sqlite3.sqlite_version}, "
        f"{platform.machine()}, {platform.processor() or 'cpu'}; store {path}"
    )

    generator = Generator(args.events, args.days)
    static = ServiceInfo().fields()
    store = LogStore(path)
    insert_s = 0.0
    batch: list[Event] = []
    for event in generator.events():
        batch.append(event)
        if len(batch) == args.batch:
            start = time.perf_counter()
            store.insert_events(batch, static)
            insert_s += time.perf_counter() - start
            batch = []
    if batch:
        start = time.perf_counter()
        store.insert_events(batch, static)
        insert_s += time.perf_counter() - start
    store.checkpoint()
    facts = store.stats()
    count = facts["events"]
    size_mb = facts["bytes"] / 1e6

    rng = random.Random(2)
    job_id, _, trace, _ = rng.choice(generator.jobs)
    failed_job = rng.choice([job for job in generator.jobs if job[3] == OOM[0]])
    failed_workflow = failed_job[1]
    rows: list[tuple[str, float, str]] = []

    def search(label: str, query: str, repeat: int = 50, **options: Any) -> None:
        ms, found = timed(lambda: store.search(query, **options), repeat)
        rows.append((label, ms, f"{len(found)} events"))

    search("one job's events: job.id:<id>", f"job.id:{job_id}")
    search("workflow_id:<wf> AND level:ERROR", f"workflow_id:{failed_workflow} AND level:ERROR")
    search("trace.id:<id>", f"trace.id:{trace}")
    search('full text: "out of memory" (newest 100)', '"out of memory"')
    search('full text, rarer: "latent has 8 channels" (newest 100)', '"latent has 8 channels"')
    search("full text, rare: allocate and job.id:<failed>", f"allocate and job.id:{failed_job[0]}")
    search(
        "node:KSampler and duration_ms > 10000 (newest 100)",
        "node:KSampler and duration_ms > 10000",
    )
    search("level:error (newest 100)", "level:error")
    search(
        "error.code:out_of_memory and @timestamp >= now-1d",
        "error.code:out_of_memory and @timestamp >= now-1d",
        repeat=5,
    )
    ms, timeline = timed(lambda: job_timeline(store, job_id), 50)
    rows.append(("job_timeline(<job>)", ms, f"{len(timeline.events) if timeline else 0} events"))
    ms, counted = timed(lambda: store.count("level:error"), 5)
    rows.append(("count level:error (all rows)", ms, f"{counted} events"))
    ms, stats = timed(lambda: node_stats(store), 5)
    rows.append(("node_stats() over all rows", ms, f"{len(stats)} node types"))
    day_ago = time.time_ns() - 86_400 * 10**9
    ms, stats_day = timed(lambda: node_stats(store, since=day_ago), 5)
    rows.append(("node_stats(since=1 day ago)", ms, f"{sum(s.count for s in stats_day)} results"))

    print()
    print(
        f"{count:,} events inserted in {insert_s:.1f} s: {count / insert_s:,.0f} events/s "
        f"({args.batch} per transaction)"
    )
    print(
        f"database {size_mb:,.1f} MB = {size_mb / count * 1e6:,.0f} MB per million events "
        f"({facts['bytes'] / count:,.0f} bytes/event)"
    )
    print()
    width = max(len(label) for label, _, _ in rows)
    print(f"{'query'.ljust(width)}  {'median ms':>10}  result")
    for label, ms, result in rows:
        print(f"{label.ljust(width)}  {ms:>10.2f}  {result}")
    print()
    print("node_stats() over all rows:")
    for entry in stats:
        print(
            f"  {entry.node_type:<24} n={entry.count:>7}  err={entry.error_rate:6.2%}  "
            f"cache={entry.cache_hit_rate:6.1%}  mean={entry.mean_ms or 0:8.1f}  "
            f"p50={entry.p50_ms or 0:8.1f}  p95={entry.p95_ms or 0:8.1f}  "
            f"max={entry.max_ms or 0:9.1f} ms"
        )
    store.close()
    folder.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
