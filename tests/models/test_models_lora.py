"""read_lora and LoraPatch: every layout (kohya with diffusers or LDM names, LoCon convolutions,
text encoders, peft, diffusers' saver) lands on the same parameters with the same patches, the
update equals a manual merge, and what cannot be placed is reported, not guessed."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from safetensors.torch import save_file
from torch import nn
from torch.nn import functional

from flowscope.models.families import CheckpointFamily, Family
from flowscope.models.files import ModelFileError, PickleRefusedError
from flowscope.models.lora import LoraPatch, LoraShapeError, read_lora

os.environ.setdefault("HF_HUB_OFFLINE", "1")
torch.set_num_threads(1)

RANK = 4
TINY_UNET: dict[str, Any] = {
    "sample_size": 8,
    "in_channels": 4,
    "out_channels": 4,
    "down_block_types": ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D"],
    "up_block_types": ["CrossAttnUpBlock2D", "CrossAttnUpBlock2D"],
    "block_out_channels": [32, 64],
    "layers_per_block": 2,
    "cross_attention_dim": 32,
    "attention_head_dim": 8,
    "norm_num_groups": 32,
}
TINY_TEXT: dict[str, Any] = {
    "vocab_size": 49408,
    "hidden_size": 32,
    "intermediate_size": 64,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "max_position_embeddings": 77,
}
SD1 = CheckpointFamily(
    family=Family.SD1,
    prediction="epsilon",
    vae_scaling_factor=0.18215,
    text_encoders=("clip_l",),
    unet_config=TINY_UNET,
    vae_config={},
    text_configs={"clip_l": TINY_TEXT},
)
# SDXL-shaped: no attention at the first level, two transformer blocks at the second.
TINY_XL_UNET: dict[str, Any] = {
    **TINY_UNET,
    "down_block_types": ["DownBlock2D", "CrossAttnDownBlock2D"],
    "up_block_types": ["CrossAttnUpBlock2D", "UpBlock2D"],
    "transformer_layers_per_block": [1, 2],
    "cross_attention_dim": 64,
    "use_linear_projection": True,
}
SDXL = CheckpointFamily(
    family=Family.SDXL,
    prediction="epsilon",
    vae_scaling_factor=0.13025,
    text_encoders=("clip_l", "clip_g"),
    unet_config=TINY_XL_UNET,
    vae_config={},
    text_configs={"clip_l": TINY_TEXT, "clip_g": {**TINY_TEXT, "projection_dim": 32}},
)


# --- the models and a LoRA for every weighted layer of them ------------------------------------


def tiny_unet(config: dict[str, Any] = TINY_UNET) -> nn.Module:
    from diffusers import UNet2DConditionModel

    torch.manual_seed(0)
    return UNet2DConditionModel(**config)


def tiny_text(projection: bool = False) -> nn.Module:
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    torch.manual_seed(1)
    if projection:
        return CLIPTextModelWithProjection(CLIPTextConfig(**TINY_TEXT, projection_dim=32))
    return CLIPTextModel(CLIPTextConfig(**TINY_TEXT))


class Pair:
    """The low-rank pair the test writes for one module: what every layout must give back."""

    def __init__(self, module: nn.Module, alpha: float, generator: torch.Generator) -> None:
        if isinstance(module, nn.Conv2d):
            kh, kw = module.kernel_size
            self.down = torch.randn(RANK, module.in_channels, kh, kw, generator=generator)
            self.up = torch.randn(module.out_channels, RANK, 1, 1, generator=generator)
        else:
            assert isinstance(module, nn.Linear)
            self.down = torch.randn(RANK, module.in_features, generator=generator)
            self.up = torch.randn(module.out_features, RANK, generator=generator)
        self.alpha = alpha


def pairs_for(model: nn.Module, *, alpha: float = RANK, seed: int = 0) -> dict[str, Pair]:
    """A pair for every Linear and Conv2d of `model`, by module name."""
    generator = torch.Generator().manual_seed(seed)
    return {
        name: Pair(module, alpha, generator)
        for name, module in model.named_modules()
        if isinstance(module, nn.Linear | nn.Conv2d)
    }


def ldm_module(name: str) -> str:
    """The original (LDM) module path of a TINY_UNET diffusers module: written out here,
    independently of `layouts.py`, for 2 levels of 2 layers, attention at both levels."""
    fixed = {
        "conv_in": "input_blocks.0.0",
        "time_embedding.linear_1": "time_embed.0",
        "time_embedding.linear_2": "time_embed.2",
        "conv_norm_out": "out.0",
        "conv_out": "out.2",
    }
    if name in fixed:
        return fixed[name]
    resnet = {
        "norm1": "in_layers.0",
        "conv1": "in_layers.2",
        "time_emb_proj": "emb_layers.1",
        "norm2": "out_layers.0",
        "conv2": "out_layers.3",
        "conv_shortcut": "skip_connection",
    }
    parts = name.split(".")
    if parts[0] == "mid_block":
        kind, index, rest = parts[1], int(parts[2]), parts[3:]
        block = f"middle_block.{1 if kind == 'attentions' else 2 * index}"
    else:
        level, kind, index, rest = int(parts[1]), parts[2], int(parts[3]), parts[4:]
        if parts[0] == "down_blocks":
            if kind == "downsamplers":  # input_blocks 1, 2 (level 0), 3 (down), 4, 5 (level 1)
                return f"input_blocks.{3 * level + 3}.0.op"
            block = f"input_blocks.{3 * level + 1 + index}.{0 if kind == 'resnets' else 1}"
        else:
            if kind == "upsamplers":  # after the last layer's resnet and attention
                return f"output_blocks.{3 * level + 2}.2.conv"
            block = f"output_blocks.{3 * level + index}.{0 if kind == 'resnets' else 1}"
    if kind == "resnets":
        rest = [resnet[rest[0]], *rest[1:]]
    return ".".join([block, *rest])


def kohya(pairs: dict[str, Pair], prefix: str, rename: Callable[[str], str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, pair in pairs.items():
        key = prefix + rename(name).replace(".", "_")
        out[f"{key}.lora_down.weight"] = pair.down
        out[f"{key}.lora_up.weight"] = pair.up
        out[f"{key}.alpha"] = torch.tensor(pair.alpha)
    return out


def peft(pairs: dict[str, Pair], prefix: str, down: str, up: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, pair in pairs.items():
        out[f"{prefix}{name}.{down}.weight"] = pair.down
        out[f"{prefix}{name}.{up}.weight"] = pair.up
    return out


def text_name(name: str) -> str:
    """What LoRA files call a CLIP text module: transformers' names with `text_model.`, which
    transformers 5's CLIPTextModel no longer has."""
    return name if name.startswith(("text_model.", "text_projection")) else f"text_model.{name}"


def diffusers_saver(unet: dict[str, Pair], text: dict[str, Pair]) -> dict[str, Any]:
    """What `StableDiffusionPipeline.save_lora_weights` writes for a peft-trained model after
    `convert_state_dict_to_diffusers`: `lora.down/up` on attention projections, peft names
    elsewhere, `lora_linear_layer.down/up` on text attention, no alphas."""
    out: dict[str, Any] = {}
    for name, pair in unet.items():
        attention = name.rsplit(".", 1)[-1] in ("to_q", "to_k", "to_v") or name.endswith("to_out.0")
        down, up = ("lora.down", "lora.up") if attention else ("lora_A", "lora_B")
        out.update(peft({name: pair}, "unet.", down, up))
    for name, pair in text.items():
        attention = name.endswith(("q_proj", "k_proj", "v_proj", "out_proj"))
        down, up = (
            ("lora_linear_layer.down", "lora_linear_layer.up")
            if attention
            else (
                "lora_A",
                "lora_B",
            )
        )
        out.update(peft({text_name(name): pair}, "text_encoder.", down, up))
    return out


def save(tmp_path: Path, name: str, tensors: dict[str, Any]) -> Path:
    path = tmp_path / name
    save_file({key: value.contiguous().clone() for key, value in tensors.items()}, path)
    return path


@pytest.fixture(scope="module")
def models() -> tuple[nn.Module, nn.Module]:
    return tiny_unet(), tiny_text()


@pytest.fixture(scope="module")
def pairs(models: tuple[nn.Module, nn.Module]) -> tuple[dict[str, Pair], dict[str, Pair]]:
    unet, text = models
    return pairs_for(unet, seed=0), pairs_for(text, seed=1)


LAYOUTS: dict[str, Callable[[dict[str, Pair], dict[str, Pair]], dict[str, Any]]] = {
    "kohya": lambda u, t: {
        **kohya(u, "lora_unet_", str),
        **kohya(t, "lora_te_", text_name),
    },
    "kohya-ldm": lambda u, t: {
        **kohya(u, "lora_unet_", ldm_module),
        **kohya(t, "lora_te_", text_name),
    },
    "peft": lambda u, t: {
        **peft(u, "unet.", "lora_A", "lora_B"),
        **peft({text_name(n): p for n, p in t.items()}, "text_encoder.", "lora_A", "lora_B"),
    },
    "peft-wrapped": lambda u, t: {
        **peft(u, "unet.base_model.model.", "lora_A", "lora_B"),
        **peft({text_name(n): p for n, p in t.items()}, "base_model.model.", "lora_A", "lora_B"),
    },
    "diffusers-saver": diffusers_saver,
}


def check_patches(
    patches: dict[str, LoraPatch], expected: dict[str, Pair], model: nn.Module, *, alphas: bool
) -> None:
    assert set(patches) == {f"{name}.weight" for name in expected}
    assert set(patches) <= {name for name, _ in model.named_parameters()}  # what add_patches finds
    for name, pair in expected.items():
        patch = patches[f"{name}.weight"]
        assert torch.equal(patch.up, pair.up) and torch.equal(patch.down, pair.down)
        assert patch.alpha == (pair.alpha if alphas else None)


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_every_layout_places_every_pair_on_the_same_parameter(
    tmp_path: Path,
    layout: str,
    models: tuple[nn.Module, nn.Module],
    pairs: tuple[dict[str, Pair], dict[str, Pair]],
) -> None:
    unet, text = models
    unet_pairs, text_pairs = pairs
    path = save(tmp_path, f"{layout}.safetensors", LAYOUTS[layout](unet_pairs, text_pairs))

    lora = read_lora(path, SD1)

    assert lora.source == path
    assert lora.unmatched == ()
    assert set(lora.text_encoders) == {"clip_l"}
    alphas = layout.startswith("kohya")
    check_patches(lora.unet, unet_pairs, unet, alphas=alphas)
    check_patches(lora.text_encoders["clip_l"], text_pairs, text, alphas=alphas)
    # Every layer kind is there: 3×3 LoCon convolutions, 1×1 proj_in, linear attention.
    assert lora.unet["down_blocks.0.resnets.0.conv1.weight"].down.shape == (RANK, 32, 3, 3)
    assert lora.unet["down_blocks.0.attentions.0.proj_in.weight"].down.ndim == 4
    assert "up_blocks.0.upsamplers.0.conv.weight" in lora.unet
    assert "down_blocks.0.downsamplers.0.conv.weight" in lora.unet


def test_layouts_give_the_same_updates(
    tmp_path: Path,
    models: tuple[nn.Module, nn.Module],
    pairs: tuple[dict[str, Pair], dict[str, Pair]],
) -> None:
    # alpha == rank: kohya's scale is 1, which is what peft files (no alpha) get.
    unet, _ = models
    weights = dict(unet.named_parameters())
    loras = [
        read_lora(save(tmp_path, f"{name}.safetensors", build(*pairs)), SD1)
        for name, build in LAYOUTS.items()
    ]
    for name, patch in loras[0].unet.items():
        expected = patch.delta(weights[name].detach())
        for other in loras[1:]:
            assert torch.equal(other.unet[name].delta(weights[name].detach()), expected)


def test_a_patch_equals_a_manual_merge(tmp_path: Path, models: tuple[nn.Module, nn.Module]) -> None:
    unet, text = models
    unet_pairs = pairs_for(unet, alpha=1.5, seed=3)
    text_pairs = pairs_for(text, alpha=8.0, seed=4)
    path = save(
        tmp_path,
        "alpha.safetensors",
        {**kohya(unet_pairs, "lora_unet_", ldm_module), **kohya(text_pairs, "lora_te_", text_name)},
    )
    lora = read_lora(path, SD1)

    for model, patches, expected in (
        (unet, lora.unet, unet_pairs),
        (text, lora.text_encoders["clip_l"], text_pairs),
    ):
        modules = dict(model.named_modules())
        for name, pair in expected.items():
            module = modules[name]
            weight = module.weight.detach()
            merged = weight + patches[f"{name}.weight"].delta(weight)
            scale = pair.alpha / RANK
            if isinstance(module, nn.Linear):
                manual = weight + pair.up @ pair.down * scale
                assert torch.allclose(merged, manual, atol=1e-6, rtol=0)
            else:
                # A convolution with the merged kernel = the original plus the LoRA's down
                # convolution followed by its 1×1 up convolution.
                x = torch.randn(
                    1, module.in_channels, 6, 6, generator=torch.Generator().manual_seed(5)
                )
                padding, stride = module.padding, module.stride
                branch = functional.conv2d(
                    functional.conv2d(x, pair.down, stride=stride, padding=padding), pair.up
                )
                expected_out = (
                    functional.conv2d(x, weight, stride=stride, padding=padding) + branch * scale
                )
                got = functional.conv2d(x, merged, stride=stride, padding=padding)
                assert torch.allclose(got, expected_out, atol=1e-4, rtol=1e-5)


def test_locon_with_a_mid_kernel_is_three_convolutions() -> None:
    generator = torch.Generator().manual_seed(6)
    weight = torch.randn(8, 6, 3, 3, generator=generator)
    down = torch.randn(2, 6, 1, 1, generator=generator)
    mid = torch.randn(3, 2, 3, 3, generator=generator)
    up = torch.randn(8, 3, 1, 1, generator=generator)
    patch = LoraPatch(up=up, down=down, alpha=1.0, mid=mid)  # scale: alpha / rank(down) = 0.5
    x = torch.randn(1, 6, 5, 5, generator=generator)

    got = functional.conv2d(x, weight + patch.delta(weight), padding=1)

    branch = functional.conv2d(functional.conv2d(functional.conv2d(x, down), mid, padding=1), up)
    assert torch.allclose(got, functional.conv2d(x, weight, padding=1) + 0.5 * branch, atol=1e-4)


def test_a_locon_file_with_mid_kernels_is_read(tmp_path: Path) -> None:
    generator = torch.Generator().manual_seed(12)
    key = "lora_unet_" + ldm_module("down_blocks.1.resnets.0.conv2").replace(".", "_")
    tensors = {
        f"{key}.lora_down.weight": torch.randn(2, 64, 1, 1, generator=generator),
        f"{key}.lora_mid.weight": torch.randn(2, 2, 3, 3, generator=generator),
        f"{key}.lora_up.weight": torch.randn(64, 2, 1, 1, generator=generator),
        f"{key}.alpha": torch.tensor(1.0),
    }
    lora = read_lora(save(tmp_path, "locon.safetensors", tensors), SD1)

    assert lora.unmatched == ()
    patch = lora.unet["down_blocks.1.resnets.0.conv2.weight"]
    assert patch.mid is not None and torch.equal(patch.mid, tensors[f"{key}.lora_mid.weight"])
    assert patch.key == key and patch.source == tmp_path / "locon.safetensors"
    assert patch.delta(torch.zeros(64, 64, 3, 3)).shape == (64, 64, 3, 3)


@settings(max_examples=40)
@given(
    rows=st.integers(1, 12),
    columns=st.integers(1, 12),
    rank=st.integers(1, 6),
    alpha=st.none() | st.floats(0.1, 64.0),
    seed=st.integers(0, 2**16),
)
def test_linear_delta_is_up_at_down_times_alpha_over_rank(
    rows: int, columns: int, rank: int, alpha: float | None, seed: int
) -> None:
    generator = torch.Generator().manual_seed(seed)
    up = torch.randn(rows, rank, generator=generator)
    down = torch.randn(rank, columns, generator=generator)
    weight = torch.randn(rows, columns, generator=generator)
    scale = 1.0 if alpha is None else alpha / rank

    delta = LoraPatch(up=up, down=down, alpha=alpha).delta(weight)

    assert torch.allclose(delta, up @ down * scale, atol=1e-5, rtol=1e-5)


def test_delta_takes_the_weights_dtype_and_a_linear_pair_fits_a_1x1_conv() -> None:
    generator = torch.Generator().manual_seed(7)
    patch = LoraPatch(
        up=torch.randn(8, 2, generator=generator),
        down=torch.randn(2, 6, generator=generator),
        alpha=None,
    )
    half = torch.zeros(8, 6, 1, 1, dtype=torch.float16)

    delta = patch.delta(half)

    assert delta.dtype == torch.float16 and delta.shape == (8, 6, 1, 1)
    assert torch.allclose(delta.float().reshape(8, 6), patch.up @ patch.down, atol=1e-2)


def test_a_delta_that_does_not_fit_names_the_key_and_file() -> None:
    patch = LoraPatch(
        up=torch.zeros(8, 2),
        down=torch.zeros(2, 6),
        alpha=None,
        source=Path("style.safetensors"),
        key="lora_unet_down_blocks_0_attentions_0_proj_in",
    )
    with pytest.raises(LoraShapeError, match=r"style\.safetensors.*proj_in.*\(8, 7\)"):
        patch.delta(torch.zeros(8, 7))
    assert isinstance(LoraShapeError(Path("x"), "y"), ModelFileError)


def test_what_cannot_be_placed_is_unmatched(
    tmp_path: Path, pairs: tuple[dict[str, Pair], dict[str, Pair]]
) -> None:
    unet_pairs, _ = pairs
    good = {
        "down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q": unet_pairs[
            "down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q"
        ]
    }
    wrong_shape = Pair(nn.Linear(7, 5), RANK, torch.Generator().manual_seed(8))
    tensors = {
        **kohya(good, "lora_unet_", str),
        # a module this UNet does not have
        **kohya({"down_blocks.5.attentions.0.proj_in": unet_pairs["conv_in"]}, "lora_unet_", str),
        # the right module, but a LoRA made for a wider model
        **kohya({"conv_out": wrong_shape}, "lora_unet_", str),
        # half a pair
        "lora_unet_conv_in.lora_down.weight": unet_pairs["conv_in"].down,
        # LyCORIS LoHa and DoRA, which we do not apply
        "lora_unet_conv_out.hada_w1_a": torch.zeros(2, 2),
        "lora_unet_time_embedding_linear_1.lora_down.weight": unet_pairs[
            "time_embedding.linear_1"
        ].down,
        "lora_unet_time_embedding_linear_1.lora_up.weight": unet_pairs[
            "time_embedding.linear_1"
        ].up,
        "lora_unet_time_embedding_linear_1.dora_scale": torch.ones(1, 32),
        # a second text encoder SD1 does not have
        "lora_te2_text_model_encoder_layers_0_mlp_fc1.lora_down.weight": torch.zeros(RANK, 32),
        "lora_te2_text_model_encoder_layers_0_mlp_fc1.lora_up.weight": torch.zeros(64, RANK),
        "something.else": torch.zeros(1),
    }
    lora = read_lora(save(tmp_path, "mixed.safetensors", tensors), SD1)

    assert list(lora.unet) == ["down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q.weight"]
    assert lora.text_encoders == {}
    expected = sorted(set(tensors) - {key for key in tensors if "attn1_to_q" in key})
    assert list(lora.unmatched) == expected


def test_sdxl_text_encoders_and_ldm_names(tmp_path: Path) -> None:
    te1, te2 = tiny_text(), tiny_text(projection=True)
    pairs_1 = pairs_for(te1, seed=9)
    pairs_2 = pairs_for(te2, seed=10)
    generator = torch.Generator().manual_seed(11)
    to_k = Pair(nn.Linear(64, 64), RANK, generator)
    down_op = Pair(nn.Conv2d(32, 32, 3), RANK, generator)
    unet = {
        # SDXL LoRAs use the original names: input_blocks.4 is level 1's first layer
        "input_blocks.4.1.transformer_blocks.1.attn2.to_k": to_k,
        "input_blocks.3.0.op": down_op,
    }
    tensors = {
        **kohya(pairs_1, "lora_te1_", text_name),
        **kohya(pairs_2, "lora_te2_", text_name),
        **kohya(unet, "lora_unet_", str),
    }
    lora = read_lora(save(tmp_path, "xl.safetensors", tensors), SDXL)

    assert lora.unmatched == ()
    assert set(lora.unet) == {
        "down_blocks.1.attentions.0.transformer_blocks.1.attn2.to_k.weight",
        "down_blocks.0.downsamplers.0.conv.weight",
    }
    assert set(lora.text_encoders["clip_l"]) == {f"{n}.weight" for n in pairs_1}
    assert set(lora.text_encoders["clip_g"]) == {f"{n}.weight" for n in pairs_2}
    assert set(lora.text_encoders["clip_g"]) <= {n for n, _ in te2.named_parameters()}
    assert "text_projection.weight" in lora.text_encoders["clip_g"]

    # peft: text_encoder_2 is clip_g
    peft_tensors = peft(
        {text_name(n): p for n, p in pairs_2.items()}, "text_encoder_2.", "lora_A", "lora_B"
    )
    peft_lora = read_lora(save(tmp_path, "xl-peft.safetensors", peft_tensors), SDXL)
    assert set(peft_lora.text_encoders) == {"clip_g"}
    assert set(peft_lora.text_encoders["clip_g"]) == set(lora.text_encoders["clip_g"])


def test_old_attention_processor_layout(
    tmp_path: Path, pairs: tuple[dict[str, Pair], dict[str, Pair]]
) -> None:
    unet_pairs, text_pairs = pairs
    block = "down_blocks.1.attentions.1.transformer_blocks.0.attn2"
    tensors = {
        f"unet.{block}.processor.to_out_lora.down.weight": unet_pairs[f"{block}.to_out.0"].down,
        f"unet.{block}.processor.to_out_lora.up.weight": unet_pairs[f"{block}.to_out.0"].up,
        "text_encoder.text_model.encoder.layers.1.self_attn.to_k_lora.down.weight": text_pairs[
            "encoder.layers.1.self_attn.k_proj"
        ].down,
        "text_encoder.text_model.encoder.layers.1.self_attn.to_k_lora.up.weight": text_pairs[
            "encoder.layers.1.self_attn.k_proj"
        ].up,
    }
    lora = read_lora(save(tmp_path, "old.safetensors", tensors), SD1)

    assert lora.unmatched == ()
    assert list(lora.unet) == [f"{block}.to_out.0.weight"]
    assert list(lora.text_encoders["clip_l"]) == ["encoder.layers.1.self_attn.k_proj.weight"]


def test_broken_files_give_clear_errors(
    tmp_path: Path, pairs: tuple[dict[str, Pair], dict[str, Pair]]
) -> None:
    unet_pairs, text_pairs = pairs
    path = save(tmp_path, "whole.safetensors", kohya(unet_pairs, "lora_unet_", str))
    truncated = tmp_path / "truncated.safetensors"
    truncated.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(ModelFileError, match=r"truncated\.safetensors.*truncated"):
        read_lora(truncated, SD1)

    bad_alpha = kohya({"conv_in": unet_pairs["conv_in"]}, "lora_unet_", str)
    bad_alpha["lora_unet_conv_in.alpha"] = torch.ones(3)
    with pytest.raises(ModelFileError, match=r"bad-alpha\.safetensors.*alpha"):
        read_lora(save(tmp_path, "bad-alpha.safetensors", bad_alpha), SD1)

    pickled = tmp_path / "old.pt"
    torch.save(kohya(text_pairs, "lora_te_", text_name), pickled)
    with pytest.raises(PickleRefusedError):
        read_lora(pickled, SD1)
    assert len(read_lora(pickled, SD1, allow_pickle=True).text_encoders["clip_l"]) == len(
        text_pairs
    )
