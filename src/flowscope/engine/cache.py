"""Output caches keyed by Merkle signature, with ComfyUI's policies and a RAM-pressure one.

Keys are content hashes, so an identical sub-computation hits the cache under another node id
or in another prompt. The policies differ only in what they keep between jobs:

- `classic` keeps what the current job uses (and what expansions under it produced);
- `lru N` keeps up to N entries across jobs, never evicting what the running job touched;
- `none` keeps nothing between jobs (for low-RAM machines);
- `ram` keeps everything until available RAM drops below a headroom, then evicts the largest,
  stalest entries first, measuring their real size.
"""

from __future__ import annotations

import re
import sys
import time
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

from flowscope.graph.signature import Signature


@dataclass(slots=True)
class CachedResult:
    # Per output slot, the list of items (one per list element / mapped call).
    outputs: list[list[Any]]
    # The node's `ui` dict, replayed as `executed` when the node is served from cache.
    ui: dict[str, Any] | None = None
    generation: int = 0
    size_bytes: int | None = field(default=None)


class OutputCache(Protocol):
    name: str

    def begin_job(self, signatures: Iterable[Signature]) -> None:
        """A job starts that uses these signatures (the static nodes it will run)."""

    def get(self, signature: Signature) -> CachedResult | None: ...

    def put(self, signature: Signature, result: CachedResult, owner: Signature | None) -> None:
        """Store a result; `owner` is the expanding node's signature for ephemeral nodes."""

    def clear(self) -> None: ...

    def __len__(self) -> int: ...


class ClassicCache:
    """ComfyUI's default: each job keeps only the entries it uses itself."""

    name = "classic"

    def __init__(self) -> None:
        self._entries: dict[Signature, CachedResult] = {}
        self._owners: dict[Signature, Signature] = {}

    def begin_job(self, signatures: Iterable[Signature]) -> None:
        keep = set(signatures)
        # Results of expansions stay while their expanding node stays (owners can nest).
        changed = True
        while changed:
            changed = False
            for signature, owner in self._owners.items():
                if owner in keep and signature not in keep:
                    keep.add(signature)
                    changed = True
        self._entries = {s: r for s, r in self._entries.items() if s in keep}
        self._owners = {s: o for s, o in self._owners.items() if s in keep}

    def get(self, signature: Signature) -> CachedResult | None:
        return self._entries.get(signature)

    def put(self, signature: Signature, result: CachedResult, owner: Signature | None) -> None:
        self._entries[signature] = result
        if owner is not None:
            self._owners[signature] = owner

    def clear(self) -> None:
        self._entries.clear()
        self._owners.clear()

    def __len__(self) -> int:
        return len(self._entries)


class LRUCache:
    """Up to `max_entries` results across jobs; entries touched by the running job stay."""

    name = "lru"

    def __init__(self, max_entries: int) -> None:
        if max_entries <= 0:
            # ComfyUI silently treats --cache-lru 0 as classic; we refuse instead.
            raise ValueError(
                f"lru cache size must be a positive number of entries, got {max_entries}"
            )
        self.max_entries = max_entries
        self._entries: OrderedDict[Signature, CachedResult] = OrderedDict()
        self._generation = 0

    def begin_job(self, signatures: Iterable[Signature]) -> None:
        self._generation += 1
        # Mark what this job uses before evicting, so its own entries are never the victims.
        for signature in signatures:
            self.get(signature)
        self._evict()

    def get(self, signature: Signature) -> CachedResult | None:
        result = self._entries.get(signature)
        if result is not None:
            result.generation = self._generation
            self._entries.move_to_end(signature)
        return result

    def put(self, signature: Signature, result: CachedResult, owner: Signature | None) -> None:
        result.generation = self._generation
        self._entries[signature] = result
        self._entries.move_to_end(signature)
        self._evict()

    def _evict(self) -> None:
        while len(self._entries) > self.max_entries:
            signature, oldest = next(iter(self._entries.items()))
            if oldest.generation == self._generation:
                break  # everything left is in use by the running job
            del self._entries[signature]

    def clear(self) -> None:
        self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)


class NoCache:
    """Nothing survives a job; the executor also frees results once their consumers are done."""

    name = "none"

    def begin_job(self, signatures: Iterable[Signature]) -> None:
        pass

    def get(self, signature: Signature) -> CachedResult | None:
        return None

    def put(self, signature: Signature, result: CachedResult, owner: Signature | None) -> None:
        pass

    def clear(self) -> None:
        pass

    def __len__(self) -> int:
        return 0


def available_memory_bytes() -> int:
    """MemAvailable from /proc/meminfo (what can be allocated without swapping)."""
    try:
        with open("/proc/meminfo", "rb") as meminfo:
            text = meminfo.read().decode()
    except OSError:
        return sys.maxsize
    match = re.search(r"^MemAvailable:\s+(\d+) kB", text, re.MULTILINE)
    return int(match.group(1)) * 1024 if match else sys.maxsize


def measure_size(value: Any, limit: int = 100_000) -> int:
    """Bytes held by a result: tensor and array storage counted exactly, the rest estimated."""
    total = 0
    seen: set[int] = set()
    stack = [value]
    visited = 0
    while stack and visited < limit:
        item = stack.pop()
        visited += 1
        if id(item) in seen:
            continue
        seen.add(id(item))
        nbytes = _buffer_size(item)
        if nbytes is not None:
            total += nbytes
        elif isinstance(item, dict):
            total += sys.getsizeof(item)
            stack.extend(item.values())
        elif isinstance(item, (list, tuple, set, frozenset)):
            total += sys.getsizeof(item)
            stack.extend(item)
        else:
            total += sys.getsizeof(item)
    return total


def _buffer_size(item: Any) -> int | None:
    storage = getattr(item, "untyped_storage", None)
    if storage is not None and callable(storage):  # torch.Tensor: the storage, shared or not
        try:
            return int(storage().nbytes())
        except (RuntimeError, TypeError):
            return None
    nbytes = getattr(item, "nbytes", None)  # numpy arrays
    if isinstance(nbytes, int) and not isinstance(item, (bytes, bytearray)):
        return nbytes
    if isinstance(item, (bytes, bytearray, memoryview)):
        return len(item)
    return None


class RamPressureCache:
    """Keeps results across jobs until available RAM falls below `headroom_bytes`.

    Then it evicts entries not used by the running job, highest score first, where the score is
    the measured size times (1 + how many jobs ago the entry was last used).
    """

    name = "ram"
    check_interval_s = 0.1

    def __init__(self, headroom_bytes: int, available: Any = available_memory_bytes) -> None:
        self.headroom_bytes = headroom_bytes
        self._available = available
        self._entries: dict[Signature, CachedResult] = {}
        self._generation = 0
        self._last_check = 0.0
        self.evictions = 0

    def begin_job(self, signatures: Iterable[Signature]) -> None:
        self._generation += 1
        # Mark what this job uses before evicting, so its own entries are never the victims.
        for signature in signatures:
            self.get(signature)
        self._relieve_pressure(force=True)

    def get(self, signature: Signature) -> CachedResult | None:
        result = self._entries.get(signature)
        if result is not None:
            result.generation = self._generation
        return result

    def put(self, signature: Signature, result: CachedResult, owner: Signature | None) -> None:
        result.generation = self._generation
        self._entries[signature] = result
        self._relieve_pressure(force=False)

    def _relieve_pressure(self, force: bool) -> None:
        now = time.monotonic()
        if not force and now - self._last_check < self.check_interval_s:
            return
        self._last_check = now
        if self._available() >= self.headroom_bytes:
            return
        candidates = []
        for signature, entry in self._entries.items():
            if entry.generation == self._generation:
                continue
            if entry.size_bytes is None:
                entry.size_bytes = measure_size(entry.outputs)
            age = self._generation - entry.generation
            candidates.append((entry.size_bytes * (1 + age), signature))
        candidates.sort(reverse=True)
        for _, signature in candidates:
            del self._entries[signature]
            self.evictions += 1
            if self._available() >= self.headroom_bytes:
                break

    def clear(self) -> None:
        self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)


def cache_from_spec(spec: str) -> OutputCache:
    """A policy from its CLI spelling: `classic`, `none`, `lru N` / `lru:N`, `ram [GB]`."""
    words = spec.replace(":", " ").split()
    if not words:
        raise ValueError("empty cache policy")
    kind, args = words[0].lower(), words[1:]
    if kind == "classic" and not args:
        return ClassicCache()
    if kind == "none" and not args:
        return NoCache()
    if kind == "lru" and len(args) == 1 and args[0].isascii() and args[0].isdigit():
        return LRUCache(int(args[0]))
    if kind == "ram" and len(args) <= 1:
        headroom_gb = float(args[0]) if args else 4.0
        return RamPressureCache(int(headroom_gb * 1024**3))
    raise ValueError(
        f"unknown cache policy {spec!r}; use 'classic', 'none', 'lru N' or 'ram [headroom GB]'"
    )
