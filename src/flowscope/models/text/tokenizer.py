"""CLIP's byte-level BPE tokenizer (OpenAI's algorithm) over the merges every Stable Diffusion text
encoder was trained with; the merges file ships in `text/data` with its licence."""

from __future__ import annotations

import functools
import gzip
import itertools
import re
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from importlib import resources
from pathlib import Path
from typing import ClassVar

SHIPPED_MERGES = "bpe_simple_vocab_16e6.txt.gz"

# CLIP uses the first 49152 - 256 - 2 merges of the file (after its version header line).
MERGE_COUNT = 48894
START_OF_TEXT = "<|startoftext|>"
END_OF_TEXT = "<|endoftext|>"
WORD_END = "</w>"

# CLIP's pre-tokenizer, `'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+`, with the
# standard library: `[^\W_]` is exactly \p{L} or \p{N}, so letter-or-number runs are matched
# whole and split into letter runs and single numbers afterwards. \s is Unicode's White_Space
# (as in the transformers tokenizers; Python's \s would also take U+001C..U+001F). Special tokens
# are only recognised as written, before lower-casing, like the transformers tokenizers that
# ComfyUI and diffusers use.
_SPACE = r"\t\n\x0b\x0c\r \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"
_PIECES = re.compile(rf"'s|'t|'re|'ve|'m|'ll|'d|[^\W_]+|(?:[^\w{_SPACE}]|_)+")
_ASCII_LETTERS_OR_DIGIT = re.compile(r"[a-z]+|[0-9]")
_SPECIAL = re.compile(r"(<\|startoftext\|>|<\|endoftext\|>)")

# A prompt rarely has more distinct words than this; past it the cache starts over.
_CACHE_LIMIT = 200_000


@functools.cache
def bytes_to_unicode() -> dict[int, str]:
    """CLIP's (and GPT-2's) reversible byte → printable character table: printable bytes map to
    themselves, the rest to characters from U+0100 on, so BPE never sees whitespace or controls."""
    printable = [
        *range(ord("!"), ord("~") + 1),
        *range(ord("¡"), ord("¬") + 1),
        *range(ord("®"), ord("ÿ") + 1),
    ]
    table = {byte: chr(byte) for byte in printable}
    extra = 0
    for byte in range(256):
        if byte not in table:
            table[byte] = chr(256 + extra)
            extra += 1
    return table


class ClipTokenizer:
    """Text → CLIP token ids (no start/end tokens), after NFC normalisation and lower-casing."""

    bos: ClassVar[int] = 49406
    eos: ClassVar[int] = 49407
    vocab_size: ClassVar[int] = 49408

    def __init__(self, merges: Sequence[tuple[str, str]]) -> None:
        byte_chars = list(bytes_to_unicode().values())
        tokens = [*byte_chars, *(char + WORD_END for char in byte_chars)]
        tokens += ["".join(pair) for pair in merges]
        tokens += [START_OF_TEXT, END_OF_TEXT]
        self._vocab: dict[str, int] = {token: index for index, token in enumerate(tokens)}
        if len(self._vocab) != len(tokens):
            raise ValueError("the BPE merges produce duplicate vocabulary entries")
        self._merges = tuple(merges)
        self._ranks: dict[tuple[str, str], int] = {pair: rank for rank, pair in enumerate(merges)}
        self._byte_chars = bytes_to_unicode()
        self._cache: dict[str, tuple[int, ...]] = {}
        self._specials = {
            START_OF_TEXT: self._vocab[START_OF_TEXT],
            END_OF_TEXT: self._vocab[END_OF_TEXT],
        }

    @classmethod
    def from_merges_file(cls, path: Path) -> ClipTokenizer:
        """A tokenizer from a CLIP merges file (`bpe_simple_vocab_16e6.txt`, plain or gzipped)."""
        data = path.read_bytes()
        return cls(_parse_merges(gzip.decompress(data) if data[:2] == b"\x1f\x8b" else data))

    @classmethod
    def shipped(cls) -> ClipTokenizer:
        """The tokenizer of every SD1/SD2/SDXL text encoder (built once per process)."""
        return _shipped()

    @property
    def vocab(self) -> Mapping[str, int]:
        """Token string (byte-encoded, `</w>` marking a word end) → id: 49408 entries."""
        return self._vocab

    @property
    def merges(self) -> tuple[tuple[str, str], ...]:
        return self._merges

    def encode(self, text: str) -> list[int]:
        ids: list[int] = []
        for part in _SPECIAL.split(text):
            special = self._specials.get(part)
            if special is not None:
                ids.append(special)
                continue
            for piece in _PIECES.findall(_normalize(part)):
                ids.extend(self._piece_ids(piece))
        return ids

    def decode(self, ids: Iterable[int]) -> str:
        """The text of `ids` as CLIP sees it (lower-cased, one space after each word)."""
        tokens = self._tokens
        byte_values = {char: byte for byte, char in self._byte_chars.items()}
        text = "".join(tokens[index] for index in ids).replace(WORD_END, " ")
        data = bytes(byte_values.get(char, ord(" ")) for char in text)
        return data.decode("utf-8", errors="replace").strip()

    @functools.cached_property
    def _tokens(self) -> list[str]:
        return list(self._vocab)

    def _piece_ids(self, piece: str) -> tuple[int, ...]:
        cached = self._cache.get(piece)
        if cached is None:
            cached = tuple(
                self._vocab[token]
                for word in _words(piece)
                for token in self._bpe("".join(self._byte_chars[b] for b in word.encode("utf-8")))
            )
            if len(self._cache) >= _CACHE_LIMIT:
                self._cache.clear()
            self._cache[piece] = cached
        return cached

    def _bpe(self, chars: str) -> list[str]:
        """Merge the lowest-ranked adjacent pair, everywhere it occurs, until none is known."""
        word = [*chars[:-1], chars[-1] + WORD_END]
        ranks = self._ranks
        while len(word) > 1:
            best: tuple[str, str] | None = None
            best_rank = len(ranks)
            for pair in itertools.pairwise(word):
                rank = ranks.get(pair, best_rank)
                if rank < best_rank:
                    best, best_rank = pair, rank
            if best is None:
                break
            first, second = best
            merged: list[str] = []
            index = 0
            while index < len(word):
                if index < len(word) - 1 and word[index] == first and word[index + 1] == second:
                    merged.append(first + second)
                    index += 2
                else:
                    merged.append(word[index])
                    index += 1
            word = merged
        return word


def _normalize(text: str) -> str:
    text = unicodedata.normalize("NFC", text)
    if text.isascii():
        return text.lower()
    # Character by character, like the transformers tokenizers (no final-sigma rule).
    return "".join(char.lower() for char in text)


def _words(piece: str) -> list[str]:
    """A letter-or-number run → its letter runs and single numbers (CLIP's `[\\p{L}]+|[\\p{N}]`);
    any other piece is one word."""
    if not piece[0].isalnum() or piece.isalpha():
        return [piece]
    if piece.isascii():
        return _ASCII_LETTERS_OR_DIGIT.findall(piece)
    words: list[str] = []
    letters = ""
    for char in piece:
        if unicodedata.category(char)[0] == "N":
            if letters:
                words.append(letters)
                letters = ""
            words.append(char)
        else:
            letters += char
    if letters:
        words.append(letters)
    return words


def _parse_merges(data: bytes) -> list[tuple[str, str]]:
    lines = data.decode("utf-8").split("\n")[1 : MERGE_COUNT + 1]
    merges: list[tuple[str, str]] = []
    for number, line in enumerate(lines, start=2):
        first, _, second = line.partition(" ")
        if not first or not second or " " in second:
            raise ValueError(f"line {number} of the CLIP merges file is not a merge: {line!r}")
        merges.append((first, second))
    if len(merges) != MERGE_COUNT:
        raise ValueError(f"the CLIP merges file has {len(merges)} merges, expected {MERGE_COUNT}")
    return merges


@functools.cache
def _shipped() -> ClipTokenizer:
    data = resources.files(__package__).joinpath("data", SHIPPED_MERGES).read_bytes()
    return ClipTokenizer(_parse_merges(gzip.decompress(data)))
