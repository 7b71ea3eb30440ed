"""Our CLIP BPE tokenizer gives the same ids as the transformers CLIPTokenizer (what diffusers and
ComfyUI use) built from the same shipped merges; it is fast once warm."""

from __future__ import annotations

import gzip
import json
import os
import statistics
import time
from importlib import resources
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flowscope.models.text.tokenizer import ClipTokenizer, bytes_to_unicode

os.environ.setdefault("HF_HUB_OFFLINE", "1")

CORPUS = [
    "",
    "a photo of a cat",
    "A Photo Of A CAT",
    "masterpiece, best quality, 1girl, solo, looking at viewer, (smile:1.2)",
    "a cyberpunk city at night, neon lights, rain, 8k uhd, dslr, film grain, Fujifilm XT3",
    "it's a dog's life; they're here, we've been, I'm sure you'll see what I'd do",
    "numbers 0123456789 3.14159 1,000,000 2024-01-31 12:30pm #42 $9.99 100%",
    "punctuation!!! ??? ... --- *** ~~~ ((( ))) [[ ]] {{ }} <lora:x:1> a|b a\\b a/b @#^&_=+",
    "unicode: café naïve résumé Ærøskøbing straße ΟΔΟΣ οδος İstanbul ǅ",
    "日本語のテキスト、中文文本，한국어 텍스트 and Кириллица and العربية and हिन्दी",
    "emoji 🐱 🐱‍👤 👍🏽 🇯🇵 ❤️ 🧑‍🚀 ✨🌈",
    "superscripts x² y³ ½ ⅔ Ⅻ ① and full-width ＡＢＣ１２３",
    "tabs\tand\nnewlines\r\nand  many   spaces \u00a0nbsp \u2003em \u3000ideographic",
    "controls \x00\x01\x1c\x1f\x7f and zero-width \u200b\u200c\u200d joiners",
    "combining e\u0301 a\u0308 n\u0303 (NFC) and decomposed ﬁ ligature",
    "special tokens <|startoftext|> and <|endoftext|> and <|StartOfText|> inline",
    "underscores_and-hyphens snake_case kebab-case CamelCase HTTPServer x86_64",
    "&amp; &lt;html&gt; \"quotes\" 'single' `backticks` «guillemets» „low“",
    " ".join(["a very long prompt about a majestic dragon flying over mountains"] * 12),
]


def _write_tokenizer_files(tokenizer: ClipTokenizer, directory: Path) -> tuple[Path, Path]:
    vocab = directory / "vocab.json"
    merges = directory / "merges.txt"
    vocab.write_text(json.dumps(dict(tokenizer.vocab)), encoding="utf-8")
    lines = ["#version: 0.2", *(" ".join(pair) for pair in tokenizer.merges)]
    merges.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return vocab, merges


@pytest.fixture(scope="module")
def ours() -> ClipTokenizer:
    return ClipTokenizer.shipped()


@pytest.fixture(scope="module")
def reference(ours: ClipTokenizer, tmp_path_factory: pytest.TempPathFactory) -> Any:
    from transformers import CLIPTokenizer

    vocab, merges = _write_tokenizer_files(ours, tmp_path_factory.mktemp("clip-tokenizer"))
    return CLIPTokenizer(vocab=str(vocab), merges=str(merges), model_max_length=77)


def _reference_ids(reference: Any, text: str) -> list[int]:
    return list(reference(text, add_special_tokens=False)["input_ids"])


def test_shipped_vocabulary_is_clips() -> None:
    tokenizer = ClipTokenizer.shipped()
    assert ClipTokenizer.shipped() is tokenizer  # built once
    assert len(tokenizer.vocab) == ClipTokenizer.vocab_size == 49408
    assert len(tokenizer.merges) == 48894
    assert tokenizer.vocab["<|startoftext|>"] == ClipTokenizer.bos == 49406
    assert tokenizer.vocab["<|endoftext|>"] == ClipTokenizer.eos == 49407
    # Well-known ids of the real vocabulary (SD prompts everyone has tokenized).
    assert tokenizer.encode("a photo of a cat") == [320, 1125, 539, 320, 2368]
    assert len(bytes_to_unicode()) == 256
    assert len(set(bytes_to_unicode().values())) == 256


@pytest.mark.parametrize("text", CORPUS)
def test_same_ids_as_transformers(ours: ClipTokenizer, reference: Any, text: str) -> None:
    assert ours.encode(text) == _reference_ids(reference, text)


# Characters Python's Unicode database knows: newer ones may be classed differently by the
# reference's own (other) Unicode tables, see tokenizer.py.
_assigned = st.characters(exclude_categories=("Cs", "Cn"))
_prompt_words = st.lists(
    st.one_of(
        st.sampled_from(["cat", "Dog", "it's", "(", ")", ":1.2", ",", "...", "4k", "8K", "🐱"]),
        st.text(_assigned, min_size=1, max_size=6),
        st.text(st.sampled_from("abcxyz019 ,.!'éß"), min_size=1, max_size=10),
    ),
    max_size=25,
).map(" ".join)


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(text=st.one_of(st.text(_assigned, max_size=80), _prompt_words))
def test_same_ids_as_transformers_on_any_text(
    ours: ClipTokenizer, reference: Any, text: str
) -> None:
    assert ours.encode(text) == _reference_ids(reference, text)


def test_decode_gives_the_lower_cased_words(ours: ClipTokenizer) -> None:
    assert ours.decode(ours.encode("A Photo, of  the CAT!")) == "a photo , of the cat !"
    assert ours.decode(ours.encode("café 🐱")) == "café 🐱"


def test_plain_merges_file_and_malformed_files(ours: ClipTokenizer, tmp_path: Path) -> None:
    data = resources.files("flowscope.models.text").joinpath("data", "bpe_simple_vocab_16e6.txt.gz")
    plain = tmp_path / "bpe.txt"
    plain.write_bytes(gzip.decompress(data.read_bytes()))
    tokenizer = ClipTokenizer.from_merges_file(plain)
    assert tokenizer.encode(CORPUS[3]) == ours.encode(CORPUS[3])

    short = tmp_path / "short.txt"
    short.write_text("#version: 0.2\ni n\nt h\n", encoding="utf-8")
    with pytest.raises(ValueError, match="merges"):
        ClipTokenizer.from_merges_file(short)
    broken = tmp_path / "broken.txt"
    broken.write_text("#version: 0.2\nno_space_here\n", encoding="utf-8")
    with pytest.raises(ValueError, match="line 2"):
        ClipTokenizer.from_merges_file(broken)


def test_a_75_token_prompt_tokenizes_well_under_a_millisecond(ours: ClipTokenizer) -> None:
    prompt = (
        "masterpiece, best quality, ultra-detailed, a portrait of a knight in ornate silver "
        "armour, standing in a misty forest at dawn, volumetric light, god rays, intricate "
        "engraving, sharp focus, by greg rutkowski and alphonse mucha, trending on artstation, "
        "8k, hdr, cinematic composition, shallow depth of field, bokeh, film grain"
    )
    assert 60 <= len(ours.encode(prompt)) <= 80
    timings = []
    for _ in range(30):
        start = time.perf_counter()
        ours.encode(prompt)
        timings.append(time.perf_counter() - start)
    assert statistics.median(timings) < 1e-3
