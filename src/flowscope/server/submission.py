"""Turning a `POST /prompt` body into a stored job (spec §2.1): the top-level fields, validation
with ComfyUI's error shapes, secrets kept apart, and the job stored before its id is returned."""

from __future__ import annotations

import re
import time
import uuid
from dataclasses import dataclass
from typing import Any

from flowscope.graph.document import workflow_id
from flowscope.graph.validation import ValidationResult, error_dict, validate_prompt
from flowscope.jobs.model import NewJob
from flowscope.nodes.registry import NodeRegistry
from flowscope.server.errors import ApiError

# Read by API nodes; handed to the worker but never shown by /queue or kept in history.
SENSITIVE_KEYS = ("auth_token_comfy_org", "api_key_comfy_org")
_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
_TRACEPARENT = re.compile(r"^[0-9a-f]{2}-([0-9a-f]{32})-[0-9a-f]{16}-[0-9a-f]{2}$")
# Validating a big graph takes milliseconds: do it off the event loop past this many nodes.
LARGE_PROMPT_NODES = 256


@dataclass
class Submission:
    job: NewJob
    validation: ValidationResult


def parse_submission(
    body: dict[str, Any],
    *,
    user_id: str | None = None,
    traceparent: str | None = None,
    usage_source: str | None = None,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Check the top-level fields; returns (the prompt, the fields NewJob needs) or raises."""
    if "prompt" not in body:
        raise ApiError(
            400,
            "No prompt provided",
            type="no_prompt",
            details="No prompt provided",
            extra={"node_errors": {}},
        )
    prompt = body["prompt"]
    job_id = body.get("prompt_id")
    if job_id is None:
        job_id = str(uuid.uuid4())
    elif not isinstance(job_id, str) or not _UUID.match(job_id):
        raise _prompt_error(
            "invalid_prompt_id",
            "prompt_id must be a canonical lowercase UUID",
            f"got {job_id!r}",
        )
    extra_data = body.get("extra_data", {})
    if not isinstance(extra_data, dict):
        raise _prompt_error("invalid_extra_data", "extra_data must be a JSON object", "")
    extra_data = dict(extra_data)
    client_id = body.get("client_id")
    if client_id is not None:
        if not isinstance(client_id, str):
            raise _prompt_error("invalid_client_id", "client_id must be a string", "")
        extra_data["client_id"] = client_id
    sensitive = {key: extra_data.pop(key) for key in SENSITIVE_KEYS if key in extra_data}
    extra_data.setdefault("create_time", int(time.time() * 1000))
    if usage_source:
        extra_data.setdefault("comfy_usage_source", usage_source)
    number = body.get("number")
    if number is not None and (isinstance(number, bool) or not isinstance(number, int | float)):
        raise _prompt_error("invalid_number", "number must be a number (the queue priority)", "")
    trace_id = None
    if traceparent:
        match = _TRACEPARENT.match(traceparent.strip().lower())
        if match and match.group(1) != "0" * 32:
            trace_id = match.group(1)
    workflow = (extra_data.get("extra_pnginfo") or {}).get("workflow")
    fields: dict[str, Any] = {
        "job_id": job_id,
        "extra_data": extra_data,
        "sensitive": sensitive,
        "number": float(number) if number is not None else None,
        "front": bool(body.get("front", False)),
        "user_id": user_id,
        "workflow_id": workflow_id(prompt, workflow if isinstance(workflow, dict) else None)
        if isinstance(prompt, dict)
        else None,
        "trace_id": trace_id,
        "partial_execution_targets": body.get("partial_execution_targets"),
    }
    return prompt, fields


def validate_submission(registry: NodeRegistry, prompt: Any, fields: dict[str, Any]) -> Submission:
    """Validate and build the job; raises ApiError (400, ComfyUI's shapes) when nothing can run."""
    targets = fields.pop("partial_execution_targets")
    if targets is not None and (
        not isinstance(targets, list) or not all(isinstance(t, str) for t in targets)
    ):
        raise _prompt_error(
            "invalid_partial_execution_targets",
            "partial_execution_targets must be a list of output node ids",
            "",
        )
    validation = validate_prompt(prompt, registry.schema, targets)
    if not validation.ok:
        error = validation.error or error_dict("prompt_outputs_failed_validation", "invalid")
        raise ApiError(
            400,
            str(error.get("message", "invalid prompt")),
            type=str(error.get("type", "invalid_prompt")),
            extra={"node_errors": validation.node_errors},
        ).with_body({"error": error, "node_errors": validation.node_errors})
    job = NewJob(prompt=prompt, outputs=validation.outputs, **fields)
    return Submission(job, validation)


def _prompt_error(type_: str, message: str, details: str) -> ApiError:
    return ApiError(400, message, type=type_, details=details, extra={"node_errors": {}})
