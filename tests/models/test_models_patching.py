"""PatchedModule: clones share one module, each merges its own patches only while in use, and the
original weights come back bit-exactly (after a normal exit, an exception, or another clone)."""

from __future__ import annotations

import copy
import threading
from dataclasses import dataclass, field

import pytest
import torch
from torch import Tensor, nn

from flowscope.models.patching import PatchConflictError, PatchedModule, WeightPatch

torch.set_num_threads(1)

CONV = "0.weight"
LINEAR = "3.weight"


@dataclass(eq=False)
class AddPatch:
    """A full-rank delta; counts how often it is asked for one."""

    value: Tensor
    calls: list[int] = field(default_factory=list)

    def delta(self, weight: Tensor) -> Tensor:
        self.calls.append(1)
        return self.value.to(dtype=weight.dtype, device=weight.device)


@dataclass(eq=False)
class LowRankPatch:
    """A conv-aware up @ down update, like a LoRA."""

    up: Tensor
    down: Tensor

    def delta(self, weight: Tensor) -> Tensor:
        return (self.up.flatten(1) @ self.down.flatten(1)).reshape(weight.shape).to(weight)


def _model(seed: int = 0) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 4 * 4, 5)
    )


def _random_patch(shape: torch.Size, seed: int) -> AddPatch:
    generator = torch.Generator().manual_seed(seed)
    # Irrational-looking values: (W + d) - d is not W in floating point, so only a restore from
    # a backup (not an un-merge by subtraction) gives the weights back bit-exactly.
    return AddPatch(torch.randn(shape, generator=generator) / 3.0)


def _low_rank(module: nn.Module, seed: int) -> LowRankPatch:
    generator = torch.Generator().manual_seed(seed)
    conv = dict(module.named_parameters())[CONV]
    return LowRankPatch(
        up=torch.randn(conv.shape[0], 2, 1, 1, generator=generator),
        down=torch.randn(2, *conv.shape[1:], generator=generator),
    )


def _snapshot(module: nn.Module) -> dict[str, Tensor]:
    return {name: t.detach().clone() for name, t in module.state_dict().items()}


def _assert_bit_equal(module: nn.Module, snapshot: dict[str, Tensor]) -> None:
    for name, tensor in module.state_dict().items():
        assert torch.equal(tensor, snapshot[name]), name


def _manual(module: nn.Module, patches: dict[str, list[tuple[WeightPatch, float]]]) -> nn.Module:
    merged = copy.deepcopy(module)
    parameters = dict(merged.named_parameters())
    with torch.no_grad():
        for name, updates in patches.items():
            weight = parameters[name]
            total = weight.clone()
            for patch, strength in updates:
                total = total + strength * patch.delta(weight)
            weight.copy_(total)
    return merged


@pytest.fixture
def x() -> Tensor:
    return torch.randn(2, 3, 4, 4, generator=torch.Generator().manual_seed(7))


def test_merge_equals_manual_and_restores_bit_exactly(x: Tensor) -> None:
    model = _model()
    original = _snapshot(model)
    base = PatchedModule(model)
    lora = _low_rank(model, 1)
    full = _random_patch(model[3].weight.shape, 2)
    patched = base.clone()
    assert patched.add_patches({CONV: lora, LINEAR: full}, 0.7) == {CONV, LINEAR}
    expected = _manual(model, {CONV: [(lora, 0.7)], LINEAR: [(full, 0.7)]})(x)

    with patched.applied() as module:
        assert module is model  # the shared module itself, no copy
        assert torch.equal(module(x), expected)

    with base.applied() as module:
        _assert_bit_equal(module, original)
    _assert_bit_equal(model, original)


def test_patches_stack_per_weight(x: Tensor) -> None:
    model = _model()
    first, second = _low_rank(model, 1), _random_patch(model[0].weight.shape, 3)
    patched = PatchedModule(model)
    patched.add_patches({CONV: first}, 1.0)
    patched.add_patches({CONV: second}, -0.25)
    expected = _manual(model, {CONV: [(first, 1.0), (second, -0.25)]})(x)
    with patched.applied() as module:
        assert torch.equal(module(x), expected)


def test_unknown_names_are_ignored_and_reported(x: Tensor) -> None:
    model = _model()
    original = _snapshot(model)
    patched = PatchedModule(model)
    patch = _random_patch(model[3].weight.shape, 4)
    applied = patched.add_patches({LINEAR: patch, "9.weight": patch, "3.bias2": patch}, 1.0)
    assert applied == {LINEAR}
    assert patched.patched_names == {LINEAR}
    with patched.applied() as module:
        assert not torch.equal(module[3].weight, original[LINEAR])
        assert torch.equal(module[0].weight, original[CONV])


def test_patch_keys() -> None:
    model = _model()
    base = PatchedModule(model)
    patch = _random_patch(model[3].weight.shape, 5)
    twin = base.clone()
    assert base.patch_key() == twin.patch_key()
    keys = {base.patch_key()}
    assert twin.add_patches({LINEAR: patch}, 0.5) == {LINEAR}
    assert twin.patch_key() not in keys
    assert base.patch_key() in keys  # the original clone is unchanged
    assert twin.clone().patch_key() == twin.patch_key()

    same = base.clone()
    same.add_patches({LINEAR: patch}, 0.5)
    assert hash(same.patch_key()) == hash(twin.patch_key())
    assert same.patch_key() == twin.patch_key()
    stronger = base.clone()
    stronger.add_patches({LINEAR: patch}, 0.6)
    assert stronger.patch_key() != twin.patch_key()
    other_patch = base.clone()
    other_patch.add_patches({LINEAR: copy.deepcopy(patch)}, 0.5)  # equal values, other object
    assert other_patch.patch_key() != twin.patch_key()
    assert PatchedModule(_model()).patch_key() != base.patch_key()  # another module


def test_clones_used_alternately_give_their_own_results(x: Tensor) -> None:
    model = _model()
    original = _snapshot(model)
    base = PatchedModule(model)
    plain = copy.deepcopy(model)(x)
    one, two = base.clone(), base.clone()
    patch_one, patch_two = _low_rank(model, 1), _random_patch(model[3].weight.shape, 2)
    one.add_patches({CONV: patch_one}, 1.0)
    two.add_patches({LINEAR: patch_two}, 2.0)
    expected_one = _manual(model, {CONV: [(patch_one, 1.0)]})(x)
    expected_two = _manual(model, {LINEAR: [(patch_two, 2.0)]})(x)
    for clone, expected in [(one, expected_one), (two, expected_two), (base, plain)] * 3:
        with clone.applied() as module:
            assert torch.equal(module(x), expected)
    base.unpatch()
    _assert_bit_equal(model, original)


def test_the_same_patches_twice_in_a_row_merge_once(x: Tensor) -> None:
    model = _model()
    original = _snapshot(model)
    patch = _random_patch(model[3].weight.shape, 6)
    patched = PatchedModule(model)
    patched.add_patches({LINEAR: patch}, 1.0)
    results = []
    for _ in range(3):
        with patched.applied() as module:
            results.append(module(x))
    assert len(patch.calls) == 1
    assert torch.equal(results[0], results[1])
    assert torch.equal(results[0], results[2])
    # A clone with the same patches shares the key: still no new merge.
    with patched.clone().applied() as module:
        assert torch.equal(module(x), results[0])
    assert len(patch.calls) == 1
    # Kept merged between uses; an unpatched use (even through a separate wrapper) restores.
    assert not torch.equal(model[3].weight, original[LINEAR])
    with PatchedModule(model).applied():
        _assert_bit_equal(model, original)
    with patched.applied() as module:
        assert torch.equal(module(x), results[0])
    assert len(patch.calls) == 2


def test_unpatch_restores_a_kept_merge() -> None:
    model = _model()
    original = _snapshot(model)
    patched = PatchedModule(model)
    patched.add_patches({CONV: _low_rank(model, 1)}, 1.0)
    with patched.applied():
        pass
    assert not torch.equal(model[0].weight, original[CONV])
    PatchedModule(model).unpatch()
    _assert_bit_equal(model, original)


def test_exception_inside_restores(x: Tensor) -> None:
    model = _model()
    original = _snapshot(model)
    patched = PatchedModule(model)
    patch = _random_patch(model[3].weight.shape, 8)
    patched.add_patches({CONV: _low_rank(model, 1), LINEAR: patch}, 1.0)
    with pytest.raises(KeyError), patched.applied():
        raise KeyError("boom")
    _assert_bit_equal(model, original)
    # And the next use merges again from the true originals.
    expected = _manual(model, {CONV: [(_low_rank(model, 1), 1.0)], LINEAR: [(patch, 1.0)]})(x)
    with patched.applied() as module:
        assert torch.equal(module(x), expected)


def test_a_failing_patch_restores_the_ones_merged_before_it() -> None:
    model = _model()
    original = _snapshot(model)
    good = _low_rank(model, 1)
    bad = AddPatch(torch.ones(2, 2))
    patched = PatchedModule(model)
    patched.add_patches({CONV: good, LINEAR: bad}, 1.0)  # CONV merges first (sorted names)
    shape_error = r"3\.weight has shape \(2, 2\).*\(5, 64\)"
    with pytest.raises(ValueError, match=shape_error), patched.applied():
        pytest.fail("the body must not run")
    _assert_bit_equal(model, original)


def test_reentry_with_the_same_patches_and_conflict_with_others(x: Tensor) -> None:
    model = _model()
    original = _snapshot(model)
    patched = PatchedModule(model)
    patched.add_patches({LINEAR: _random_patch(model[3].weight.shape, 9)}, 1.0)
    other = PatchedModule(model)
    with patched.applied() as outer:
        before = outer(x)
        with patched.clone().applied() as inner:
            assert torch.equal(inner(x), before)
        with pytest.raises(PatchConflictError), other.applied():
            pass
        with pytest.raises(PatchConflictError):
            other.unpatch()
        assert torch.equal(outer(x), before)  # the outer use is undisturbed
    with other.applied():
        _assert_bit_equal(model, original)


def test_half_precision_weights_merge_in_fp32_once() -> None:
    """The deltas are asked for in fp32 and summed there; the weight is rounded once."""
    model = _model().half()
    original = _snapshot(model)
    first = _random_patch(model[3].weight.shape, 10)
    second = _random_patch(model[3].weight.shape, 11)
    patched = PatchedModule(model)
    patched.add_patches({LINEAR: first}, 0.3)
    patched.add_patches({LINEAR: second}, 0.3)
    weight = original[LINEAR].float()
    expected = (weight + 0.3 * first.value + 0.3 * second.value).half()
    with patched.applied() as module:
        assert module[3].weight.dtype is torch.float16
        assert torch.equal(module[3].weight, expected)
    with PatchedModule(model).applied():
        _assert_bit_equal(model, original)


def test_applied_moves_the_module_to_the_device() -> None:
    model = _model()
    with PatchedModule(model).applied(torch.device("meta")) as module:
        assert module is model
        assert {p.device.type for p in module.parameters()} == {"meta"}
    assert model[3].weight.device.type == "meta"  # and it stays there


def test_two_threads_never_mix_patches(x: Tensor) -> None:
    model = _model()
    original = _snapshot(model)
    base = PatchedModule(model)
    clones = [base.clone(), base.clone(), base]
    patches: list[WeightPatch] = [_low_rank(model, 21), _random_patch(model[3].weight.shape, 22)]
    clones[0].add_patches({CONV: patches[0]}, 1.0)
    clones[1].add_patches({LINEAR: patches[1]}, 1.0)
    expected = [
        _manual(model, {CONV: [(patches[0], 1.0)]})(x),
        _manual(model, {LINEAR: [(patches[1], 1.0)]})(x),
        copy.deepcopy(model)(x),
    ]
    start = threading.Barrier(len(clones))
    mismatches: list[int] = []
    errors: list[BaseException] = []

    def use(index: int) -> None:
        try:
            start.wait()
            for _ in range(60):
                with clones[index].applied() as module:
                    first = module(x)
                    threading.Event().wait(0.0005)  # let the others try to get in
                    second = module(x)
                if not (torch.equal(first, expected[index]) and torch.equal(second, first)):
                    mismatches.append(index)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=use, args=(index,)) for index in range(len(clones))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert not errors
    assert not mismatches
    base.unpatch()
    _assert_bit_equal(model, original)


def test_no_patches_no_work(x: Tensor) -> None:
    model = _model()
    before = {name: p.data_ptr() for name, p in model.named_parameters()}
    original = _snapshot(model)
    with PatchedModule(model).applied() as module:
        module(x)
    assert {name: p.data_ptr() for name, p in model.named_parameters()} == before
    _assert_bit_equal(model, original)


def test_inference_mode_inside_or_outside(x: Tensor) -> None:
    """Nodes run under torch.inference_mode(); models may be built under it too (and then run
    under no_grad at least)."""
    for built_in_inference_mode in (False, True):
        with torch.inference_mode(built_in_inference_mode):
            model = _model()
        original = _snapshot(model)
        patched = PatchedModule(model)
        patch = _random_patch(model[3].weight.shape, 30)
        patched.add_patches({LINEAR: patch}, 1.0)
        with torch.no_grad():
            expected = _manual(model, {LINEAR: [(patch, 1.0)]})(x)
            with torch.inference_mode(), patched.applied() as module:
                assert torch.equal(module(x), expected)
            with PatchedModule(model).applied():  # restored outside inference mode
                _assert_bit_equal(model, original)
            with patched.applied() as module:  # merged outside it
                assert torch.equal(module(x), expected)
            with torch.inference_mode(), PatchedModule(model).applied():
                _assert_bit_equal(model, original)
