"""Jobs as the jobs API shows them (upstream ComfyUI's `/api/jobs`, spec §4.6; the editor's
queue and history panels read it): status names, times from the history messages, the first
previewable output."""

from __future__ import annotations

from typing import Any

from flowscope.jobs.model import JobRecord, JobState

STATUS_OF_STATE: dict[JobState, str] = {
    "pending": "pending",
    "running": "in_progress",
    "success": "completed",
    "error": "failed",
    "interrupted": "cancelled",
    "cancelled": "cancelled",
}
STATES_OF_STATUS: dict[str, tuple[JobState, ...]] = {
    "pending": ("pending",),
    "in_progress": ("running",),
    "completed": ("success",),
    "failed": ("error",),
    "cancelled": ("interrupted", "cancelled"),
}
PREVIEWABLE_KINDS = {"images": "image", "video": "video", "audio": "audio", "animated": "image"}


def job_summary(record: JobRecord) -> dict[str, Any]:
    history = record.history or {}
    outputs = history.get("outputs") or {}
    count, previewable, preview = _outputs_overview(outputs)
    return {
        "id": record.job_id,
        "status": STATUS_OF_STATE[record.state],
        "priority": record.number,
        "create_time": record.created_at_ms,
        "execution_start_time": record.started_at_ms,
        "execution_end_time": record.finished_at_ms,
        "execution_error": _execution_error(history),
        "outputs_count": count,
        "previewable_outputs_count": previewable,
        "preview_output": preview,
        "workflow_id": record.workflow_id,
    }


def job_detail(record: JobRecord) -> dict[str, Any]:
    detail = job_summary(record)
    history = record.history or {}
    extra_data = record.extra_data or {}
    workflow = (extra_data.get("extra_pnginfo") or {}).get("workflow")
    detail["workflow"] = {
        "prompt": record.prompt,
        "extra_data": {"extra_pnginfo": {"workflow": workflow}},
    }
    detail["outputs"] = history.get("outputs") or {}
    detail["execution_status"] = history.get("status")
    detail["execution_meta"] = history.get("meta")
    detail["update_time"] = record.finished_at_ms or record.started_at_ms or record.created_at_ms
    if "flowscope" in history:
        detail["flowscope"] = history["flowscope"]
    return detail


def _outputs_overview(
    outputs: dict[str, Any],
) -> tuple[int, int, dict[str, Any] | None]:
    count = previewable = 0
    preview: dict[str, Any] | None = None
    for node_id, ui in outputs.items():
        if not isinstance(ui, dict):
            continue
        for key, items in ui.items():
            if not isinstance(items, list):
                continue
            count += len(items)
            kind = PREVIEWABLE_KINDS.get(key)
            if kind is None:
                continue
            for item in items:
                if isinstance(item, dict) and "filename" in item:
                    previewable += 1
                    if preview is None:
                        preview = {**item, "nodeId": node_id, "mediaType": kind}
    return count, previewable, preview


def _execution_error(history: dict[str, Any]) -> dict[str, Any] | None:
    messages = (history.get("status") or {}).get("messages") or []
    for message in reversed(messages):
        if isinstance(message, list) and len(message) == 2 and message[0] == "execution_error":
            payload = message[1]
            return payload if isinstance(payload, dict) else None
    return None
