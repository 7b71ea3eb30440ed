"""The discrete noise schedule of SD-family models: sigmas from the training alphas, quantized
timestep lookup, and the epsilon / v-prediction parameterisations (ComfyUI's semantics)."""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

Prediction = Literal["epsilon", "v_prediction"]
PREDICTIONS: tuple[Prediction, ...] = ("epsilon", "v_prediction")


def per_sample(sigma: Tensor | float, like: Tensor) -> Tensor:
    """`sigma` (a scalar or one value per batch item) shaped to broadcast over `like`."""
    value = torch.as_tensor(sigma, device=like.device)
    if value.ndim == 0:
        return value.to(like.dtype)
    return value.to(like.dtype).reshape(value.shape[:1] + (1,) * (like.ndim - 1))


class DiscreteSchedule:
    """A model's 1000-step (or N-step) training schedule, seen as noise levels `sigma`.

    The sampling state is `x = x0 + sigma * noise` (variance exploding); the model sees
    `x / sqrt(sigma² + 1)` and a timestep looked up from sigma.
    """

    def __init__(
        self,
        alphas_cumprod: Tensor,
        prediction: Prediction = "epsilon",
        sigma_data: float = 1.0,
    ) -> None:
        if prediction not in PREDICTIONS:
            raise ValueError(f"prediction must be one of {PREDICTIONS}, not {prediction!r}")
        cumprod = alphas_cumprod.detach().to("cpu", torch.float64).flatten()
        if cumprod.numel() < 2 or not bool(((cumprod > 0) & (cumprod < 1)).all()):
            raise ValueError("alphas_cumprod must hold at least 2 values, each strictly in (0, 1)")
        sigmas = ((1 - cumprod) / cumprod).sqrt()
        if not bool((sigmas[1:] >= sigmas[:-1]).all()):
            raise ValueError("alphas_cumprod must be non-increasing (noise grows with timestep)")
        self.prediction: Prediction = prediction
        self.sigma_data = sigma_data
        self.alphas_cumprod = cumprod.float()
        # Computed in float64 and stored in float32, as ComfyUI does, so schedules agree.
        self.sigmas = sigmas.float()
        self.log_sigmas = sigmas.log().float()
        self._log_sigmas_on: dict[torch.device, Tensor] = {self.log_sigmas.device: self.log_sigmas}

    @classmethod
    def scaled_linear(
        cls,
        linear_start: float = 0.00085,
        linear_end: float = 0.012,
        timesteps: int = 1000,
        prediction: Prediction = "epsilon",
    ) -> DiscreteSchedule:
        """The schedule SD1/SD2/SDXL were trained with (betas linear in sqrt space)."""
        betas = (
            torch.linspace(linear_start**0.5, linear_end**0.5, timesteps, dtype=torch.float64) ** 2
        )
        return cls(torch.cumprod(1.0 - betas, dim=0), prediction=prediction)

    @property
    def sigma_min(self) -> Tensor:
        return self.sigmas[0]

    @property
    def sigma_max(self) -> Tensor:
        return self.sigmas[-1]

    @property
    def num_timesteps(self) -> int:
        return int(self.sigmas.numel())

    def _log_sigmas(self, device: torch.device) -> Tensor:
        table = self._log_sigmas_on.get(device)
        if table is None:
            table = self._log_sigmas_on[device] = self.log_sigmas.to(device)
        return table

    def timestep(self, sigma: Tensor) -> Tensor:
        """The training timestep (int64 index) whose log-sigma is nearest: quantized, so the model
        only ever sees timesteps it was trained on."""
        log_sigmas = self._log_sigmas(sigma.device)
        distances = sigma.log().reshape(1, -1) - log_sigmas.reshape(-1, 1)
        return distances.abs().argmin(dim=0).reshape(sigma.shape)

    def sigma(self, timestep: Tensor) -> Tensor:
        """Sigma at a (possibly fractional) timestep: linear interpolation of log-sigma."""
        log_sigmas = self._log_sigmas(timestep.device)
        t = timestep.float().clamp(0, self.num_timesteps - 1)
        low = t.floor().long()
        high = t.ceil().long()
        weight = t.frac()
        return ((1 - weight) * log_sigmas[low] + weight * log_sigmas[high]).exp()

    def percent_to_sigma(self, percent: float) -> float:
        """Sigma at a fraction of the way through sampling (0 = start, 1 = end), as ComfyUI maps
        ControlNet / conditioning start and end percentages."""
        if percent <= 0.0:
            return 999999999.9
        if percent >= 1.0:
            return 0.0
        timestep = torch.tensor((1.0 - percent) * (self.num_timesteps - 1))
        return float(self.sigma(timestep).item())

    def calculate_input(self, sigma: Tensor | float, x: Tensor) -> Tensor:
        """What the network sees: the noisy sample scaled to unit variance."""
        s = per_sample(sigma, x)
        return x / (s**2 + self.sigma_data**2).sqrt()

    def calculate_denoised(self, sigma: Tensor | float, model_output: Tensor, x: Tensor) -> Tensor:
        """The x0 prediction from the network's output (epsilon or v)."""
        s = per_sample(sigma, x)
        if self.prediction == "epsilon":
            return x - model_output * s
        data = self.sigma_data
        total = s**2 + data**2
        return x * data**2 / total - model_output * s * data / total.sqrt()

    def noise_scaling(
        self, sigma: Tensor | float, noise: Tensor, latent: Tensor, max_denoise: bool
    ) -> Tensor:
        """The starting point of sampling: `latent` noised to `sigma`. At the top of the schedule
        (`max_denoise`) the noise is scaled by sqrt(1 + sigma²), the marginal's full spread."""
        s = per_sample(sigma, noise)
        scale = (1.0 + s**2).sqrt() if max_denoise else s
        return noise * scale + latent.to(noise.device, noise.dtype)
