"""Reading what users submit: an API prompt, a `POST /prompt` body, or a UI workflow file."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from flowscope.graph.prompt import Prompt
from flowscope.graph.workflow import WorkflowError, is_ui_workflow, workflow_to_prompt

NodeDefinitions = Callable[[str], Mapping[str, Any] | None]


class DocumentError(ValueError):
    """The document is neither an API prompt nor a UI workflow; the message says why."""


@dataclass
class PromptDocument:
    prompt: Prompt
    # The UI workflow it came from (kept for PNG metadata and `workflow.id`), if any.
    workflow: dict[str, Any] | None
    # "api" or "ui".
    source_format: str

    @property
    def workflow_id(self) -> str:
        return workflow_id(self.prompt, self.workflow)


def load_document(document: Any, definitions: NodeDefinitions) -> PromptDocument:
    """Accept `{node_id: {...}}`, `{"prompt": {...}, "extra_data": ...}` or a UI workflow."""
    if not isinstance(document, dict):
        raise DocumentError(f"expected a JSON object, got {type(document).__name__}")
    if is_ui_workflow(document):
        try:
            prompt = workflow_to_prompt(document, definitions)
        except WorkflowError as exc:
            raise DocumentError(f"cannot convert the UI workflow: {exc}") from exc
        return PromptDocument(prompt, document, "ui")
    if isinstance(document.get("prompt"), dict):
        extra = document.get("extra_data")
        workflow = None
        if isinstance(extra, dict):
            pnginfo = extra.get("extra_pnginfo")
            if isinstance(pnginfo, dict) and isinstance(pnginfo.get("workflow"), dict):
                workflow = pnginfo["workflow"]
        return PromptDocument(document["prompt"], workflow, "api")
    return PromptDocument(document, None, "api")


def workflow_id(prompt: Prompt, workflow: Mapping[str, Any] | None) -> str:
    """`workflow.id`: the UI workflow's own id when there is one, else a hash of the prompt."""
    if workflow is not None and isinstance(workflow.get("id"), str) and workflow["id"]:
        return str(workflow["id"])
    try:
        canonical = json.dumps(prompt, sort_keys=True, separators=(",", ":"), default=repr)
    except (TypeError, ValueError):
        canonical = repr(prompt)
    return "wf-" + hashlib.sha256(canonical.encode()).hexdigest()[:8]
