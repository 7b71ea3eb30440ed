"""What every sampler shares: the run (denoiser, sigmas, noise, progress callback) and the small
formulas of k-diffusion's variance-exploding samplers (derivative, ancestral step split)."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

from torch import Tensor

from flowscope.nodes.sd.sampling.noise import StepNoise

Denoiser = Callable[[Tensor, Tensor], Tensor]
"""(x [B,C,H,W], sigma [B]) -> the denoised x0 prediction, same shape as x."""

StepCallback = Callable[[int, Tensor, Tensor, float], None]
"""(step index, x at that step's sigma, the denoised prediction there, sigma). May raise (e.g. an
interrupt): the sampler stops at once and the exception propagates."""


@dataclass
class SamplerRun:
    """One sampling run: the state a sampler function needs besides x."""

    denoiser: Denoiser
    sigmas: list[float]
    noise_seed: int
    callback: StepCallback | None
    like: Tensor
    _noise: StepNoise | None = field(default=None, init=False)

    @property
    def steps(self) -> int:
        return len(self.sigmas) - 1

    def denoise(self, x: Tensor, sigma: float) -> Tensor:
        return self.denoiser(x, x.new_full((x.shape[0],), sigma))

    def report(self, step: int, x: Tensor, denoised: Tensor) -> None:
        if self.callback is not None:
            self.callback(step, x, denoised, self.sigmas[step])

    def noise(self) -> Tensor:
        """The next standard normal draw of this run's step noise (created on first use)."""
        if self._noise is None:
            self._noise = StepNoise(self.noise_seed, self.like)
        return self._noise()


def to_d(x: Tensor, sigma: float, denoised: Tensor) -> Tensor:
    """dx/dsigma of the probability-flow ODE (Karras et al. 2022)."""
    return (x - denoised) / sigma


def ancestral_step(sigma_from: float, sigma_to: float, eta: float = 1.0) -> tuple[float, float]:
    """Split a step from `sigma_from` to `sigma_to` into a deterministic step down to
    `sigma_down` and fresh noise of size `sigma_up` (sigma_down² + sigma_up² = sigma_to²)."""
    if not eta:
        return sigma_to, 0.0
    sigma_up = min(
        sigma_to,
        eta * math.sqrt(max(0.0, sigma_to**2 * (sigma_from**2 - sigma_to**2) / sigma_from**2)),
    )
    sigma_down = math.sqrt(sigma_to**2 - sigma_up**2)
    return sigma_down, sigma_up
