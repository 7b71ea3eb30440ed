"""load_controlnet: a ControlNet saved in diffusers' layout and in the original layout (with and
without `control_model.`), SD1- and SDXL-shaped, loads into a model that computes exactly what
the original did; broken or foreign files give errors naming the file."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import save_file

from flowscope.models.controlnet_files import load_controlnet
from flowscope.models.families import Family
from flowscope.models.files import ModelFileError

os.environ.setdefault("HF_HUB_OFFLINE", "1")
torch.set_num_threads(1)

HINT = [8, 8, 16, 16]  # four stages: the hint is downsampled 8×, like the latent
SD1_CONFIG: dict[str, Any] = {
    "in_channels": 4,
    "conditioning_channels": 3,
    "down_block_types": ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D"],
    "block_out_channels": [32, 64],
    "layers_per_block": 2,
    "cross_attention_dim": 32,
    "attention_head_dim": 8,  # SD1's convention: 8 heads everywhere
    "norm_num_groups": 32,
    "conditioning_embedding_out_channels": HINT,
}
SDXL_CONFIG: dict[str, Any] = {
    **SD1_CONFIG,
    "down_block_types": ["DownBlock2D", "CrossAttnDownBlock2D"],
    "transformer_layers_per_block": [1, 2],
    "cross_attention_dim": 64,
    # SDXL's convention: heads of 64 channels where the width allows, else 8 heads.
    "attention_head_dim": [8, 1],
    "use_linear_projection": True,
    "addition_embed_type": "text_time",
    "addition_time_embed_dim": 8,
    # pooled 32 + 6 time ids × 8 (the tiny convention: time ids a quarter of the pooled width)
    "projection_class_embeddings_input_dim": 80,
}


def controlnet(config: dict[str, Any]) -> Any:
    from diffusers import ControlNetModel

    torch.manual_seed(0)
    model = ControlNetModel(**config).eval()
    # Random everywhere: a fresh ControlNet's zero convolutions would make every output 0.
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.2)
    return model


def original_module(name: str, hint_blocks: int) -> str:
    """The original-layout module path of a diffusers ControlNet module, written out here
    (independently of `layouts.py`) for 2 levels of 2 layers."""
    fixed = {
        "conv_in": "input_blocks.0.0",
        "time_embedding.linear_1": "time_embed.0",
        "time_embedding.linear_2": "time_embed.2",
        "add_embedding.linear_1": "label_emb.0.0",
        "add_embedding.linear_2": "label_emb.0.2",
        "controlnet_mid_block": "middle_block_out.0",
        "controlnet_cond_embedding.conv_in": "input_hint_block.0",
        "controlnet_cond_embedding.conv_out": f"input_hint_block.{2 * (hint_blocks + 1)}",
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
    if parts[0] == "controlnet_down_blocks":
        return f"zero_convs.{parts[1]}.0"
    if parts[0] == "controlnet_cond_embedding":  # blocks.i: the convs after conv_in
        return f"input_hint_block.{2 * (int(parts[2]) + 1)}"
    if parts[0] == "mid_block":
        kind, index, rest = parts[1], int(parts[2]), parts[3:]
        block = f"middle_block.{1 if kind == 'attentions' else 2 * index}"
    else:
        level, kind, index, rest = int(parts[1]), parts[2], int(parts[3]), parts[4:]
        if kind == "downsamplers":
            return f"input_blocks.{3 * level + 3}.0.op"
        block = f"input_blocks.{3 * level + 1 + index}.{0 if kind == 'resnets' else 1}"
    if kind == "resnets":
        rest = [resnet[rest[0]], *rest[1:]]
    return ".".join([block, *rest])


def original_state_dict(model: Any, prefix: str) -> dict[str, torch.Tensor]:
    hint_blocks = len(model.controlnet_cond_embedding.blocks)
    out = {}
    for key, value in model.state_dict().items():
        module, _, parameter = key.rpartition(".")
        out[f"{prefix}{original_module(module, hint_blocks)}.{parameter}"] = value
    return out


def save(path: Path, tensors: dict[str, torch.Tensor]) -> Path:
    save_file({key: value.contiguous().clone() for key, value in tensors.items()}, path)
    return path


def outputs(model: Any, config: dict[str, Any]) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(2)
    sample = torch.randn(2, 4, 8, 8, generator=generator)
    hint = torch.rand(2, 3, 64, 64, generator=generator)
    context = torch.randn(2, 5, config["cross_attention_dim"], generator=generator)
    extra = {}
    if config.get("addition_embed_type") == "text_time":
        extra["added_cond_kwargs"] = {
            "text_embeds": torch.randn(2, 32, generator=generator),
            "time_ids": torch.tensor([[64.0, 64, 0, 0, 64, 64]] * 2),
        }
    with torch.no_grad():
        down, mid = model(
            sample,
            torch.tensor([500, 20]),
            encoder_hidden_states=context,
            controlnet_cond=hint,
            conditioning_scale=1.0,
            return_dict=False,
            **extra,
        )
    return [*down, mid]


@pytest.mark.parametrize(
    ("config", "family"),
    [(SD1_CONFIG, Family.SD1), (SDXL_CONFIG, Family.SDXL)],
    ids=["sd1", "sdxl"],
)
@pytest.mark.parametrize("layout", ["diffusers", "original", "original-unprefixed"])
def test_every_layout_loads_the_same_controlnet(
    tmp_path: Path, config: dict[str, Any], family: Family, layout: str
) -> None:
    model = controlnet(config)
    if layout == "diffusers":
        tensors = dict(model.state_dict())
    else:
        prefix = "control_model." if layout == "original" else ""
        tensors = original_state_dict(model, prefix)
        assert f"{prefix}input_hint_block.14.weight" in tensors  # the real files' hint block
    path = save(tmp_path / f"{layout}.safetensors", tensors)

    loaded = load_controlnet(path)

    assert loaded.source == path
    assert loaded.family is family
    assert not loaded.model.training
    for key in ("block_out_channels", "layers_per_block", "conditioning_embedding_out_channels"):
        assert list(_as_list(loaded.model.config[key])) == list(_as_list(config[key]))
    expected = outputs(model, config)
    got = outputs(loaded.model, config)
    assert len(got) == len(expected) == 7  # conv_in + 2×2 layers + 1 downsampler, and the middle
    for a, b in zip(got, expected, strict=True):
        assert a.abs().sum() > 0
        assert torch.equal(a, b)


def _as_list(value: Any) -> list[Any]:
    return list(value) if isinstance(value, list | tuple) else [value]


def test_dtype_is_applied(tmp_path: Path) -> None:
    path = save(tmp_path / "cn.safetensors", dict(controlnet(SD1_CONFIG).state_dict()))

    loaded = load_controlnet(path, dtype=torch.bfloat16)

    assert {p.dtype for p in loaded.model.parameters()} == {torch.bfloat16}
    assert all(p.device.type == "cpu" for p in loaded.model.parameters())


def test_broken_or_foreign_files_give_errors_naming_the_file(tmp_path: Path) -> None:
    tensors = original_state_dict(controlnet(SD1_CONFIG), "control_model.")
    whole = save(tmp_path / "whole.safetensors", tensors)
    truncated = tmp_path / "truncated.safetensors"
    truncated.write_bytes(whole.read_bytes()[: whole.stat().st_size - 100])
    with pytest.raises(ModelFileError, match=r"truncated\.safetensors"):
        load_controlnet(truncated)

    lacking = {k: v for k, v in tensors.items() if "zero_convs.3." not in k}
    with pytest.raises(ModelFileError, match=r"lacking\.safetensors.*controlnet_down_blocks\.3"):
        load_controlnet(save(tmp_path / "lacking.safetensors", lacking))

    no_attention_key = {k: v for k, v in tensors.items() if "input_blocks.4.0.in_layers.2" not in k}
    with pytest.raises(ModelFileError, match=r"odd\.safetensors"):
        load_controlnet(save(tmp_path / "odd.safetensors", no_attention_key))

    lora = {"lora_unet_conv_in.lora_down.weight": torch.zeros(4, 4, 3, 3)}
    with pytest.raises(ModelFileError, match=r"lora\.safetensors.*not a ControlNet"):
        load_controlnet(save(tmp_path / "lora.safetensors", lora))

    pickled = tmp_path / "cn.pth"
    torch.save(tensors, pickled)
    with pytest.raises(ModelFileError, match="allow-pickle"):
        load_controlnet(pickled)
    assert load_controlnet(pickled, allow_pickle=True).family is Family.SD1
