"""Progress (spec §3.10, telemetry §2): node.progress is throttled per node, the final update
always goes out, and previews travel in the event detail."""

from __future__ import annotations

from engine_harness import Engine, link, node

from flowscope.nodes import ProgressBar
from flowscope.telemetry import Action, Level


def _steps(steps: int) -> dict[str, dict[str, object]]:
    return {"1": node("Steps", steps=steps, delay=0), "2": node("Collect", value=link("1"))}


def test_a_thousand_quick_updates_yield_few_events_but_always_the_last(engine: Engine) -> None:
    result = engine.run(_steps(1000))
    assert result.status == "success"
    progress = engine.events.of(Action.NODE_PROGRESS)
    assert 1 <= len(progress) <= 10
    last = progress[-1]
    assert last.get("node.progress.value") == 1000
    assert last.get("node.progress.max") == 1000
    assert all(event.get("node.id") == "1" for event in progress)
    assert all(event.level is Level.DEBUG for event in progress)
    # Progress comes between the node's start and its end.
    actions = [(e.action, e.get("node.id")) for e in engine.events.events]
    assert actions.index((Action.NODE_STARTED, "1")) < actions.index((Action.NODE_PROGRESS, "1"))
    last_progress = max(i for i, a in enumerate(actions) if a == (Action.NODE_PROGRESS, "1"))
    assert last_progress < actions.index((Action.NODE_SUCCEEDED, "1"))


def test_without_throttling_every_update_is_an_event() -> None:
    engine = Engine(progress_interval_s=0)
    engine.run(_steps(1000))
    values = [e.get("node.progress.value") for e in engine.events.of(Action.NODE_PROGRESS)]
    assert values == list(range(1, 1001))


def test_previews_pass_through_in_the_event_detail() -> None:
    engine = Engine(progress_interval_s=0)
    engine.run({"1": node("PreviewSteps", steps=3), "2": node("Collect", value=link("1"))})
    progress = engine.events.of(Action.NODE_PROGRESS)
    assert [e.detail["preview"] for e in progress if e.detail] == [
        ("JPEG", "preview 1", 512),
        ("JPEG", "preview 2", 512),
        ("JPEG", "preview 3", 512),
    ]
    assert progress[0].detail is not None
    assert progress[0].detail["display_node"] == "1"


def test_the_final_preview_survives_throttling(engine: Engine) -> None:
    engine.run({"1": node("PreviewSteps", steps=50), "2": node("Collect", value=link("1"))})
    progress = engine.events.of(Action.NODE_PROGRESS)
    assert len(progress) < 50
    assert progress[-1].detail is not None
    assert progress[-1].detail["preview"] == ("JPEG", "preview 50", 512)


def test_progress_without_subscribers_or_outside_a_job_is_harmless() -> None:
    bar = ProgressBar(10)
    bar.update(3)
    bar.update_absolute(20)
    assert bar.current == 10  # clamped to the total
    engine = Engine()
    engine.events.close()
    assert engine.run(_steps(100)).status == "success"
    assert engine.events.events == []
