"""ModelCache: loads once per key (also under concurrency), measures sizes from tensors, evicts
least recently used entries under its budget, frees everything on out-of-memory, and reports it
all as model.* events that the real metrics sink turns into the documented metrics."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

import pytest
import torch
from torch import Tensor, nn

from flowscope.models.cache import CacheEntryInfo, ModelCache, measure
from flowscope.models.patching import PatchedModule
from flowscope.telemetry import Action, EventBus, InMemorySubscriber, Level
from flowscope.telemetry.pipeline import TelemetryPipeline
from flowscope.telemetry.sinks.metrics import MetricsSink

torch.set_num_threads(1)

KIB = 1024


def _blob(kib: int) -> Tensor:
    """A tensor of exactly `kib` KiB."""
    return torch.zeros(kib * KIB // 4, dtype=torch.float32)


class Loader:
    """Counts its calls; returns a fresh value each time."""

    def __init__(self, kib: int = 1) -> None:
        self.kib = kib
        self.calls = 0

    def __call__(self) -> Tensor:
        self.calls += 1
        return _blob(self.kib)


@pytest.fixture
def bus() -> EventBus:
    return EventBus()


@pytest.fixture
def seen(bus: EventBus) -> InMemorySubscriber:
    return InMemorySubscriber(bus)


# -- measuring ---------------------------------------------------------------------------------
def test_measure_module_parameters_and_buffers() -> None:
    module = nn.Sequential(nn.Linear(10, 20), nn.BatchNorm1d(20))
    expected = sum(t.numel() * t.element_size() for t in module.state_dict().values())
    assert measure(module) == (expected, "cpu")
    assert measure(PatchedModule(module)) == (expected, "cpu")


def test_measure_deduplicates_shared_storages() -> None:
    weight = _blob(8)
    module = nn.Linear(4, 4, bias=False)
    module.weight = nn.Parameter(torch.zeros(256, 4))  # 4 KiB
    tied = nn.Sequential(module, module)  # one module twice
    value = {
        "views": [weight, weight[:10], weight.view(2, -1)],  # one storage, three tensors
        "again": (weight,),
        "model": tied,
        "also": {"same": module},
    }
    assert measure(value) == (12 * KIB, "cpu")


@dataclass
class Bundle:
    unet: nn.Module
    extras: dict[str, Any]
    schedule: Tensor
    label: str


def test_measure_walks_dataclasses_and_containers() -> None:
    bundle = Bundle(
        unet=nn.Linear(16, 16, bias=False),  # 1 KiB
        extras={"encoders": [nn.Linear(32, 8, bias=False)], "pair": (_blob(2), None, "text")},
        schedule=torch.zeros(1000, dtype=torch.float64),  # 8000 bytes
        label="not a tensor",
    )
    cycle: list[Any] = [bundle]
    cycle.append(cycle)
    assert measure(cycle) == (KIB + KIB + 2 * KIB + 8000, "cpu")


def test_measure_nothing_and_meta() -> None:
    assert measure(object()) == (0, "cpu")
    assert measure({"a": 1, "b": [None, "x"]}) == (0, "cpu")
    assert measure(torch.empty(1000, device="meta")) == (0, "cpu")


# -- loading and hits --------------------------------------------------------------------------
def test_a_hit_returns_the_cached_value(bus: EventBus, seen: InMemorySubscriber) -> None:
    cache = ModelCache(10 * KIB, bus=bus)
    load = Loader(2)
    first = cache.get_or_load(("ckpt", "a"), load, name="a.safetensors", kind="checkpoint")
    second = cache.get_or_load(("ckpt", "a"), load, name="a.safetensors", kind="checkpoint")
    assert second is first
    assert load.calls == 1
    assert seen.actions() == ["model.loaded", "model.cache_hit"]
    assert ("ckpt", "a") in cache
    assert len(cache) == 1
    assert cache.used_bytes == 2 * KIB


def test_event_fields(bus: EventBus, seen: InMemorySubscriber) -> None:
    cache = ModelCache(10 * KIB, bus=bus)
    cache.get_or_load(("k",), Loader(3), name="tiny.safetensors", kind="checkpoint", family="sd1")
    cache.get_or_load(("k",), Loader(3), name="tiny.safetensors", kind="checkpoint", family="sd1")
    loaded, hit = seen.events
    common = {
        "model.name": "tiny.safetensors",
        "model.kind": "checkpoint",
        "model.family": "sd1",
        "model.size_bytes": 3 * KIB,
        "model.device": "cpu",
    }
    assert loaded.action is Action.MODEL_LOADED
    assert loaded.level is Level.INFO
    assert loaded.fields is not None
    duration = loaded.fields.pop("event.duration")
    assert isinstance(duration, int)
    assert duration > 0
    assert loaded.fields == {**common, "event.outcome": "success"}
    assert hit.action is Action.MODEL_CACHE_HIT
    assert hit.fields == common
    assert "tiny.safetensors" in loaded.message


def test_family_is_left_out_when_unknown(bus: EventBus, seen: InMemorySubscriber) -> None:
    ModelCache(KIB, bus=bus).get_or_load(("k",), Loader(), name="x", kind="vae")
    assert "model.family" not in (seen.events[0].fields or {})


def test_context_fields_join_the_event(bus: EventBus, seen: InMemorySubscriber) -> None:
    context = {"trace.id": "4bf92f3577b34da6a3ce929d0e0e4736", "span.id": "00f067aa0ba902b7"}
    cache = ModelCache(KIB, bus=bus, context_fields=lambda: context)
    cache.get_or_load(("k",), Loader(), name="x", kind="vae")
    assert seen.where(trace_id=context["trace.id"], span_id=context["span.id"]) == seen.events


def test_entries_in_lru_order() -> None:
    cache = ModelCache(10 * KIB)
    for key, kib in (("a", 1), ("b", 2), ("c", 3)):
        cache.get_or_load((key,), Loader(kib), name=key, kind="lora", family="sdxl")
    cache.get_or_load(("a",), Loader(), name="a", kind="lora")
    entries = cache.entries()
    assert [entry.key for entry in entries] == [("b",), ("c",), ("a",)]
    assert entries[0] == CacheEntryInfo(
        ("b",), "b", "lora", "sdxl", 2 * KIB, "cpu", entries[0].load_duration_ns
    )


def test_negative_budget_is_refused() -> None:
    with pytest.raises(ValueError, match="budget"):
        ModelCache(-1)


# -- eviction ----------------------------------------------------------------------------------
def test_least_recently_used_is_evicted_first(bus: EventBus, seen: InMemorySubscriber) -> None:
    cache = ModelCache(3 * KIB, bus=bus)
    for key in "abc":
        cache.get_or_load((key,), Loader(), name=key, kind="lora")
    cache.get_or_load(("a",), Loader(), name="a", kind="lora")  # b is now the oldest
    seen.clear()
    cache.get_or_load(("d",), Loader(), name="d", kind="lora")
    assert [(e.action.value, e.get("model.name")) for e in seen.events] == [
        ("model.unloaded", "b"),
        ("model.loaded", "d"),
    ]
    assert seen.events[0].get("model.size_bytes") == KIB
    assert [entry.key for entry in cache.entries()] == [("c",), ("a",), ("d",)]
    assert cache.used_bytes == 3 * KIB


def test_evicts_as_many_as_needed(bus: EventBus, seen: InMemorySubscriber) -> None:
    cache = ModelCache(4 * KIB, bus=bus)
    for key in "abcd":
        cache.get_or_load((key,), Loader(), name=key, kind="lora")
    seen.clear()
    cache.get_or_load(("big",), Loader(3), name="big", kind="checkpoint")
    assert [e.get("model.name") for e in seen.of(Action.MODEL_UNLOADED)] == ["a", "b", "c"]
    assert [entry.key for entry in cache.entries()] == [("d",), ("big",)]


def test_an_entry_over_the_budget_is_kept_alone(bus: EventBus, seen: InMemorySubscriber) -> None:
    cache = ModelCache(4 * KIB, bus=bus)
    cache.get_or_load(("a",), Loader(), name="a", kind="lora")
    seen.clear()
    huge = cache.get_or_load(("huge",), Loader(10), name="huge", kind="checkpoint")
    assert cache.get_or_load(("huge",), Loader(10), name="huge", kind="checkpoint") is huge
    assert [entry.key for entry in cache.entries()] == [("huge",)]
    assert cache.used_bytes == 10 * KIB
    unloaded, loaded, _hit = seen.events
    assert unloaded.get("model.name") == "a"
    assert loaded.get("model.over_budget") is True
    assert loaded.level is Level.WARN
    assert "over the cache budget" in loaded.message
    # The next load evicts it like any other entry.
    cache.get_or_load(("b",), Loader(), name="b", kind="lora")
    assert [entry.key for entry in cache.entries()] == [("b",)]


def test_clear_and_free_all(bus: EventBus, seen: InMemorySubscriber) -> None:
    cache = ModelCache(10 * KIB, bus=bus)
    for key in "ab":
        cache.get_or_load((key,), Loader(), name=key, kind="lora")
    cache.clear()
    assert cache.entries() == []
    assert cache.used_bytes == 0
    cache.get_or_load(("c",), Loader(), name="c", kind="lora")
    cache.free_all()
    assert len(cache) == 0
    assert [e.get("model.name") for e in seen.of(Action.MODEL_UNLOADED)] == ["a", "b", "c"]


# -- failures and out-of-memory ----------------------------------------------------------------
def test_a_failed_load_caches_nothing(bus: EventBus, seen: InMemorySubscriber) -> None:
    cache = ModelCache(10 * KIB, bus=bus)

    def broken() -> Tensor:
        raise ValueError("truncated file")

    with pytest.raises(ValueError, match="truncated file"):
        cache.get_or_load(("k",), broken, name="k", kind="checkpoint")
    assert len(cache) == 0
    assert seen.events == []
    load = Loader()
    cache.get_or_load(("k",), load, name="k", kind="checkpoint")  # a later call tries again
    assert load.calls == 1


def test_out_of_memory_frees_the_cache_and_retries(bus: EventBus, seen: InMemorySubscriber) -> None:
    cache = ModelCache(10 * KIB, bus=bus)
    cache.get_or_load(("old",), Loader(), name="old", kind="lora")
    attempts: list[int] = []

    def load() -> Tensor:
        attempts.append(len(cache))
        if len(attempts) == 1:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 MiB")
        return _blob(2)

    value = cache.get_or_load(("new",), load, name="new", kind="checkpoint")
    assert attempts == [1, 0]  # the retry ran with the cache emptied
    assert cache.get_or_load(("new",), Loader(), name="new", kind="checkpoint") is value
    assert seen.actions() == ["model.loaded", "model.unloaded", "model.loaded", "model.cache_hit"]


def test_call_freeing_on_oom() -> None:
    cache = ModelCache(10 * KIB)
    cache.get_or_load(("a",), Loader(), name="a", kind="lora")
    calls: list[int] = []

    def fails_once() -> str:
        calls.append(len(cache))
        if len(calls) == 1:
            raise RuntimeError("MPS backend out of memory (MPS allocated: 8 GB)")
        return "done"

    assert cache.call_freeing_on_oom(fails_once) == "done"
    assert calls == [1, 0]


def test_call_freeing_on_oom_retries_once_and_only_for_oom() -> None:
    cache = ModelCache(10 * KIB)
    cache.get_or_load(("a",), Loader(), name="a", kind="lora")

    def not_oom() -> None:
        raise RuntimeError("shapes cannot be multiplied")

    with pytest.raises(RuntimeError, match="shapes"):
        cache.call_freeing_on_oom(not_oom)
    assert len(cache) == 1  # nothing freed for an ordinary error
    calls: list[int] = []

    def always_oom() -> None:
        calls.append(1)
        raise torch.OutOfMemoryError("CUDA out of memory")

    with pytest.raises(torch.OutOfMemoryError):
        cache.call_freeing_on_oom(always_oom)
    assert len(calls) == 2
    assert len(cache) == 0


# -- concurrency -------------------------------------------------------------------------------
def _run_threads(count: int, target: Any) -> list[threading.Thread]:
    threads = [threading.Thread(target=target, args=(index,)) for index in range(count)]
    for thread in threads:
        thread.start()
    return threads


def test_concurrent_calls_load_once(bus: EventBus, seen: InMemorySubscriber) -> None:
    cache = ModelCache(10 * KIB, bus=bus)
    entered, release = threading.Event(), threading.Event()
    calls: list[int] = []

    def slow_load() -> Tensor:
        calls.append(1)
        entered.set()
        release.wait(10)
        return _blob(1)

    results: dict[int, Tensor] = {}

    def get(index: int) -> None:
        results[index] = cache.get_or_load(("k",), slow_load, name="k", kind="checkpoint")

    first = _run_threads(1, get)
    assert entered.wait(10)
    others = _run_threads(4, lambda index: get(index + 1))
    threading.Event().wait(0.2)  # let the others reach the wait
    release.set()
    for thread in first + others:
        thread.join(10)
    assert len(calls) == 1
    assert len(results) == 5
    assert all(value is results[0] for value in results.values())
    assert seen.actions().count("model.loaded") == 1


def test_waiters_get_the_loaders_exception(bus: EventBus, seen: InMemorySubscriber) -> None:
    cache = ModelCache(10 * KIB, bus=bus)
    entered, release = threading.Event(), threading.Event()

    calls: list[int] = []

    def failing_load() -> Tensor:
        calls.append(1)
        entered.set()
        release.wait(10)
        raise ValueError("not a checkpoint")

    errors: dict[int, BaseException] = {}

    def get(index: int) -> None:
        try:
            cache.get_or_load(("k",), failing_load, name="k", kind="checkpoint")
        except BaseException as exc:
            errors[index] = exc

    first = _run_threads(1, get)
    assert entered.wait(10)
    others = _run_threads(3, lambda index: get(index + 1))
    threading.Event().wait(0.2)
    release.set()
    for thread in first + others:
        thread.join(10)
    assert sorted(errors) == [0, 1, 2, 3]
    assert len(calls) == 1  # the waiters did not load again
    assert all(isinstance(exc, ValueError) for exc in errors.values())
    assert len(cache) == 0
    assert seen.events == []


def test_different_keys_load_in_parallel() -> None:
    cache = ModelCache(10 * KIB)
    both_inside = threading.Barrier(2, timeout=10)

    def load() -> Tensor:
        both_inside.wait()  # would time out if loads were serialised
        return _blob(1)

    threads = _run_threads(
        2, lambda index: cache.get_or_load((index,), load, name=str(index), kind="lora")
    )
    for thread in threads:
        thread.join(10)
    assert len(cache) == 2


# -- the metrics sink, fed through the real pipeline --------------------------------------------
def test_metrics_sink_reads_the_cache_events(bus: EventBus) -> None:
    metrics = MetricsSink()
    pipeline = TelemetryPipeline(bus, [metrics])
    try:
        cache = ModelCache(5 * KIB, bus=bus)
        cache.get_or_load(("a",), Loader(2), name="a", kind="checkpoint", family="sd1")
        cache.get_or_load(("b",), Loader(3), name="b", kind="checkpoint", family="sd1")
        cache.get_or_load(("c",), Loader(1), name="c", kind="lora")  # evicts a
        cache.get_or_load(("b",), Loader(3), name="b", kind="checkpoint", family="sd1")
        get = metrics.registry.get_sample_value
        assert get("flowscope_models_loaded", {"device": "cpu"}) == 2
        assert get("flowscope_model_memory_bytes", {"device": "cpu"}) == 4 * KIB
        assert get("flowscope_model_load_seconds_count", {"family": "sd1"}) == 2
        assert get("flowscope_model_load_seconds_count", {"family": "unknown"}) == 1
        seconds = get("flowscope_model_load_seconds_sum", {"family": "sd1"})
        assert seconds is not None
        assert 0 < seconds < 5
        cache.free_all()
        assert get("flowscope_models_loaded", {"device": "cpu"}) == 0
        assert get("flowscope_model_memory_bytes", {"device": "cpu"}) == 0
        assert metrics.dropped == 0
    finally:
        pipeline.close()


def test_a_value_that_cannot_be_measured_fails_like_a_load(
    bus: EventBus, seen: InMemorySubscriber
) -> None:
    cache = ModelCache(10 * KIB, bus=bus)

    class Unmeasurable(dict[str, Any]):
        def values(self) -> Any:
            raise RuntimeError("no")

    with pytest.raises(RuntimeError, match="no"):
        cache.get_or_load(("k",), Unmeasurable, name="k", kind="vae")
    assert len(cache) == 0
    assert seen.events == []
    cache.get_or_load(("k",), Loader(), name="k", kind="vae")  # the key is not stuck loading
    assert len(cache) == 1


def test_broken_context_fields_do_not_break_loading(
    bus: EventBus, seen: InMemorySubscriber
) -> None:
    def broken() -> dict[str, Any]:
        raise LookupError("no job")

    cache = ModelCache(10 * KIB, bus=bus, context_fields=broken)
    cache.get_or_load(("k",), Loader(), name="k", kind="vae")
    assert seen.actions() == ["model.loaded"]


def test_a_bus_attached_later_gets_the_later_events(
    bus: EventBus, seen: InMemorySubscriber
) -> None:
    cache = ModelCache(10 * KIB)
    cache.get_or_load(("a",), Loader(), name="a", kind="vae")
    cache.bus = bus
    cache.get_or_load(("a",), Loader(), name="a", kind="vae")
    assert seen.actions() == ["model.cache_hit"]
