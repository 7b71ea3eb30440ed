"""ComfyUI's history entry (spec §3.8), built as JSON text from a finished job's stored parts.

The entry is assembled from the stored JSON of the prompt, extra_data and outputs, so finishing
a job never parses its prompt, and `GET /history` concatenates stored entries without parsing:
`{"prompt": [number, id, prompt, extra_data, outputs], "outputs", "status", "meta", "flowscope"}`.
The `flowscope` key (per-node timings, worker, attempts, trace id, re-queues) is ours; ComfyUI
clients ignore it.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from flowscope.jobs.model import JobOutcome
from flowscope.jobs.rows import dumps, dumps_lenient, priority

EXTRA_KEY = "flowscope"


def status(outcome: JobOutcome) -> dict[str, Any]:
    """ComfyUI's `status`: anything but success is `error` and not completed (interrupts too)."""
    success = outcome.state == "success"
    return {
        "status_str": "success" if success else "error",
        "completed": success,
        "messages": outcome.messages,
    }


def entry_text(
    *,
    number: float,
    job_id: str,
    prompt_json: str,
    extra_data_json: str,
    outputs_json: str,
    outcome: JobOutcome,
    notes: list[dict[str, Any]] | None = None,
) -> str:
    """The history entry as JSON text; `notes` (re-queues) go under the flowscope key."""
    details = outcome.details
    if notes:
        details = {**details, "requeued": notes}
    return (
        f'{{"prompt":[{dumps(priority(number))},{dumps(job_id)},{prompt_json},'
        f"{extra_data_json},{outputs_json}],"
        f'"outputs":{dumps_lenient(outcome.outputs)},'
        f'"status":{dumps_lenient(status(outcome))},'
        f'"meta":{dumps_lenient(outcome.meta)},'
        f'"{EXTRA_KEY}":{dumps_lenient(details)}}}'
    )


def history_object_text(entries: Iterable[tuple[str, str]]) -> str:
    """`{"<job id>": <entry>, ...}` from (job id, entry text) pairs, in the given order."""
    return "{" + ",".join(f"{dumps(job_id)}:{text}" for job_id, text in entries) + "}"
