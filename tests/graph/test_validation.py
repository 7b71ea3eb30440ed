"""Prompt validation (spec §3.1): every error type with its exact shape, coercion, custom hooks,
output selection, determinism, depth, and never raising on junk."""

from __future__ import annotations

import copy
import json
import math
import random
import time
from typing import Any

import pytest
import validation_nodes
from hypothesis import given, settings
from hypothesis import strategies as st

from flowscope.graph.validation import ValidationResult, validate_prompt

REGISTRY = validation_nodes.registry()


def validate(prompt: Any, targets: Any = None) -> ValidationResult:
    return validate_prompt(prompt, REGISTRY.schema, targets)


def widgets(**inputs: Any) -> dict[str, Any]:
    """A valid Widgets node, with `inputs` overriding its constants."""
    base = {"width": 512, "scale": 1.0, "flag": True, "text": "", "mode": "fast"}
    return {"class_type": "Widgets", "inputs": {**base, **inputs}}


def sink(source: str, slot: int = 0) -> dict[str, Any]:
    return {"class_type": "Sink", "inputs": {"value": [source, slot]}}


def only_error(result: ValidationResult, node_id: str) -> dict[str, Any]:
    """The single error reported for `node_id`."""
    errors = result.node_errors[node_id]["errors"]
    assert len(errors) == 1, errors
    error: dict[str, Any] = errors[0]
    return error


WIDTH_CONFIG = ["INT", {"default": 512, "min": 1, "max": 16384, "step": 1}]


def config(error: dict[str, Any]) -> Any:
    """`input_config` as it looks on the wire (tuples become lists)."""
    return json.loads(json.dumps(error["extra_info"]["input_config"]))


# -- prompt-level errors -----------------------------------------------------------------


def test_a_prompt_that_is_not_an_object_is_an_invalid_prompt() -> None:
    result = validate([{"class_type": "Sink"}])
    assert not result.ok
    assert result.error is not None
    assert result.error["type"] == "invalid_prompt"
    assert result.outputs == []


def test_missing_class_type_is_an_invalid_prompt() -> None:
    result = validate(
        {"1": {"class_type": "IntSource", "inputs": {"value": 1}}, "2": {"inputs": {}}}
    )
    assert result.error == {
        "type": "invalid_prompt",
        "message": "Cannot execute because a node is missing the class_type property.",
        "details": "Node ID '#2'",
        "extra_info": {},
    }
    assert not result.ok
    assert result.node_errors == {}


def test_unknown_class_is_an_invalid_prompt_naming_the_node() -> None:
    result = validate({"1": sink("3"), "3": {"class_type": "NoSuchNode", "inputs": {}}})
    assert result.error == {
        "type": "invalid_prompt",
        "message": "Cannot execute because node NoSuchNode does not exist.",
        "details": "Node ID '#3'",
        "extra_info": {},
    }
    assert not result.ok


def test_the_unknown_node_reported_does_not_depend_on_key_order() -> None:
    nodes = {
        "10": {"class_type": "Missing10", "inputs": {}},
        "2": {"class_type": "Missing2", "inputs": {}},
        "7": {"class_type": "Missing7", "inputs": {}},
    }
    reports = set()
    for order in (["10", "2", "7"], ["7", "10", "2"], ["2", "7", "10"]):
        result = validate({node_id: nodes[node_id] for node_id in order})
        assert result.error is not None
        reports.add(result.error["details"])
    assert reports == {"Node ID '#2'"}


def test_a_prompt_without_output_nodes_has_no_outputs() -> None:
    result = validate({"1": {"class_type": "IntSource", "inputs": {"value": 1}}})
    assert not result.ok
    assert result.error is not None
    assert result.error["type"] == "prompt_no_outputs"
    assert result.error["message"] == "Prompt has no outputs"
    assert validate({}).error["type"] == "prompt_no_outputs"  # type: ignore[index]


def test_malformed_nodes_are_invalid_prompts() -> None:
    for node in (
        "Sink",
        {"class_type": 5, "inputs": {}},
        {"class_type": "Sink", "inputs": [["1", 0]]},
        {"class_type": "Sink", "inputs": {1: ["1", 0]}},
    ):
        result = validate({"1": node})
        assert result.error is not None
        assert result.error["type"] == "invalid_prompt"
        assert result.error["details"] == "Node ID '#1'"
    assert validate({1: sink("1")}).error["type"] == "invalid_prompt"  # type: ignore[index]


def test_partial_execution_targets_narrow_the_outputs() -> None:
    prompt = {
        "1": {"class_type": "IntSource", "inputs": {"value": 1}},
        "2": sink("1"),
        "3": sink("1"),
        "4": {"class_type": "Sink", "inputs": {}},  # invalid, but not a target
    }
    result = validate(prompt, ["3"])
    assert result.ok
    assert result.outputs == ["3"]
    assert result.node_errors == {}
    assert validate(prompt).outputs == ["2", "3"]


def test_partial_execution_targets_must_name_prompt_nodes() -> None:
    prompt = {"1": {"class_type": "IntSource", "inputs": {"value": 1}}, "2": sink("1")}
    missing = validate(prompt, ["2", "99"])
    assert missing.error is not None
    assert missing.error["type"] == "invalid_prompt"
    assert "'#99'" in missing.error["details"]
    assert validate(prompt, []).error["type"] == "prompt_no_outputs"  # type: ignore[index]
    assert validate(prompt, "2").error["type"] == "invalid_prompt"  # type: ignore[index]


# -- node-level errors: exact shapes ------------------------------------------------------


def test_required_input_missing() -> None:
    result = validate({"1": {"class_type": "Sink", "inputs": {}}})
    assert only_error(result, "1") == {
        "type": "required_input_missing",
        "message": "Required input is missing",
        "details": "value",
        "extra_info": {"input_name": "value"},
    }


def test_optional_inputs_may_be_missing() -> None:
    assert validate({"1": widgets(), "2": sink("1")}).ok


def test_bad_linked_input_that_is_not_a_pair() -> None:
    result = validate({"1": {"class_type": "Sink", "inputs": {"value": ["1", 0, 3]}}})
    error = only_error(result, "1")
    assert error["type"] == "bad_linked_input"
    assert error["message"] == "Bad linked input, must be a length-2 list of [node_id, slot_index]"
    assert error["details"] == "value"
    assert error["extra_info"]["input_name"] == "value"
    assert error["extra_info"]["received_value"] == ["1", 0, 3]
    assert config(error) == ["INT"]


def test_link_to_a_missing_node_names_both_nodes() -> None:
    result = validate({"5": {"class_type": "Sink", "inputs": {"value": ["42", 0]}}})
    error = only_error(result, "5")
    assert error["type"] == "bad_linked_input"
    assert "'5'" in error["message"]
    assert "'42'" in error["message"]
    assert error["extra_info"]["linked_node"] == ["42", 0]
    assert result.node_errors["5"]["class_type"] == "Sink"


@pytest.mark.parametrize("slot", [1, 7, -1, 0.5, math.nan, math.inf, -math.inf])
def test_link_to_a_missing_output_slot_names_both_nodes(slot: Any) -> None:
    result = validate(
        {"1": {"class_type": "IntSource", "inputs": {"value": 1}}, "2": sink("1", slot)}
    )
    error = only_error(result, "2")
    assert error["type"] == "bad_linked_input"
    assert "'2'" in error["message"]
    assert "'1' (IntSource)" in error["message"]
    assert "1 output(s)" in error["message"]


def test_undeclared_inputs_are_not_validated_but_their_links_must_exist() -> None:
    good = {"1": {"class_type": "IntSource", "inputs": {"value": 1, "anything": object()}}}
    good["2"] = {"class_type": "Sink", "inputs": {"value": ["1", 0], "dynamic_0": ["1", 0]}}
    assert validate(good).ok
    bad = {"1": {"class_type": "Sink", "inputs": {"value": 3, "dynamic_0": ["77", 0]}}}
    error = only_error(validate(bad), "1")
    assert error["type"] == "bad_linked_input"
    assert "'77'" in error["message"]


def test_return_type_mismatch() -> None:
    prompt = {"1": {"class_type": "FloatSource", "inputs": {"value": 1.5}}, "2": sink("1")}
    result = validate(prompt)
    error = only_error(result, "2")
    assert error == {
        "type": "return_type_mismatch",
        "message": "Return type mismatch between linked nodes",
        "details": "value, received_type(FLOAT) mismatch input_type(INT)",
        "extra_info": {
            "input_name": "value",
            "input_config": error["extra_info"]["input_config"],
            "received_type": "FLOAT",
            "linked_node": ["1", 0],
        },
    }
    assert config(error) == ["INT"]


@pytest.mark.parametrize(
    ("source", "slot", "target", "compatible"),
    [
        ("AnySource", 0, "Sink", True),  # "*" sent
        ("ImageSource", 0, "AnySink", True),  # "*" accepted
        ("UnionSource", 0, "Sink", True),  # "FLOAT,INT" shares INT
        ("UnionSource", 1, "Sink", False),  # "STRING,LATENT" shares nothing with INT
        ("FloatSource", 0, "NumberSink", True),  # FLOAT into "INT,FLOAT"
        ("UnionSource", 0, "NumberSink", True),  # "FLOAT,INT" into "INT,FLOAT"
        ("ImageSource", 0, "NumberSink", False),
        ("ImageSource", 1, "ImageSink", False),  # MASK is not IMAGE
        ("ImageSource", 0, "ImageSink", True),
    ],
)
def test_link_type_rules(source: str, slot: int, target: str, compatible: bool) -> None:
    inputs = {"ImageSink": "image"}.get(target, "value")
    prompt = {
        "1": {"class_type": source, "inputs": {"value": 1} if "Float" in source else {}},
        "2": {"class_type": target, "inputs": {inputs: ["1", slot]}},
    }
    result = validate(prompt)
    assert result.ok is compatible
    if not compatible:
        assert only_error(result, "2")["type"] == "return_type_mismatch"


def test_invalid_input_type() -> None:
    result = validate({"1": widgets(width="wide"), "2": sink("1")})
    error = only_error(result, "1")
    assert error["type"] == "invalid_input_type"
    assert error["message"] == "Failed to convert an input value to a INT value"
    assert error["details"].startswith("width, 'wide', ")
    assert error["extra_info"]["input_name"] == "width"
    assert error["extra_info"]["received_value"] == "wide"
    assert config(error) == WIDTH_CONFIG


def test_value_bigger_than_max_matches_the_spec_example() -> None:
    result = validate({"1": widgets(width=99999), "2": sink("1")})
    error = only_error(result, "1")
    assert json.loads(json.dumps(error)) == {
        "type": "value_bigger_than_max",
        "message": "Value 99999 bigger than max of 16384",
        "details": "width",
        "extra_info": {
            "input_name": "width",
            "input_config": WIDTH_CONFIG,
            "received_value": 99999,
        },
    }


def test_value_smaller_than_min() -> None:
    result = validate({"1": widgets(scale=-0.5), "2": sink("1")})
    error = only_error(result, "1")
    assert error["type"] == "value_smaller_than_min"
    assert error["message"] == "Value -0.5 smaller than min of 0.0"
    assert error["details"] == "scale"
    assert error["extra_info"]["received_value"] == -0.5


def test_value_not_in_list_old_style_combo() -> None:
    error = only_error(validate({"1": widgets(mode="medium"), "2": sink("1")}), "1")
    assert error == {
        "type": "value_not_in_list",
        "message": "Value not in list",
        "details": "mode: 'medium' not in ['fast', 'slow']",
        "extra_info": {
            "input_name": "mode",
            "input_config": error["extra_info"]["input_config"],
            "received_value": "medium",
        },
    }
    assert config(error) == [["fast", "slow"]]


def test_value_not_in_list_new_style_combo() -> None:
    assert validate({"1": widgets(style="fancy"), "2": sink("1")}).ok
    error = only_error(validate({"1": widgets(style="gaudy"), "2": sink("1")}), "1")
    assert error["type"] == "value_not_in_list"
    assert error["details"] == "style: 'gaudy' not in ['plain', 'fancy']"


def test_long_combo_lists_are_summarised() -> None:
    assert validate({"1": widgets(pick="choice_24"), "2": sink("1")}).ok
    error = only_error(validate({"1": widgets(pick="nope"), "2": sink("1")}), "1")
    assert error["details"] == "pick: 'nope' not in (list of length 25)"
    assert error["extra_info"]["input_config"] is None


def test_dependency_cycles_are_reported_naming_their_nodes() -> None:
    prompt = {
        "1": {"class_type": "Pass", "inputs": {"value": ["3", 0]}},
        "2": {"class_type": "Pass", "inputs": {"value": ["1", 0]}},
        "3": {"class_type": "Pass", "inputs": {"value": ["2", 0]}},
        "4": sink("3"),
        "5": {"class_type": "IntSource", "inputs": {"value": 1}},
        "6": sink("5"),
    }
    result = validate(prompt)
    assert result.ok  # the acyclic output still runs
    assert result.outputs == ["6"]
    assert set(result.node_errors) == {"1", "2", "3"}
    for node_id in ("1", "2", "3"):
        error = only_error(result, node_id)
        assert error["type"] == "dependency_cycle"
        assert sorted(error["extra_info"]["cycle"]) == ["1", "2", "3"]
        assert f"Node '{node_id}'" in error["details"]
        assert result.node_errors[node_id]["dependent_outputs"] == ["4"]


def test_self_link_is_a_cycle() -> None:
    result = validate({"1": {"class_type": "Sink", "inputs": {"value": ["1", 0]}}})
    assert not result.ok
    # A Sink has no outputs, so the self-link is also a bad slot; the cycle is named anyway.
    types = {error["type"] for error in result.node_errors["1"]["errors"]}
    assert "dependency_cycle" in types


# -- constants: coercion and wrappers ----------------------------------------------------


def test_constants_are_coerced_and_written_back() -> None:
    prompt = {
        "1": widgets(width="5", scale="2.5", flag="false", text=7, mode="slow"),
        "2": sink("1"),
    }
    original = copy.deepcopy(prompt)
    result = validate(prompt)
    assert result.ok
    inputs = result.prompt["1"]["inputs"]
    assert inputs == {"width": 5, "scale": 2.5, "flag": False, "text": "7", "mode": "slow"}
    assert type(inputs["width"]) is int
    assert type(inputs["scale"]) is float
    assert prompt == original  # the submitted prompt is left alone


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("false", False),
        ("False", False),
        ("0", False),
        ("", False),
        ("true", True),
        ("1", True),
        (0, False),
        (1, True),
        (True, True),
    ],
)
def test_boolean_coercion(given: Any, expected: bool) -> None:
    result = validate({"1": widgets(flag=given), "2": sink("1")})
    assert result.ok
    assert result.prompt["1"]["inputs"]["flag"] is expected


def test_a_boolean_that_is_not_one_is_an_invalid_input_type() -> None:
    error = only_error(validate({"1": widgets(flag="maybe"), "2": sink("1")}), "1")
    assert error["type"] == "invalid_input_type"
    assert error["extra_info"]["input_name"] == "flag"


def test_wrapped_values_are_unwrapped_and_list_constants_stay_wrapped() -> None:
    assert (
        validate({"1": widgets(width={"__value__": "64"}), "2": sink("1")}).prompt["1"]["inputs"][
            "width"
        ]
        == 64
    )
    # A bare list is a link in the prompt format, so a list constant keeps its wrapper (the
    # engine unwraps it for the node); ["2", 0] bare would even point at node 2.
    for value in ([1, 2, 3], ["2", 0]):
        result = validate({"1": widgets(values={"__value__": value}), "2": sink("1")})
        assert result.ok
        assert result.prompt["1"]["inputs"]["values"] == {"__value__": value}


def test_a_validated_prompt_validates_again_unchanged() -> None:
    prompt = {
        "1": widgets(width="5", flag="false", values={"__value__": ["a", "b"]}),
        "2": sink("1"),
    }
    first = validate(prompt)
    second = validate(first.prompt)
    assert second.ok
    assert second.node_errors == {}
    assert second.prompt == first.prompt


# -- VALIDATE_INPUTS ---------------------------------------------------------------------


def test_a_named_input_skips_the_built_in_checks_for_that_input_only() -> None:
    validation_nodes.VALIDATE_CALLS.clear()
    result = validate({"1": {"class_type": "NamedCheck", "inputs": {"low": 50, "high": 5}}})
    assert result.ok
    assert validation_nodes.VALIDATE_CALLS == [("NamedCheck", {"low": 50})]
    result = validate({"1": {"class_type": "NamedCheck", "inputs": {"low": 50, "high": 50}}})
    error = only_error(result, "1")
    assert error["type"] == "value_bigger_than_max"
    assert error["details"] == "high"


def test_kwargs_skip_every_built_in_check_and_links_arrive_as_none() -> None:
    validation_nodes.VALIDATE_CALLS.clear()
    prompt = {
        "1": {"class_type": "IntSource", "inputs": {"value": 1}},
        "2": {
            "class_type": "KwargsCheck",
            "inputs": {"low": 50, "mode": "zzz", "linked": ["1", 0]},
        },
    }
    assert validate(prompt).ok
    assert validation_nodes.VALIDATE_CALLS == [
        ("KwargsCheck", {"low": 50, "mode": "zzz", "linked": None})
    ]


def test_input_types_receives_linked_types_and_replaces_the_type_check() -> None:
    validation_nodes.VALIDATE_CALLS.clear()
    image = {
        "0": {"class_type": "ImageSource", "inputs": {}},
        "1": {"class_type": "TypesCheck", "inputs": {"image": ["0", 0], "value": 3}},
    }
    assert validate(image).ok
    assert validation_nodes.VALIDATE_CALLS == [
        ("TypesCheck", {"input_types": {"image": "IMAGE"}, "value": 3})
    ]
    # A MASK into an IMAGE input is no mismatch here: the hook decides, and it says no.
    image["1"]["inputs"]["image"] = ["0", 1]
    error = only_error(validate(image), "1")
    assert error["type"] == "custom_validation_failed"
    assert error["details"] == "value - masks are not images"


def test_a_hook_returning_a_string_fails_custom_validation() -> None:
    result = validate({"1": {"class_type": "NamedCheck", "inputs": {"low": 13, "high": 1}}})
    assert only_error(result, "1") == {
        "type": "custom_validation_failed",
        "message": "Custom validation failed for node",
        "details": "low - thirteen is unlucky",
        "extra_info": {"input_name": "low", "received_value": "thirteen is unlucky"},
    }


def test_a_hook_returning_false_fails_custom_validation() -> None:
    error = only_error(validate({"1": {"class_type": "FalseCheck", "inputs": {"value": 1}}}), "1")
    assert error["type"] == "custom_validation_failed"
    assert error["details"] == "value"


def test_a_hook_that_raises_is_an_exception_during_validation() -> None:
    result = validate({"1": {"class_type": "RaisingCheck", "inputs": {"value": 1}}})
    error = only_error(result, "1")
    assert error["type"] == "exception_during_validation"
    assert error["message"] == "Exception when validating node"
    assert error["details"] == "'9'"
    assert error["extra_info"]["exception_type"] == "KeyError"
    trace = error["extra_info"]["traceback"]
    assert isinstance(trace, list)
    assert all(isinstance(line, str) for line in trace)
    assert "VALIDATE_INPUTS" in "".join(trace)


def test_input_types_that_raise_fail_the_node_not_the_request() -> None:
    prompt = {
        "1": {"class_type": "BrokenTypes", "inputs": {}},
        "2": sink("1"),
        "3": {"class_type": "IntSource", "inputs": {"value": 1}},
        "4": sink("3"),
    }
    result = validate(prompt)
    assert result.ok
    assert result.outputs == ["4"]
    error = only_error(result, "1")
    assert error["type"] == "exception_during_validation"
    assert error["extra_info"]["exception_type"] == "FileNotFoundError"
    assert result.node_errors["1"]["dependent_outputs"] == ["2"]


# -- which outputs run -------------------------------------------------------------------


def test_all_outputs_failing_is_prompt_outputs_failed_validation() -> None:
    prompt = {
        "1": widgets(width=99999),
        "2": sink("1"),
        "3": {"class_type": "Pass", "inputs": {"value": ["1", 0]}},
        "4": sink("3"),
        "5": {"class_type": "Sink", "inputs": {}},
    }
    result = validate(prompt)
    assert not result.ok
    assert result.outputs == []
    assert result.error == {
        "type": "prompt_outputs_failed_validation",
        "message": "Prompt outputs failed validation",
        "details": "Value 99999 bigger than max of 16384: width\nRequired input is missing: value",
        "extra_info": {},
    }
    assert result.node_errors == {
        "1": {
            "errors": result.node_errors["1"]["errors"],
            "dependent_outputs": ["2", "4"],
            "class_type": "Widgets",
        },
        "5": {
            "errors": result.node_errors["5"]["errors"],
            "dependent_outputs": ["5"],
            "class_type": "Sink",
        },
    }


def test_invalid_outputs_are_dropped_and_valid_ones_still_run() -> None:
    prompt = {
        "1": {"class_type": "IntSource", "inputs": {"value": 1}},
        "2": sink("1"),
        "3": widgets(mode="nope"),
        "4": sink("3"),
        "5": {"class_type": "Pass", "inputs": {"value": ["1", 0]}},
        "6": sink("5"),
    }
    result = validate(prompt)
    assert result.ok
    assert result.error is None
    assert result.outputs == ["2", "6"]
    assert list(result.node_errors) == ["3"]
    assert result.node_errors["3"]["dependent_outputs"] == ["4"]


def test_dependent_outputs_lists_only_truly_dependent_outputs() -> None:
    prompt = {
        "1": widgets(width=0),
        "2": sink("1"),
        "3": widgets(scale=99),
        "4": sink("3"),
        "5": {"class_type": "Sink", "inputs": {"value": ["3", 0], "extra": ["1", 0]}},
    }
    result = validate(prompt)
    assert not result.ok
    assert result.node_errors["1"]["dependent_outputs"] == ["2", "5"]
    assert result.node_errors["3"]["dependent_outputs"] == ["4", "5"]


def test_nodes_no_output_needs_are_not_validated() -> None:
    prompt = {
        "1": {"class_type": "IntSource", "inputs": {"value": 1}},
        "2": sink("1"),
        "3": widgets(width="junk"),  # feeds nothing
    }
    result = validate(prompt)
    assert result.ok
    assert result.node_errors == {}


# -- determinism and scale ---------------------------------------------------------------


def _many_errors() -> dict[str, Any]:
    return {
        "1": widgets(width=0, scale=-1, mode="x"),
        "2": {"class_type": "Sink", "inputs": {"value": ["1", 0], "extra": ["9", 0]}},
        "3": widgets(flag="maybe"),
        "4": {"class_type": "Sink", "inputs": {"value": ["3", 0], "extra": ["1", 0]}},
        "5": {"class_type": "Pass", "inputs": {"value": ["6", 0]}},
        "6": {"class_type": "Pass", "inputs": {"value": ["5", 0]}},
        "7": {"class_type": "Sink", "inputs": {"value": ["6", 0], "extra": ["3", 0]}},
        "8": {"class_type": "FloatSource", "inputs": {"value": 1}},
        "9": {"class_type": "Sink", "inputs": {"value": ["8", 0]}},
    }


def test_node_errors_do_not_depend_on_key_order() -> None:
    reference = validate(_many_errors())
    assert not reference.ok
    expected = json.dumps([reference.error, reference.node_errors])
    rng = random.Random(1234)
    for _ in range(20):
        shuffled: dict[str, Any] = {}
        nodes = list(_many_errors().items())
        rng.shuffle(nodes)
        for node_id, node in nodes:
            inputs = list(node["inputs"].items())
            rng.shuffle(inputs)
            shuffled[node_id] = {"class_type": node["class_type"], "inputs": dict(inputs)}
        result = validate(shuffled)
        assert json.dumps([result.error, result.node_errors]) == expected


def _chain(length: int) -> dict[str, Any]:
    prompt: dict[str, Any] = {"0": {"class_type": "IntSource", "inputs": {"value": 0}}}
    for i in range(1, length):
        prompt[str(i)] = {"class_type": "Pass", "inputs": {"value": [str(i - 1), 0]}}
    prompt["out"] = sink(str(length - 1))
    return prompt


def test_a_ten_thousand_node_chain_validates() -> None:
    start = time.perf_counter()
    result = validate(_chain(10_000))
    assert result.ok, result.node_errors
    assert result.outputs == ["out"]
    assert len(result.prompt) == 10_001
    assert time.perf_counter() - start < 5


def test_a_ten_thousand_node_cycle_is_reported_without_recursion() -> None:
    prompt = _chain(10_000)
    prompt["0"] = {"class_type": "Pass", "inputs": {"value": ["9999", 0]}}
    start = time.perf_counter()
    result = validate(prompt)
    # Every node errors: the report must stay linear (a cycle listed in full on each of its
    # nodes, or per-node sets of upstream errors, took 15 s here).
    assert time.perf_counter() - start < 5
    assert not result.ok
    assert len(result.node_errors) == 10_000
    error = result.node_errors["0"]["errors"][0]
    assert error["type"] == "dependency_cycle"
    assert error["extra_info"]["cycle_length"] == 10_000
    assert len(error["extra_info"]["cycle"]) < 20
    assert "more" in error["details"]


def test_an_error_on_every_node_of_a_long_chain_is_reported_in_linear_time() -> None:
    prompt = _chain(10_000)
    for node in prompt.values():
        node["inputs"]["dangling"] = ["nowhere", 0]
    start = time.perf_counter()
    result = validate(prompt)
    assert time.perf_counter() - start < 5
    assert len(result.node_errors) == 10_001
    assert all(entry["dependent_outputs"] == ["out"] for entry in result.node_errors.values())


def test_an_error_at_the_bottom_of_a_deep_chain_reaches_the_output() -> None:
    prompt = _chain(5_000)
    prompt["0"]["inputs"]["value"] = "not a number"
    result = validate(prompt)
    assert not result.ok
    assert list(result.node_errors) == ["0"]
    assert result.node_errors["0"]["dependent_outputs"] == ["out"]


# -- never raising -----------------------------------------------------------------------

_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=6), children, max_size=4)
    ),
    max_leaves=12,
)
_ids = st.sampled_from(["1", "2", "3", "4", "5", "6", "x", "²", ""])
_slots = st.sampled_from([0, 0, 1, 2, -1, 0.0, 1.5, math.nan, math.inf, True])
_link = st.one_of(
    st.tuples(_ids, _slots).map(list),  # well-formed, possibly dangling or out of range
    st.lists(st.one_of(_ids, _slots, _json), max_size=3),  # malformed
)
_input_names = st.sampled_from(
    [
        "value",
        "width",
        "scale",
        "flag",
        "text",
        "mode",
        "style",
        "pick",
        "values",
        "low",
        "high",
        "image",
        "linked",
        "extra",
        "junk",
    ]
)
_node = st.fixed_dictionaries(
    {
        "class_type": st.sampled_from([*validation_nodes.NODE_CLASSES, "Nope"])
        | st.sampled_from(["Sink", "AnySink", "Pass", "IntSource"])
        | _json,
        "inputs": st.dictionaries(
            _input_names,
            st.one_of(_link, _json, st.fixed_dictionaries({"__value__": _json})),
            max_size=5,
        )
        | _json,
    }
)


def _declared_inputs(class_type: str) -> list[str]:
    try:
        schema = REGISTRY.schema(class_type)
    except FileNotFoundError:  # BrokenTypes
        return ["value"]
    assert schema is not None
    return list(schema.inputs)


@st.composite
def _plausible_prompts(draw: st.DrawFn) -> dict[str, Any]:
    """Graphs that get deep into validation: real classes, their declared inputs, links
    between the prompt's own nodes (with odd slots, cycles and dangling ends)."""
    ids = draw(st.lists(_ids, min_size=1, max_size=6, unique=True))
    prompt: dict[str, Any] = {}
    for node_id in ids:
        class_type = draw(st.sampled_from(sorted(validation_nodes.NODE_CLASSES)))
        inputs: dict[str, Any] = {}
        for name in _declared_inputs(class_type):
            if draw(st.integers(0, 5)) == 0:
                continue  # missing
            inputs[name] = draw(
                st.tuples(st.sampled_from([*ids, "gone"]), _slots).map(list)
                | _json
                | st.sampled_from(["5", "fast", "choice_3", "false", 99999, -1])
            )
        prompt[node_id] = {"class_type": class_type, "inputs": inputs}
    return prompt


_prompts = st.one_of(
    _json,
    st.dictionaries(_ids, _node | _json, max_size=6),
    st.dictionaries(_ids, _node, max_size=6),
    _plausible_prompts(),
    _plausible_prompts(),
)


@settings(max_examples=100)
@given(prompt=_prompts, targets=st.none() | st.lists(_ids, max_size=3) | _json)
def test_validation_never_raises(prompt: Any, targets: Any) -> None:
    result = validate(prompt, targets)
    assert isinstance(result, ValidationResult)
    assert result.ok == bool(result.outputs)
    assert result.ok or result.error is not None
    if result.ok:
        assert set(result.outputs) <= set(prompt)
        assert set(result.outputs).isdisjoint(
            output for entry in result.node_errors.values() for output in entry["dependent_outputs"]
        )
    json.dumps([result.error, result.node_errors], default=repr)
