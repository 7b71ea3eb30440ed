"""What a server needs of each of its workers, whether a thread of its own process (`Worker`) or
a child process (`WorkerProcess`): start and stop it, interrupt its job, ask it to free memory."""

from __future__ import annotations

from typing import Protocol

from flowscope.jobs.model import JobOutcome, QueuedJob


class WorkerListener(Protocol):
    def job_started(self, job: QueuedJob) -> None:
        """Right after the claim, before execution."""

    def job_finished(self, job: QueuedJob, outcome: JobOutcome) -> None:
        """After the outcome and history entry are stored."""

    def worker_waiting(self) -> None:
        """The claim found no job: the worker waits for a submit (or its next poll)."""


class WorkerHandle(Protocol):
    @property
    def worker_id(self) -> str: ...

    @property
    def started(self) -> bool:
        """`start` was called (the worker may have stopped since)."""

    @property
    def alive(self) -> bool:
        """Taking jobs now."""

    @property
    def current_job(self) -> QueuedJob | None: ...

    def start(self) -> None: ...

    def stop(self, timeout_s: float = 10.0, *, interrupt: bool = False) -> bool:
        """Stop taking jobs; let the running job finish for up to `timeout_s` (not at all with
        `interrupt`), then interrupt it. True when the worker has ended."""

    def interrupt(self, job_id: str | None = None) -> bool:
        """Interrupt the running job (only if it is `job_id`, when given); True if it was."""

    def request_free(self, unload_models: bool = False, free_memory: bool = False) -> None:
        """ComfyUI's `/free`, applied between jobs."""
