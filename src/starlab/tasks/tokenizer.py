"""Text <-> token ids for language modelling: raw UTF-8 bytes, or a byte-level BPE trained on the local corpus.

Both are lossless on any text, so a perplexity is always over exactly the text that was read. Nothing is ever
downloaded: the BPE is trained here, on the training split, with Hugging Face ``tokenizers`` (an optional
dependency: ``pip install 'starlab[bpe]'``).
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable, Sequence
from pathlib import Path
from types import ModuleType
from typing import Protocol

import numpy as np

TOKENIZERS = ("byte", "bpe")
#: BPE vocabulary when none is given: small enough that the embedding does not dominate a tiny model.
DEFAULT_BPE_VOCAB = 4096


class Tokenizer(Protocol):
    """What the LM task needs from a tokenizer."""

    name: str
    vocab_size: int

    def encode(self, text: str) -> np.ndarray:
        """Token ids of ``text``, in the smallest unsigned dtype that holds ``vocab_size`` ids."""

    def decode(self, ids: Sequence[int] | np.ndarray) -> str:
        """The text of ``ids``."""


class ByteTokenizer:
    """One token per UTF-8 byte: no training, no unknown tokens, vocabulary 256."""

    name = "byte"
    vocab_size = 256

    def encode(self, text: str) -> np.ndarray:
        return np.frombuffer(text.encode("utf-8"), dtype=np.uint8)

    def decode(self, ids: Sequence[int] | np.ndarray) -> str:
        # A window can start or end inside a multi-byte character; show that as U+FFFD instead of failing.
        return bytes(np.asarray(ids, dtype=np.uint8)).decode("utf-8", errors="replace")


class BPETokenizer:
    """A byte-level BPE (GPT-2 style pre-tokenization) saved as a ``tokenizers`` JSON file."""

    name = "bpe"

    def __init__(self, path: Path) -> None:
        self.path = Path(path)  # its file, which an export of a model trained with it ships
        self._tokenizer = optional_import("tokenizers", "the bpe tokenizer", "bpe").Tokenizer.from_file(str(path))
        self.vocab_size = self._tokenizer.get_vocab_size()
        self._dtype = token_dtype(self.vocab_size)

    def encode(self, text: str) -> np.ndarray:
        return np.asarray(self._tokenizer.encode(text).ids, dtype=self._dtype)

    def decode(self, ids: Sequence[int] | np.ndarray) -> str:
        return self._tokenizer.decode([int(i) for i in ids])


def train_bpe(texts: Iterable[str], vocab_size: int, path: Path) -> BPETokenizer:
    """Train a byte-level BPE on ``texts``, save it to ``path`` and load it back.

    All 256 bytes are in the initial alphabet, so any text encodes; the vocabulary can come out smaller than
    ``vocab_size`` when the texts have too few pairs seen at least twice.
    """
    tokenizers = optional_import("tokenizers", "the bpe tokenizer", "bpe")
    bpe = tokenizers.ByteLevelBPETokenizer()
    bpe.train_from_iterator(texts, vocab_size=vocab_size, min_frequency=2, show_progress=False)
    bpe.save(str(path))
    return BPETokenizer(path)


#: The largest BPE vocabulary: four times the largest in common use (256k); ``tokenizers`` aborts the whole
#: process (a failed allocation in native code, no exception) when asked for 10**9.
MAX_BPE_VOCAB = 2**20


def resolve_vocab_size(tokenizer: str, vocab_size: int | None) -> int:
    """The vocabulary a tokenizer name and an optional requested size give, or a one-line ``ValueError``."""
    if tokenizer == "byte":
        if vocab_size not in (None, 256):
            raise ValueError(f"the byte tokenizer has vocab_size 256, got {vocab_size}")
        return 256
    if tokenizer == "bpe":
        size = DEFAULT_BPE_VOCAB if vocab_size is None else vocab_size
        if isinstance(size, bool) or not isinstance(size, int) or not 256 < size <= MAX_BPE_VOCAB:
            raise ValueError(
                f"a byte-level BPE needs vocab_size > 256 (256 byte tokens plus merges) and <= {MAX_BPE_VOCAB}, "
                f"got {size!r}"
            )
        return size
    raise ValueError(f"tokenizer must be one of {', '.join(TOKENIZERS)}, got {tokenizer!r}")


def token_dtype(vocab_size: int) -> np.dtype:
    """The smallest unsigned integer dtype that holds ids ``0 .. vocab_size - 1`` (halves or quarters the cache)."""
    for dtype in (np.uint8, np.uint16, np.uint32):
        if vocab_size <= np.iinfo(dtype).max + 1:
            return np.dtype(dtype)
    raise ValueError(f"vocab_size {vocab_size} does not fit in 32-bit token ids")


def optional_import(module: str, purpose: str, extra: str) -> ModuleType:
    """Import an optional dependency, or raise a one-line ``ValueError`` that says how to install it.

    A ``ValueError`` (not ``ImportError``) so that front ends report it like any other unusable input.
    """
    try:
        return importlib.import_module(module)
    except ImportError:
        package = module.split(".")[0]
        raise ValueError(
            f"{purpose} needs {package}: pip install 'starlab[{extra}]' (or pip install {package})"
        ) from None
