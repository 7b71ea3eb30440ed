"""`POST /prompt` bodies as property tests: whatever JSON arrives, the result is a job or a 400
with ComfyUI's error shape, never another exception."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from flowscope.nodes.catalog import load_catalog
from flowscope.server.errors import ApiError
from flowscope.server.submission import parse_submission, validate_submission
from flowscope.storage.directories import Directories

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4)
    ),
    max_leaves=20,
)
node_ids = st.sampled_from(["1", "2", "3", "x"])
nodes = st.fixed_dictionaries(
    {
        "class_type": st.sampled_from(["PrimitiveInt", "PreviewAny", "IntMath", "Nope", 7]),
        "inputs": st.dictionaries(
            st.sampled_from(["value", "source", "a", "b", "operation"]),
            json_values | st.tuples(node_ids, st.integers(-1, 3)).map(list),
            max_size=4,
        ),
    }
)
prompts = st.dictionaries(node_ids, nodes | json_values, max_size=4) | json_values
bodies = st.fixed_dictionaries(
    {},
    optional={
        "prompt": prompts,
        "prompt_id": st.none() | st.text(max_size=40) | st.uuids().map(str) | st.integers(),
        "client_id": json_values,
        "extra_data": json_values,
        "number": json_values,
        "front": json_values,
        "partial_execution_targets": json_values,
    },
)

REGISTRY = load_catalog(Directories.under("/nonexistent-flowscope-test"))[0]


@settings(max_examples=300)
@given(bodies)
def test_any_body_becomes_a_job_or_a_400(body: dict[str, Any]) -> None:
    try:
        prompt, fields = parse_submission(body)
        submission = validate_submission(REGISTRY, prompt, fields)
    except ApiError as exc:
        assert exc.status == 400
        reply = exc.body()
        assert isinstance(reply["error"], dict)
        assert reply["error"]["type"]
        assert isinstance(reply["error"]["message"], str)
        assert isinstance(reply.get("node_errors", {}), dict)
        return
    assert submission.validation.ok
    assert submission.job.outputs
    assert isinstance(submission.job.extra_data["create_time"], int)
