"""Engine benchmark: validation and execution of large graphs of trivial built-in nodes.

Prints a table; the figures go into docs/benchmarks.md. Events are on (an in-memory subscriber
collects every event), as the targets require. Run: `.venv/bin/python benchmarks/engine.py`.
"""

from __future__ import annotations

import argparse
import gc
import json
import platform
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

import torch

from flowscope.engine import Executor, JobRequest
from flowscope.engine.gc_tuning import tune_collector
from flowscope.engine.memory import MemoryProbe
from flowscope.graph.validation import validate_prompt
from flowscope.nodes.catalog import load_catalog
from flowscope.storage.directories import Directories
from flowscope.telemetry import EventBus, InMemorySubscriber
from graphs import chain, tree

# ComfyUI 0.3.64 on a 2-core machine (spec/comfyui-compat.md §9.3), for the last column.
PEER = {
    ("chain", 100): "0.24–0.66 s; cached 0.33–0.48 s",
    ("chain", 1000): "rejected (RecursionError near 970)",
    ("chain", 10000): "rejected",
    ("tree", 1000): "2.6–3.9 s; cached 1.4 s",
}


def timed(fn: Callable[[], Any], repeat: int) -> tuple[float, Any]:
    """Median wall time in seconds over `repeat` runs, and the last result."""
    times = []
    result = None
    for _ in range(repeat):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def rss_hwm_bytes() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return 0


def memory_growth() -> int:
    """Peak RSS growth of one 10,000-node chain job with events on, in this fresh process."""
    with tempfile.TemporaryDirectory() as base:
        registry, _ = load_catalog(Directories.under(base))
        bus = EventBus()
        InMemorySubscriber(bus)
        executor = Executor(registry, bus=bus)
        gc.collect()
        tune_collector()
        MemoryProbe._reset_rss()
        before = rss_hwm_bytes()
        validation = validate_prompt(chain(10000, 7), registry.schema)
        result = executor.execute(JobRequest(prompt=validation.prompt, outputs=validation.outputs))
        assert result.status == "success"
        return rss_hwm_bytes() - before


SHAPES: dict[str, Callable[[int, int], dict[str, Any]]] = {"chain": chain, "tree": tree}
CASES = (("chain", 100), ("chain", 1000), ("chain", 10000), ("tree", 1000))


def measure_case(shape: str, n: int, repeat: int) -> dict[str, float]:
    """Validation, uncached and fully cached execution of one graph, in this fresh process."""
    make = SHAPES[shape]
    with tempfile.TemporaryDirectory() as base:
        registry, _ = load_catalog(Directories.under(base))
        bus = EventBus()
        events = InMemorySubscriber(bus)
        executor = Executor(registry, bus=bus)
        tune_collector()  # as `flowscope run` does after loading the node catalog

        prompt = make(n, random.randrange(10**9))
        t_validate, validation = timed(lambda: validate_prompt(prompt, registry.schema), repeat)
        assert validation.ok, validation.error

        uncached = []
        for _ in range(repeat):
            # A new start value each run: nothing is cached.
            fresh = validate_prompt(make(n, random.randrange(10**9)), registry.schema)
            events.clear()
            start = time.perf_counter()
            result = executor.execute(JobRequest(prompt=fresh.prompt, outputs=fresh.outputs))
            uncached.append(time.perf_counter() - start)
            assert result.status == "success", result.error
        event_count = len(events.events)

        request = JobRequest(prompt=validation.prompt, outputs=validation.outputs)
        executor.execute(request)

        def cached_run() -> None:
            events.clear()
            result = executor.execute(request)
            assert all(r.status == "cached" for r in result.nodes)

        t_cached, _ = timed(cached_run, repeat)
    return {
        "validate": t_validate,
        "execute": statistics.median(uncached),
        "cached": t_cached,
        "events": event_count,
    }


def child(*arguments: str) -> str:
    command = [sys.executable, __file__, *arguments]
    return subprocess.run(command, check=True, capture_output=True, text=True).stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=7, help="runs per figure (median)")
    parser.add_argument("--case", help=argparse.SUPPRESS)
    parser.add_argument("--memory-child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(1)
    if args.memory_child:
        print(memory_growth())
        return
    if args.case:
        shape, n = args.case.split(":")
        print(json.dumps(measure_case(shape, int(n), args.repeat)))
        return

    print(f"flowscope engine benchmark — {platform.node()}, {platform.processor() or 'cpu'}")
    print(
        f"python {platform.python_version()}, torch {torch.__version__}; each graph in a fresh "
        f"process, median of {args.repeat} runs, events on (in-memory subscriber)"
    )
    header = (
        f"{'graph':<7}{'N':>7}{'validate':>11}{'execute':>11}{'per node':>11}"
        f"{'cached re-run':>15}{'events':>8}  ComfyUI 0.3.64 (spec §9.3)"
    )
    print(header)
    print("-" * len(header))
    for shape, n in CASES:
        row = json.loads(child("--case", f"{shape}:{n}", "--repeat", str(args.repeat)))
        print(
            f"{shape:<7}{n:>7}{row['validate'] * 1e3:>9.1f}ms{row['execute'] * 1e3:>9.1f}ms"
            f"{row['execute'] / n * 1e6:>9.1f}µs{row['cached'] * 1e3:>13.1f}ms"
            f"{int(row['events']):>8}  {PEER.get((shape, n), '')}"
        )
    growth = int(child("--memory-child"))
    print(
        "peak RSS growth, chain N=10000, fresh process (build + validate + run): "
        f"{growth / 2**20:.1f} MiB"
    )


if __name__ == "__main__":
    main()
