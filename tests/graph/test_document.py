"""Reading submitted documents: API prompts, POST /prompt bodies and UI workflows."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from flowscope.graph.document import DocumentError, load_document, workflow_id
from flowscope.nodes.catalog import load_catalog
from flowscope.storage.directories import Directories

EXAMPLES = Path(__file__).parents[2] / "examples"


@pytest.fixture(scope="module")
def definitions(tmp_path_factory: pytest.TempPathFactory) -> Any:
    registry, _ = load_catalog(Directories.under(tmp_path_factory.mktemp("base")))
    return registry.node_info


def test_api_prompt_is_taken_as_is(definitions: Any) -> None:
    prompt = json.loads((EXAMPLES / "demo.json").read_text())
    document = load_document(prompt, definitions)
    assert document.source_format == "api"
    assert document.prompt is prompt
    assert document.workflow is None
    assert document.workflow_id.startswith("wf-")


def test_post_prompt_body_keeps_the_embedded_workflow(definitions: Any) -> None:
    prompt = {"1": {"class_type": "PrimitiveInt", "inputs": {"value": 1}}}
    body = {"prompt": prompt, "extra_data": {"extra_pnginfo": {"workflow": {"id": "wf-abc"}}}}
    document = load_document(body, definitions)
    assert document.prompt == prompt
    assert document.workflow == {"id": "wf-abc"}
    assert document.workflow_id == "wf-abc"


def test_ui_workflow_converts_with_the_node_definitions(definitions: Any) -> None:
    workflow = json.loads((EXAMPLES / "demo-ui.json").read_text())
    document = load_document(workflow, definitions)
    assert document.source_format == "ui"
    assert document.workflow_id == workflow["id"]
    prompt = document.prompt
    # The bypassed ImageScaleBy, the Reroute and the Note are gone; Save reads from Invert.
    assert set(prompt) == {"1", "2", "5", "6", "7", "8"}
    assert prompt["5"]["inputs"] == {"images": ["2", 0], "filename_prefix": "ui-demo/flowscope"}
    # The UI-only control_after_generate value ("fixed") is not an input.
    assert prompt["6"]["inputs"] == {"value": 40}
    assert prompt["7"]["inputs"] == {"a": ["6", 0], "b": 2, "operation": "add"}
    assert prompt["1"]["_meta"] == {"title": "Blue canvas"}


def test_unknown_node_type_in_a_ui_workflow_is_a_clear_error(definitions: Any) -> None:
    workflow = json.loads((EXAMPLES / "demo-ui.json").read_text())
    workflow["nodes"][1]["type"] = "NotInstalledNode"
    with pytest.raises(DocumentError, match="NotInstalledNode"):
        load_document(workflow, definitions)


@pytest.mark.parametrize("document", [[], "text", 3, None])
def test_non_object_documents_are_refused(definitions: Any, document: Any) -> None:
    with pytest.raises(DocumentError, match="expected a JSON object"):
        load_document(document, definitions)


def test_workflow_id_is_a_stable_content_hash() -> None:
    a = {"1": {"class_type": "X", "inputs": {"v": 1}}}
    b = {"1": {"inputs": {"v": 1}, "class_type": "X"}}
    assert workflow_id(a, None) == workflow_id(b, None)
    assert workflow_id(a, None) != workflow_id({"1": {"class_type": "X", "inputs": {"v": 2}}}, None)
