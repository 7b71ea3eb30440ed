"""CLIPTextEncode's computation on tiny random CLIP text encoders (real vocabulary, 77 positions,
width 32, 2 layers): equal to diffusers' `encode_prompt` for SD1 and SDXL, and ComfyUI's
semantics for weights, chunks, the last layer and embeddings, checked against the transformers
models run directly."""

from __future__ import annotations

import copy
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import pytest
import torch

from flowscope.models.text.embeddings import ANY_ENCODER, EmbeddingMismatchError
from flowscope.models.text.encoding import CHUNK_LENGTH, TextEncoderSpec, encode_text
from flowscope.models.text.tokenizer import ClipTokenizer

os.environ.setdefault("HF_HUB_OFFLINE", "1")
torch.set_num_threads(1)

TOKENIZER = ClipTokenizer.shipped()
BOS, EOS = ClipTokenizer.bos, ClipTokenizer.eos
WIDTH = 32
# The same float32 operations as the transformers / diffusers forward pass: equal up to
# rounding where rows are batched differently (observed: bit-identical).
EXACT = {"rtol": 0.0, "atol": 1e-6}
PROMPTS = [
    "a photo of an astronaut riding a horse on mars, 4k, highly detailed",
    "",
    "Café, naïve résumé 🐱 1234!!",
]


def _config(act: str, **extra: Any) -> Any:
    from transformers import CLIPTextConfig

    return CLIPTextConfig(
        vocab_size=49408,
        hidden_size=WIDTH,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        max_position_embeddings=77,
        hidden_act=act,
        bos_token_id=BOS,
        eos_token_id=EOS,
        pad_token_id=1,
        **extra,
    )


@pytest.fixture(scope="module")
def clip_l() -> torch.nn.Module:
    from transformers import CLIPTextModel

    torch.manual_seed(1)
    model: Any = CLIPTextModel(_config("quick_gelu"))
    return model.eval()


@pytest.fixture(scope="module")
def clip_g() -> torch.nn.Module:
    from transformers import CLIPTextModelWithProjection

    torch.manual_seed(2)
    model: Any = CLIPTextModelWithProjection(_config("gelu", projection_dim=WIDTH))
    return model.eval()


def sd1(model: torch.nn.Module, layer_idx: int | None = None) -> list[TextEncoderSpec]:
    layer: Literal["last", "hidden"] = "last" if layer_idx is None else "hidden"
    return [TextEncoderSpec("clip_l", model, True, layer, layer_idx, True)]


def sdxl(clip_l: torch.nn.Module, clip_g: torch.nn.Module, idx: int = -2) -> list[TextEncoderSpec]:
    return [
        TextEncoderSpec("clip_l", clip_l, True, "hidden", idx, False),
        TextEncoderSpec("clip_g", clip_g, False, "hidden", idx, False),
    ]


def row(ids: list[int], pad: int = EOS) -> list[int]:
    full = [BOS, *ids, EOS]
    return full + [pad] * (CHUNK_LENGTH - len(full))


def run(model: torch.nn.Module, rows: list[list[int]], **kwargs: Any) -> Any:
    with torch.no_grad():
        return model(input_ids=torch.tensor(rows), **kwargs)


def weighted(z: torch.Tensor, empty: torch.Tensor, weights: Mapping[int, float]) -> torch.Tensor:
    out = z.clone()
    for position, weight in weights.items():
        out[:, position] = (z[:, position] - empty[:, position]) * weight + empty[:, position]
    return out


# --- the last layer (CLIPSetLastLayer) ---------------------------------------------------------


def test_sd1_last_and_hidden_layers(clip_l: torch.nn.Module) -> None:
    ids = row(TOKENIZER.encode(PROMPTS[0]))
    out = run(clip_l, [ids], output_hidden_states=True)
    norm = clip_l.final_layer_norm
    cond, pooled = encode_text(PROMPTS[0], sd1(clip_l))
    torch.testing.assert_close(cond, out.last_hidden_state, **EXACT)
    torch.testing.assert_close(pooled, out.pooler_output, **EXACT)
    # -1 is the last layer; the final norm is applied to hidden layers too (SD1).
    for idx, state in [(-1, -1), (-2, -2), (0, 1), (1, 2)]:
        cond, _ = encode_text(PROMPTS[0], sd1(clip_l, idx))
        with torch.no_grad():
            torch.testing.assert_close(cond, norm(out.hidden_states[state]), **EXACT)
    # Beyond the model's depth ComfyUI falls back to the last layer.
    cond, _ = encode_text(PROMPTS[0], sd1(clip_l, -3))
    torch.testing.assert_close(cond, out.last_hidden_state, **EXACT)


def test_sdxl_hidden_layers_without_final_norm(
    clip_l: torch.nn.Module, clip_g: torch.nn.Module
) -> None:
    ids = TOKENIZER.encode(PROMPTS[0])
    out_l = run(clip_l, [row(ids)], output_hidden_states=True)
    out_g = run(clip_g, [row(ids, pad=0)], output_hidden_states=True)
    for idx in (-1, -2):
        cond, pooled = encode_text(PROMPTS[0], sdxl(clip_l, clip_g, idx))
        assert cond.shape == (1, 77, 2 * WIDTH)
        expected = torch.cat([out_l.hidden_states[idx], out_g.hidden_states[idx]], dim=-1)
        torch.testing.assert_close(cond, expected, **EXACT)
        # Pooled: clip_g's projection, whatever the layer.
        torch.testing.assert_close(pooled, out_g.text_embeds, **EXACT)


# --- weights -----------------------------------------------------------------------------------


def test_weights_of_one_change_nothing(clip_l: torch.nn.Module, clip_g: torch.nn.Module) -> None:
    for specs in (sd1(clip_l), sdxl(clip_l, clip_g)):
        plain = encode_text("a red dog on a mat", specs)
        same = encode_text("a (red dog:1.0) on ((a:1)) mat", specs)
        assert torch.equal(plain[0], same[0])
        assert plain[1] is not None and same[1] is not None
        assert torch.equal(plain[1], same[1])


def test_weights_move_tokens_away_from_the_empty_prompt(clip_l: torch.nn.Module) -> None:
    ids = TOKENIZER.encode("a red dog on a mat")  # one token per word
    z = run(clip_l, [row(ids)]).last_hidden_state
    empty = run(clip_l, [row([])]).last_hidden_state
    cond, pooled = encode_text("a (red dog:1.5) on ((a)) mat", sd1(clip_l))
    expected = weighted(z, empty, {2: 1.5, 3: 1.5, 5: 1.21})
    torch.testing.assert_close(cond, expected, rtol=0, atol=1e-5)
    assert not torch.allclose(cond, z, atol=1e-3)
    # The pooled output is not weighted.
    torch.testing.assert_close(pooled, run(clip_l, [row(ids)]).pooler_output, **EXACT)


def test_sdxl_weights_use_each_encoders_padding(
    clip_l: torch.nn.Module, clip_g: torch.nn.Module
) -> None:
    ids = TOKENIZER.encode("a red dog")
    z_l = run(clip_l, [row(ids)], output_hidden_states=True).hidden_states[-2]
    z_g = run(clip_g, [row(ids, pad=0)], output_hidden_states=True).hidden_states[-2]
    empty_l = run(clip_l, [row([])], output_hidden_states=True).hidden_states[-2]
    empty_g = run(clip_g, [row([], pad=0)], output_hidden_states=True).hidden_states[-2]
    cond, _ = encode_text("a (red:0.5) dog", sdxl(clip_l, clip_g))
    expected = torch.cat(
        [weighted(z_l, empty_l, {2: 0.5}), weighted(z_g, empty_g, {2: 0.5})], dim=-1
    )
    torch.testing.assert_close(cond, expected, rtol=0, atol=1e-5)


# --- chunks ------------------------------------------------------------------------------------


def test_long_prompts_are_encoded_in_chunks_of_77(
    clip_l: torch.nn.Module, clip_g: torch.nn.Module
) -> None:
    cat = TOKENIZER.encode("cat")
    assert len(cat) == 1
    # One 80-token group: split where the first chunk is full.
    cond, pooled = encode_text("cat " * 80, sd1(clip_l))
    assert cond.shape == (1, 2 * 77, WIDTH)
    expected = run(clip_l, [row(cat * 75), row(cat * 5)])
    torch.testing.assert_close(cond, expected.last_hidden_state.reshape(1, 154, WIDTH), **EXACT)
    torch.testing.assert_close(pooled, expected.pooler_output[0:1], **EXACT)

    # A group of fewer than 8 tokens that does not fit moves whole to the next chunk.
    big_red_dog = TOKENIZER.encode("big red dog")
    cond, _ = encode_text("cat " * 74 + "(big red dog:1.0)", sd1(clip_l))
    expected = run(clip_l, [row(cat * 74), row(big_red_dog)]).last_hidden_state
    torch.testing.assert_close(cond, expected.reshape(1, 154, WIDTH), **EXACT)

    # SDXL: both encoders chunked alike; pooled from clip_g's first chunk.
    cond, pooled = encode_text("cat " * 80, sdxl(clip_l, clip_g))
    assert cond.shape == (1, 154, 2 * WIDTH)
    first_g = run(clip_g, [row(cat * 75, pad=0)])
    torch.testing.assert_close(pooled, first_g.text_embeds, **EXACT)


def test_empty_prompt_is_one_chunk(clip_l: torch.nn.Module) -> None:
    cond, _ = encode_text("", sd1(clip_l))
    torch.testing.assert_close(cond, run(clip_l, [row([])]).last_hidden_state, **EXACT)
    with pytest.raises(ValueError, match="at least one"):
        encode_text("a cat", [])


# --- embeddings --------------------------------------------------------------------------------


def _rows_of(model: torch.nn.Module, text: str) -> torch.Tensor:
    table = model.get_input_embeddings()
    return table.weight[TOKENIZER.encode(text)].detach().clone()


def test_embedding_vectors_act_like_the_tokens_they_copy(
    clip_l: torch.nn.Module, clip_g: torch.nn.Module
) -> None:
    sd1_style = {ANY_ENCODER: _rows_of(clip_l, "red dog")}
    cond, pooled = encode_text(
        "a embedding:style sat", sd1(clip_l), embedding_lookup={"style": sd1_style}.get
    )
    plain = encode_text("a red dog sat", sd1(clip_l))
    torch.testing.assert_close(cond, plain[0], **EXACT)
    assert pooled is not None and plain[1] is not None
    torch.testing.assert_close(pooled, plain[1], **EXACT)

    sdxl_style = {"clip_l": _rows_of(clip_l, "red dog"), "clip_g": _rows_of(clip_g, "red dog")}
    lookup = {"sub/style.safetensors": sdxl_style}.get
    cond, pooled = encode_text(
        "a embedding:sub/style.safetensors sat", sdxl(clip_l, clip_g), embedding_lookup=lookup
    )
    plain = encode_text("a red dog sat", sdxl(clip_l, clip_g))
    torch.testing.assert_close(cond, plain[0], **EXACT)
    assert pooled is not None and plain[1] is not None
    torch.testing.assert_close(pooled, plain[1], **EXACT)

    # Weighted like the text around it.
    cond, _ = encode_text(
        "a (embedding:style:1.3) sat", sd1(clip_l), embedding_lookup={"style": sd1_style}.get
    )
    torch.testing.assert_close(cond, encode_text("a (red dog:1.3) sat", sd1(clip_l))[0], **EXACT)


def test_new_vectors_change_the_output_only_from_where_they_are_used(
    clip_l: torch.nn.Module,
) -> None:
    torch.manual_seed(3)
    vectors = torch.randn(2, WIDTH) * 0.05
    cond, _ = encode_text(
        "a photo of embedding:style on a mat",
        sd1(clip_l),
        embedding_lookup={"style": {ANY_ENCODER: vectors}}.get,
    )
    plain, _ = encode_text("a photo of on a mat", sd1(clip_l))
    # Causal attention: the start token and "a photo of" (positions 0..3) are untouched.
    torch.testing.assert_close(cond[:, :4], plain[:, :4], **EXACT)
    assert not torch.allclose(cond[:, 4:6], plain[:, 4:6], atol=1e-3)

    # The same as a model whose vocabulary has the two vectors as new tokens (ComfyUI's old way).
    extended = copy.deepcopy(clip_l)
    extended.resize_token_embeddings(49408 + 2)
    with torch.no_grad():
        extended.get_input_embeddings().weight[49408:] = vectors
    ids = row([*TOKENIZER.encode("a photo of"), 49408, 49409, *TOKENIZER.encode("on a mat")])
    torch.testing.assert_close(cond, run(extended, [ids]).last_hidden_state, **EXACT)


def test_unknown_embeddings_are_skipped_and_reported(clip_l: torch.nn.Module) -> None:
    reported: list[str] = []
    cond, _ = encode_text(
        "a embedding:missing cat embedding:missing embedding:other",
        sd1(clip_l),
        embedding_lookup=lambda name: None,
        on_unknown_embedding=reported.append,
    )
    torch.testing.assert_close(cond, encode_text("a cat", sd1(clip_l))[0], **EXACT)
    assert reported == ["missing", "other"]
    # Without a lookup every embedding is unknown.
    cond, _ = encode_text("a embedding:style cat", sd1(clip_l))
    torch.testing.assert_close(cond, encode_text("a cat", sd1(clip_l))[0], **EXACT)


def test_trailing_commas_are_tried_without(clip_l: torch.nn.Module) -> None:
    style = {ANY_ENCODER: _rows_of(clip_l, "red dog")}
    asked: list[str] = []

    def lookup(name: str) -> dict[str, torch.Tensor] | None:
        asked.append(name)
        return style if name == "style" else None

    cond, _ = encode_text("a embedding:style, sat", sd1(clip_l), embedding_lookup=lookup)
    assert asked == ["style,", "style"]
    torch.testing.assert_close(cond, encode_text("a red dog, sat", sd1(clip_l))[0], **EXACT)


def test_an_embedding_for_another_family_is_a_clear_error(
    clip_l: torch.nn.Module, clip_g: torch.nn.Module
) -> None:
    sd2 = {"sd2-style": {ANY_ENCODER: torch.zeros(1, 1024)}}.get
    with pytest.raises(EmbeddingMismatchError, match="'sd2-style' has vectors of width 1024"):
        encode_text("a embedding:sd2-style", sd1(clip_l), embedding_lookup=sd2)
    clip_l_only = {"half": {"clip_l": torch.zeros(1, WIDTH)}}.get
    with pytest.raises(EmbeddingMismatchError, match="'half' has no vectors for the clip_g"):
        encode_text("embedding:half", sdxl(clip_l, clip_g), embedding_lookup=clip_l_only)


# --- diffusers' pipelines on the same components ------------------------------------------------


@pytest.fixture(scope="module")
def tokenizer_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("clip-tokenizer")
    (directory / "vocab.json").write_text(json.dumps(dict(TOKENIZER.vocab)), encoding="utf-8")
    merges = ["#version: 0.2", *(" ".join(pair) for pair in TOKENIZER.merges)]
    (directory / "merges.txt").write_text("\n".join(merges) + "\n", encoding="utf-8")
    return directory


def _hf_tokenizer(directory: Path, **kwargs: Any) -> Any:
    from transformers import CLIPTokenizer

    return CLIPTokenizer(
        vocab=str(directory / "vocab.json"),
        merges=str(directory / "merges.txt"),
        model_max_length=77,
        **kwargs,
    )


def _diffusers() -> Any:
    import diffusers

    return diffusers


def _tiny_unet_and_vae(cross_attention_dim: int, **extra: Any) -> tuple[Any, Any]:
    diffusers = _diffusers()
    torch.manual_seed(0)
    unet = diffusers.UNet2DConditionModel(
        sample_size=8,
        block_out_channels=(32, 64),
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        layers_per_block=1,
        cross_attention_dim=cross_attention_dim,
        attention_head_dim=8,
        norm_num_groups=8,
        **extra,
    )
    vae = diffusers.AutoencoderKL(
        block_out_channels=(8,),
        down_block_types=("DownEncoderBlock2D",),
        up_block_types=("UpDecoderBlock2D",),
        latent_channels=4,
        norm_num_groups=8,
    )
    return unet, vae


@pytest.mark.slow
def test_sd1_equals_diffusers_encode_prompt(clip_l: torch.nn.Module, tokenizer_dir: Path) -> None:
    diffusers = _diffusers()
    unet, vae = _tiny_unet_and_vae(WIDTH)
    pipe = diffusers.StableDiffusionPipeline(
        vae=vae,
        text_encoder=clip_l,
        tokenizer=_hf_tokenizer(tokenizer_dir),
        unet=unet,
        scheduler=diffusers.EulerDiscreteScheduler(steps_offset=1),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    # diffusers 0.42's clip_skip path reads transformers 4's `text_model` attribute, which a
    # transformers 5 CLIPTextModel lacks: alias it (outside the module tree) on a private copy.
    model = copy.deepcopy(clip_l)
    object.__setattr__(model, "text_model", model)
    pipe.text_encoder = model
    for prompt in PROMPTS:
        expected, _ = pipe.encode_prompt(prompt, "cpu", 1, False)
        torch.testing.assert_close(encode_text(prompt, sd1(model))[0], expected, **EXACT)
        # CLIPSetLastLayer -2 is diffusers' clip_skip=1.
        expected, _ = pipe.encode_prompt(prompt, "cpu", 1, False, clip_skip=1)
        torch.testing.assert_close(encode_text(prompt, sd1(model, -2))[0], expected, **EXACT)


@pytest.mark.slow
def test_sdxl_equals_diffusers_encode_prompt(
    clip_l: torch.nn.Module, clip_g: torch.nn.Module, tokenizer_dir: Path
) -> None:
    diffusers = _diffusers()
    unet, vae = _tiny_unet_and_vae(
        2 * WIDTH,
        addition_embed_type="text_time",
        addition_time_embed_dim=8,
        projection_class_embeddings_input_dim=WIDTH + 6 * 8,
    )
    pipe = diffusers.StableDiffusionXLPipeline(
        vae=vae,
        text_encoder=clip_l,
        text_encoder_2=clip_g,
        tokenizer=_hf_tokenizer(tokenizer_dir),
        tokenizer_2=_hf_tokenizer(tokenizer_dir, pad_token="!"),  # pads with id 0
        unet=unet,
        scheduler=diffusers.EulerDiscreteScheduler(steps_offset=1),
    )
    # SDXL's second transformers tokenizer has "!" (id 0) as its pad token, so it also reads every
    # "!" in a prompt as that special token; ComfyUI tokenizes clip_g's text with the plain CLIP
    # tokenizer (and so do we), so the prompts here have none.
    for prompt in [text.replace("!", "") for text in PROMPTS]:
        expected, _, expected_pooled, _ = pipe.encode_prompt(
            prompt, device="cpu", num_images_per_prompt=1, do_classifier_free_guidance=False
        )
        cond, pooled = encode_text(prompt, sdxl(clip_l, clip_g))
        torch.testing.assert_close(cond, expected, **EXACT)
        torch.testing.assert_close(pooled, expected_pooled, **EXACT)
