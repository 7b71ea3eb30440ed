"""Weight patches (LoRA and the like) over one shared module: each clone carries its own patches,
merged into the shared weights only while it is in use, and the originals restored bit-exactly."""

from __future__ import annotations

import threading
import weakref
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any, Protocol

import torch
from torch import Tensor

_Patches = dict[str, tuple[tuple["WeightPatch", float], ...]]


class WeightPatch(Protocol):
    """One update of one weight (e.g. `lora.LoraPatch`)."""

    def delta(self, weight: Tensor) -> Tensor:
        """The change to add to `weight`, with its shape, dtype and device (`PatchedModule`
        passes the weight in fp32, or wider, so the delta is computed in that precision)."""
        ...


class PatchConflictError(RuntimeError):
    """A clone entered `applied()` while the same thread uses the module with other patches."""


class _Identity:
    """Compares and hashes by identity, and keeps its object alive: so an id in a patch key can
    never be reused by a new object while the key exists."""

    __slots__ = ("obj",)

    def __init__(self, obj: object) -> None:
        self.obj = obj

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Identity) and other.obj is self.obj

    def __hash__(self) -> int:
        return id(self.obj)

    def __repr__(self) -> str:
        return f"<{type(self.obj).__name__} at {id(self.obj):#x}>"


class _SharedState:
    """What every PatchedModule over one module shares: the lock that serialises its use, and
    the patches kept merged since the last use (their key and the original weights)."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.depth = 0  # nesting of applied() by the thread holding the lock
        self.active_key: tuple[Any, ...] | None = None  # the patches of that use
        self.merged_key: tuple[Any, ...] | None = None
        self.backups: dict[str, Tensor] = {}  # parameter name -> original weight, on the CPU


_states: weakref.WeakKeyDictionary[torch.nn.Module, _SharedState] = weakref.WeakKeyDictionary()
_states_lock = threading.Lock()


def _state_of(module: torch.nn.Module) -> _SharedState:
    # Keyed by the module, not the PatchedModule: wrappers made separately around the same module
    # must still take one lock and agree on what is merged.
    with _states_lock:
        state = _states.get(module)
        if state is None:
            state = _states[module] = _SharedState()
        return state


class PatchedModule:
    """A module shared by clones, plus this clone's weight patches.

    `applied()` merges `W += strength * patch.delta(W)` for every patch into the shared module's
    weights, in place and under the module's lock for the whole `with` block, so clones used from
    several threads never see each other's patches. After a normal exit the merge is kept: the
    next `applied()` with the same `patch_key()` costs nothing, and any other use (another
    clone's patches, an unpatched clone, `unpatch()`) first restores the original weights,
    which are backed up on the CPU. After an exception the originals are restored at once.
    Code that calls `module` outside `applied()` may therefore see the last clone's patches;
    call `unpatch()` before reading or replacing the weights directly (saving, loading).
    """

    def __init__(self, module: torch.nn.Module) -> None:
        self.module = module
        self._patches: _Patches = {}
        self._state = _state_of(module)

    def clone(self) -> PatchedModule:
        """The same module object with a copy of this clone's patch list."""
        twin = PatchedModule(self.module)
        twin._patches = dict(self._patches)
        return twin

    def add_patches(self, patches: Mapping[str, WeightPatch], strength: float) -> set[str]:
        """Add `patches` (by parameter name) at `strength`; returns the names that matched one of
        the module's parameters. The others are ignored."""
        names = {name for name, _ in self.module.named_parameters()}
        applied = {name for name in patches if name in names}
        # Copy on write: a thread inside applied() keeps the snapshot it merged.
        updated = dict(self._patches)
        for name in sorted(applied):
            updated[name] = (*updated.get(name, ()), (patches[name], float(strength)))
        self._patches = updated
        return applied

    @property
    def patched_names(self) -> frozenset[str]:
        """The parameter names this clone patches."""
        return frozenset(self._patches)

    def patch_key(self) -> tuple[Any, ...]:
        """The identity of (module, patches, strengths): hashable, equal for clones that carry
        the same patch objects at the same strengths in the same order."""
        return _key(self.module, self._patches)

    @contextmanager
    def applied(self, device: torch.device | None = None) -> Iterator[torch.nn.Module]:
        """The shared module with this clone's patches merged, held under the module's lock.

        With `device`, the module is first moved there (and stays there afterwards). Re-entrant
        on one thread with the same patches; entering with other patches while the module is in
        use on this thread raises `PatchConflictError`.
        """
        state = self._state
        patches = self._patches
        key = _key(self.module, patches)
        with state.lock:
            if state.depth:
                if state.active_key != key:
                    raise PatchConflictError(
                        "the module is already in use on this thread with other patches"
                    )
                state.depth += 1
                try:
                    yield self.module
                finally:
                    state.depth -= 1
                return
            if device is not None:
                self.module.to(device)
            state.depth = 1
            state.active_key = key
            try:
                if state.merged_key != key:
                    _restore(self.module, state)
                    if patches:
                        _merge(self.module, patches, state)
                        state.merged_key = key
                yield self.module
            except BaseException:
                _restore(self.module, state)
                raise
            finally:
                state.depth = 0
                state.active_key = None

    def unpatch(self) -> None:
        """Restore the shared module's original weights if some clone's patches are kept merged
        (e.g. before saving or measuring the module); waits for a user to finish."""
        with self._state.lock:
            if self._state.depth:
                raise PatchConflictError("cannot unpatch a module while it is in use")
            _restore(self.module, self._state)


def _key(module: torch.nn.Module, patches: _Patches) -> tuple[Any, ...]:
    entries = tuple(
        (name, tuple((_Identity(patch), strength) for patch, strength in patches[name]))
        for name in sorted(patches)
    )
    return (_Identity(module), entries)


def _merge(module: torch.nn.Module, patches: _Patches, state: _SharedState) -> None:
    parameters = dict(module.named_parameters())
    # Inference mode, not no_grad: weights made under inference mode (a model loaded inside it)
    # can only be updated in place there, and normal weights can be updated there too.
    with torch.inference_mode():
        for name, updates in patches.items():
            weight = parameters[name]
            # Deltas computed and summed in fp32 (or wider) whatever the weight's dtype: an fp16
            # weight takes one rounding at the end, not one per delta and per patch.
            work_dtype = torch.promote_types(weight.dtype, torch.float32)
            original = weight.detach().to(work_dtype)
            merged = original.clone()
            for patch, strength in updates:
                delta = patch.delta(original)
                if delta.shape != weight.shape:
                    raise ValueError(
                        f"a patch for {name} has shape {tuple(delta.shape)}, "
                        f"but the weight has shape {tuple(weight.shape)}"
                    )
                merged += strength * delta.to(device=merged.device, dtype=work_dtype)
            # Backed up only now that every delta was computed: a failing patch leaves this
            # weight untouched, and the restore below undoes the ones merged before it.
            state.backups[name] = weight.detach().to("cpu", copy=True)
            weight.copy_(merged)


def _restore(module: torch.nn.Module, state: _SharedState) -> None:
    if state.backups:
        parameters = dict(module.named_parameters())
        with torch.inference_mode():
            for name, original in state.backups.items():
                parameters[name].copy_(original)
    state.backups = {}
    state.merged_key = None
