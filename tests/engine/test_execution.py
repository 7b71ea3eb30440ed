"""What runs and in what order (spec §3.2): only outputs and their dependencies, dependencies
first, ComfyUI's UX pick order, partial execution, hidden inputs, depth, and a reference model."""

from __future__ import annotations

from typing import Any

from engine_harness import Engine, calls, link, node
from hypothesis import given, settings
from hypothesis import strategies as st

from flowscope.engine import JobRequest
from flowscope.telemetry import Action


def test_only_outputs_and_their_dependencies_run(engine: Engine) -> None:
    prompt = {
        "1": node("StubInt", value=1),
        "2": node("AddInt", a=link("1"), b=2),
        "3": node("Collect", value=link("2")),
        "4": node("StubInt", value=40),  # feeds nothing
        "5": node("AddInt", a=link("1"), b=50),  # feeds nothing either
    }
    result = engine.run(prompt)
    assert result.status == "success"
    assert calls("StubInt") == [1]
    assert calls("AddInt") == [(1, 2)]
    assert result.outputs == {"3": {"value": [3]}}
    assert sorted(engine.succeeded()) == ["1", "2", "3"]


def test_dependencies_run_before_their_consumers(engine: Engine) -> None:
    prompt = {
        "1": node("StubInt", value=1),
        "2": node("AddInt", a=link("1"), b=1),
        "3": node("AddInt", a=link("1"), b=2),
        "4": node("AddInt", a=link("2"), b=link("3")),
        "5": node("Collect", value=link("4")),
    }
    result = engine.run(prompt)
    assert result.outputs["5"] == {"value": [5]}
    order = engine.succeeded()
    assert sorted(order) == ["1", "2", "3", "4", "5"]
    for source, consumer in [("1", "2"), ("1", "3"), ("2", "4"), ("3", "4"), ("4", "5")]:
        assert order.index(source) < order.index(consumer)
    assert [r.node_id for r in result.nodes] == order
    assert all(r.status == "succeeded" for r in result.nodes)


def test_ux_order_runs_an_output_as_soon_as_it_can(engine: Engine) -> None:
    prompt = {
        # A long branch: 1 is two steps from its output.
        "1": node("StubInt", value=1),
        "2": node("AddInt", a=link("1"), b=1),
        "3": node("Collect", value=link("2")),
        # A short branch: 4 feeds its output directly, so it goes first, then its output.
        "4": node("StubInt", value=4),
        "5": node("Collect", value=link("4")),
    }
    engine.run(prompt)
    assert engine.succeeded() == ["4", "5", "1", "2", "3"]


def test_ux_order_prefers_feeders_then_nodes_two_steps_away(engine: Engine) -> None:
    prompt = {
        "10": node("StubInt", value=10),  # three steps from output 13
        "11": node("AddInt", a=link("10"), b=1),
        "12": node("AddInt", a=link("11"), b=1),
        "13": node("Collect", value=link("12")),
        "20": node("StubInt", value=20),  # two steps from output 22
        "21": node("AddInt", a=link("20"), b=1),
        "22": node("Collect", value=link("21")),
        "30": node("StubInt", value=30),  # feeds output 31
        "31": node("Collect", value=link("30")),
    }
    engine.run(prompt)
    assert engine.succeeded() == ["30", "31", "20", "21", "22", "10", "11", "12", "13"]


def test_partial_execution_targets_run_only_the_chosen_outputs(engine: Engine) -> None:
    prompt = {
        "1": node("StubInt", value=1),
        "2": node("Collect", value=link("1")),
        "3": node("StubInt", value=3),
        "4": node("Collect", value=link("3")),
    }
    result = engine.run(prompt, targets=["4"])
    assert result.outputs == {"4": {"value": [3]}}
    assert calls("StubInt") == [3]
    assert sorted(engine.succeeded()) == ["3", "4"]


def test_hidden_inputs_are_filled_in(engine: Engine) -> None:
    prompt = {"7": node("Hidden")}
    result = engine.run(prompt, extra_data={"extra_pnginfo": {"workflow": {"id": "w"}}})
    assert result.outputs["7"] == {
        "unique_id": ["7"],
        "nodes": [["7"]],
        "pnginfo": [{"workflow": {"id": "w"}}],
        "dyn": ["DynamicPrompt"],
    }
    assert result.meta["7"] == {
        "node_id": "7",
        "display_node": "7",
        "parent_node": None,
        "real_node_id": "7",
    }


def test_a_node_returning_a_bare_value_fails_with_a_clear_message(engine: Engine) -> None:
    prompt = {"1": node("BadReturn", value=1), "2": node("Collect", value=link("1"))}
    result = engine.run(prompt)
    assert result.status == "error"
    assert result.error is not None
    assert result.error["exception_type"] == "flowscope.engine.errors.NodeOutputError"
    assert "BadReturn.run returned int" in result.error["exception_message"]


def test_an_unvalidated_cyclic_prompt_fails_cleanly(engine: Engine) -> None:
    prompt = {
        "1": node("AddInt", a=link("2"), b=1),
        "2": node("AddInt", a=link("1"), b=1),
        "3": node("Collect", value=link("2")),
    }
    result = engine.executor.execute(JobRequest(prompt=prompt, outputs=["3"]))
    assert result.status == "error"
    assert result.error is not None
    assert result.error["exception_type"] == "flowscope.engine.errors.DependencyCycleError"
    assert calls("AddInt") == []


def _chain(length: int) -> dict[str, Any]:
    prompt: dict[str, Any] = {"0": node("StubInt", value=0)}
    for i in range(1, length):
        prompt[str(i)] = node("AddInt", a=link(str(i - 1)), b=1)
    prompt["out"] = node("Collect", value=link(str(length - 1)))
    return prompt


def test_a_ten_thousand_node_chain_executes(engine: Engine) -> None:
    result = engine.run(_chain(10_000))
    assert result.status == "success"
    assert result.outputs["out"] == {"value": [9_999]}
    assert len(result.nodes) == 10_001
    again = engine.run(_chain(10_000))
    assert again.outputs["out"] == {"value": [9_999]}
    assert len(again.cached_nodes) == 10_001


# -- a reference model -------------------------------------------------------------------


@st.composite
def dags(draw: st.DrawFn) -> tuple[dict[str, Any], dict[str, int]]:
    """A random DAG of StubInt / AddInt with Collect outputs, and the value of every node
    computed by a straightforward reference evaluator."""
    count = draw(st.integers(1, 14))
    prompt: dict[str, Any] = {}
    values: dict[str, int] = {}
    for i in range(count):
        node_id = str(i)
        if i == 0 or draw(st.integers(0, 3)) == 0:
            constant = draw(st.integers(-50, 50))
            prompt[node_id] = node("StubInt", value=constant)
            values[node_id] = constant
            continue
        a = draw(st.integers(0, i - 1) | st.integers(-9, 9).map(lambda v: -100 - v))
        b = draw(st.integers(0, i - 1) | st.integers(-9, 9).map(lambda v: -100 - v))
        # Negative draws stand for constants (offset so they never collide with node ids).
        inputs = {
            name: link(str(choice)) if choice >= 0 else -100 - choice
            for name, choice in (("a", a), ("b", b))
        }
        prompt[node_id] = node("AddInt", **inputs)
        values[node_id] = sum(
            values[v[0]] if isinstance(v, list) else v for v in (inputs["a"], inputs["b"])
        )
    watched = draw(st.sets(st.sampled_from(sorted(prompt)), min_size=1, max_size=4))
    for node_id in sorted(watched):
        prompt[f"out{node_id}"] = node("Collect", value=link(node_id))
    return prompt, values


@settings(max_examples=100)
@given(case=dags())
def test_random_dags_match_a_reference_evaluator(
    case: tuple[dict[str, Any], dict[str, int]],
) -> None:
    prompt, values = case
    engine = Engine()
    result = engine.run(prompt)
    assert result.status == "success"
    outputs = {k: v for k, v in prompt.items() if k.startswith("out")}
    assert result.outputs == {
        out: {"value": [values[spec["inputs"]["value"][0]]]} for out, spec in outputs.items()
    }
    # Every executed or cached node is needed by an output; nothing runs twice.
    needed: set[str] = set()
    stack = list(outputs)
    while stack:
        current = stack.pop()
        if current in needed:
            continue
        needed.add(current)
        stack.extend(v[0] for v in prompt[current]["inputs"].values() if isinstance(v, list))
    ran = engine.succeeded() + engine.cached()
    assert sorted(ran) == sorted(needed)
    assert not engine.events.of(Action.NODE_FAILED)
