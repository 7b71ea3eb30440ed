"""Lazy inputs (spec §3.5): only what check_lazy_status asks for runs; asking for what is not
there is a NodeInputError."""

from __future__ import annotations

from engine_harness import Engine, calls, link, node

from flowscope.telemetry import Action


def _switch(choose_a: bool) -> dict[str, dict[str, object]]:
    return {
        "1": node("StubInt", value=1),
        "2": node("AddInt", a=link("1"), b=10),  # branch a: 11
        "3": node("Fail", value=link("1"), message="branch b must not run"),
        "4": node("LazySwitch", choose_a=choose_a, a=link("2"), b=link("3")),
        "5": node("Collect", value=link("4")),
    }


def test_the_branch_not_chosen_never_runs(engine: Engine) -> None:
    result = engine.run(_switch(True))
    assert result.status == "success"
    assert result.outputs["5"] == {"value": [11]}
    assert "3" not in engine.succeeded()
    assert not engine.events.where(node_id="3")


def test_the_other_branch_runs_when_chosen(engine: Engine) -> None:
    prompt = _switch(False)
    prompt["3"] = node("AddInt", a=link("1"), b=20)
    prompt["2"] = node("Fail", value=link("1"), message="branch a must not run")
    result = engine.run(prompt)
    assert result.status == "success"
    assert result.outputs["5"] == {"value": [21]}
    assert calls("AddInt") == [(1, 20)]


def test_check_lazy_status_sees_unevaluated_inputs_as_none_then_values(engine: Engine) -> None:
    prompt = {
        "1": node("StubInt", value=7),
        "2": node("StubInt", value=8),
        "3": node("LazyAsk", ask="a", a=link("1"), b=link("2")),
        "4": node("Collect", value=link("3", 0)),
        "5": node("Collect", value=link("3", 1)),
    }
    result = engine.run(prompt)
    # First call: nothing evaluated; second: `a` is there, so nothing more is needed.
    assert calls("LazyAsk.check") == [(None, None), (7, None)]
    assert calls("LazyAsk") == [(7, None)]  # the never-requested input arrives as None
    assert calls("StubInt") == [7]
    assert result.outputs == {"4": {"value": [7]}, "5": {"value": [None]}}
    # The node is started once, and finishes once, around its dependency.
    events = [(e.action, e.get("node.id")) for e in engine.events.events]
    started = events.index((Action.NODE_STARTED, "3"))
    assert events.index((Action.NODE_SUCCEEDED, "1")) > started
    assert events.index((Action.NODE_SUCCEEDED, "3")) > events.index((Action.NODE_SUCCEEDED, "1"))
    assert engine.node_ids(Action.NODE_STARTED).count("3") == 1


def test_asking_for_nothing_runs_no_lazy_source(engine: Engine) -> None:
    prompt = {
        "1": node("Fail", value=1, message="not needed"),
        "2": node("LazyAsk", ask="", a=link("1")),
        "3": node("Collect", value=link("2")),
    }
    result = engine.run(prompt)
    assert result.status == "success"
    assert result.outputs["3"] == {"value": [None]}


def test_asking_for_both_inputs_runs_both(engine: Engine) -> None:
    prompt = {
        "1": node("StubInt", value=1),
        "2": node("StubInt", value=2),
        "3": node("LazyAsk", ask="a,b", a=link("1"), b=link("2")),
        "4": node("Collect", value=link("3", 1)),
    }
    result = engine.run(prompt)
    assert sorted(calls("StubInt")) == [1, 2]
    assert calls("LazyAsk") == [(1, 2)]
    assert result.outputs["4"] == {"value": [2]}


def test_a_lazy_input_given_as_a_constant_is_passed_as_is(engine: Engine) -> None:
    prompt = {"1": node("LazyAsk", ask="a", a=5), "2": node("Collect", value=link("1"))}
    result = engine.run(prompt)
    assert result.outputs["2"] == {"value": [5]}
    assert calls("LazyAsk.check") == [(5, None)]


def test_a_source_shared_with_an_eager_consumer_runs_once(engine: Engine) -> None:
    prompt = {
        "1": node("StubInt", value=3),
        "2": node("LazyAsk", ask="a", a=link("1")),
        "3": node("AddInt", a=link("1"), b=1),
        "4": node("Collect", value=link("2")),
        "5": node("Collect", value=link("3")),
    }
    result = engine.run(prompt)
    assert calls("StubInt") == [3]
    assert result.outputs == {"4": {"value": [3]}, "5": {"value": [4]}}


def _ask(ask: str, **inputs: object) -> dict[str, dict[str, object]]:
    return {
        "1": node("StubInt", value=1),
        "2": node("LazyAsk", ask=ask, a=link("1"), **inputs),
        "3": node("Collect", value=link("2")),
    }


def test_asking_for_an_input_that_does_not_exist_is_a_node_input_error(engine: Engine) -> None:
    result = engine.run(_ask("a,nonexistent"))
    assert result.status == "error"
    assert result.error is not None
    assert result.error["exception_type"] == "flowscope.engine.scheduler.NodeInputError"
    assert result.error["node_id"] == "2"
    assert "'nonexistent'" in result.error["exception_message"]


def test_asking_for_an_optional_input_that_is_not_connected_is_a_node_input_error(
    engine: Engine,
) -> None:
    result = engine.run(_ask("b"))
    assert result.status == "error"
    assert result.error is not None
    assert result.error["exception_type"] == "flowscope.engine.scheduler.NodeInputError"
    assert "'b'" in result.error["exception_message"]


def test_asking_for_an_input_that_is_not_linked_is_a_node_input_error(engine: Engine) -> None:
    # An undeclared constant is dropped before the node sees it, so it is "missing"; but it is
    # no link the engine could evaluate.
    result = engine.run(_ask("extra", extra=3))
    assert result.status == "error"
    assert result.error is not None
    assert result.error["exception_type"] == "flowscope.engine.scheduler.NodeInputError"
    assert "constant" in result.error["exception_message"]


def test_an_async_check_lazy_status_is_awaited(engine: Engine) -> None:
    prompt = {
        "1": node("StubInt", value=4),
        "2": node("AsyncLazy", want_a=True, a=link("1")),
        "3": node("Collect", value=link("2")),
        "4": node("Fail", value=1, message="never asked for"),
        "5": node("AsyncLazy", want_a=False, a=link("4")),
        "6": node("Collect", value=link("5")),
    }
    result = engine.run(prompt)
    assert result.status == "success"
    assert result.outputs == {"3": {"value": [4]}, "6": {"value": [None]}}
