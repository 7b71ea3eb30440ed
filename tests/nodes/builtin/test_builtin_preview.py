import json

import pytest
import torch


def test_preview_any_is_an_output_node_taking_anything(nodes):
    cls = nodes["PreviewAny"]
    assert cls.INPUT_TYPES() == {"required": {"source": ("*", {})}}
    assert cls.OUTPUT_NODE is True
    assert cls.RETURN_TYPES == ()
    assert cls.CATEGORY == "utils"


@pytest.mark.parametrize(
    ("source", "text"),
    [
        ("plain text", "plain text"),
        (42, "42"),
        (2.5, "2.5"),
        (True, "True"),
        (None, "None"),
        ({"a": [1, 2]}, json.dumps({"a": [1, 2]}, indent=4)),
        ([1, "x"], json.dumps([1, "x"], indent=4)),
    ],
)
def test_preview_any_text(run, source, text):
    assert run("PreviewAny", source=source) == {"ui": {"text": [text]}}


def test_preview_any_falls_back_to_str_for_tensors(run):
    tensor = torch.zeros(2)
    assert run("PreviewAny", source=tensor) == {"ui": {"text": [str(tensor)]}}
