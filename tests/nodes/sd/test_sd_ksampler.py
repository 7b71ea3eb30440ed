"""sample_latent: KSampler / KSamplerAdvanced semantics (denoise, start / end steps, leftover noise,
add_noise, inpainting noise masks, batch_index) around an analytic denoiser."""

from __future__ import annotations

import math

import pytest
import torch
from torch import Tensor

from flowscope.nodes.sd.sampling import (
    SAMPLER_NAMES,
    DiscreteSchedule,
    compute_sigmas,
    plan_sigmas,
    prepare_noise,
    sample_latent,
)
from flowscope.nodes.sd.sampling.noise import cpu_generator

torch.set_num_threads(1)

SCHEDULE = DiscreteSchedule.scaled_linear()
LATENT = torch.randn(1, 4, 8, 8, generator=cpu_generator(100))


class Recording:
    """The exact denoiser of N(0.2, 0.5²) data, plus (if `coupled`) a little of the image mean,
    as a real UNet mixes pixels; records every input."""

    def __init__(self, coupled: bool = False) -> None:
        self.coupled = coupled
        self.inputs: list[tuple[Tensor, Tensor]] = []

    def __call__(self, x: Tensor, sigma: Tensor) -> Tensor:
        self.inputs.append((x.clone(), sigma.clone()))
        s = sigma.reshape(-1, 1, 1, 1)
        denoised = 0.2 + (x - 0.2) * 0.25 / (0.25 + s**2)
        if self.coupled:
            denoised = denoised + 0.1 * x.mean(dim=(2, 3), keepdim=True) / (1 + s)
        return denoised


def _sample(denoiser: Recording | None = None, /, **options: object) -> Tensor:
    arguments: dict[str, object] = {
        "schedule": SCHEDULE,
        "make_denoiser": (lambda: denoiser) if denoiser is not None else Recording,
        "latent": LATENT,
        "seed": 5,
        "steps": 10,
        "sampler": "euler",
        "scheduler": "karras",
    }
    arguments.update(options)
    return sample_latent(**arguments)  # type: ignore[arg-type]


def test_full_denoise_uses_the_whole_schedule() -> None:
    sigmas = plan_sigmas(schedule=SCHEDULE, steps=10, sampler="euler", scheduler="normal")
    assert torch.equal(sigmas, compute_sigmas("normal", SCHEDULE, 10))
    almost = plan_sigmas(
        schedule=SCHEDULE, steps=10, sampler="euler", scheduler="normal", denoise=0.99995
    )
    assert torch.equal(almost, sigmas)


def test_partial_denoise_takes_the_tail_of_a_longer_schedule() -> None:
    sigmas = plan_sigmas(
        schedule=SCHEDULE, steps=10, sampler="euler", scheduler="karras", denoise=0.4
    )
    assert torch.equal(sigmas, compute_sigmas("karras", SCHEDULE, 25)[-11:])


def test_some_samplers_skip_the_penultimate_sigma() -> None:
    for sampler in ("dpm_2", "dpm_2_ancestral", "uni_pc", "uni_pc_bh2"):
        sigmas = plan_sigmas(schedule=SCHEDULE, steps=6, sampler=sampler, scheduler="karras")
        longer = compute_sigmas("karras", SCHEDULE, 7)
        assert torch.equal(sigmas, torch.cat([longer[:-2], longer[-1:]]))
        assert len(sigmas) == 7


def test_end_step_cuts_the_schedule_and_force_full_denoise_ends_at_zero() -> None:
    full = compute_sigmas("karras", SCHEDULE, 10)
    common = {"schedule": SCHEDULE, "steps": 10, "sampler": "euler", "scheduler": "karras"}
    leftover = plan_sigmas(**common, end_step=4)  # type: ignore[arg-type]
    assert torch.equal(leftover, full[:5])
    finished = plan_sigmas(**common, end_step=4, force_full_denoise=True)  # type: ignore[arg-type]
    assert torch.equal(finished[:-1], full[:4])
    assert float(finished[-1]) == 0.0
    assert float(full[4]) != 0.0  # the plan's copy was changed, not the schedule
    beyond = plan_sigmas(**common, end_step=10000, force_full_denoise=True)  # type: ignore[arg-type]
    assert torch.equal(beyond, full)


def test_start_step_skips_the_first_steps() -> None:
    full = compute_sigmas("karras", SCHEDULE, 10)
    common = {"schedule": SCHEDULE, "steps": 10, "sampler": "euler", "scheduler": "karras"}
    assert torch.equal(plan_sigmas(**common, start_step=3), full[3:])  # type: ignore[arg-type]
    assert len(plan_sigmas(**common, start_step=10)) == 0  # type: ignore[arg-type]
    assert len(plan_sigmas(**common, start_step=4, end_step=4)) == 0  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "options",
    [{"denoise": 0.0}, {"start_step": 10}, {"start_step": 7, "end_step": 5}],
)
def test_nothing_to_sample_returns_the_latent_without_building_the_denoiser(
    options: dict[str, object],
) -> None:
    def make_denoiser() -> Recording:
        raise AssertionError("the denoiser was built")

    out = _sample(make_denoiser=make_denoiser, **options)
    assert torch.equal(out, LATENT)
    assert out is not LATENT


def test_sampling_starts_from_the_seeds_noise_at_the_full_spread() -> None:
    denoiser = Recording()
    _sample(denoiser)
    first_x, first_sigma = denoiser.inputs[0]
    sigma_max = float(SCHEDULE.sigma_max)
    assert float(first_sigma[0]) == pytest.approx(sigma_max)
    noise = prepare_noise(LATENT, 5)
    torch.testing.assert_close(first_x, noise * math.sqrt(1 + sigma_max**2) + LATENT)


def test_partial_denoise_noises_the_latent_to_the_first_sigma() -> None:
    denoiser = Recording()
    _sample(denoiser, denoise=0.5)
    first_x, first_sigma = denoiser.inputs[0]
    sigma = float(first_sigma[0])
    assert sigma < float(SCHEDULE.sigma_max) / 2
    torch.testing.assert_close(first_x, prepare_noise(LATENT, 5) * sigma + LATENT)


def test_add_noise_disabled_starts_from_the_latent_itself() -> None:
    denoiser = Recording()
    _sample(denoiser, add_noise=False, start_step=3)
    assert torch.equal(denoiser.inputs[0][0], LATENT)


@pytest.mark.parametrize("sampler", ["euler", "heun"])
def test_two_advanced_passes_with_leftover_noise_equal_one_full_run(sampler: str) -> None:
    # The KSamplerAdvanced pattern: steps 0..6 returning leftover noise, then 6..end without
    # adding noise. For single-step samplers this is the same trajectory.
    whole = _sample(sampler=sampler)
    first = _sample(sampler=sampler, start_step=0, end_step=6, force_full_denoise=False)
    second = _sample(
        sampler=sampler,
        latent=first,
        add_noise=False,
        start_step=6,
        end_step=10000,
        force_full_denoise=True,
    )
    torch.testing.assert_close(second, whole, rtol=0, atol=1e-6)
    # The leftover noise is real: the first pass stopped at sigma_6, far from the result.
    assert float((first - whole).abs().max()) > 0.05


def test_same_seed_same_result_different_seed_different_result() -> None:
    for sampler in ("euler", "dpmpp_2m_sde"):
        one = _sample(sampler=sampler, seed=1)
        assert torch.equal(one, _sample(sampler=sampler, seed=1))
        assert not torch.allclose(one, _sample(sampler=sampler, seed=2))


def test_batch_index_samples_an_item_as_it_would_be_in_its_batch() -> None:
    batch = torch.cat([LATENT, LATENT * 0.5])
    together = _sample(latent=batch)
    alone = _sample(latent=batch[1:], batch_index=[1])
    torch.testing.assert_close(alone, together[1:], rtol=0, atol=1e-6)


def test_result_is_float32_on_the_latents_device() -> None:
    out = _sample(latent=LATENT.half(), steps=3)
    assert out.dtype == torch.float32
    assert out.device == LATENT.device
    assert bool(torch.isfinite(out).all())


def _pixel_mask(left: float, right: float) -> Tensor:
    """A [1, 64, 64] pixel mask (8x the latent): `left` on the left half, `right` on the right."""
    mask = torch.full((1, 64, 64), right)
    mask[:, :, :32] = left
    return mask


def test_noise_mask_keeps_the_unmasked_latent_renoised_each_step() -> None:
    denoiser = Recording()
    out = _sample(denoiser, noise_mask=_pixel_mask(1.0, 0.0))
    noise = prepare_noise(LATENT, 5)
    kept = (slice(None), slice(None), slice(None), slice(4, None))
    for x, sigma in denoiser.inputs:
        # Before every call the kept half is the original latent noised to this sigma.
        torch.testing.assert_close(x[kept], (LATENT + noise * sigma.reshape(-1, 1, 1, 1))[kept])
    torch.testing.assert_close(out[kept], LATENT[kept], rtol=0, atol=1e-5)
    resampled = (slice(None), slice(None), slice(None), slice(None, 4))
    assert float((out[resampled] - LATENT[resampled]).abs().mean()) > 0.1


def test_an_all_ones_mask_changes_nothing_and_an_all_zeros_mask_keeps_everything() -> None:
    plain = _sample()
    torch.testing.assert_close(_sample(noise_mask=torch.ones(64, 64)), plain, rtol=0, atol=1e-6)
    torch.testing.assert_close(
        _sample(noise_mask=torch.zeros(1, 1, 64, 64)), LATENT, atol=1e-5, rtol=0
    )


def test_one_mask_covers_the_whole_batch() -> None:
    batch = torch.cat([LATENT, -LATENT])
    out = _sample(latent=batch, noise_mask=_pixel_mask(1.0, 0.0))
    torch.testing.assert_close(out[..., 4:], batch[..., 4:], rtol=0, atol=1e-5)


def test_ddim_is_euler_except_for_fresh_inpainting_noise() -> None:
    assert torch.equal(_sample(sampler="ddim"), _sample(sampler="euler"))
    mask = _pixel_mask(1.0, 0.0)
    # The kept area's noise reaches the resampled area only through a denoiser that mixes pixels.
    ddim = _sample(Recording(coupled=True), sampler="ddim", noise_mask=mask)
    euler = _sample(Recording(coupled=True), sampler="euler", noise_mask=mask)
    assert not torch.allclose(ddim, euler)
    torch.testing.assert_close(ddim[..., 4:], euler[..., 4:], rtol=0, atol=1e-5)
    denoiser = Recording()
    _sample(denoiser, sampler="ddim", noise_mask=mask)
    x, sigma = denoiser.inputs[0]
    fresh = torch.randn(LATENT.shape, generator=cpu_generator(6))
    torch.testing.assert_close(x[..., 4:], (LATENT + fresh * float(sigma[0]))[..., 4:])


def test_callback_sees_every_planned_step_and_can_interrupt() -> None:
    steps: list[int] = []
    _sample(start_step=2, end_step=8, callback=lambda i, x, d, s: steps.append(i))
    assert steps == list(range(6))

    class StopError(Exception):
        pass

    def stop(step: int, x: Tensor, denoised: Tensor, sigma: float) -> None:
        if step == 2:
            raise StopError

    denoiser = Recording()
    with pytest.raises(StopError):
        _sample(denoiser, callback=stop)
    assert len(denoiser.inputs) == 3


@pytest.mark.parametrize("sampler", SAMPLER_NAMES)
def test_every_sampler_handles_the_shortest_runs(sampler: str) -> None:
    for steps in (1, 2, 3):
        out = _sample(sampler=sampler, steps=steps, latent=torch.zeros(1, 4, 8, 8))
        assert bool(torch.isfinite(out).all())


@pytest.mark.parametrize("sampler", ["uni_pc", "uni_pc_bh2"])
def test_one_step_of_unipc_denoises(sampler: str) -> None:
    # ComfyUI's UniPC gets order 0 for one step and returns its input noise (scaled); ours
    # takes a first-order step, which lands on the prediction.
    out = _sample(sampler=sampler, steps=1, latent=torch.zeros(1, 4, 8, 8))
    assert float((out - 0.2).abs().max()) < 0.2  # the input noise spans about ±40


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(ValueError, match="unknown sampler"):
        _sample(sampler="euler_cfg_pp")
    with pytest.raises(ValueError, match="unknown scheduler"):
        _sample(scheduler="AYS")
    with pytest.raises(ValueError, match="steps must be at least 1"):
        _sample(steps=0)
    with pytest.raises(ValueError, match="start_step"):
        _sample(start_step=-1)
    with pytest.raises(ValueError, match="end_step"):
        _sample(end_step=-1)
