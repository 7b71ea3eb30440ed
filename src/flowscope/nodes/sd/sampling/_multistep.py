"""Multistep samplers, which reuse the derivatives of earlier steps: LMS, iPNDM, DEIS and UniPC
(ComfyUI's variants, defaults and step-order rules)."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from flowscope.nodes.sd.sampling._stepping import SamplerRun, to_d

LMS_ORDER = 4
IPNDM_ORDER = 4
DEIS_ORDER = 3
UNIPC_ORDER = 3
UNIPC_FINAL_SIGMA = 0.001  # UniPC works in log-SNR and cannot reach sigma 0 itself

# Three-point Gauss-Legendre rule on [-1, 1]: exact for the cubic LMS interpolants.
_GAUSS_NODES = (-math.sqrt(3 / 5), 0.0, math.sqrt(3 / 5))
_GAUSS_WEIGHTS = (5 / 9, 8 / 9, 5 / 9)


def lms(run: SamplerRun, x: Tensor) -> Tensor:
    """Linear multistep (Adams-Bashforth in sigma, order 4)."""
    sigmas = run.sigmas
    derivatives: list[Tensor] = []
    for i in range(run.steps):
        denoised = run.denoise(x, sigmas[i])
        derivatives = [*derivatives[-(LMS_ORDER - 1) :], to_d(x, sigmas[i], denoised)]
        run.report(i, x, denoised)
        if sigmas[i + 1] == 0:
            x = denoised
            continue
        order = min(i + 1, LMS_ORDER)
        coefficients = [_lms_coefficient(order, sigmas, i, j) for j in range(order)]
        x = x + _combine(coefficients, derivatives[::-1])
    return x


def _lms_coefficient(order: int, sigmas: list[float], i: int, j: int) -> float:
    """The integral from sigmas[i] to sigmas[i+1] of the Lagrange basis polynomial of point
    i - j over the points i, i-1, ..., i-order+1."""

    def basis(tau: float) -> float:
        product = 1.0
        for k in range(order):
            if k != j:
                product *= (tau - sigmas[i - k]) / (sigmas[i - j] - sigmas[i - k])
        return product

    start, end = sigmas[i], sigmas[i + 1]
    half, middle = (end - start) / 2, (end + start) / 2
    return half * sum(
        w * basis(middle + half * n) for n, w in zip(_GAUSS_NODES, _GAUSS_WEIGHTS, strict=True)
    )


def ipndm(run: SamplerRun, x: Tensor) -> Tensor:
    """Improved pseudo-numerical (Adams-Bashforth with fixed weights), order 4."""
    sigmas = run.sigmas
    history: list[Tensor] = []  # earlier derivatives, oldest first
    for i in range(run.steps):
        sigma, sigma_next = sigmas[i], sigmas[i + 1]
        denoised = run.denoise(x, sigma)
        run.report(i, x, denoised)
        d = to_d(x, sigma, denoised)
        order = min(IPNDM_ORDER, i + 1)
        dt = sigma_next - sigma
        if sigma_next == 0:
            x = denoised
        elif order == 1:
            x = x + dt * d
        elif order == 2:
            x = x + dt * (3 * d - history[-1]) / 2
        elif order == 3:
            x = x + dt * (23 * d - 16 * history[-1] + 5 * history[-2]) / 12
        else:
            x = x + dt * (55 * d - 59 * history[-1] + 37 * history[-2] - 9 * history[-3]) / 24
        history = [*history[-(IPNDM_ORDER - 2) :], d]
    return x


def deis(run: SamplerRun, x: Tensor) -> Tensor:
    """DEIS ("tab" mode, order 3): Adams-Bashforth in the VP time of an EDM-range schedule,
    integrated numerically against d(sigma)."""
    sigmas = run.sigmas
    times = [_edm_to_vp_time(sigma) for sigma in sigmas]
    history: list[Tensor] = []  # earlier derivatives, newest first
    for i in range(run.steps):
        sigma, sigma_next = sigmas[i], sigmas[i + 1]
        denoised = run.denoise(x, sigma)
        run.report(i, x, denoised)
        d = to_d(x, sigma, denoised)
        order = 1 if sigma_next <= 0 else min(i + 1, DEIS_ORDER)
        if order == 1:
            x = x + (sigma_next - sigma) * d
        else:
            coefficients = _deis_coefficients(times, i, order)
            for coefficient, derivative in zip(coefficients, [d, *history], strict=True):
                x = x + coefficient * derivative
        history = [d, *history[: DEIS_ORDER - 2]]
    return x


# DEIS maps sigma to the time of a VP-SDE fitted to EDM's range (sigma 0.002 .. 80), whatever
# the model's own range.
_DEIS_EPSILON_S = 1e-3
_DEIS_SIGMA_MIN = 0.002
_DEIS_SIGMA_MAX = 80.0
_DEIS_BETA_D = (
    2
    * (math.log(_DEIS_SIGMA_MIN**2 + 1) / _DEIS_EPSILON_S - math.log(_DEIS_SIGMA_MAX**2 + 1))
    / (_DEIS_EPSILON_S - 1)
)
_DEIS_BETA_MIN = math.log(_DEIS_SIGMA_MAX**2 + 1) - 0.5 * _DEIS_BETA_D
_DEIS_INTEGRATION_POINTS = 10000


def _edm_to_vp_time(sigma: float) -> float:
    beta_d, beta_min = _DEIS_BETA_D, _DEIS_BETA_MIN
    return (math.sqrt(beta_min**2 + 2 * beta_d * math.log(sigma**2 + 1)) - beta_min) / beta_d


def _deis_coefficients(times: list[float], i: int, order: int) -> list[float]:
    """For each of the `order` latest points: the integral over [times[i], times[i+1]] of its
    Lagrange basis polynomial times d(sigma)/d(tau), as DEIS tabulates it (a Riemann sum)."""
    t_cur, t_next = times[i], times[i + 1]
    taus = torch.linspace(t_cur, t_next, _DEIS_INTEGRATION_POINTS, dtype=torch.float64)
    beta_0, beta_1 = _DEIS_BETA_MIN, _DEIS_BETA_D + _DEIS_BETA_MIN
    alpha = torch.exp(-0.5 * taus**2 * (beta_1 - beta_0) - taus * beta_0)
    d_log_alpha = -taus * (beta_1 - beta_0) - beta_0
    # d(sigma)/d(tau) for sigma = sqrt((1 - alpha) / alpha).
    integrand = -0.5 * d_log_alpha / torch.sqrt(alpha * (1 - alpha))
    d_tau = (t_next - t_cur) / _DEIS_INTEGRATION_POINTS
    points = [times[i - k] for k in range(order)]
    coefficients = []
    for j in range(order):
        basis = torch.ones_like(taus)
        for k in range(order):
            if k != j:
                basis = basis * (taus - points[k]) / (points[j] - points[k])
        coefficients.append(float((integrand * basis).sum()) * d_tau)
    return coefficients


def uni_pc_bh1(run: SamplerRun, x: Tensor) -> Tensor:
    return _uni_pc(run, x, variant="bh1")


def uni_pc_bh2(run: SamplerRun, x: Tensor) -> Tensor:
    return _uni_pc(run, x, variant="bh2")


def _uni_pc(run: SamplerRun, x: Tensor, *, variant: str) -> Tensor:
    """UniPC (Zhao et al. 2023), multistep predictor-corrector on the x0 prediction, order up
    to 3 with lower orders at the start and the end. Written in the variance-exploding space of
    the other samplers (the VP form's alpha factors cancel)."""
    times = list(run.sigmas)
    times[-1] = max(times[-1], UNIPC_FINAL_SIGMA)
    steps = len(times) - 1
    order = max(1, min(UNIPC_ORDER, steps - 1))
    model_outputs = [run.denoise(x, times[0])]
    model_times = [times[0]]
    run.report(0, x, model_outputs[0])
    for k in range(1, steps + 1):
        step_order = k if k < order else min(order, steps + 1 - k)
        use_corrector = k < steps
        x, model_t = _uni_pc_update(
            run, x, model_outputs, model_times, times[k], step_order, use_corrector, variant
        )
        if model_t is None:
            continue
        model_outputs = [*model_outputs, model_t][-order:]
        model_times = [*model_times, times[k]][-order:]
        run.report(k, x, model_t)
    return x


def _uni_pc_update(
    run: SamplerRun,
    x: Tensor,
    model_outputs: list[Tensor],
    model_times: list[float],
    sigma_t: float,
    order: int,
    use_corrector: bool,
    variant: str,
) -> tuple[Tensor, Tensor | None]:
    sigma_0 = model_times[-1]
    model_0 = model_outputs[-1]
    h = math.log(sigma_0) - math.log(sigma_t)  # step in lambda = -log(sigma)

    ratios: list[float] = []
    differences: list[Tensor] = []
    for i in range(1, order):
        r = (math.log(sigma_0) - math.log(model_times[-(i + 1)])) / h
        ratios.append(r)
        differences.append((model_outputs[-(i + 1)] - model_0) / r)
    ratios.append(1.0)

    hh = -h
    h_phi_1 = math.expm1(hh)
    b_h = hh if variant == "bh1" else math.expm1(hh)
    rows: list[list[float]] = []
    targets: list[float] = []
    h_phi_k = h_phi_1 / hh - 1
    factorial = 1
    for i in range(1, order + 1):
        rows.append([r ** (i - 1) for r in ratios])
        targets.append(h_phi_k * factorial / b_h)
        factorial *= i + 1
        h_phi_k = h_phi_k / hh - 1 / factorial

    x_base = (sigma_t / sigma_0) * x - h_phi_1 * model_0
    predicted = x_base
    if differences:
        # Order 2 uses the fixed 1/2 of the reference implementation instead of solving.
        rhos_p = [0.5] if order == 2 else _solve([row[:-1] for row in rows[:-1]], targets[:-1])
        predicted = x_base - b_h * _combine(rhos_p, differences)
    if not use_corrector:
        return predicted, None

    rhos_c = [0.5] if order == 1 else _solve(rows, targets)
    model_t = run.denoise(predicted, sigma_t)
    correction = rhos_c[-1] * (model_t - model_0)
    if differences:
        correction = correction + _combine(rhos_c[:-1], differences)
    return x_base - b_h * correction, model_t


def _solve(matrix: list[list[float]], vector: list[float]) -> list[float]:
    solution = torch.linalg.solve(
        torch.tensor(matrix, dtype=torch.float64), torch.tensor(vector, dtype=torch.float64)
    )
    return [float(value) for value in solution]


def _combine(weights: list[float], tensors: list[Tensor]) -> Tensor:
    total = weights[0] * tensors[0]
    for weight, tensor in zip(weights[1:], tensors[1:], strict=True):
        total = total + weight * tensor
    return total
