"""Cross-checks of the Stable Diffusion pack against diffusers' own pipelines on the tiny SD1 model
(and SDXL's text encoders and size conditioning): text encoder, guided UNet call, VAE, the euler
sampler and KSampler, LoRA (against a manual weight merge) and ControlNet; and same seed → the
same image through the default workflow."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image
from sd_support import (
    SD1_SCHEDULER_CONFIG,
    SDHarness,
    clip_tokenizer,
    diffusers_module,
    euler_scheduler,
    make_sd_harness,
    max_difference,
    sd_pipeline,
    sdxl_pipeline,
)
from sd_world import text_to_image
from torch import Tensor

from flowscope.models.components import DiffusionModel
from flowscope.models.families import Family
from flowscope.nodes.sd.guidance import Conditioning, GuidedDenoiser
from flowscope.nodes.sd.sampling.model_sampling import DiscreteSchedule
from flowscope.nodes.sd.sampling.samplers import run_sampler
from flowscope.nodes.sd.sampling.schedules import compute_sigmas

torch.set_num_threads(1)

# Every test needs the tiny model files, diffusers and a loaded checkpoint (seconds of imports).
pytestmark = [
    pytest.mark.slow,
    # diffusers' schedulers call np.array() on torch tensors (numpy 2's copy-keyword notice).
    pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning"),
]

CPU = torch.device("cpu")
POSITIVE = "a photo of a red cat on a windowsill, highly detailed"
NEGATIVE = "blurry, low quality"
CFG = 7.5

# A guided x₀ = x − σ·(ε_u + cfg·(ε_c − ε_u)) is formed in float32 in two arrangements (ours
# averages x₀ predictions, diffusers' combines ε first); both round at the scale of |x| (≈ 50 at
# σ_max, where float32's spacing is 4e-6) and cfg amplifies that, so next to the absolute 1e-5
# the bound allows float32's relative rounding of the result.
GUIDED_ATOL = 1e-5
GUIDED_RTOL = 1e-6
# A whole sampling run repeats that rounding at every step (6–12 here), and a random-weight
# UNet amplifies small input differences instead of smoothing them; the final latents reach
# |x| ≈ 50 (scaled) / 350 (the VAE's space). Measured: ≤ 2e-6 of max |x| (4e-5 absolute on
# the scaled latents). 1e-5 of max |x| leaves room for other CPUs' kernels and still catches one
# wrong timestep (the quantized instead of the continuous one is 5e-4 of max |x|, asserted
# below) or one wrong sigma.
SAMPLING_RTOL = 1e-5


def _guided_bound(reference: Tensor) -> float:
    return GUIDED_ATOL + GUIDED_RTOL * float(reference.abs().max())


def _sampling_bound(reference: Tensor) -> float:
    return SAMPLING_RTOL * float(reference.abs().max())


# --- fixtures ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sd(tmp_path_factory: pytest.TempPathFactory) -> SDHarness:
    return make_sd_harness(tmp_path_factory.mktemp("sd-crosscheck"))


@pytest.fixture(autouse=True)
def _checkpoint_weights(sd: SDHarness) -> Iterator[None]:
    """Every test starts (and ends) with the checkpoint's own weights in the shared modules,
    which the diffusers pipelines call directly."""
    sd.unpatch()
    yield
    sd.unpatch()


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory: pytest.TempPathFactory) -> Any:
    return clip_tokenizer(tmp_path_factory.mktemp("clip-tokenizer"))


@pytest.fixture(scope="module")
def pipe(sd: SDHarness, tokenizer: Any) -> Any:
    return sd_pipeline(*sd.checkpoint(), tokenizer)


@pytest.fixture(scope="module")
def schedule(sd: SDHarness) -> DiscreteSchedule:
    model, _clip, _vae = sd.checkpoint()
    return DiscreteSchedule(model.alphas_cumprod, prediction=model.family.prediction)


def _encode(sd: SDHarness, clip: Any, text: str) -> Conditioning:
    conditioning: Conditioning = sd.node("CLIPTextEncode").encode(clip, text)[0]
    return conditioning


def _pipeline_prompts(pipe: Any, positive: str = POSITIVE, negative: str = NEGATIVE) -> Any:
    """diffusers' own prompt encoding: (positive, negative) embeddings [1, 77, 32]."""
    with torch.inference_mode():
        return pipe.encode_prompt(positive, CPU, 1, True, negative)


def _denoiser(
    model: DiffusionModel,
    unet: torch.nn.Module,
    schedule: DiscreteSchedule,
    positive: Conditioning,
    negative: Conditioning,
) -> GuidedDenoiser:
    return GuidedDenoiser(
        unet, schedule, positive, negative, CFG, family=model.family, placement=model.placement
    )


def _noise(seed: int, shape: tuple[int, ...] = (1, 4, 8, 8)) -> Tensor:
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed))


# --- 1. text encoder ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [POSITIVE, "", "Ünïcode café — 3 dogs & 2 cats!!", "a " * 74 + "end"],
    ids=["prompt", "empty", "unicode", "75-tokens"],
)
def test_clip_text_encode_equals_the_pipelines_encode_prompt(
    sd: SDHarness, pipe: Any, tokenizer: Any, text: str
) -> None:
    _model, clip, _vae = sd.checkpoint()
    ((cond, options),) = _encode(sd, clip, text)
    positive, negative = _pipeline_prompts(pipe, text, "")
    assert cond.shape == positive.shape == (1, 77, 32)
    assert max_difference(cond, positive) <= 1e-6
    # The empty prompt is what the pipeline puts on the negative side.
    ((empty, _),) = _encode(sd, clip, "")
    assert max_difference(empty, negative) <= 1e-6
    # SD1's pooled output: the final-norm state at the end token, as transformers pools it.
    ids = tokenizer(text, padding="max_length", max_length=77, return_tensors="pt").input_ids
    with torch.inference_mode():
        pooled = clip.encoders["clip_l"].module(ids).pooler_output
    assert max_difference(options["pooled_output"], pooled) <= 1e-6


def test_clip_set_last_layer_equals_the_pipelines_clip_skip(sd: SDHarness, tokenizer: Any) -> None:
    _model, clip, _vae = sd.checkpoint()
    (penultimate,) = sd.node("CLIPSetLastLayer").set_last_layer(clip, -2)
    ((cond, _),) = _encode(sd, penultimate, POSITIVE)
    # diffusers' encode_prompt(clip_skip=1), written out: its own code reaches for
    # `text_encoder.text_model`, a level transformers 5's CLIPTextModel no longer has.
    encoder = clip.encoders["clip_l"].module
    ids = tokenizer(POSITIVE, padding="max_length", max_length=77, return_tensors="pt").input_ids
    with torch.inference_mode():
        hidden = encoder(ids, output_hidden_states=True).hidden_states[-2]
        reference = encoder.final_layer_norm(hidden)
    assert max_difference(cond, reference) <= 1e-6
    ((last, _),) = _encode(sd, clip, POSITIVE)
    assert max_difference(cond, last) > 1e-2


# --- 2. one guided UNet call -------------------------------------------------------------------


def test_the_checkpoints_schedule_is_the_pipelines(
    sd: SDHarness, schedule: DiscreteSchedule
) -> None:
    model, _clip, _vae = sd.checkpoint()
    diffusers_alphas = euler_scheduler().alphas_cumprod.double()
    # diffusers computes its betas in float32, we in float64.
    assert torch.allclose(model.alphas_cumprod.double(), diffusers_alphas, rtol=1e-6, atol=0)
    assert schedule.num_timesteps == SD1_SCHEDULER_CONFIG["num_train_timesteps"]


@pytest.mark.parametrize("timestep", [0, 250, 500, 999])
def test_a_guided_denoiser_call_equals_the_pipelines_unet_call_and_guidance(
    sd: SDHarness, pipe: Any, schedule: DiscreteSchedule, timestep: int
) -> None:
    model, clip, _vae = sd.checkpoint()
    positive = _encode(sd, clip, POSITIVE)
    negative = _encode(sd, clip, NEGATIVE)
    sigma = schedule.sigmas[timestep]
    x = _noise(timestep) * (1 + sigma**2).sqrt()  # x at that noise level, as sampling has it
    with model.unet.applied(CPU) as unet, torch.inference_mode():
        ours = _denoiser(model, unet, schedule, positive, negative)(x, sigma.reshape(1))
    # The pipeline's step: [uncond, cond] batch scaled to unit variance, the UNet at timestep t,
    # ε = ε_u + cfg·(ε_c − ε_u), and the Euler scheduler's x₀ = x − σ·ε.
    prompt_embeds, negative_embeds = _pipeline_prompts(pipe)
    with torch.inference_mode():
        model_input = torch.cat([x, x]) / (sigma**2 + 1) ** 0.5
        eps = pipe.unet(
            model_input,
            torch.tensor(float(timestep)),
            encoder_hidden_states=torch.cat([negative_embeds, prompt_embeds]),
        ).sample
        eps_uncond, eps_cond = eps.chunk(2)
        reference = x - sigma * (eps_uncond + CFG * (eps_cond - eps_uncond))
    assert max_difference(ours, reference) <= _guided_bound(reference)
    # Guidance really acted: the positive prediction alone is far away.
    assert max_difference(reference, x - sigma * eps_cond) > 1e-2


# --- 3. VAE ------------------------------------------------------------------------------------


def test_vae_decode_equals_the_pipelines_decode_and_postprocess(sd: SDHarness, pipe: Any) -> None:
    _model, _clip, vae = sd.checkpoint()
    scaled = _noise(11, (2, 4, 8, 8))  # what the pipeline's sampler ends with
    scaling = pipe.vae.config.scaling_factor
    assert scaling == sd.checkpoint()[0].family.vae_scaling_factor == 0.18215
    # LATENT values between nodes are the VAE's own (unscaled) latents, as in ComfyUI.
    (image,) = sd.node("VAEDecode").decode(vae, {"samples": scaled / scaling})
    with torch.inference_mode():
        decoded = pipe.vae.decode(scaled / scaling).sample
        reference = pipe.image_processor.postprocess(decoded, output_type="pt")
    assert image.shape == (2, 64, 64, 3)
    assert max_difference(image, reference.movedim(1, -1)) <= 1e-5
    assert float(image.std()) > 0.01  # a real picture, not a clamped constant


def test_vae_encode_equals_the_pipelines_posterior_mean(sd: SDHarness, pipe: Any) -> None:
    _model, _clip, vae = sd.checkpoint()
    pixels = torch.rand((2, 64, 64, 3), generator=torch.Generator().manual_seed(12))
    (latent,) = sd.node("VAEEncode").encode(vae, pixels)
    with torch.inference_mode():
        prepared = pipe.image_processor.preprocess(pixels.movedim(-1, 1))  # to [-1, 1]
        reference = pipe.vae.encode(prepared).latent_dist.mode()
    assert latent["samples"].shape == (2, 4, 8, 8)
    assert max_difference(latent["samples"], reference) <= 1e-5


# --- 4. the euler sampler and KSampler ------------------------------------------------------


class DiffusersTimesteps(DiscreteSchedule):
    """Our schedule, but the UNet gets diffusers' interpolated (continuous) timestep for each of
    the scheduler's sigmas instead of our quantized one."""

    def __init__(self, base: DiscreteSchedule, scheduler: Any) -> None:
        super().__init__(base.alphas_cumprod.double(), base.prediction, base.sigma_data)
        self._sigmas = scheduler.sigmas[:-1].double()
        self._timesteps = scheduler.timesteps.double()

    def timestep(self, sigma: Tensor) -> Tensor:
        distance = (self._sigmas.reshape(1, -1) - sigma.double().reshape(-1, 1)).abs()
        nearest = distance.argmin(dim=1)
        assert bool((distance.min(dim=1).values <= 1e-6 * sigma.double().reshape(-1)).all())
        return self._timesteps[nearest].float().reshape(sigma.shape)


def _comfy_scheduler(schedule: DiscreteSchedule) -> Any:
    """diffusers' Euler scheduler following ComfyUI's conventions: fed the sigmas explicitly, it
    gives the UNet our quantized timesteps and starts from noise·√(1+σ_max²) (diffusers' own
    "linspace" scheduler starts from noise·σ_max)."""
    base: Any = diffusers_module().EulerDiscreteScheduler

    class ComfyEuler(base):  # type: ignore[misc]
        # The pipeline looks for a `sigmas` parameter in this signature.
        def set_timesteps(
            self,
            num_inference_steps: int | None = None,
            device: str | torch.device | None = None,
            timesteps: list[int] | None = None,
            sigmas: list[float] | None = None,
        ) -> None:
            super().set_timesteps(num_inference_steps, device, timesteps, sigmas)
            self.timesteps = schedule.timestep(self.sigmas[:-1]).float()

        @property
        def init_noise_sigma(self) -> Tensor:
            result: Tensor = (self.sigmas.max() ** 2 + 1) ** 0.5
            return result

    return ComfyEuler(**SD1_SCHEDULER_CONFIG)


def test_euler_with_diffusers_sigmas_and_timesteps_matches_the_pipeline(
    sd: SDHarness, pipe: Any, schedule: DiscreteSchedule
) -> None:
    steps = 12  # "linspace" timesteps 999, 908.18…, …: all but the ends fractional
    model, clip, _vae = sd.checkpoint()
    positive = _encode(sd, clip, POSITIVE)
    negative = _encode(sd, clip, NEGATIVE)
    prompt_embeds, negative_embeds = _pipeline_prompts(pipe)
    noise = _noise(21)
    scheduler = euler_scheduler()
    scheduler.set_timesteps(steps)
    assert bool((scheduler.timesteps.frac() != 0).any())
    with torch.inference_mode():
        reference = pipe(
            prompt_embeds=prompt_embeds,
            negative_prompt_embeds=negative_embeds,
            num_inference_steps=steps,
            guidance_scale=CFG,
            latents=noise.clone(),
            output_type="latent",
        ).images
    # diffusers starts from noise·init_noise_sigma (σ_max for "linspace" spacing, not
    # ComfyUI's √(1+σ_max²)): the exact same starting point here.
    x = noise * scheduler.init_noise_sigma
    continuous = DiffusersTimesteps(schedule, scheduler)
    with model.unet.applied(CPU) as unet, torch.inference_mode():
        ours = run_sampler(
            "euler",
            _denoiser(model, unet, continuous, positive, negative),
            x,
            scheduler.sigmas,
            noise_seed=0,
        )
        quantized = run_sampler(
            "euler",
            _denoiser(model, unet, schedule, positive, negative),
            x,
            scheduler.sigmas,
            noise_seed=0,
        )
    assert max_difference(ours, reference) <= _sampling_bound(reference)
    # The comparison sees the timestep: the quantized lookup is measurably elsewhere.
    assert max_difference(quantized, reference) > 10 * _sampling_bound(reference)


def _default_workflow(sd: SDHarness, *, seed: int, steps: int) -> dict[str, Any]:
    """ComfyUI's default text-to-image workflow (API format) on the tiny model, at 64×64."""
    return text_to_image(
        sd.tiny.checkpoint.name,
        seed=seed,
        steps=steps,
        cfg=8.0,
        prefix="crosscheck",
        positive=POSITIVE,
        negative=NEGATIVE,
    )


def _ksampler_latent(
    sd: SDHarness,
    model: DiffusionModel,
    clip: Any,
    *,
    seed: int,
    steps: int,
    batch: int = 1,
) -> Tensor:
    """The KSampler node's output (the VAE's unscaled latents) on an EmptyLatentImage."""
    (latent,) = sd.node("EmptyLatentImage").generate(64, 64, batch)
    (sampled,) = sd.node("KSampler").sample(
        model,
        seed,
        steps,
        CFG,
        "euler",
        "normal",
        _encode(sd, clip, POSITIVE),
        _encode(sd, clip, NEGATIVE),
        latent,
        1.0,
    )
    samples: Tensor = sampled["samples"]
    return samples


def _pipeline_ksampler_reference(
    pipe: Any, schedule: DiscreteSchedule, *, seed: int, steps: int, batch: int = 1
) -> Tensor:
    """What the KSampler node should give, from diffusers' pipeline run with ComfyUI's
    conventions (our "normal" sigmas, quantized timesteps, noise·√(1+σ_max²) from the CPU
    generator seeded with `seed`), unscaled back to the VAE's latents."""
    pipe.scheduler = _comfy_scheduler(schedule)
    sigmas = compute_sigmas("normal", schedule, steps)
    try:
        with torch.inference_mode():
            scaled = pipe(
                prompt=POSITIVE,
                negative_prompt=NEGATIVE,
                sigmas=sigmas.tolist(),
                guidance_scale=CFG,
                # The size SDXL is conditioned on: ComfyUI's default is the latent's pixel size,
                # the pipeline's the UNet config's sample size (the loaded SDXL config: 1024).
                height=64,
                width=64,
                num_images_per_prompt=batch,
                # ComfyUI draws the whole batch's noise at once from one CPU generator.
                latents=_noise(seed, (batch, 4, 8, 8)),
                output_type="latent",
            ).images
    finally:
        pipe.scheduler = euler_scheduler()
    result: Tensor = scaled / pipe.vae.config.scaling_factor
    return result


@pytest.mark.parametrize("batch", [1, 2])
def test_ksampler_node_matches_the_pipeline_with_comfyui_conventions(
    sd: SDHarness, pipe: Any, schedule: DiscreteSchedule, batch: int
) -> None:
    model, clip, _vae = sd.checkpoint()
    ours = _ksampler_latent(sd, model, clip, seed=5, steps=8, batch=batch)
    reference = _pipeline_ksampler_reference(pipe, schedule, seed=5, steps=8, batch=batch)
    assert ours.shape == (batch, 4, 8, 8)
    assert max_difference(ours, reference) <= _sampling_bound(reference)


# --- 5. LoRA -----------------------------------------------------------------------------------

MODEL_STRENGTH = 0.8
CLIP_STRENGTH = 0.6


def _ldm_attention_name(module: str) -> str | None:
    """The original (LDM) name of a tiny SD1 UNet attention module, by SD1's numbering:
    input_blocks 3·i+j+1 (2 layers per level), middle_block.1, output_blocks 3·i+j; None for
    modules outside the attentions."""
    parts = module.split(".")
    if len(parts) < 4 or "attentions" not in parts[:3]:
        return None
    if parts[0] == "down_blocks":
        return f"input_blocks.{3 * int(parts[1]) + int(parts[3]) + 1}.1.{'.'.join(parts[4:])}"
    if parts[0] == "up_blocks":
        return f"output_blocks.{3 * int(parts[1]) + int(parts[3])}.1.{'.'.join(parts[4:])}"
    assert parts[0] == "mid_block", module
    return f"middle_block.1.{'.'.join(parts[3:])}"


LoraUpdates = dict[str, dict[str, Tensor]]  # "unet" / "clip_l" -> module -> delta weight


def _raw_lora_updates(
    path: Path, layout: str, unet: torch.nn.Module, text_encoder: torch.nn.Module
) -> LoraUpdates:
    """up @ down · alpha/rank for every Linear module the file updates, found from the modules'
    own names (not through our LoRA reader); every key of the file must be used."""
    from safetensors.torch import load_file

    tensors = load_file(path)
    used: set[str] = set()
    updates: LoraUpdates = {"unet": {}, "clip_l": {}}

    def names(component: str, module: str) -> tuple[str, str, str | None]:
        if layout == "peft":
            base = f"unet.{module}" if component == "unet" else f"text_encoder.text_model.{module}"
            return f"{base}.lora_B.weight", f"{base}.lora_A.weight", None
        if component == "unet":
            named = _ldm_attention_name(module) if layout == "kohya-ldm" else module
            base = "lora_unet_" + (named or "-").replace(".", "_")
        else:
            base = "lora_te_text_model_" + module.replace(".", "_")
        return f"{base}.lora_up.weight", f"{base}.lora_down.weight", f"{base}.alpha"

    components = {"unet": unet, "clip_l": text_encoder}
    for component, root in components.items():
        for module, layer in root.named_modules():
            if not isinstance(layer, torch.nn.Linear):
                continue
            up_key, down_key, alpha_key = names(component, module)
            if up_key not in tensors:
                continue
            up, down = tensors[up_key].float(), tensors[down_key].float()
            scale = 1.0
            if alpha_key is not None:
                scale = float(tensors[alpha_key]) / down.shape[0]
                used.add(alpha_key)
            updates[component][module] = up @ down * scale
            used.update((up_key, down_key))
    assert used == set(tensors), sorted(set(tensors) - used)[:5]
    return updates


def _lora_path(sd: SDHarness, layout: str) -> Path:
    return {
        "kohya": sd.tiny.lora_kohya,
        "kohya-ldm": sd.tiny.lora_kohya_ldm,
        "peft": sd.tiny.lora_peft,
    }[layout]


def _merged_copy(module: torch.nn.Module, updates: dict[str, Tensor], strength: float) -> Any:
    merged = copy.deepcopy(module)
    layers = dict(merged.named_modules())
    with torch.no_grad():
        for name, delta in updates.items():
            layers[name].weight += strength * delta
    return merged


@pytest.mark.parametrize("layout", ["kohya", "kohya-ldm", "peft"])
def test_lora_loader_equals_a_manual_weight_merge(
    sd: SDHarness, tokenizer: Any, layout: str
) -> None:
    model, clip, vae = sd.checkpoint()
    base_unet, base_text = model.unet.module, clip.encoders["clip_l"].module
    path = _lora_path(sd, layout)
    updates = _raw_lora_updates(path, layout, base_unet, base_text)
    # Every attention projection of the UNet (6 transformer blocks: 2 down, 1 middle, 3 up;
    # × 2 attentions × 4) and of the text encoder (2 layers × 4).
    assert (len(updates["unet"]), len(updates["clip_l"])) == (48, 8)
    merged_unet = _merged_copy(base_unet, updates["unet"], MODEL_STRENGTH)
    merged_text = _merged_copy(base_text, updates["clip_l"], CLIP_STRENGTH)
    lora_model, lora_clip = sd.node("LoraLoader").load_lora(
        model, clip, path.name, MODEL_STRENGTH, CLIP_STRENGTH
    )

    # The text encoder: CLIPTextEncode on the LoRA'd CLIP = the pipeline's encoding with the
    # merged copy.
    reference_pipe = sd_pipeline(
        model, clip, vae, tokenizer, unet=merged_unet, text_encoder=merged_text
    )
    ((cond, _),) = _encode(sd, lora_clip, POSITIVE)
    prompt_embeds, _negative = _pipeline_prompts(reference_pipe)
    assert max_difference(cond, prompt_embeds) <= 1e-5
    ((plain, _),) = _encode(sd, clip, POSITIVE)
    assert max_difference(cond, plain) > 1e-2  # the LoRA changed it

    # The UNet: the LoRA'd model's output = the merged copy's.
    x, timestep = _noise(31), torch.tensor(500.0)
    with torch.inference_mode():
        unpatched = base_unet(x, timestep, encoder_hidden_states=cond).sample
        reference = merged_unet(x, timestep, encoder_hidden_states=cond).sample
    with lora_model.unet.applied(CPU) as unet, torch.inference_mode():
        ours = unet(x, timestep, encoder_hidden_states=cond).sample
    assert max_difference(ours, reference) <= 1e-5
    assert max_difference(ours, unpatched) > 1e-2  # the LoRA changed it


@pytest.mark.parametrize("layout", ["kohya", "kohya-ldm", "peft"])
def test_lora_workflow_matches_the_pipeline_on_merged_copies(
    sd: SDHarness, tokenizer: Any, schedule: DiscreteSchedule, layout: str
) -> None:
    model, clip, vae = sd.checkpoint()
    path = _lora_path(sd, layout)
    updates = _raw_lora_updates(path, layout, model.unet.module, clip.encoders["clip_l"].module)
    reference_pipe = sd_pipeline(
        model,
        clip,
        vae,
        tokenizer,
        unet=_merged_copy(model.unet.module, updates["unet"], MODEL_STRENGTH),
        text_encoder=_merged_copy(clip.encoders["clip_l"].module, updates["clip_l"], CLIP_STRENGTH),
    )
    lora_model, lora_clip = sd.node("LoraLoader").load_lora(
        model, clip, path.name, MODEL_STRENGTH, CLIP_STRENGTH
    )
    ours = _ksampler_latent(sd, lora_model, lora_clip, seed=9, steps=6)
    reference = _pipeline_ksampler_reference(reference_pipe, schedule, seed=9, steps=6)
    assert max_difference(ours, reference) <= _sampling_bound(reference)


# --- 6. ControlNet -----------------------------------------------------------------------------

CONTROL_STRENGTH = 0.8


def _control_image() -> Tensor:
    """An IMAGE [1, 64, 64, 3] already at the latent's pixel size (no resize on either side):
    smooth gradients plus a hard-edged square, like an edge or depth map."""
    rows = torch.linspace(0, 1, 64).reshape(64, 1).expand(64, 64)
    columns = rows.T
    square = torch.zeros(64, 64)
    square[16:48, 20:44] = 1.0
    return torch.stack([rows, columns, square], dim=-1).unsqueeze(0)


@pytest.fixture(scope="module")
def control_pipe(sd: SDHarness, tokenizer: Any) -> Any:
    return sd_pipeline(*sd.checkpoint(), tokenizer, controlnet=sd.controlnet())


def _controlled(sd: SDHarness, clip: Any) -> tuple[Conditioning, Conditioning]:
    positive, negative = sd.node("ControlNetApplyAdvanced").apply_controlnet(
        _encode(sd, clip, POSITIVE),
        _encode(sd, clip, NEGATIVE),
        sd.controlnet(),
        _control_image(),
        CONTROL_STRENGTH,
        0.0,
        1.0,
    )
    return positive, negative


@pytest.mark.parametrize("timestep", [100, 999])
def test_a_controlled_denoiser_call_equals_the_controlnet_pipelines(
    sd: SDHarness, control_pipe: Any, schedule: DiscreteSchedule, timestep: int
) -> None:
    model, clip, _vae = sd.checkpoint()
    positive, negative = _controlled(sd, clip)
    sigma = schedule.sigmas[timestep]
    x = _noise(41 + timestep) * (1 + sigma**2).sqrt()
    with model.unet.applied(CPU) as unet, torch.inference_mode():
        ours = _denoiser(model, unet, schedule, positive, negative)(x, sigma.reshape(1))
        uncontrolled = _denoiser(
            model, unet, schedule, _encode(sd, clip, POSITIVE), _encode(sd, clip, NEGATIVE)
        )(x, sigma.reshape(1))
    # The ControlNet pipeline's step, with its own control-image preparation.
    prompt_embeds, negative_embeds = _pipeline_prompts(control_pipe)
    embeds = torch.cat([negative_embeds, prompt_embeds])
    with torch.inference_mode():
        hint = control_pipe.prepare_image(
            image=_control_image().movedim(-1, 1),
            width=64,
            height=64,
            batch_size=1,
            num_images_per_prompt=1,
            device=CPU,
            dtype=torch.float32,
            do_classifier_free_guidance=True,
        )
        model_input = torch.cat([x, x]) / (sigma**2 + 1) ** 0.5
        t = torch.tensor(float(timestep))
        down, mid = control_pipe.controlnet(
            model_input,
            t,
            encoder_hidden_states=embeds,
            controlnet_cond=hint,
            conditioning_scale=CONTROL_STRENGTH,
            return_dict=False,
        )
        eps = control_pipe.unet(
            model_input,
            t,
            encoder_hidden_states=embeds,
            down_block_additional_residuals=down,
            mid_block_additional_residual=mid,
        ).sample
        eps_uncond, eps_cond = eps.chunk(2)
        reference = x - sigma * (eps_uncond + CFG * (eps_cond - eps_uncond))
    assert max_difference(ours, reference) <= _guided_bound(reference)
    assert max_difference(ours, uncontrolled) > 1e-2  # the ControlNet acted


def test_controlnet_sampling_matches_the_controlnet_pipeline(
    sd: SDHarness, control_pipe: Any, schedule: DiscreteSchedule
) -> None:
    steps = 12
    model, clip, _vae = sd.checkpoint()
    positive, negative = _controlled(sd, clip)
    prompt_embeds, negative_embeds = _pipeline_prompts(control_pipe)
    noise = _noise(51)
    scheduler = euler_scheduler()
    scheduler.set_timesteps(steps)
    with torch.inference_mode():
        reference = control_pipe(
            prompt_embeds=prompt_embeds,
            negative_prompt_embeds=negative_embeds,
            image=_control_image().movedim(-1, 1),
            num_inference_steps=steps,
            guidance_scale=CFG,
            controlnet_conditioning_scale=CONTROL_STRENGTH,
            latents=noise.clone(),
            output_type="latent",
        ).images
    continuous = DiffusersTimesteps(schedule, scheduler)
    with model.unet.applied(CPU) as unet, torch.inference_mode():
        ours = run_sampler(
            "euler",
            _denoiser(model, unet, continuous, positive, negative),
            noise * scheduler.init_noise_sigma,
            scheduler.sigmas,
            noise_seed=0,
        )
    assert max_difference(ours, reference) <= _sampling_bound(reference)


# --- 7. determinism ----------------------------------------------------------------------------


def _saved_pixels(sd: SDHarness, result: Any) -> np.ndarray[Any, Any]:
    assert result.status == "success", result.error
    (saved,) = result.outputs["9"]["images"]
    path = sd.directories.output / saved["subfolder"] / saved["filename"]
    with Image.open(path) as image:
        pixels: np.ndarray[Any, Any] = np.asarray(image.convert("RGB")).copy()
    return pixels


def test_same_seed_same_image_and_different_seeds_differ(sd: SDHarness) -> None:
    # Fresh executors: nothing comes from the output cache; the models stay loaded.
    first = _saved_pixels(sd, sd.run(_default_workflow(sd, seed=42, steps=6)))
    again = _saved_pixels(sd, sd.run(_default_workflow(sd, seed=42, steps=6)))
    other = _saved_pixels(sd, sd.run(_default_workflow(sd, seed=43, steps=6)))
    assert first.shape == (64, 64, 3)
    assert np.array_equal(first, again)
    assert not np.array_equal(first, other)
    assert float(first.astype(np.float64).std()) > 2.0  # a picture, not a flat colour

    # Bit for bit below the PNG's 8 bits as well: the float latents and pixels.
    model, clip, vae = sd.checkpoint()
    latents = [_ksampler_latent(sd, model, clip, seed=seed, steps=6) for seed in (42, 42, 43)]
    assert torch.equal(latents[0], latents[1])
    assert not torch.equal(latents[0], latents[2])
    images = [sd.node("VAEDecode").decode(vae, {"samples": latent})[0] for latent in latents[:2]]
    assert torch.equal(images[0], images[1])


# --- 8. SDXL: two text encoders, pooled output and size conditioning -------------------------
# (`xl`, not `sdxl`: that name is the SD tests' session world in conftest.py.)


@pytest.fixture(scope="module")
def xl(tmp_path_factory: pytest.TempPathFactory) -> SDHarness:
    return make_sd_harness(tmp_path_factory.mktemp("xl-crosscheck"), Family.SDXL)


@pytest.fixture(scope="module")
def xl_pipe(xl: SDHarness, tmp_path_factory: pytest.TempPathFactory) -> Any:
    directory = tmp_path_factory.mktemp("clip-tokenizers")
    return sdxl_pipeline(
        *xl.checkpoint(),
        clip_tokenizer(directory / "clip_l"),
        clip_tokenizer(directory / "clip_g", pad_token="!"),
    )


def test_sdxl_text_and_guided_call_equal_the_sdxl_pipelines(xl: SDHarness, xl_pipe: Any) -> None:
    model, clip, _vae = xl.checkpoint()
    positive = _encode(xl, clip, POSITIVE)
    negative = _encode(xl, clip, NEGATIVE)
    with torch.inference_mode():
        prompt_embeds, negative_embeds, pooled, negative_pooled = xl_pipe.encode_prompt(
            POSITIVE, device=CPU, do_classifier_free_guidance=True, negative_prompt=NEGATIVE
        )
    # clip_l's and clip_g's penultimate layers side by side; clip_g's projected pooled output.
    assert prompt_embeds.shape == (1, 77, 64)
    assert max_difference(positive[0][0], prompt_embeds) <= 1e-6
    assert max_difference(negative[0][0], negative_embeds) <= 1e-6
    assert max_difference(positive[0][1]["pooled_output"], pooled) <= 1e-6
    assert max_difference(negative[0][1]["pooled_output"], negative_pooled) <= 1e-6

    schedule = DiscreteSchedule(model.alphas_cumprod, prediction=model.family.prediction)
    sigma = schedule.sigmas[500]
    x = _noise(61) * (1 + sigma**2).sqrt()
    with model.unet.applied(CPU) as unet, torch.inference_mode():
        ours = _denoiser(model, unet, schedule, positive, negative)(x, sigma.reshape(1))
    with torch.inference_mode():
        # The pipeline's size conditioning for a 64×64 image: original size, crop, target size.
        time_ids = xl_pipe._get_add_time_ids(
            (64, 64), (0, 0), (64, 64), torch.float32, text_encoder_projection_dim=32
        )
        eps = xl_pipe.unet(
            torch.cat([x, x]) / (sigma**2 + 1) ** 0.5,
            torch.tensor(500.0),
            encoder_hidden_states=torch.cat([negative_embeds, prompt_embeds]),
            added_cond_kwargs={
                "text_embeds": torch.cat([negative_pooled, pooled]),
                "time_ids": torch.cat([time_ids, time_ids]),
            },
        ).sample
        eps_uncond, eps_cond = eps.chunk(2)
        reference = x - sigma * (eps_uncond + CFG * (eps_cond - eps_uncond))
    assert max_difference(ours, reference) <= _guided_bound(reference)


def test_sdxl_ksampler_node_matches_the_sdxl_pipeline(xl: SDHarness, xl_pipe: Any) -> None:
    model, clip, _vae = xl.checkpoint()
    schedule = DiscreteSchedule(model.alphas_cumprod, prediction=model.family.prediction)
    ours = _ksampler_latent(xl, model, clip, seed=7, steps=6)
    reference = _pipeline_ksampler_reference(xl_pipe, schedule, seed=7, steps=6)
    assert model.family.vae_scaling_factor == xl_pipe.vae.config.scaling_factor == 0.13025
    assert max_difference(ours, reference) <= _sampling_bound(reference)
