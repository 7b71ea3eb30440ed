"""What the job store holds: jobs waiting or running (ComfyUI's queue items) and finished jobs
(ComfyUI's history entries), plus what a worker reports when a job ends."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

# A job's life: pending -> running -> success | error | interrupted; pending -> cancelled.
# A running job whose worker died goes back to pending once (attempts == 1), then to error.
JobState = Literal["pending", "running", "success", "error", "interrupted", "cancelled"]
FINISHED_STATES: frozenset[JobState] = frozenset({"success", "error", "interrupted", "cancelled"})


@dataclass(frozen=True, slots=True)
class NewJob:
    """A validated prompt as `POST /prompt` accepted it."""

    job_id: str
    prompt: dict[str, Any]  # the validated API prompt
    outputs: list[str]  # ComfyUI's outputs_to_execute
    # ComfyUI's extra_data as `GET /queue` and history show it: client_id, extra_pnginfo, ...
    extra_data: dict[str, Any] = field(default_factory=dict)
    # Secrets for API nodes (auth_token_comfy_org, ...): handed to the worker, never shown by
    # /queue, never written to history.
    sensitive: dict[str, Any] = field(default_factory=dict)
    number: float | None = None  # ComfyUI's priority; None: the store's next counter value
    front: bool = False  # with number None: jump the queue (ComfyUI negates the counter)
    user_id: str | None = None
    workflow_id: str | None = None
    trace_id: str | None = None


@dataclass(frozen=True, slots=True)
class QueuedJob:
    """A pending or running job."""

    number: float
    job_id: str
    prompt: dict[str, Any]
    extra_data: dict[str, Any]
    outputs: list[str]
    sensitive: dict[str, Any]
    state: JobState
    created_at_ms: int
    attempts: int  # how many times a worker has claimed it
    user_id: str | None = None
    workflow_id: str | None = None
    trace_id: str | None = None
    worker_id: str | None = None

    def queue_item(self) -> list[Any]:
        """ComfyUI's queue tuple as `GET /queue` shows it (the sensitive part stays out)."""
        return [self.number, self.job_id, self.prompt, self.extra_data, self.outputs]


@dataclass(slots=True)
class JobOutcome:
    """How a job ended, as the worker reports it to `JobStore.finish`."""

    state: JobState  # success | error | interrupted
    outputs: dict[str, dict[str, Any]]  # ComfyUI history `outputs`
    meta: dict[str, dict[str, Any]]  # ComfyUI history `meta`
    # ComfyUI history status messages: [["execution_start", {...}], ...]
    messages: list[list[Any]]
    started_at_ms: int
    finished_at_ms: int
    # flowscope's own details (per-node timings, worker, attempts, trace id), stored under the
    # history entry's "flowscope" key, which ComfyUI clients ignore.
    details: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class JobRecord:
    """One job for the jobs API (`GET /api/jobs`): its state and, when finished, its history."""

    job_id: str
    state: JobState
    number: float
    created_at_ms: int
    started_at_ms: int | None
    finished_at_ms: int | None
    workflow_id: str | None
    user_id: str | None
    history: dict[str, Any] | None  # the ComfyUI history entry, once finished
    prompt: dict[str, Any] | None = None  # only when asked for (detail views)
    extra_data: dict[str, Any] | None = None
