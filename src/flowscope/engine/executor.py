"""The executor: runs validated jobs one at a time and keeps what lives across jobs (the output
cache, node instances, the interrupt flag)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import Any

from flowscope.engine.cache import ClassicCache, OutputCache
from flowscope.engine.interrupt import InterruptFlag
from flowscope.engine.job import JobRequest, JobResult
from flowscope.engine.job_run import JobRun
from flowscope.engine.memory import MemoryProbe
from flowscope.engine.reporting import LOG_INPUTS, LogInputs
from flowscope.nodes.registry import NodeRegistry
from flowscope.telemetry.bus import EventBus


class Executor:
    def __init__(
        self,
        registry: NodeRegistry,
        *,
        bus: EventBus | None = None,
        cache: OutputCache | None = None,
        on_out_of_memory: Callable[[], None] | None = None,
        progress_interval_s: float = 0.1,
        memory_probe: MemoryProbe | None = None,
        log_inputs: LogInputs = "preview",
    ) -> None:
        """`on_out_of_memory` is called after a node runs out of memory (e.g. to unload models);
        `log_inputs` says how much of each node's constant inputs its events carry."""
        self.registry = registry
        self.bus = bus
        self.cache: OutputCache = cache if cache is not None else ClassicCache()
        self.on_out_of_memory = on_out_of_memory
        self.progress_interval_s = progress_interval_s
        if log_inputs not in LOG_INPUTS:
            raise ValueError(
                f"log_inputs must be one of {', '.join(LOG_INPUTS)}, not {log_inputs!r}"
            )
        self.log_inputs: LogInputs = log_inputs
        self.memory_probe = memory_probe if memory_probe is not None else MemoryProbe()
        self.objects: dict[tuple[str, str], Any] = {}
        self.interrupt_flag = InterruptFlag()
        self.running_job_id: str | None = None
        self._loops = threading.local()

    def execute(self, request: JobRequest) -> JobResult:
        """Run one job to completion on this thread's event loop (call from a worker thread)."""
        # Not asyncio.run(): on exit it re-reads the SIGINT handler, whose repr drags in the
        # finished task's whole JobResult (55 ms for a 10,000-node job). And one loop per thread,
        # kept between jobs: creating a loop (selector, self-pipe) costs more than a small job.
        loop = getattr(self._loops, "loop", None)
        if loop is None or loop.is_closed():
            loop = self._loops.loop = asyncio.new_event_loop()
        try:
            return loop.run_until_complete(self.execute_async(request))
        finally:
            loop.run_until_complete(loop.shutdown_asyncgens())

    def close(self) -> None:
        """Close the calling thread's event loop (the executor stays usable: a new one opens)."""
        loop = getattr(self._loops, "loop", None)
        if loop is not None:
            loop.close()
            self._loops.loop = None

    async def execute_async(self, request: JobRequest) -> JobResult:
        self.interrupt_flag.clear()
        self.running_job_id = request.job_id
        self.memory_probe.start_job()
        self._forget_other_instances(request)
        try:
            return await JobRun(self, request).run()
        finally:
            self.running_job_id = None

    def interrupt(self, job_id: str | None = None) -> bool:
        """Interrupt the running job (only if it is `job_id`, when given); False if none matched."""
        if self.running_job_id is None or (job_id is not None and job_id != self.running_job_id):
            return False
        self.interrupt_flag.set()
        return True

    def reset(self) -> None:
        """Drop every cached result and node instance (ComfyUI's POST /free free_memory)."""
        self.cache.clear()
        self.objects.clear()

    def _forget_other_instances(self, request: JobRequest) -> None:
        # Instances survive only while their (node id, class) is in the current prompt.
        keep = {(node_id, node.get("class_type")) for node_id, node in request.prompt.items()}
        self.objects = {key: obj for key, obj in self.objects.items() if key in keep}
