"""ExecutionBlocker (spec §1.5): blocks every consumer, silently or with a message, while the
rest of the job goes on."""

from __future__ import annotations

from engine_harness import Engine, calls, link, node

from flowscope.telemetry import Action, Level


def _gated(message: str) -> dict[str, dict[str, object]]:
    return {
        "1": node("StubInt", value=1),
        "2": node("Gate", value=link("1"), open=False, message=message),
        "3": node("AddInt", a=link("2"), b=1),
        "4": node("Collect", value=link("3")),
        # An independent branch that must still run.
        "5": node("StubInt", value=5),
        "6": node("Collect", value=link("5")),
    }


def test_a_silent_block_stops_its_consumers_and_the_job_goes_on(engine: Engine) -> None:
    result = engine.run(_gated(""))
    assert result.status == "success"
    assert result.error is None
    assert calls("AddInt") == []
    assert calls("Collect") == [5]
    assert result.outputs == {"6": {"value": [5]}}
    statuses = {record.node_id: record.status for record in result.nodes}
    assert statuses == {
        "1": "succeeded",
        "2": "succeeded",
        "3": "blocked",
        "4": "blocked",
        "5": "succeeded",
        "6": "succeeded",
    }
    blocked = engine.events.of(Action.NODE_BLOCKED)
    assert [e.get("node.id") for e in blocked] == ["3", "4"]
    assert all(e.level is Level.INFO and e.get("error.message") is None for e in blocked)


def test_a_block_with_a_message_is_reported_once_and_the_job_goes_on(engine: Engine) -> None:
    result = engine.run(_gated("no input image"))
    assert result.status == "success"
    assert result.outputs == {"6": {"value": [5]}}
    reported = [e for e in engine.events.of(Action.NODE_BLOCKED) if e.get("error.message")]
    assert len(reported) == 1
    (event,) = reported
    assert event.get("node.id") == "3"
    assert event.get("error.type") == "ExecutionBlocked"
    assert event.get("error.message") == "no input image"
    assert event.level is Level.WARN
    # Downstream of the reported node, the block travels silently.
    assert [e.get("node.id") for e in engine.events.of(Action.NODE_BLOCKED)] == ["3", "4"]


def test_an_open_gate_passes_its_value(engine: Engine) -> None:
    prompt = _gated("")
    prompt["2"]["inputs"]["open"] = True
    result = engine.run(prompt)
    assert result.outputs == {"4": {"value": [2]}, "6": {"value": [5]}}
    assert engine.events.of(Action.NODE_BLOCKED) == []


def test_blocked_nodes_are_blocked_again_on_a_cached_re_run(engine: Engine) -> None:
    engine.run(_gated("closed"))
    result = engine.run(_gated("closed"))
    assert result.status == "success"
    assert sorted(engine.cached()) == ["1", "2", "5", "6"]
    assert [e.get("node.id") for e in engine.events.of(Action.NODE_BLOCKED)] == ["3", "4"]


def test_a_node_returning_a_blocker_itself_succeeds_and_blocks_its_consumers(
    engine: Engine,
) -> None:
    prompt = {
        "1": node("StubInt", value=1),
        "2": node("BlockSelf", value=link("1")),
        "3": node("Collect", value=link("2", 0)),
        "4": node("Collect", value=link("2", 1)),
    }
    result = engine.run(prompt)
    assert result.status == "success"
    assert "2" in engine.succeeded()
    assert sorted(engine.node_ids(Action.NODE_BLOCKED)) == ["3", "4"]
    assert calls("Collect") == []
    # Every started node reached an end: succeeded, cached, failed or blocked.
    ended = engine.succeeded() + engine.node_ids(Action.NODE_BLOCKED)
    assert set(engine.node_ids(Action.NODE_STARTED)) <= set(ended)


def test_a_blocked_list_item_blocks_only_its_own_call(engine: Engine) -> None:
    prompt = {
        "1": node("Range", count=4),
        "2": node("Alternate", count=4),  # open, closed, open, closed
        "3": node("Gate", value=link("1"), open=link("2"), message="closed"),
        "4": node("Collect", value=link("3")),
    }
    result = engine.run(prompt)
    assert result.status == "success"
    assert calls("Collect") == [0, 2]
    assert result.outputs["4"] == {"value": [0, 2]}
    assert engine.node_ids(Action.NODE_BLOCKED) == ["4", "4"]
    assert "4" in engine.succeeded()
