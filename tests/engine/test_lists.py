"""List mapping (spec §3.3): OUTPUT_IS_LIST items fan out, shorter lists repeat their last item,
INPUT_IS_LIST gets whole lists, and mapped UI dicts are concatenated key by key."""

from __future__ import annotations

from engine_harness import Engine, calls, link, node


def test_a_list_output_maps_its_consumers_and_concatenates_their_ui(engine: Engine) -> None:
    prompt = {
        "1": node("Range", count=3),
        "2": node("AddInt", a=link("1"), b=10),
        "3": node("Collect", value=link("2")),
    }
    result = engine.run(prompt)
    assert calls("AddInt") == [(0, 10), (1, 10), (2, 10)]
    assert calls("Collect") == [10, 11, 12]
    assert result.outputs["3"] == {"value": [10, 11, 12]}


def test_shorter_lists_repeat_their_last_item(engine: Engine) -> None:
    prompt = {
        "1": node("Range", count=4),
        "2": node("Range", count=2),
        "3": node("AddInt", a=link("1"), b=link("2")),
        "4": node("Collect", value=link("3")),
    }
    result = engine.run(prompt)
    assert calls("AddInt") == [(0, 0), (1, 1), (2, 1), (3, 1)]
    assert result.outputs["4"] == {"value": [0, 2, 3, 4]}


def test_input_is_list_gets_the_whole_list_in_one_call(engine: Engine) -> None:
    prompt = {
        "1": node("Range", count=5),
        "2": node("Sum", values=link("1")),
        "3": node("Collect", value=link("2")),
    }
    result = engine.run(prompt)
    assert result.outputs["3"] == {"value": [10]}
    # A constant reaches an INPUT_IS_LIST node as a one-item list.
    assert engine.run({"1": node("Sum", values=7), "2": node("Collect", value=link("1"))}).outputs[
        "2"
    ] == {"value": [7]}


def test_list_outputs_of_mapped_calls_are_concatenated(engine: Engine) -> None:
    prompt = {
        "1": node("Range", count=3),
        "2": node("AddInt", a=link("1"), b=1),  # [1, 2, 3]
        "3": node("Range", count=link("2")),  # [0] + [0, 1] + [0, 1, 2]
        "4": node("Sum", values=link("3")),
        "5": node("Collect", value=link("3")),
        "6": node("Collect", value=link("4")),
    }
    result = engine.run(prompt)
    assert result.outputs["5"] == {"value": [0, 0, 1, 0, 1, 2]}
    assert result.outputs["6"] == {"value": [4]}


def test_list_and_plain_outputs_of_one_node_merge_differently(engine: Engine) -> None:
    prompt = {
        "1": node("Range", count=3),
        "2": node("AddInt", a=link("1"), b=1),  # [1, 2, 3]
        "3": node("Pair", value=link("2")),
        "4": node("Collect", value=link("3", 0)),
        "5": node("Collect", value=link("3", 1)),
    }
    result = engine.run(prompt)
    assert result.outputs["4"] == {"value": [1, 10, 2, 20, 3, 30]}  # lists concatenated
    assert result.outputs["5"] == {"value": [1, 2, 3]}  # one item per call


def test_input_and_output_lists_together(engine: Engine) -> None:
    prompt = {
        "1": node("Range", count=4),
        "2": node("Reverse", values=link("1")),
        "3": node("AddInt", a=link("2"), b=100),
        "4": node("Collect", value=link("3")),
    }
    result = engine.run(prompt)
    assert calls("Reverse") == [[0, 1, 2, 3]]
    assert result.outputs["4"] == {"value": [103, 102, 101, 100]}


def test_an_empty_list_maps_to_no_calls(engine: Engine) -> None:
    prompt = {
        "1": node("Range", count=0),
        "2": node("AddInt", a=link("1"), b=1),
        "3": node("Collect", value=link("2")),
        "4": node("Sum", values=link("1")),
        "5": node("Collect", value=link("4")),
    }
    result = engine.run(prompt)
    assert result.status == "success"
    assert calls("AddInt") == []
    assert "3" not in result.outputs
    assert result.outputs["5"] == {"value": [0]}  # INPUT_IS_LIST still runs, with []


def test_a_wrapped_list_constant_reaches_the_node_as_a_list() -> None:
    # {"__value__": [...]} is how a list widget value travels; ["2", 0] must not become a link.
    for value in ([1, 2, 3], ["2", 0]):
        prompt = {
            "1": node("Collect", value={"__value__": value}),
            "2": node("StubInt", value=5),
            "3": node("Collect", value=link("2")),
        }
        result = Engine().run(prompt)
        assert result.outputs["1"] == {"value": [value]}
        assert result.outputs["3"] == {"value": [5]}
