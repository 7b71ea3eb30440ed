"""ComfyUI's execution messages (spec §4.3), built from the engine's events so that the
WebSocket, the history and the logs always agree.

Addressing follows ComfyUI: a job's messages go to the client that submitted it; a job without a
`client_id` gets no `executing` / `executed` / `execution_*` messages, while its `progress`,
`progress_state`, previews and `execution_interrupted` go to everyone.

`progress_state` differs on purpose: ComfyUI resends every node's state on every change, O(N²)
bytes per job (200 MB for a 1,000-node tree). We send the nodes running now plus the one that just
changed, O(N) per job. The editor replaces its map with each message, so it still highlights the
running nodes and their progress; what it loses is the green outline on nodes that finished
earlier in the run.
"""

from __future__ import annotations

import threading
from typing import Any

from flowscope.jobs.model import JobOutcome, QueuedJob
from flowscope.server.previews import encode_preview, preview_frame, preview_frame_with_metadata
from flowscope.server.websocket import ClientSession, WebSocketHub
from flowscope.telemetry.bus import EventBus
from flowscope.telemetry.events import Action, Event

ACTIONS = (
    Action.JOB_STARTED,
    Action.JOB_SUCCEEDED,
    Action.JOB_FAILED,
    Action.JOB_INTERRUPTED,
    Action.NODE_STARTED,
    Action.NODE_SUCCEEDED,
    Action.NODE_CACHED,
    Action.NODE_FAILED,
    Action.NODE_PROGRESS,
)


class _JobState:
    __slots__ = ("client_id", "running")

    def __init__(self, client_id: str | None) -> None:
        self.client_id = client_id
        self.running: dict[str, dict[str, Any]] = {}  # node id -> its progress_state entry


class ExecutionMessages:
    """A bus subscriber and a worker listener: turns one job's events into its messages."""

    def __init__(self, hub: WebSocketHub, *, preview_size: int = 512) -> None:
        self.hub = hub
        self.preview_size = preview_size
        self._jobs: dict[str, _JobState] = {}
        self._lock = threading.Lock()
        self._unsubscribe: Any = None

    def attach(self, bus: EventBus) -> None:
        self._unsubscribe = bus.subscribe(self, ACTIONS)

    def close(self) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None

    # -- worker listener -----------------------------------------------------------------
    def job_started(self, job: QueuedJob) -> None:
        client_id = job.extra_data.get("client_id")
        with self._lock:
            self._jobs[job.job_id] = _JobState(client_id if isinstance(client_id, str) else None)
        self.hub.broadcast_status()  # the queue changed: one job left the pending list

    def job_finished(self, job: QueuedJob, outcome: JobOutcome) -> None:
        # Called after the history entry is written: a client that sees `executing null` can
        # read the results. ComfyUI's order: execution_success, status, executing null.
        with self._lock:
            state = self._jobs.pop(job.job_id, None)
        self.hub.broadcast_status()
        if state is not None and state.client_id is not None:
            self.hub.send_executing({"node": None, "prompt_id": job.job_id}, state.client_id)

    # -- events ----------------------------------------------------------------------------
    def __call__(self, event: Event) -> None:
        fields = event.fields or {}
        job_id = fields.get("job.id")
        state = self._jobs.get(job_id) if isinstance(job_id, str) else None
        if state is None or not isinstance(job_id, str):
            return  # not a job this server's queue runs (e.g. a nested engine in a test)
        handler = _HANDLERS.get(event.action)
        if handler is not None:
            handler(self, state, job_id, event, fields)

    def _job_started(self, state: _JobState, job_id: str, event: Event, _f: dict[str, Any]) -> None:
        if state.client_id is None:
            return
        timestamp = event.time_ns // 1_000_000
        self.hub.send(
            "execution_start", {"prompt_id": job_id, "timestamp": timestamp}, state.client_id
        )
        cached = (event.detail or {}).get("cached_nodes", [])
        self.hub.send(
            "execution_cached",
            {"nodes": list(cached), "prompt_id": job_id, "timestamp": timestamp},
            state.client_id,
        )

    def _job_ended(self, state: _JobState, job_id: str, event: Event, _f: dict[str, Any]) -> None:
        timestamp = event.time_ns // 1_000_000
        if event.action is Action.JOB_SUCCEEDED:
            if state.client_id is not None:
                self.hub.send(
                    "execution_success",
                    {"prompt_id": job_id, "timestamp": timestamp},
                    state.client_id,
                )
            return
        error = (event.detail or {}).get("error") or {}
        payload = {**error, "prompt_id": job_id, "timestamp": timestamp}
        if event.action is Action.JOB_INTERRUPTED:
            self.hub.send("execution_interrupted", payload, state.client_id)
        elif state.client_id is not None:
            self.hub.send("execution_error", payload, state.client_id)

    def _node_started(
        self, state: _JobState, job_id: str, event: Event, fields: dict[str, Any]
    ) -> None:
        node_id = fields["node.id"]
        meta = event.detail or {}
        display = meta.get("display_node", node_id)
        if state.client_id is not None:
            executing = {"node": node_id, "display_node": display, "prompt_id": job_id}
            self.hub.send_executing(executing, state.client_id)
        state.running[node_id] = _node_state(job_id, node_id, meta, "running", 0, 1)
        self._progress_state(state, job_id, {})

    def _node_progress(
        self, state: _JobState, job_id: str, event: Event, fields: dict[str, Any]
    ) -> None:
        node_id = fields["node.id"]
        value = fields.get("node.progress.value", 0)
        total = fields.get("node.progress.max", 1)
        meta = event.detail or {}
        self.hub.send(
            "progress",
            {"value": value, "max": total, "prompt_id": job_id, "node": node_id},
            state.client_id,
        )
        state.running[node_id] = _node_state(job_id, node_id, meta, "running", value, total)
        self._progress_state(state, job_id, {})
        preview = meta.get("preview")
        if preview is not None:
            self._send_preview(state, job_id, node_id, meta, preview)

    def _node_finished(
        self, state: _JobState, job_id: str, event: Event, fields: dict[str, Any]
    ) -> None:
        node_id = fields["node.id"]
        meta = event.detail or {}
        ui = meta.get("ui")
        if ui and state.client_id is not None:
            executed = {
                "node": node_id,
                "display_node": meta.get("display_node", node_id),
                "output": ui,
                "prompt_id": job_id,
            }
            self.hub.send("executed", executed, state.client_id)
        if event.action is Action.NODE_CACHED:
            return  # cached nodes never ran, so they have no state to update
        entry = state.running.pop(node_id, None) or _node_state(job_id, node_id, meta, "", 1, 1)
        entry["state"] = "error" if event.action is Action.NODE_FAILED else "finished"
        entry["value"] = entry["max"]
        self._progress_state(state, job_id, {node_id: entry})

    def _progress_state(
        self, state: _JobState, job_id: str, finished: dict[str, dict[str, Any]]
    ) -> None:
        nodes = {**state.running, **finished}
        self.hub.send("progress_state", {"prompt_id": job_id, "nodes": nodes}, state.client_id)

    def _send_preview(
        self, state: _JobState, job_id: str, node_id: str, meta: dict[str, Any], preview: Any
    ) -> None:
        encoded = encode_preview(preview, self.preview_size)
        if encoded is None:
            return
        image_format, data = encoded
        metadata = {
            "node_id": node_id,
            "prompt_id": job_id,
            "display_node_id": meta.get("display_node", node_id),
            "parent_node_id": meta.get("parent_node"),
            "real_node_id": meta.get("real_node_id", node_id),
        }
        plain = preview_frame(image_format, data)
        rich = preview_frame_with_metadata(image_format, data, metadata)

        def frame(session: ClientSession) -> bytes:
            return rich if session.supports_preview_metadata else plain

        self.hub.send_frame(frame, state.client_id)


def _node_state(
    job_id: str, node_id: str, meta: dict[str, Any], status: str, value: float, total: float
) -> dict[str, Any]:
    return {
        "value": value,
        "max": total,
        "state": status,
        "node_id": node_id,
        "prompt_id": job_id,
        "display_node_id": meta.get("display_node", node_id),
        "parent_node_id": meta.get("parent_node"),
        "real_node_id": meta.get("real_node_id", node_id),
    }


_HANDLERS = {
    Action.JOB_STARTED: ExecutionMessages._job_started,
    Action.JOB_SUCCEEDED: ExecutionMessages._job_ended,
    Action.JOB_FAILED: ExecutionMessages._job_ended,
    Action.JOB_INTERRUPTED: ExecutionMessages._job_ended,
    Action.NODE_STARTED: ExecutionMessages._node_started,
    Action.NODE_PROGRESS: ExecutionMessages._node_progress,
    Action.NODE_SUCCEEDED: ExecutionMessages._node_finished,
    Action.NODE_CACHED: ExecutionMessages._node_finished,
    Action.NODE_FAILED: ExecutionMessages._node_finished,
}
