"""One job's execution: plan, run nodes in order, map lists, lazy inputs, expansion, async nodes.

Semantics follow ComfyUI (spec §3); see docs/engine.md for where we deliberately do better.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import inspect
import sys
import time
from typing import TYPE_CHECKING, Any

from flowscope.engine.cache import CachedResult
from flowscope.engine.dynprompt import DynamicPrompt
from flowscope.engine.errors import (
    DependencyCycleError,
    NodeOutputError,
    execution_error_payload,
    is_out_of_memory,
)
from flowscope.engine.job import JobRequest, JobResult, NodeRecord, NodeStatus
from flowscope.engine.node_calls import (
    BlockedCall,
    Outputs,
    as_coroutine,
    find_blocker,
    mapped_calls,
    merge_outputs,
    sort_results,
)
from flowscope.engine.node_class import NodeClass, NodeClassLookup
from flowscope.engine.progress import NodeRun
from flowscope.engine.reporting import JobEvents
from flowscope.engine.scheduler import Scheduler
from flowscope.engine.signing import Signer, SigningError
from flowscope.graph.prompt import NodeSpec, is_link, node_title, unwrap_value
from flowscope.graph.signature import Signature
from flowscope.nodes import protocol
from flowscope.nodes.blocker import ExecutionBlocker
from flowscope.nodes.progress import ExecutionInterrupted, current_node
from flowscope.telemetry.events import Action

if TYPE_CHECKING:
    from flowscope.engine.executor import Executor

# How often an interrupt is looked for while only async nodes are running.
ASYNC_INTERRUPT_POLL_S = 0.05


class _Step(enum.Enum):
    DONE = 1
    PENDING = 2


class _NodeFailedError(Exception):
    """Ends the job: a node failed (the payload is ComfyUI's execution_error data)."""

    def __init__(self, payload: dict[str, Any]) -> None:
        super().__init__(payload["exception_message"])
        self.payload = payload


class JobRun:
    def __init__(self, executor: Executor, request: JobRequest) -> None:
        self.executor = executor
        self.request = request
        self.job_id = request.job_id
        self.dynprompt = DynamicPrompt(request.prompt)
        self.events = JobEvents(
            executor.bus,
            request.job_id,
            request.workflow_id,
            request.user_id,
            trace_id=request.trace_id,
            log_inputs=executor.log_inputs,
        )
        self.cache = executor.cache
        self.frees_early = executor.cache.name == "none"
        dynprompt = self.dynprompt
        # No callback below may hold `self`: a JobRun in a reference cycle would keep all of a
        # job's results alive until a full garbage collection.
        node_class = NodeClassLookup(
            executor.registry, lambda node_id: dynprompt.get_node(node_id)["class_type"]
        )
        self.node_class = node_class
        # Bound methods would hold `self`; the signer gets the plain pieces it needs.
        extra_data = request.extra_data
        self.signer = Signer(
            dynprompt,
            node_class,
            lambda node_id, info: _hidden_inputs(dynprompt, extra_data, node_id, info),
        )
        self.signatures = self.signer.signatures
        self.results: dict[str, Outputs] = {}
        self.cached_ui: dict[str, dict[str, Any] | None] = {}
        self.cached_at_start: list[str] = []
        self.consumers: dict[str, int] = {}
        self.records: list[NodeRecord] = []
        self.outputs_ui: dict[str, dict[str, Any]] = {}
        self.meta: dict[str, dict[str, Any]] = {}
        self.started: set[str] = set()
        self.call_started_ns: dict[str, int] = {}
        self.pending_subgraph: dict[str, list[tuple[bool, Any]]] = {}
        self.pending_async: dict[str, list[Any]] = {}
        self.current_inputs: dict[str, dict[str, list[Any]]] = {}
        self.running: str | None = None  # the node being executed now (interrupt reports it)
        self._unblocked = asyncio.Event()
        self._waiters: list[asyncio.Future[None]] = []
        self.scheduler = Scheduler(
            self.dynprompt,
            is_output=lambda n: node_class(n).is_output,
            is_async=lambda n: node_class(n).is_async,
            is_lazy_input=lambda n, name: name in node_class(n).lazy_inputs,
            is_satisfied=self.results.__contains__,
        )

    # -- entry point --------------------------------------------------------------------
    async def run(self) -> JobResult:
        start = time.perf_counter_ns()
        status: str = "success"
        error: dict[str, Any] | None = None
        action = Action.JOB_SUCCEEDED
        try:
            with _inference_mode():
                await self._prepare()
                await self._loop()
        except _NodeFailedError as failure:
            status, error, action = "error", failure.payload, Action.JOB_FAILED
        except ExecutionInterrupted:
            status, action = "interrupted", Action.JOB_INTERRUPTED
            error = self._interrupted_payload()
        finally:
            self._cancel_async_work()
        duration_ns = time.perf_counter_ns() - start
        self.events.job_finished(action, duration_ns, {"error": error, "status": status})
        return JobResult(
            job_id=self.job_id,
            status=status,  # type: ignore[arg-type]
            outputs=self.outputs_ui,
            meta=self.meta,
            nodes=self.records,
            cached_nodes=self.cached_at_start,
            error=error,
            duration_ms=duration_ns / 1e6,
        )

    async def _prepare(self) -> None:
        try:
            order = await self.signer.sign_prompt(self.request.outputs)
        except SigningError as error:
            raise self._node_failure(error.node_id, error.cause) from error
        self.cache.begin_job(self.signatures[n] for n in order)
        outputs = set(self.request.outputs)
        for node_id in order:
            hit = self.cache.get(self.signatures[node_id])
            if hit is not None:
                self.results[node_id] = hit.outputs
                self.cached_ui[node_id] = hit.ui
                self.cached_at_start.append(node_id)
        self.events.job_started(len(order), self.cached_at_start)
        for node_id in self.cached_at_start:
            if node_id not in outputs:  # outputs are replayed (with their UI) when they run
                self._record_cached(node_id)
        if self.frees_early:
            self._count_consumers(order)
        for node_id in self.request.outputs:
            self.scheduler.add_node(node_id)

    async def _loop(self) -> None:
        scheduler = self.scheduler
        while True:
            node_id = scheduler.next_ready()
            if node_id is None:
                if scheduler.has_external_blocks:
                    await self._wait_for_async_nodes()
                    continue
                if scheduler.is_done():
                    return
                self._fail_on_cycle(scheduler.find_cycle())
                return
            step = await self._execute_guarded(node_id)
            if step is _Step.DONE:
                scheduler.complete(node_id)
                if self.frees_early:
                    self._release_inputs(node_id)
            else:
                scheduler.requeue(node_id)

    async def _wait_for_async_nodes(self) -> None:
        """Wait for an async node to finish; notice an interrupt even if its code never checks."""
        interrupt = self.executor.interrupt_flag
        while not self._unblocked.is_set():
            interrupt.check()  # raises; run() then cancels the pending tasks
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._unblocked.wait(), ASYNC_INTERRUPT_POLL_S)
        self._unblocked.clear()

    def _count_consumers(self, node_ids: list[str]) -> None:
        for node_id in node_ids:
            for value in self.dynprompt.get_node(node_id).get("inputs", {}).values():
                if is_link(value):
                    self.consumers[value[0]] = self.consumers.get(value[0], 0) + 1

    def _release_inputs(self, node_id: str) -> None:
        """With the `none` policy, drop results as soon as their last consumer is done."""
        for value in self.dynprompt.get_node(node_id).get("inputs", {}).values():
            if not is_link(value):
                continue
            source = value[0]
            remaining = self.consumers.get(source, 0) - 1
            self.consumers[source] = remaining
            if remaining <= 0 and source not in self.pending_subgraph:
                self.results.pop(source, None)

    # -- one node -----------------------------------------------------------------------
    async def _execute_guarded(self, node_id: str) -> _Step:
        self.running = node_id
        try:
            return await self._execute(node_id)
        except (_NodeFailedError, ExecutionInterrupted):
            raise
        except Exception as exc:
            raise self._node_failure(node_id, exc) from exc

    async def _execute(self, node_id: str) -> _Step:
        node = self.dynprompt.get_node(node_id)
        info = self.node_class(node_id)
        if node_id in self.cached_ui:
            self._record_cached(node_id)
            return _Step.DONE
        if node_id in self.pending_subgraph:
            return self._finish(node_id, node, info, self._resolve_subgraph(node_id, info), None)
        if node_id in self.pending_async:
            results = [
                r.result() if isinstance(r, asyncio.Task) else r
                for r in self.pending_async.pop(node_id)
            ]
            return await self._process_results(node_id, node, info, results)

        hit = self.cache.get(self.signatures[node_id])
        if hit is not None:  # an identical node earlier in this job, or an expanded node
            self.results[node_id] = hit.outputs
            self.cached_ui[node_id] = hit.ui
            self._record_cached(node_id)
            return _Step.DONE
        if node_id not in self.started:
            self.started.add(node_id)
            self.events.node_started(node_id, node, self._meta(node_id))
        inputs, missing = self._input_data(node_id, node, info)
        self.current_inputs[node_id] = inputs
        instance = self._instance(node_id, info)

        if info.lazy_inputs and info.has_lazy_check:
            needed = await self._call_mapped(
                node_id, instance, "check_lazy_status", inputs, info, False
            )
            needed = [await r if isinstance(r, asyncio.Task) else r for r in needed]
            requested: dict[str, None] = {}
            for answer in needed:
                if isinstance(answer, (list, tuple)):
                    requested.update(dict.fromkeys(n for n in answer if isinstance(n, str)))
            missing_now = [n for n in requested if n not in inputs or n in missing]
            if missing_now:
                for name in missing_now:
                    self.scheduler.make_input_strong_link(node_id, name)
                return _Step.PENDING

        self.call_started_ns.setdefault(node_id, time.perf_counter_ns())
        results = await self._call_mapped(node_id, instance, info.function, inputs, info, True)
        if any(isinstance(r, asyncio.Task) for r in results):
            self._await_tasks(node_id, results)
            return _Step.PENDING
        return await self._process_results(node_id, node, info, results)

    def _input_data(
        self, node_id: str, node: NodeSpec, info: NodeClass
    ) -> tuple[dict[str, list[Any]], set[str]]:
        """Each input as a list of items. Undeclared constants are dropped and undeclared links
        kept, as ComfyUI does (dynamic-input packs rely on it); unevaluated links become None."""
        data: dict[str, list[Any]] = {}
        missing: set[str] = set()
        results = self.results
        declared = info.inputs
        for name, value in node.get("inputs", {}).items():
            spec = declared.get(name)
            if is_link(value) and (spec is None or not spec.raw_link):
                produced = results.get(value[0])
                if produced is None and value[0] in self.scheduler.completed:
                    raise RuntimeError(
                        f"input {name!r} links to node {value[0]}, whose result was already freed "
                        "(cache policy 'none'); run this workflow with another cache policy"
                    )
                if produced is None:
                    missing.add(name)
                    data[name] = [None]
                else:
                    data[name] = produced[int(value[1])]
            elif spec is not None:
                data[name] = [unwrap_value(value)]
        if info.hidden:
            data.update(self._hidden_inputs(node_id, info))
        return data, missing

    def _hidden_inputs(self, node_id: str, info: NodeClass) -> dict[str, list[Any]]:
        return _hidden_inputs(self.dynprompt, self.request.extra_data, node_id, info)

    def _instance(self, node_id: str, info: NodeClass) -> Any:
        """Node instances live per (node id, class) across jobs, as ComfyUI keeps them."""
        key = (node_id, info.class_type)
        instance = self.executor.objects.get(key)
        if instance is None:
            instance = info.cls()
            self.executor.objects[key] = instance
        return instance

    async def _call_mapped(
        self,
        node_id: str,
        instance: Any,
        function: str,
        data: dict[str, list[Any]],
        info: NodeClass,
        blockers: bool,
    ) -> list[Any]:
        method = getattr(instance, function)
        interrupt = self.executor.interrupt_flag
        run = NodeRun(node_id, interrupt, self._report_progress, self.executor.progress_interval_s)
        results: list[Any] = []
        for index, kwargs in enumerate(mapped_calls(data, info)):
            interrupt.check()
            run.start_call(index)
            if blockers:
                blocker = find_blocker(kwargs, info.input_is_list)
                if blocker is not None:
                    results.append(BlockedCall(self._blocked(node_id, blocker)))
                    continue
            token = current_node.set(run)
            try:
                result = method(**kwargs)
                if inspect.isawaitable(result):
                    task = asyncio.ensure_future(as_coroutine(result))
                    await asyncio.sleep(0)  # let it finish at once if it can
                    result = task.result() if task.done() else task
            finally:
                current_node.reset(token)
            results.append(result)
        return results

    def _blocked(self, node_id: str, blocker: ExecutionBlocker) -> ExecutionBlocker:
        node = self.dynprompt.get_node(node_id)
        self.events.node_blocked(node_id, node, blocker.message, self._meta(node_id))
        # The message is reported once; the block itself keeps travelling downstream silently.
        return blocker if blocker.message is None else ExecutionBlocker(None)

    def _await_tasks(self, node_id: str, results: list[Any]) -> None:
        self.pending_async[node_id] = results
        release = self.scheduler.add_external_block(node_id)
        tasks = [r for r in results if isinstance(r, asyncio.Task)]

        async def wait_for_tasks() -> None:
            await asyncio.gather(*tasks, return_exceptions=True)
            release()
            self._unblocked.set()

        self._waiters.append(asyncio.ensure_future(wait_for_tasks()))

    def _cancel_async_work(self) -> None:
        for results in self.pending_async.values():
            for item in results:
                if isinstance(item, asyncio.Task) and not item.done():
                    item.cancel()
        for waiter in self._waiters:
            waiter.cancel()
        self._waiters.clear()  # their coroutines refer back to this run

    def _report_progress(self, node_id: str, value: float, total: float, preview: Any) -> None:
        if self.events.enabled:
            node = self.dynprompt.get_node(node_id)
            self.events.node_progress(node_id, node, value, total, preview, self._meta(node_id))

    # -- results ------------------------------------------------------------------------
    async def _process_results(
        self, node_id: str, node: NodeSpec, info: NodeClass, results: list[Any]
    ) -> _Step:
        returned = sort_results(info, results)
        if returned.expands:
            return await self._expand(node_id, node, info, returned.parts, returned.ui)
        outputs = merge_outputs(info, returned.values)
        if results and returned.blocked_calls == len(results):
            return self._finish_blocked(node_id, node, info, outputs)
        return self._finish(node_id, node, info, outputs, returned.ui)

    def _finish(
        self,
        node_id: str,
        node: NodeSpec,
        info: NodeClass,
        outputs: Outputs,
        ui: dict[str, Any] | None,
    ) -> _Step:
        end = time.perf_counter_ns()
        duration_ns = end - self.call_started_ns.get(node_id, end)
        self.results[node_id] = outputs
        if ui is not None:
            self._record_ui(node_id, ui)
        self.cache.put(
            self.signatures[node_id], CachedResult(outputs, ui), self._owner_signature(node_id)
        )
        memory = (
            self.executor.memory_probe.node_finished(duration_ns)
            if self.executor.memory_probe
            else {}
        )
        meta = self._meta(node_id) if self.events.enabled else {}
        self.events.node_succeeded(node_id, node, duration_ns, outputs, ui, meta, memory)
        self.records.append(
            NodeRecord(
                node_id,
                info.class_type,
                node_title(node),
                "succeeded",
                duration_ns / 1e6,
                memory.get("process.memory.peak_bytes"),
            )
        )
        self.current_inputs.pop(node_id, None)
        return _Step.DONE

    def _finish_blocked(
        self, node_id: str, node: NodeSpec, info: NodeClass, outputs: Outputs
    ) -> _Step:
        # Blocked results are not cached: the block depends on this run's upstream outcome.
        self.results[node_id] = outputs
        self._add_record(node_id, node, "blocked")
        return _Step.DONE

    def _record_cached(self, node_id: str) -> None:
        node = self.dynprompt.get_node(node_id)
        ui = self.cached_ui.get(node_id)
        if ui is not None:
            self._record_ui(node_id, ui)
        if self.events.enabled:
            self.events.node_cached(node_id, node, ui, self._meta(node_id))
        self._add_record(node_id, node, "cached")

    def _add_record(self, node_id: str, node: NodeSpec, status: NodeStatus) -> None:
        title = node_title(node) if "_meta" in node else None
        self.records.append(NodeRecord(node_id, node["class_type"], title, status))

    def _record_ui(self, node_id: str, ui: dict[str, Any]) -> None:
        self.outputs_ui[node_id] = ui
        self.meta[node_id] = self._meta(node_id)

    def _meta(self, node_id: str) -> dict[str, Any]:
        return self.dynprompt.node_meta(node_id)

    def _owner_signature(self, node_id: str) -> Signature | None:
        parent = self.dynprompt.get_parent_node_id(node_id)
        return self.signatures.get(parent) if parent is not None else None

    # -- expansion ----------------------------------------------------------------------
    async def _expand(
        self,
        node_id: str,
        node: NodeSpec,
        info: NodeClass,
        parts: list[tuple[bool, Any]],
        ui: dict[str, Any] | None,
    ) -> _Step:
        dynprompt = self.dynprompt
        display_id = dynprompt.get_display_node_id(node_id)
        new_nodes: list[str] = []
        links: list[list[Any]] = []
        pending: list[tuple[bool, Any]] = []
        for is_subgraph, part in parts:
            if not is_subgraph:
                pending.append((False, part))
                continue
            graph, result = part
            if not isinstance(graph, dict):
                raise NodeOutputError(
                    f"{info.class_type} returned 'expand' that is not a dict of nodes"
                )
            for new_id, spec in graph.items():
                if not (
                    isinstance(spec, dict)
                    and isinstance(spec.get("class_type"), str)
                    and isinstance(spec.get("inputs", {}), dict)
                ):
                    raise NodeOutputError(
                        f"{info.class_type} expanded node {new_id!r} without class_type/inputs"
                    )
                dynprompt.add_ephemeral_node(
                    str(new_id), spec, node_id, str(spec.get("override_display_id", display_id))
                )
                new_nodes.append(str(new_id))
            links.extend(r for r in result if is_link(r))
            pending.append((True, result))
        for new_id in new_nodes:
            self.node_class(new_id)  # fail now, on the expanding node, if a type is unknown
        try:
            await self.signer.sign_expansion(new_nodes)
        except SigningError as error:
            raise self._node_failure(error.node_id, error.cause) from error
        if self.frees_early:
            self._count_consumers(new_nodes)
            for link in links:
                self.consumers[link[0]] = self.consumers.get(link[0], 0) + 1
        if ui is not None:
            self._record_ui(node_id, ui)
        self.pending_subgraph[node_id] = pending
        self.events.node_expanded(node_id, node, new_nodes)
        for new_id in new_nodes:
            if self.node_class(new_id).is_output:
                self.scheduler.add_node(new_id)
        for link in links:
            self.scheduler.add_strong_link(link[0], node_id)
        return _Step.PENDING

    def _resolve_subgraph(self, node_id: str, info: NodeClass) -> Outputs:
        """The expanding node's outputs, once the subgraph it linked to has run."""
        outputs: Outputs = [[] for _ in range(info.output_count)]
        for is_subgraph, value in self.pending_subgraph.pop(node_id):
            for slot in range(info.output_count):
                item = value[slot]
                if is_subgraph and is_link(item):
                    outputs[slot].extend(self.results[item[0]][int(item[1])])
                elif info.output_is_list[slot] and not isinstance(item, ExecutionBlocker):
                    outputs[slot].extend(item)
                else:
                    outputs[slot].append(item)
        return outputs

    # -- failure ------------------------------------------------------------------------
    def _node_failure(self, node_id: str, exc: BaseException) -> _NodeFailedError:
        real_id = (
            self.dynprompt.get_real_node_id(node_id)
            if self.dynprompt.has_node(node_id)
            else node_id
        )
        real_node = self.dynprompt.get_node(real_id) if self.dynprompt.has_node(real_id) else {}
        payload = execution_error_payload(
            job_id=self.job_id,
            node_id=real_id,
            node_type=real_node.get("class_type", "unknown"),
            executed=self._executed(),
            exc=exc,
            current_inputs=self.current_inputs.get(node_id, {}),
            current_outputs=self.cached_at_start,
        )
        oom = is_out_of_memory(exc)
        if oom and self.executor.on_out_of_memory is not None:
            self.executor.on_out_of_memory()
        end = time.perf_counter_ns()
        duration_ns = end - self.call_started_ns.get(node_id, end)
        failing = (
            self.dynprompt.get_node(node_id) if self.dynprompt.has_node(node_id) else real_node
        )
        if failing:
            self.events.node_failed(node_id, failing, duration_ns, exc, payload, oom)
            record = NodeRecord(
                node_id, failing["class_type"], node_title(failing), "failed", duration_ns / 1e6
            )
            self.records.append(record)
        return _NodeFailedError(payload)

    def _fail_on_cycle(self, cycle: list[str]) -> None:
        names = " → ".join([*cycle, cycle[0]]) if cycle else "(unknown)"
        # Blame the first expanded node on the cycle: the submitted graph itself was acyclic.
        blamed = next(
            (n for n in cycle if self.dynprompt.is_ephemeral(n)), cycle[0] if cycle else ""
        )
        error = DependencyCycleError(f"Dependency cycle detected between nodes: {names}")
        raise self._node_failure(blamed, error)

    def _interrupted_payload(self) -> dict[str, Any]:
        running = self.running
        node_type = None
        if running is not None and self.dynprompt.has_node(running):
            node_type = self.dynprompt.get_node(running)["class_type"]
        return {
            "prompt_id": self.job_id,
            "node_id": running,
            "node_type": node_type,
            "executed": self._executed(),
            "timestamp": int(time.time() * 1000),
        }

    def _executed(self) -> list[str]:
        return [r.node_id for r in self.records if r.status != "failed"]


def _hidden_inputs(
    dynprompt: DynamicPrompt, extra_data: dict[str, Any], node_id: str, info: NodeClass
) -> dict[str, list[Any]]:
    """Values for a node's hidden inputs (PROMPT, DYNPROMPT, EXTRA_PNGINFO, UNIQUE_ID, keys)."""
    values = {
        protocol.HIDDEN_PROMPT: dynprompt.get_original_prompt(),
        protocol.HIDDEN_DYNPROMPT: dynprompt,
        protocol.HIDDEN_EXTRA_PNGINFO: extra_data.get("extra_pnginfo"),
        protocol.HIDDEN_UNIQUE_ID: node_id,
        protocol.HIDDEN_AUTH_TOKEN: extra_data.get("auth_token_comfy_org"),
        protocol.HIDDEN_API_KEY: extra_data.get("api_key_comfy_org"),
    }
    return {name: [values.get(kind)] for name, kind in info.hidden.items()}


def _inference_mode() -> contextlib.AbstractContextManager[Any]:
    """torch's inference mode once torch is loaded. A worker whose node packs never import torch
    (the jobs of the built-in utility nodes) does not pay ~1.5 s to load it for a context that
    would change nothing: tensors that autograd would track come from packs that import torch
    when they load, before any job."""
    if "torch" not in sys.modules:
        return contextlib.nullcontext()
    import torch  # waits for a thread still importing it

    mode: contextlib.AbstractContextManager[Any] = torch.inference_mode()
    return mode
