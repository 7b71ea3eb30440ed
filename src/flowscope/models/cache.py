"""The model cache: loaded models kept under a memory budget, least recently used evicted first,
sizes measured from their tensors, and the model.* events of every load, hit and unload."""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any, TypeVar

import torch

from flowscope.models.devices import empty_device_cache, is_out_of_memory
from flowscope.models.patching import PatchedModule
from flowscope.telemetry.bus import EventBus
from flowscope.telemetry.events import Action, Event, Level, Outcome

T = TypeVar("T")
ContextFields = Callable[[], Mapping[str, Any] | None]


@dataclass(frozen=True)
class CacheEntryInfo:
    """One cached model, as `ModelCache.entries()` reports it."""

    key: tuple[Any, ...]
    name: str
    kind: str
    family: str | None
    size_bytes: int
    device: str
    load_duration_ns: int


@dataclass
class _Entry:
    info: CacheEntryInfo
    value: Any


class ModelCache:
    """Loaded models by key, LRU by measured bytes under `budget_bytes`; thread-safe.

    A value's size is the bytes of the distinct tensor storages it holds: parameters and buffers
    of nn.Modules (also inside a `PatchedModule`) and tensors inside dataclasses, mappings,
    lists, tuples and sets, recursively; other objects count nothing. Its device is the one
    holding most of those bytes. Evicting drops the cache's reference only: the memory returns
    once no node output still holds the model.

    `bus` is a plain attribute: one attached after construction gets the later events.
    `context_fields`, when given, is called on every event for extra fields, e.g. the running
    job's `trace.id` / `span.id`, so a load shows up in the job's trace.
    """

    def __init__(
        self,
        budget_bytes: int,
        *,
        bus: EventBus | None = None,
        context_fields: ContextFields | None = None,
    ) -> None:
        if budget_bytes < 0:
            raise ValueError(f"the model cache budget must be >= 0 bytes, not {budget_bytes}")
        self.budget_bytes = budget_bytes
        self.bus = bus
        self._context_fields = context_fields
        self._lock = threading.Lock()
        self._entries: OrderedDict[tuple[Any, ...], _Entry] = OrderedDict()  # oldest use first
        self._loading: dict[tuple[Any, ...], Future[Any]] = {}
        self._used = 0

    # -- reading ----------------------------------------------------------------------------
    @property
    def used_bytes(self) -> int:
        """Bytes of every cached model together."""
        return self._used

    def entries(self) -> list[CacheEntryInfo]:
        """The cached models, least recently used first."""
        with self._lock:
            return [entry.info for entry in self._entries.values()]

    def __contains__(self, key: object) -> bool:
        return key in self._entries

    def __len__(self) -> int:
        return len(self._entries)

    # -- loading ----------------------------------------------------------------------------
    def get_or_load(
        self,
        key: tuple[Any, ...],
        load: Callable[[], T],
        *,
        name: str,
        kind: str,
        family: str | None = None,
    ) -> T:
        """The cached value for `key`, or `load()`'s, cached.

        Concurrent calls for one key load once: the others wait and get the same value, or the
        same exception (a failed load caches nothing and emits no `model.loaded`). A load that
        runs out of memory is retried once after freeing every cached model.
        """
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None:
                self._entries.move_to_end(key)
                self._emit(Action.MODEL_CACHE_HIT, f"model cache hit: {name}", entry.info)
                value: T = entry.value
                return value
            pending = self._loading.get(key)
            if pending is None:
                future: Future[Any] = Future()
                self._loading[key] = future
        if pending is not None:
            waited: T = pending.result()
            return waited

        started = time.perf_counter_ns()
        try:
            value = self.call_freeing_on_oom(load)
            duration_ns = time.perf_counter_ns() - started
            size, device = measure(value)
        except BaseException as exc:
            with self._lock:
                del self._loading[key]
            future.set_exception(exc)
            raise
        info = CacheEntryInfo(key, name, kind, family, size, device, duration_ns)
        with self._lock:
            del self._loading[key]
            self._entries[key] = _Entry(info, value)
            self._used += size
            self._evict_over_budget()
            self._emit_loaded(info)
        future.set_result(value)
        return value

    def call_freeing_on_oom(self, fn: Callable[[], T]) -> T:
        """`fn()`; if it runs out of memory, free every cached model and the device allocators'
        caches, and call it once more (a second failure propagates)."""
        try:
            return fn()
        except BaseException as exc:
            if not is_out_of_memory(exc):
                raise
        # Out of the except block: the exception's frames (and the tensors they hold) are
        # released before freeing, or the retry would find the memory still taken.
        self.free_all()
        return fn()

    # -- freeing ----------------------------------------------------------------------------
    def clear(self) -> None:
        """Forget every cached model (each emits `model.unloaded`). Loads in flight still
        finish and are cached."""
        with self._lock:
            while self._entries:
                self._evict_oldest()

    def free_all(self) -> None:
        """`clear()`, then collect garbage and hand the CUDA / MPS allocators' cached blocks
        back to the device, so the memory is free for something else (also used on OOM)."""
        self.clear()
        gc.collect()
        empty_device_cache()

    # -- under the lock ---------------------------------------------------------------------
    def _evict_over_budget(self) -> None:
        # The newest entry is last and never evicted: one larger than the budget stays, alone.
        while self._used > self.budget_bytes and len(self._entries) > 1:
            self._evict_oldest()

    def _evict_oldest(self) -> None:
        _, entry = self._entries.popitem(last=False)
        self._used -= entry.info.size_bytes
        self._emit(Action.MODEL_UNLOADED, f"model unloaded: {entry.info.name}", entry.info)

    def _emit_loaded(self, info: CacheEntryInfo) -> None:
        fields = {"event.duration": info.load_duration_ns, "event.outcome": Outcome.SUCCESS.value}
        message = f"model loaded: {info.name}"
        level = Level.INFO
        if info.size_bytes > self.budget_bytes:
            fields["model.over_budget"] = True
            message += (
                f" ({info.size_bytes} bytes, over the cache budget of {self.budget_bytes}: "
                "kept alone)"
            )
            level = Level.WARN
        self._emit(Action.MODEL_LOADED, message, info, fields, level)

    def _emit(
        self,
        action: Action,
        message: str,
        info: CacheEntryInfo,
        extra: dict[str, Any] | None = None,
        level: Level = Level.INFO,
    ) -> None:
        # Emitted under the lock, so the event stream orders loads and unloads as the cache
        # did (subscribers only enqueue or add to a metric; they never call back in here).
        bus = self.bus
        if bus is None or not bus.has_subscribers:
            return
        fields: dict[str, Any] = {}
        if self._context_fields is not None:
            # Telemetry never fails a load, nor leaves the load's waiters hanging.
            with contextlib.suppress(Exception):
                fields.update(self._context_fields() or {})
        fields["model.name"] = info.name
        fields["model.kind"] = info.kind
        if info.family is not None:
            fields["model.family"] = info.family
        fields["model.size_bytes"] = info.size_bytes
        fields["model.device"] = info.device
        if extra:
            fields.update(extra)
        bus.emit(Event(action, message, time.time_ns(), level, fields))


def measure(value: object) -> tuple[int, str]:
    """(bytes, device) of the distinct tensor storages in `value` (see `ModelCache`); the device
    is the one holding the most bytes, "cpu" when there are none."""
    storages: dict[tuple[str, int], int] = {}
    for tensor in _tensors(value):
        if tensor.device.type == "meta":
            continue
        try:
            storage = tensor.untyped_storage()
            where = (str(tensor.device), storage.data_ptr())
            storages[where] = max(storages.get(where, 0), storage.nbytes())
        except (RuntimeError, NotImplementedError):  # sparse and other storage-less layouts
            storages[(str(tensor.device), id(tensor))] = tensor.numel() * tensor.element_size()
    by_device: dict[str, int] = {}
    for (device, _), size in storages.items():
        by_device[device] = by_device.get(device, 0) + size
    if not by_device:
        return 0, "cpu"
    device = max(by_device, key=lambda d: by_device[d])
    return sum(by_device.values()), device


def _tensors(value: object) -> Iterator[torch.Tensor]:
    # Iterative, with a visited set: models hold cycles (parent references) and deep nests.
    stack = [value]
    seen: set[int] = set()
    while stack:
        item = stack.pop()
        if id(item) in seen:
            continue
        seen.add(id(item))
        if isinstance(item, torch.Tensor):
            yield item
        elif isinstance(item, torch.nn.Module):
            yield from item.parameters()
            yield from item.buffers()
        elif isinstance(item, PatchedModule):
            stack.append(item.module)
        elif dataclasses.is_dataclass(item) and not isinstance(item, type):
            stack.extend(getattr(item, field.name) for field in dataclasses.fields(item))
        elif isinstance(item, Mapping):
            stack.extend(item.values())
        elif isinstance(item, (list, tuple, set, frozenset)):
            stack.extend(item)
