"""Caching (spec §3.4): content-addressed keys, what re-runs after a change, the four policies,
IS_CHANGED, per-id nodes, stable keys across processes, and node instances across jobs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest
import torch
from engine_harness import Engine, calls, link, node
from hypothesis import given, settings
from hypothesis import strategies as st

from flowscope.engine import (
    ClassicCache,
    LRUCache,
    NoCache,
    RamPressureCache,
    cache_from_spec,
)
from flowscope.engine.cache import CachedResult
from flowscope.graph.signature import Signature
from flowscope.telemetry import Action


def _diamond(top: int = 1, left: int = 10, right: int = 20) -> dict[str, Any]:
    return {
        "1": node("StubInt", value=top),
        "2": node("AddInt", a=link("1"), b=left),
        "3": node("AddInt", a=link("1"), b=right),
        "4": node("AddInt", a=link("2"), b=link("3")),
        "5": node("Collect", value=link("4")),
        "6": node("Collect", value=link("3")),
    }


def test_a_re_run_is_fully_cached(engine: Engine) -> None:
    first = engine.run(_diamond())
    executed = len(calls("AddInt"))
    second = engine.run(_diamond())
    assert len(calls("AddInt")) == executed
    assert engine.succeeded() == []
    assert sorted(engine.cached()) == ["1", "2", "3", "4", "5", "6"]
    assert sorted(second.cached_nodes) == ["1", "2", "3", "4", "5", "6"]
    assert all(event.get("node.cached") is True for event in engine.events.of(Action.NODE_CACHED))
    # Cached outputs still report their UI, as ComfyUI's `executed` does.
    assert second.outputs == first.outputs == {"5": {"value": [32]}, "6": {"value": [21]}}
    assert set(second.meta) == {"5", "6"}


def test_changing_one_input_re_runs_that_node_and_its_descendants(engine: Engine) -> None:
    engine.run(_diamond())
    result = engine.run(_diamond(left=11))
    assert sorted(engine.succeeded()) == ["2", "4", "5"]
    assert sorted(engine.cached()) == ["1", "3", "6"]
    assert result.outputs["5"] == {"value": [33]}


def test_changing_the_top_re_runs_everything_below_it(engine: Engine) -> None:
    engine.run(_diamond())
    engine.run(_diamond(top=2))
    assert sorted(engine.succeeded()) == ["1", "2", "3", "4", "5", "6"]


def test_an_identical_computation_under_another_id_hits(engine: Engine) -> None:
    prompt = {
        "1": node("StubInt", value=3),
        "2": node("AddInt", a=link("1"), b=4),
        "3": node("Collect", value=link("2")),
        "11": node("StubInt", value=3),
        "12": node("AddInt", a=link("11"), b=4),
        "13": node("Collect", value=link("12")),
    }
    result = engine.run(prompt)
    assert calls("StubInt") == [3]
    assert calls("AddInt") == [(3, 4)]
    assert result.outputs == {"3": {"value": [7]}, "13": {"value": [7]}}
    # ... and in another prompt, under other ids again.
    renamed = {
        "a": node("StubInt", value=3),
        "b": node("AddInt", a=link("a"), b=4),
        "c": node("AddInt", a=link("b"), b=0),
        "d": node("Collect", value=link("c")),
    }
    engine.run(renamed)
    assert sorted(engine.cached()) == ["a", "b"]
    assert calls("AddInt") == [(3, 4), (7, 0)]


def _chain(first: int) -> dict[str, Any]:
    return {
        "1": node("StubInt", value=first),
        "2": node("AddInt", a=link("1"), b=1),
        "3": node("AddInt", a=link("2"), b=1),
        "4": node("Collect", value=link("3")),
    }


def test_classic_keeps_only_what_the_latest_job_used(engine: Engine) -> None:
    for first in (1, 2, 1, 2):
        engine.run(_chain(first))
        assert sorted(engine.succeeded()) == ["1", "2", "3", "4"]
    assert len(engine.executor.cache) == 4


def test_lru_keeps_alternating_workflows() -> None:
    engine = Engine(cache=LRUCache(10))
    engine.run(_chain(1))
    engine.run(_chain(2))
    for first in (1, 2, 1):
        result = engine.run(_chain(first))
        assert engine.succeeded() == []
        assert result.outputs["4"] == {"value": [first + 2]}


def test_lru_evicts_the_least_recently_used_beyond_its_size() -> None:
    engine = Engine(cache=LRUCache(5))
    engine.run(_chain(1))
    engine.run(_chain(2))  # evicts chain 1's first three entries, keeps its output's
    assert len(engine.executor.cache) == 5
    # The output is cached, so its evicted inputs are not needed and do not run.
    result = engine.run(_chain(1))
    assert engine.cached() == ["4"]
    assert engine.succeeded() == []
    assert result.outputs["4"] == {"value": [3]}
    # A prompt that needs those inputs runs them again.
    prompt = _chain(1)
    prompt["9"] = node("Collect", value=link("2"))
    del prompt["3"], prompt["4"]
    engine.run(prompt)
    assert sorted(engine.succeeded()) == ["1", "2", "9"]


def test_lru_never_evicts_entries_of_the_running_job() -> None:
    engine = Engine(cache=LRUCache(2))
    engine.run(_chain(1))
    assert len(engine.executor.cache) == 4  # all in use by that job: none evicted
    engine.run(_chain(1))
    assert engine.succeeded() == []
    assert sorted(engine.cached()) == ["1", "2", "3", "4"]
    engine.run(_chain(2))
    assert len(engine.executor.cache) == 4  # chain 1's entries made room for chain 2's


def test_none_re_executes_everything_every_run() -> None:
    engine = Engine(cache=NoCache())
    for _ in range(2):
        result = engine.run(_diamond())
        assert sorted(engine.succeeded()) == ["1", "2", "3", "4", "5", "6"]
        assert result.outputs["5"] == {"value": [32]}
    assert len(engine.executor.cache) == 0


def _tracked() -> dict[str, Any]:
    return {
        "1": node("Track", value=1),
        "2": node("Describe", value=link("1")),
        "3": node("CountAlive", value=link("2")),
    }


def test_none_frees_results_once_their_consumers_are_done() -> None:
    # Node 3 runs after 2 consumed 1's result: with `none` that result is gone by then.
    assert Engine(cache=NoCache()).run(_tracked()).outputs["3"] == {"alive": [0]}
    kept = Engine(cache=ClassicCache())
    assert kept.run(_tracked()).outputs["3"] == {"alive": [1]}


def test_none_still_runs_expansions_lists_and_lazy_inputs() -> None:
    engine = Engine(cache=NoCache())
    prompt = {
        "1": node("Range", count=3),
        "2": node("Repeat", value=link("1"), times=2),
        "3": node("LazyAsk", ask="a", a=link("2")),
        "4": node("Collect", value=link("3")),
        "5": node("Sum", values=link("2")),
        "6": node("Collect", value=link("5")),
    }
    for _ in range(2):
        result = engine.run(prompt)
        assert result.outputs == {"4": {"value": [2, 3, 4]}, "6": {"value": [9]}}


def _entry(megabytes: int) -> CachedResult:
    return CachedResult([[torch.zeros(megabytes * 1024 * 1024, dtype=torch.uint8)]])


def test_ram_pressure_evicts_the_largest_and_stalest_first() -> None:
    budget = {"entries": 10}
    cache: RamPressureCache

    def available() -> int:
        return 10**12 if len(cache) <= budget["entries"] else 0

    cache = RamPressureCache(headroom_bytes=10**9, available=available)
    cache.check_interval_s = 0
    cache.begin_job([])
    cache.put(b"small-old", _entry(1), None)
    cache.put(b"big-old", _entry(4), None)
    cache.begin_job([])
    cache.put(b"medium-new", _entry(2), None)
    cache.put(b"tiny-new", _entry(1), None)
    # Scores: size x (1 + jobs since last use): big-old 8, small-old 2 ... medium-new 2, tiny 1.
    budget["entries"] = 3
    cache.begin_job([])
    assert cache.get(b"big-old") is None
    assert len(cache) == 3
    budget["entries"] = 1
    cache.begin_job([])  # now: medium-new 2 x 3 = 6, small-old 1 x 4 = 4, tiny-new 1 x 3 = 3
    assert [s for s in (b"small-old", b"medium-new", b"tiny-new") if cache.get(s)] == [b"tiny-new"]
    assert cache.evictions == 3


def test_ram_pressure_never_evicts_entries_of_the_running_job() -> None:
    cache = RamPressureCache(headroom_bytes=1, available=lambda: 0)  # always under pressure
    cache.check_interval_s = 0
    cache.begin_job([])
    cache.put(b"a", _entry(1), None)
    cache.put(b"b", _entry(1), None)
    assert len(cache) == 2  # both belong to the running job
    cache.begin_job([b"a"])  # the next job uses "a" again
    assert cache.get(b"a") is not None
    assert cache.get(b"b") is None


def test_ram_pressure_cache_in_the_engine() -> None:
    pressure = {"on": False}
    cache = RamPressureCache(10**6, available=lambda: 0 if pressure["on"] else 10**12)
    engine = Engine(cache=cache)
    engine.run(_chain(1))
    engine.run(_chain(2))
    engine.run(_chain(1))
    assert engine.succeeded() == []  # no pressure: everything is kept across jobs
    assert len(cache) == 8
    pressure["on"] = True
    engine.run(_chain(1))  # under pressure, chain 2's stale entries go; chain 1's are in use
    assert engine.succeeded() == []
    assert len(cache) == 4
    pressure["on"] = False
    engine.run(_chain(2))
    assert sorted(engine.succeeded()) == ["1", "2", "3", "4"]


def test_is_changed_nan_is_never_cached(engine: Engine) -> None:
    prompt = {
        "1": node("StubInt", value=1),
        "2": node("Always", value=link("1")),
        "3": node("AddInt", a=link("2"), b=1),
        "4": node("Collect", value=link("3")),
    }
    engine.run(prompt)
    engine.run(prompt)
    assert calls("Always") == [1, 1]
    assert sorted(engine.succeeded()) == ["2", "3", "4"]
    assert engine.cached() == ["1"]


def test_is_changed_raising_is_never_cached(engine: Engine) -> None:
    prompt = {"1": node("ChangedRaises", value=1), "2": node("Collect", value=link("1"))}
    engine.run(prompt)
    result = engine.run(prompt)
    assert result.status == "success"
    assert calls("ChangedRaises") == [1, 1]


def test_is_changed_results_are_part_of_the_key(engine: Engine) -> None:
    prompt = {"1": node("Fingerprinted", name="a"), "2": node("Collect", value=link("1"))}
    import testing_nodes

    testing_nodes.FINGERPRINTS["a"] = "hash-1"
    engine.run(prompt)
    engine.run(prompt)
    assert calls("Fingerprinted") == ["a"]
    testing_nodes.FINGERPRINTS["a"] = "hash-2"
    result = engine.run(prompt)
    assert calls("Fingerprinted") == ["a", "a"]
    assert result.outputs["2"] == {"value": ["a@hash-2"]}


def test_nodes_keyed_by_id_do_not_share_results(engine: Engine) -> None:
    prompt = {
        "1": node("UniqueEcho", value=5),
        "2": node("UniqueEcho", value=5),
        "3": node("Counter", value=5),
        "4": node("Counter", value=5),
        "5": node("AddInt", a=link("1"), b=link("2")),
        "6": node("AddInt", a=link("3"), b=link("4")),
        "7": node("Collect", value=link("5")),
        "8": node("Collect", value=link("6")),
    }
    result = engine.run(prompt)
    assert sorted(calls("UniqueEcho")) == ["1", "2"]
    assert result.outputs["8"] == {"value": [2]}  # two Counter instances, one call each
    engine.run(prompt)
    assert engine.succeeded() == []  # but each is cached under its own id


class _RecordingCache(ClassicCache):
    def __init__(self) -> None:
        super().__init__()
        self.keys: list[str] = []

    def begin_job(self, signatures: Iterable[Signature]) -> None:
        signatures = list(signatures)
        self.keys = [s.hex() for s in signatures]
        super().begin_job(signatures)


_SIGNATURE_SCRIPT = """
import json, sys
sys.path[:0] = {paths!r}
from engine_harness import Engine
import testing_nodes
from test_cache import _RecordingCache, _keyed_prompt
testing_nodes.FINGERPRINTS["a"] = "hash-1"
cache = _RecordingCache()
Engine(cache=cache).run(_keyed_prompt())
print(json.dumps(cache.keys))
"""


def _keyed_prompt() -> dict[str, Any]:
    return {
        "1": node("Fingerprinted", name="a"),
        "2": node("StubInt", value=7),
        "3": node("Counter", value=link("2")),
        "4": node(
            "Prompted",
            text="héllo",
            seed=3,
            api_key="k",
            auth_token="t",
            user_password="p",
            secret_sauce="s",
        ),
        "5": node("Collect", value={"__value__": [1, 2.5, None, {"b": 1, "a": True}]}),
        "6": node("Collect", value=link("1")),
        "7": node("Collect", value=link("3")),
        "8": node("Collect", value=link("4", 1)),
    }


def test_signatures_are_stable_across_processes() -> None:
    import testing_nodes

    testing_nodes.FINGERPRINTS["a"] = "hash-1"
    here = _RecordingCache()
    Engine(cache=here).run(_keyed_prompt())
    assert len(set(here.keys)) == 8
    here_dir = Path(__file__).parent
    paths = [str(here_dir), str(here_dir.parent / "support")]
    script = textwrap.dedent(_SIGNATURE_SCRIPT).format(paths=paths)
    # Another interpreter, with another hash seed: only canonical encodings go into the keys.
    done = subprocess.run(
        [sys.executable, "-c", script],
        env={**os.environ, "PYTHONHASHSEED": "12345"},
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert json.loads(done.stdout.strip().splitlines()[-1]) == here.keys


def test_node_instances_live_per_id_and_class_across_jobs(engine: Engine) -> None:
    def counter(value: int, node_id: str = "2") -> dict[str, Any]:
        return {
            "1": node("StubInt", value=value),
            node_id: node("Counter", value=link("1")),
            "9": node("Collect", value=link(node_id)),
        }

    assert engine.run(counter(1)).outputs["9"] == {"value": [1]}
    assert engine.run(counter(2)).outputs["9"] == {"value": [2]}  # same instance, called again
    assert ("2", "Counter") in engine.executor.objects
    # Node id 2 leaves the prompt: its instance is dropped.
    assert engine.run(counter(3, node_id="5")).outputs["9"] == {"value": [1]}
    assert ("2", "Counter") not in engine.executor.objects
    assert engine.run(counter(4)).outputs["9"] == {"value": [1]}  # a fresh instance
    # The same id with another class is another instance.
    other = {"1": node("StubInt", value=5), "2": node("AddInt", a=link("1"), b=1)}
    other["9"] = node("Collect", value=link("2"))
    engine.run(other)
    assert ("2", "Counter") not in engine.executor.objects
    assert ("2", "AddInt") in engine.executor.objects


def test_reset_drops_results_and_instances(engine: Engine) -> None:
    engine.run(_chain(1))
    engine.executor.reset()
    assert len(engine.executor.cache) == 0
    assert engine.executor.objects == {}
    engine.run(_chain(1))
    assert sorted(engine.succeeded()) == ["1", "2", "3", "4"]


@pytest.mark.parametrize(
    ("spec", "kind"),
    [
        ("classic", ClassicCache),
        ("none", NoCache),
        ("lru 5", LRUCache),
        ("lru:5", LRUCache),
        ("ram", RamPressureCache),
        ("ram 2.5", RamPressureCache),
    ],
)
def test_cache_policies_by_name(spec: str, kind: type) -> None:
    assert isinstance(cache_from_spec(spec), kind)


@pytest.mark.parametrize("spec", ["", "lru", "lru 0", "lru -1", "lru x", "lru ²", "bogus"])
def test_bad_cache_policies_are_refused(spec: str) -> None:
    with pytest.raises(ValueError, match=r"cache|lru"):
        cache_from_spec(spec)


# -- a property: re-runs are exactly the descendants of a change -------------------------


@st.composite
def dags_with_a_change(draw: st.DrawFn) -> tuple[dict[str, Any], dict[str, Any], str]:
    """A DAG whose nodes are all distinct computations, and the same DAG with one constant
    changed to a value used nowhere else."""
    count = draw(st.integers(2, 12))
    prompt: dict[str, Any] = {}
    for i in range(count):
        if i == 0 or draw(st.integers(0, 3)) == 0:
            prompt[str(i)] = node("StubInt", value=1000 * i)
        else:
            a = link(str(draw(st.integers(0, i - 1))))
            b = link(str(draw(st.integers(0, i - 1)))) if draw(st.booleans()) else 1000 * i
            # `salt` (undeclared, so only the cache key sees it) keeps two AddInt nodes with the
            # same two links distinct.
            prompt[str(i)] = node("AddInt", a=a, b=b, salt=i)
    sinks = draw(st.sets(st.sampled_from(sorted(prompt)), min_size=1, max_size=3))
    for node_id in sorted(sinks):
        prompt[f"out{node_id}"] = node("Collect", value=link(node_id))
    changed = draw(st.sampled_from([k for k, v in prompt.items() if not k.startswith("out")]))
    spec = prompt[changed]
    constant = "value" if spec["class_type"] == "StubInt" else "b"
    if constant == "b" and isinstance(spec["inputs"]["b"], list):
        constant = "a" if not isinstance(spec["inputs"]["a"], list) else ""
    after = json.loads(json.dumps(prompt))
    if constant:
        after[changed]["inputs"][constant] = -7_777_777
    else:  # both inputs linked: change the class's constant-free node into a StubInt
        after[changed] = node("StubInt", value=-7_777_777)
    return prompt, after, changed


def _needed(prompt: dict[str, Any]) -> set[str]:
    needed: set[str] = set()
    stack = [k for k in prompt if k.startswith("out")]
    while stack:
        current = stack.pop()
        if current not in needed:
            needed.add(current)
            stack.extend(v[0] for v in prompt[current]["inputs"].values() if isinstance(v, list))
    return needed


@settings(max_examples=100)
@given(case=dags_with_a_change())
def test_a_change_re_runs_exactly_its_descendants(
    case: tuple[dict[str, Any], dict[str, Any], str],
) -> None:
    before, after, changed = case
    engine = Engine()
    engine.run(before)
    engine.run(after)
    needed = _needed(after)
    affected = {changed}
    grew = True
    while grew:
        grew = False
        for node_id, spec in after.items():
            if node_id in affected:
                continue
            if any(isinstance(v, list) and v[0] in affected for v in spec["inputs"].values()):
                affected.add(node_id)
                grew = True
    assert sorted(engine.succeeded()) == sorted(affected & needed)
    assert sorted(engine.cached()) == sorted(needed - affected)
