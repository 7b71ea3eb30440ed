"""Server benchmark: `flowscope serve` in its own process, driven over loopback.

Cases (issue 4 targets; peer figures from spec/comfyui-compat.md §9.4):
  submit    POST /prompt, 8 client threads, unique trivial prompts, durably stored (also: the
            CPU time the server process and its worker processes spent per job); every setup
            once per round, in turn, medians over `--rounds` (the VM's speed drifts); with
            `--against SRC` also another version's defaults each round, compared pairwise
  latency   idle queue: submit-to-start (client send -> the job's execution_start timestamp)
  ws        WebSocket bytes for a 1,000-node chain and a 1,000-node tree
  restart   10,000 queued jobs: launch -> serving, serving -> first job resumed
  history   GET /history?max_items=200 with 10,000 entries

Prints a table; the figures go into docs/benchmarks.md.
Run: `.venv/bin/python benchmarks/server.py [CASE ...] [--rounds N] [--against OTHER/src]`.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import platform
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from graphs import chain, tree

PEER = {
    "submit": "982 req/s, p99 31 ms (nothing durable)",
    "ws-chain": "ComfyUI rejects a 1,000-node chain; 300 nodes: 18 MB",
    "ws-tree": "200 MB",
    "history": "10 ms for 5,000 entries",
    "restart": "queue lost on restart; warm start 5.4 s",
}


def trivial(value: int) -> dict[str, Any]:
    return {
        "1": {"class_type": "PrimitiveInt", "inputs": {"value": value}},
        "2": {"class_type": "PreviewAny", "inputs": {"source": ["1", 0]}},
    }


class Server:
    def __init__(self, base: Path, *extra: str, src: Path | None = None) -> None:
        """`src`: run the flowscope found there (another version's `src` folder) instead."""
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.launched = time.perf_counter()
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "flowscope.cli",
                "serve",
                "--base-directory",
                str(base),
                "--port",
                str(self.port),
                *extra,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env={**os.environ, "PYTHONPATH": str(src)} if src is not None else None,
        )
        self.serving_after = self._wait_serving()

    def _wait_serving(self) -> float:
        while True:
            try:
                status, _ = self.request("GET", "/healthz")
                if status == 200:
                    return time.perf_counter() - self.launched
            except OSError:
                pass
            if self.process.poll() is not None:
                raise SystemExit("the server exited during start-up")
            time.sleep(0.01)

    def request(self, method: str, path: str, body: Any = None) -> tuple[int, bytes]:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        try:
            payload = json.dumps(body).encode() if body is not None else None
            connection.request(method, path, body=payload)
            response = connection.getresponse()
            return response.status, response.read()
        finally:
            connection.close()

    def json(self, path: str) -> Any:
        return json.loads(self.request("GET", path)[1])

    def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


@contextmanager
def running(base: Path, *extra: str, src: Path | None = None) -> Iterator[Server]:
    server = Server(base, *extra, src=src)
    try:
        yield server
    finally:
        server.stop()


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux), 0 when it cannot be read."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return 0.0
    return (int(stat[11]) + int(stat[12])) / os.sysconf("SC_CLK_TCK")


def child_pids(pid: int) -> list[int]:
    """The worker processes a server started (Linux)."""
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(child) for child in text.split()]


def submit_many(server: Server, count: int, threads: int) -> tuple[float, list[float]]:
    """`count` unique prompts from `threads` keep-alive connections: (wall s, latencies s)."""
    latencies: list[float] = []
    lock = threading.Lock()
    per_thread = count // threads
    barrier = threading.Barrier(threads + 1)

    def client(index: int) -> None:
        connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
        bodies = [
            json.dumps({"prompt": trivial(index * per_thread + i)}).encode()
            for i in range(per_thread)
        ]
        mine = []
        barrier.wait()
        for body in bodies:
            began = time.perf_counter()
            connection.request("POST", "/prompt", body=body)
            response = connection.getresponse()
            response.read()
            if response.status != 200:
                raise SystemExit(f"POST /prompt answered {response.status}")
            mine.append(time.perf_counter() - began)
        connection.close()
        with lock:
            latencies.extend(mine)

    workers = [threading.Thread(target=client, args=(i,)) for i in range(threads)]
    for worker in workers:
        worker.start()
    barrier.wait()
    began = time.perf_counter()
    for worker in workers:
        worker.join()
    return time.perf_counter() - began, latencies


def wait_drained(server: Server, timeout_s: float = 600) -> float:
    began = time.perf_counter()
    while server.json("/prompt")["exec_info"]["queue_remaining"]:
        if time.perf_counter() - began > timeout_s:
            raise SystemExit("the queue did not drain")
        time.sleep(0.02)
    return time.perf_counter() - began


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


SUBMIT_SETUPS = (
    ("telemetry on (defaults)", ()),
    ("no log store", ("--no-logstore",)),
    ("no log store, worker threads", ("--no-logstore", "--worker-threads")),
)


@dataclass
class SubmitRun:
    rate: float
    p50_ms: float
    p99_ms: float
    drained_s: float
    server_us: float
    worker_us: float | None


def submit_run(
    base: Path, args: argparse.Namespace, extra: tuple[str, ...], src: Path | None = None
) -> SubmitRun:
    with running(base, *extra, src=src) as server:
        submit_many(server, 200, args.threads)  # warm-up: connections, code paths
        wait_drained(server)
        pid = server.process.pid
        workers = child_pids(pid)
        before = cpu_seconds(pid), sum(cpu_seconds(child) for child in workers)
        wall, latencies = submit_many(server, args.requests, args.threads)
        drained = wait_drained(server)
        server_cpu = (cpu_seconds(pid) - before[0]) / len(latencies)
        worker_cpu = (sum(cpu_seconds(c) for c in workers) - before[1]) / len(latencies)
    return SubmitRun(
        len(latencies) / wall,
        percentile(latencies, 0.5) * 1e3,
        percentile(latencies, 0.99) * 1e3,
        drained,
        server_cpu * 1e6,
        worker_cpu * 1e6 if workers else None,
    )


def spread(values: list[float], unit: str = "", digits: int = 0) -> str:
    """`median (low–high)`, or the one value."""
    ordered = sorted(values)
    text = f"{statistics.median(ordered):,.{digits}f}{unit}"
    if len(ordered) > 1:
        text += f" ({ordered[0]:,.{digits}f}–{ordered[-1]:,.{digits}f})"
    return text


def case_submit(base: Path, args: argparse.Namespace) -> list[tuple[str, str, str, str]]:
    """Each round runs every setup once, in turn: this VM's speed drifts by up to 2x over tens
    of minutes, so setups compared within a round share it. With `--against`, each round also
    runs the defaults on that other flowscope, and the rounds are compared pairwise."""
    setups: list[tuple[str, tuple[str, ...], Path | None]] = [
        (label, extra, None) for label, extra in SUBMIT_SETUPS
    ]
    if args.against is not None:
        setups.append((f"defaults, {args.against}", (), args.against))
    runs: dict[str, list[SubmitRun]] = {label: [] for label, _, _ in setups}
    for round_ in range(args.rounds):
        for index, (label, extra, src) in enumerate(setups):
            folder = base / f"submit-{round_}-{index}"
            runs[label].append(submit_run(folder, args, extra, src))
    rows = []
    for label, done in runs.items():
        cpu = f"CPU per job: server {spread([r.server_us for r in done], ' µs')}"
        worker_cpu = [r.worker_us for r in done if r.worker_us is not None]
        if worker_cpu:
            cpu += f", worker process {spread(worker_cpu, ' µs')}"
        rows.append(
            (
                f"POST /prompt, {args.threads} threads, {args.requests} unique, {label}",
                f"{spread([r.rate for r in done], ' req/s')}; "
                f"p50 {spread([r.p50_ms for r in done], ' ms', 1)}, "
                f"p99 {spread([r.p99_ms for r in done], ' ms', 1)}; "
                f"drained {spread([r.drained_s for r in done], ' s', 1)} later; {cpu}"
                f" [{len(done)} rounds]",
                "≥ 1,500 req/s, p99 ≤ 30 ms",
                PEER["submit"],
            )
        )
    if args.against is not None:
        ours, theirs = runs[setups[0][0]], runs[setups[-1][0]]
        ratios = [a.rate / b.rate for a, b in zip(ours, theirs, strict=True)]
        cpu_saved = [b.server_us - a.server_us for a, b in zip(ours, theirs, strict=True)]
        rows.append(
            (
                f"defaults vs {args.against}, round by round",
                f"req/s ratio {spread(ratios, '×', 2)}; "
                f"server CPU per job {spread(cpu_saved, ' µs', 0)} less",
                "",
                "",
            )
        )
    return rows


def case_latency(base: Path, args: argparse.Namespace) -> list[tuple[str, str, str, str]]:
    delays = []
    with running(base / "latency") as server:
        for i in range(args.latency_jobs):
            sent_ms = time.time() * 1000
            _, body = server.request("POST", "/prompt", {"prompt": trivial(10_000 + i)})
            job_id = json.loads(body)["prompt_id"]
            while True:
                entry = server.json(f"/history/{job_id}")
                if job_id in entry:
                    break
                time.sleep(0.005)
            messages = entry[job_id]["status"]["messages"]
            started = next(
                data["timestamp"] for kind, data in messages if kind == "execution_start"
            )
            delays.append(started - sent_ms)
            time.sleep(0.02)  # the queue is idle again
    return [
        (
            f"idle queue: submit → execution_start ({len(delays)} jobs)",
            f"median {statistics.median(delays):.1f} ms, p95 {percentile(delays, 0.95):.1f} ms",
            "≤ 5 ms",
            "—",
        )
    ]


def websocket_bytes(server: Server, prompt: dict[str, Any]) -> tuple[int, float]:
    import asyncio

    import websockets

    async def run() -> tuple[int, float]:
        client_id = uuid.uuid4().hex
        url = f"ws://127.0.0.1:{server.port}/ws?clientId={client_id}"
        total = 0
        async with websockets.connect(url, max_size=None) as socket_:
            await socket_.recv()
            loop = asyncio.get_running_loop()
            began = time.perf_counter()
            _, body = await loop.run_in_executor(
                None,
                lambda: server.request(
                    "POST", "/prompt", {"prompt": prompt, "client_id": client_id}
                ),
            )
            job_id = json.loads(body)["prompt_id"]
            while True:
                frame = await socket_.recv()
                total += len(frame)
                if isinstance(frame, str):
                    message = json.loads(frame)
                    data = message.get("data") or {}
                    if (
                        message["type"] == "executing"
                        and data.get("node") is None
                        and data.get("prompt_id") == job_id
                    ):
                        return total, time.perf_counter() - began

    return asyncio.run(run())


def case_ws(base: Path, _args: argparse.Namespace) -> list[tuple[str, str, str, str]]:
    rows = []
    with running(base / "ws") as server:
        for name, prompt in (("chain", chain(1000, 1)), ("tree", tree(1000, 1))):
            size, wall = websocket_bytes(server, prompt)
            rows.append(
                (
                    f"WebSocket bytes, 1,000-node {name}",
                    f"{size / 1e6:.2f} MB ({size / len(prompt):,.0f} B/node); "
                    f"wall {wall * 1e3:.0f} ms",
                    "≤ 2 MB",
                    PEER[f"ws-{name}"],
                )
            )
    return rows


def case_restart_and_history(
    base: Path, args: argparse.Namespace
) -> list[tuple[str, str, str, str]]:
    folder = base / "restart"
    with running(base / "empty", "--no-logstore") as empty:
        baseline = empty.serving_after  # the same start-up with nothing queued
    with running(folder, "--workers", "0", "--no-logstore") as server:
        submit_many(server, args.queued, args.threads)
        queued = server.json("/prompt")["exec_info"]["queue_remaining"]
    server = Server(folder, "--no-logstore")
    try:
        serving = server.serving_after
        began = time.perf_counter()
        while server.json("/prompt")["exec_info"]["queue_remaining"] >= queued:
            time.sleep(0.005)
        resumed = serving + time.perf_counter() - began
        drained = wait_drained(server)
        timings = []
        size = 0
        for _ in range(args.history_requests):
            t0 = time.perf_counter()
            status, body = server.request("GET", "/history?max_items=200")
            timings.append(time.perf_counter() - t0)
            size = len(body)
            assert status == 200
        entries = len(server.json("/history"))
    finally:
        server.stop()
    return [
        (
            f"restart with {queued:,} queued jobs",
            f"serving after {serving:.2f} s, first job resumed after {resumed:.2f} s "
            f"(empty store: serving after {baseline:.2f} s; all ran in {drained:.1f} s)",
            "≤ 2 s",
            PEER["restart"],
        ),
        (
            f"GET /history?max_items=200, {entries:,} entries",
            f"median {statistics.median(timings) * 1e3:.1f} ms, p99 "
            f"{percentile(timings, 0.99) * 1e3:.1f} ms ({size / 1e3:.0f} KB)",
            "≤ 10 ms",
            PEER["history"],
        ),
    ]


CASES = {
    "submit": case_submit,
    "latency": case_latency,
    "ws": case_ws,
    "restart": case_restart_and_history,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("cases", nargs="*", metavar="CASE", help=f"some of {', '.join(CASES)}")
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument(
        "--rounds", type=int, default=3, help="submit: rounds of every setup, in turn (medians)"
    )
    parser.add_argument(
        "--against",
        type=Path,
        metavar="SRC",
        help="submit: also run the defaults on the flowscope in SRC (another version's src "
        "folder, e.g. from `git worktree add`) in each round, and compare round by round",
    )
    parser.add_argument("--latency-jobs", type=int, default=50)
    parser.add_argument("--queued", type=int, default=10_000)
    parser.add_argument("--history-requests", type=int, default=100)
    args = parser.parse_args()
    unknown = [name for name in args.cases if name not in CASES]
    if unknown:
        parser.error(f"unknown case {unknown[0]!r}; choose from {', '.join(CASES)}")
    args.cases = args.cases or list(CASES)
    machine = platform.processor() or platform.machine()
    print(
        f"# flowscope server benchmark — {platform.node()}, {machine}, "
        f"Python {platform.python_version()}, {time.strftime('%Y-%m-%d')}"
    )
    rows: list[tuple[str, str, str, str]] = []
    with tempfile.TemporaryDirectory(prefix="flowscope-bench-") as folder:
        for name in args.cases:
            rows.extend(CASES[name](Path(folder), args))
    widths = [
        max(len(row[i]) for row in [("case", "measured", "target", "ComfyUI 0.3.64"), *rows])
        for i in range(4)
    ]
    header = ("case", "measured", "target", "ComfyUI 0.3.64")
    print(" | ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)))
    print("-+-".join("-" * w for w in widths))
    for row in rows:
        print(" | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)))


if __name__ == "__main__":
    main()
