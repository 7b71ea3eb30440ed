"""Node expansion (spec §1.5): GraphBuilder ids, results linking into the subgraph, outputs inside
expansions, duplicate ids, runtime cycles, failures inside, and caching."""

from __future__ import annotations

from engine_harness import Engine, calls, link, node

from flowscope.engine import LRUCache
from flowscope.telemetry import Action


def _repeat(times: int, value: object = None) -> dict[str, dict[str, object]]:
    return {
        "1": node("StubInt", value=10),
        "5": node("Repeat", value=link("1") if value is None else value, times=times),
        "9": node("Collect", value=link("5")),
    }


def test_graph_builder_ids_and_results_linking_into_the_subgraph(engine: Engine) -> None:
    result = engine.run(_repeat(3))
    assert result.status == "success"
    assert result.outputs["9"] == {"value": [13]}
    (expanded,) = engine.events.of(Action.NODE_EXPANDED)
    assert expanded.get("node.id") == "5"
    assert expanded.get("node.expanded_count") == 3
    assert expanded.detail == {"nodes": ["5.0.0.0", "5.0.0.1", "5.0.0.2"]}
    assert calls("AddInt") == [(10, 1), (11, 1), (12, 1)]
    # The expanding node completes after its subgraph.
    order = engine.succeeded()
    assert order.index("5.0.0.2") < order.index("5") < order.index("9")


def test_expanded_nodes_report_their_parent(engine: Engine) -> None:
    engine.run(_repeat(1))
    started = engine.event(Action.NODE_STARTED, "5.0.0.0")
    assert started.detail == {
        "node_id": "5.0.0.0",
        "display_node": "5",
        "parent_node": "5",
        "real_node_id": "5",
    }


def test_mapped_calls_get_their_own_id_prefix(engine: Engine) -> None:
    prompt = {
        "1": node("Range", count=2),
        "5": node("Repeat", value=link("1"), times=2),
        "9": node("Collect", value=link("5")),
    }
    result = engine.run(prompt)
    assert result.outputs["9"] == {"value": [2, 3]}
    (expanded,) = engine.events.of(Action.NODE_EXPANDED)
    assert expanded.detail == {"nodes": ["5.0.0.0", "5.0.0.1", "5.1.0.0", "5.1.0.1"]}


def test_output_nodes_inside_an_expansion_run(engine: Engine) -> None:
    prompt = {
        "1": node("StubInt", value=4),
        "3": node("ExpandWithOutput", value=link("1")),
        "4": node("Collect", value=link("3")),
    }
    result = engine.run(prompt)
    assert result.status == "success"
    assert sorted(calls("Collect")) == [5, 5]
    assert result.outputs == {"3.0.0.1": {"value": [5]}, "4": {"value": [5]}}
    assert result.meta["3.0.0.1"] == {
        "node_id": "3.0.0.1",
        "display_node": "3",
        "parent_node": "3",
        "real_node_id": "3",
    }


def test_an_expansion_reusing_an_existing_id_fails_the_expanding_node(engine: Engine) -> None:
    prompt = {
        "1": node("StubInt", value=1),
        "2": node("ExpandWithId", value=link("1"), node_id="1"),
        "3": node("Collect", value=link("2")),
    }
    result = engine.run(prompt)
    assert result.status == "error"
    assert result.error is not None
    assert result.error["node_id"] == "2"
    assert result.error["node_type"] == "ExpandWithId"
    assert result.error["exception_type"] == "flowscope.engine.dynprompt.DuplicateNodeError"
    assert "'1'" in result.error["exception_message"]


def test_a_runtime_cycle_is_a_clean_error_on_the_expanding_node(engine: Engine) -> None:
    prompt = {
        "1": node("StubInt", value=1),
        "2": node("SelfLoop", value=link("1")),
        "3": node("Collect", value=link("2")),
    }
    result = engine.run(prompt)
    assert result.status == "error"
    assert result.error is not None
    assert result.error["node_id"] == "2"
    assert result.error["node_type"] == "SelfLoop"
    assert result.error["exception_type"].endswith("DependencyCycleError")
    assert result.error["exception_type"] == "flowscope.engine.errors.DependencyCycleError"
    assert "2.0.0.0" in result.error["exception_message"]
    assert calls("AddInt") == []
    assert engine.events.actions()[-1] == "job.failed"


def test_a_failure_inside_an_expansion_names_the_real_node(engine: Engine) -> None:
    prompt = {
        "1": node("StubInt", value=1),
        "6": node("ExpandInto", value=link("1"), class_type="Raise", input_name="value"),
        "7": node("Collect", value=link("6")),
    }
    result = engine.run(prompt)
    assert result.status == "error"
    assert result.error is not None
    assert result.error["node_id"] == "6"
    assert result.error["node_type"] == "ExpandInto"
    assert result.error["exception_type"] == "ValueError"
    (failed,) = engine.events.of(Action.NODE_FAILED)
    assert failed.get("node.id") == "6.0.0.0"
    assert failed.get("node.type") == "Raise"


def test_an_unknown_type_in_an_expansion_fails_the_expanding_node(engine: Engine) -> None:
    prompt = {
        "1": node("StubInt", value=1),
        "6": node("ExpandInto", value=link("1"), class_type="NoSuchNode", input_name="value"),
        "7": node("Collect", value=link("6")),
    }
    result = engine.run(prompt)
    assert result.status == "error"
    assert result.error is not None
    assert result.error["node_id"] == "6"
    assert "NoSuchNode" in result.error["exception_message"]


def test_an_expansion_is_cached_on_re_run(engine: Engine) -> None:
    first = engine.run(_repeat(2))
    assert calls("AddInt") == [(10, 1), (11, 1)]
    second = engine.run(_repeat(2))
    assert calls("AddInt") == [(10, 1), (11, 1)]  # nothing ran again
    assert second.outputs == first.outputs == {"9": {"value": [12]}}
    assert sorted(engine.cached()) == ["1", "5", "9"]
    assert engine.events.of(Action.NODE_EXPANDED) == []


def test_changing_the_input_re_expands(engine: Engine) -> None:
    engine.run(_repeat(2))
    result = engine.run(_repeat(3))
    assert result.outputs["9"] == {"value": [13]}
    assert len(engine.events.of(Action.NODE_EXPANDED)) == 1


def _expand_into(class_type: str, salt: int) -> dict[str, dict[str, object]]:
    # `salt` is an undeclared constant: it changes the expanding node's cache key, not the
    # nodes it expands into.
    return {
        "1": node("StubInt", value=1),
        "2": node(
            "ExpandInto", value=link("1"), class_type=class_type, input_name="value", salt=salt
        ),
        "3": node("Collect", value=link("2")),
    }


def test_identical_expanded_nodes_hit_the_cache_across_jobs() -> None:
    engine = Engine(cache=LRUCache(100))
    engine.run(_expand_into("UniqueEcho", 1))
    engine.run(_expand_into("UniqueEcho", 2))
    assert calls("UniqueEcho") == ["2.0.0.0"]
    assert "2" in engine.succeeded()  # the expanding node ran again ...
    assert "2.0.0.0" in engine.cached()  # ... but what it expanded into was known


def test_is_changed_counts_inside_expansions() -> None:
    engine = Engine(cache=LRUCache(100))
    engine.run(_expand_into("Always", 1))
    engine.run(_expand_into("Always", 2))
    assert calls("Always") == [1, 1]
    assert "2.0.0.0" in engine.succeeded()
