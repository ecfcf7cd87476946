"""Prepared corpora: a corpus too large for the in-process token cache, tokenized once and in parallel.

``prepare(PATH, DIR)`` (``starlab data prepare``): stream the corpus block by block -> give each block its side
by a keyed hash *threshold* (no global sort, so nothing but the current chunk is held) -> for BPE, train on a
bounded sample spread evenly over the training blocks -> send chunks of consecutive pieces to worker processes,
each writing a token shard -> append the shards in chunk order to ``train.bin`` and ``val.bin`` -> write
``manifest.json``. It is all built in a hidden sibling of DIR that is renamed to DIR at the end.
``lm_task(DIR, ...)`` reads the result through memory maps (:func:`starlab.tasks.lm.prepared_task`).
``docs/tasks.md`` ("Prepared corpora") states every rule with its reason.
"""

from __future__ import annotations

import codecs
import importlib.metadata
import json
import os
import re
import shutil
import signal
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from contextlib import ExitStack
from dataclasses import asdict, dataclass, field
from functools import lru_cache, partial
from multiprocessing import get_all_start_methods, get_context
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from starlab.errors import Setting, SettingError
from starlab.runtime import max_threads
from starlab.tasks.lm import (
    MANIFEST,
    PREPARED_FORMAT,
    SEPARATOR,
    SPLITS,
    TEXT_SUFFIXES,
    Corpus,
    SplitSettings,
    _block_hash,
    _write_atomically,
    file_blocks,
    is_prepared,
    open_corpus,
    read_manifest,
)
from starlab.tasks.tokenizer import BPETokenizer, ByteTokenizer, Tokenizer, token_dtype, train_bpe

#: Leading bytes of each text or JSON-lines file checked for binary content.
SNIFF_BYTES = 1 << 16
#: A file is binary when its first ``SNIFF_BYTES`` hold a NUL byte or more than this share of undecodable bytes.
MAX_UNDECODABLE = 0.01
#: Characters a worker hands the tokenizer at once: a BPE keeps ~100 bytes per token while it encodes a text.
ENCODE_CHARS = 1 << 18
#: How far back from a wanted cut a safe cut point is looked for before cutting there anyway.
CUT_WINDOW = 1 << 16
#: Printable ASCII, a space, an ASCII letter: GPT-2's pre-tokenizer always splits before that space, so text cut
#: there encodes to exactly the tokens of the whole (no pre-token crosses it, and none has a look-behind).
SAFE_CUT = re.compile(r"[!-~] [A-Za-z]")

#: ``(validation?, text, closes)``: consecutive text of one piece; ``closes``: the piece ends here, so
#: ``SEPARATOR`` follows it in the token stream (the rule of ``encode_pieces``).
Segment = tuple[bool, str, bool]
#: ``progress(stage, bytes read, bytes in all, documents read)``
Progress = Callable[[str, int, int, int], None]


@dataclass(frozen=True)
class PrepareConfig:
    """How to prepare a corpus.

    Attributes:
        split: tokenizer, vocabulary, validation fraction, seed and block size, validated as for the cache.
        text_field: the JSON field or Parquet column that holds the text.
        workers: tokenizing processes (``None``: one per core; 1: this process, no pool).
        bpe_sample_chars: at most this many characters of training text train a BPE. Its training memory grows
            with the text it sees; the merges it learns change little beyond some hundred million characters.
        chunk_chars: characters per unit of work. Memory is a few chunks per worker, whatever the corpus size.
    """

    split: SplitSettings = field(default_factory=SplitSettings)
    text_field: str = "text"
    workers: int | None = None
    bpe_sample_chars: int = 1 << 27
    chunk_chars: int = 1 << 21

    def __post_init__(self) -> None:
        for name in ("workers", "bpe_sample_chars", "chunk_chars"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise SettingError("{0} must be a positive integer, got {1!r}", Setting(name), value)
        if self.workers is not None and self.workers > max_threads():  # each holds chunks; a million fork-bomb
            raise SettingError("{0} must be at most {1} (4 per core here), got {2}", Setting("workers"),
                               max_threads(), self.workers)  # fmt: skip
        if self.split.block_chars > self.chunk_chars:
            raise SettingError(
                "{0} must be at most {1:,} (the characters of one unit of work) for a prepared corpus, got {2:,}",
                Setting("block_chars"), self.chunk_chars, self.split.block_chars,
            )  # fmt: skip

    @property
    def processes(self) -> int:
        return self.workers or os.cpu_count() or 1


@dataclass(frozen=True)
class Prepared:
    """What :func:`prepare` wrote: the directory, its manifest, and the seconds it took."""

    directory: Path
    manifest: dict[str, Any]
    seconds: float


def prepare(
    data: str | Path | None, out: str | Path, config: PrepareConfig | None = None, progress: Progress | None = None
) -> Prepared:
    """Tokenize the corpus at ``data`` (as :func:`~starlab.tasks.lm.open_corpus` reads it) once into ``out``.

    ``out`` must not exist or be empty. A bad input is a one-line ``ValueError`` before anything is written;
    a failure midway (or a kill) leaves only a hidden ``.<name>.<pid>.<random>.tmp`` sibling, never a ``out``
    that looks prepared. The files are the same whatever the number of workers.
    """
    start = time.monotonic()
    config = config or PrepareConfig()
    if is_prepared(data):
        raise ValueError(f"{data}: a prepared corpus already ({MANIFEST}); prepare the text it came from")
    corpus = open_corpus(data, config.text_field)
    directory = _check_out(out)
    for file in corpus.files:
        _check_text(file)
    try:
        _write_atomically(directory, partial(_build, corpus, config, progress or _silent))
    except OSError as error:
        raise ValueError(f"{error.filename or directory}: {error.strerror or error}") from None
    except BrokenProcessPool:
        raise SettingError("a tokenizing process died (out of memory?); try fewer {0}", Setting("workers")) from None
    return Prepared(directory, read_manifest(directory), time.monotonic() - start)


def _check_out(out: str | Path) -> Path:
    if not isinstance(out, (str, os.PathLike)) or not str(out).strip():
        raise SettingError("{0} must be a directory path, got {1!r}", Setting("out"), out)  # "" would be "."
    directory = Path(out).expanduser()
    if directory.exists() and (not directory.is_dir() or any(directory.iterdir())):
        raise SettingError(
            "{0}: exists and is not an empty directory; choose another {1:=}DIR", directory, Setting("out")
        )
    return directory


def _check_text(file: Path) -> None:
    """Refuse a binary file among the text and JSON-lines files: read as text it would train on garbage."""
    if file.suffix.lower() not in (*TEXT_SUFFIXES, ".jsonl"):
        return
    with file.open("rb") as stream:
        head = stream.read(SNIFF_BYTES)
    # not final when the file goes on: a character cut at the end of the head is not undecodable
    text = codecs.getincrementaldecoder("utf-8")("replace").decode(head, final=len(head) < SNIFF_BYTES)
    if b"\0" in head:
        reason = "a NUL byte"
    elif text.count("\ufffd") > MAX_UNDECODABLE * len(head):
        reason = f"{text.count(chr(0xFFFD)):,} undecodable bytes"
    else:
        return
    raise ValueError(f"{file}: binary, not UTF-8 text ({reason} in its first {SNIFF_BYTES // 1024} KiB)")


def _silent(stage: str, done: int, total: int, documents: int) -> None:
    return None


def _build(corpus: Corpus, config: PrepareConfig, progress: Progress, directory: Path) -> None:
    """Write the token files and the manifest into ``directory`` (the temporary one)."""
    split = config.split
    sources = [
        {"path": str(f), "bytes": s.st_size, "mtime_ns": s.st_mtime_ns} for f in corpus.files for s in [f.stat()]
    ]
    sizes = [source["bytes"] for source in sources]
    threshold = int(split.val_fraction * 2**64)  # validation iff hash < val_fraction * 2**64
    sampled = {"chars": 0}
    tokenizer: Tokenizer = ByteTokenizer()
    tokenizer_file = None
    if split.tokenizer == "bpe":
        tokenizer_file = directory / "tokenizer.json"
        reading = _Reading(corpus, sizes, split.block_chars, "sampling for BPE", progress)
        sample = _bpe_sample(reading, split.seed, threshold, config.bpe_sample_chars, sampled)
        tokenizer = train_bpe(sample, split.vocab_size, tokenizer_file)
    dtype = token_dtype(tokenizer.vocab_size)
    reading = _Reading(corpus, sizes, split.block_chars, "tokenizing", progress)
    splitter = _Splitter(split.seed, threshold, config.chunk_chars)
    job = partial(_encode_chunk, tokenizer_file=tokenizer_file, dtype=dtype.str)
    _tokenize(splitter.chunks(reading), job, directory, config.processes)
    _check_sides(corpus, split, splitter.blocks)
    tokens = {name: (directory / f"{name}.bin").stat().st_size // dtype.itemsize for name in SPLITS}
    manifest = {
        "format": PREPARED_FORMAT, "starlab_version": _version(), "sources": sources, "text_field": config.text_field,
        **asdict(split), "tokenizer_vocab_size": tokenizer.vocab_size, "dtype": dtype.name, "tokens": tokens,
        "blocks": splitter.blocks, "documents": reading.documents,
        "split_rule": "a block goes to validation iff its keyed BLAKE2b-64 hash < val_fraction * 2**64",
        "bpe_sample_chars": sampled["chars"] if tokenizer_file else None,
    }  # fmt: skip
    (directory / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n")


@dataclass
class _Reading:
    """The ``(document, block)`` pairs of a corpus in order, counting documents and reporting bytes read."""

    corpus: Corpus
    sizes: list[int]
    block_chars: int
    stage: str
    progress: Progress
    documents: int = 0

    def __iter__(self) -> Iterator[tuple[tuple[int, int], str]]:
        total, done = sum(self.sizes), 0
        for index, (file, size) in enumerate(zip(self.corpus.files, self.sizes, strict=True)):
            seen, last = 0, None
            for number, block in file_blocks(self.corpus, file, self.block_chars):
                if number != last:
                    self.documents, last = self.documents + 1, number
                seen += len(block)  # characters: bytes for ASCII, an estimate otherwise
                yield (index, number), block
                self.progress(self.stage, done + min(seen, size), total, self.documents)
            done += size
        self.progress(self.stage, total, total, self.documents)


def _bpe_sample(reading: _Reading, seed: int, threshold: int, limit: int, sampled: dict[str, int]) -> Iterator[str]:
    """Training blocks whose hash lies in the lowest ``limit / corpus bytes`` share of the training side's hash
    range: a sample spread evenly over the whole corpus (a prefix would see only its first files), stopping at
    ``limit`` characters. A corpus smaller than ``limit`` gives all of its training text."""
    rate = min(1.0, limit / max(1, sum(reading.sizes)))
    cutoff = threshold + int(rate * (2**64 - threshold))
    for _, block in reading:
        if threshold <= _block_hash(block, seed) < cutoff:
            sampled["chars"] += len(block)
            yield block
            if sampled["chars"] >= limit:
                return


@dataclass
class _Splitter:
    """Gives each block its side as it streams past, and groups the sided blocks into chunks of work."""

    seed: int
    threshold: int
    chunk_chars: int
    blocks: dict[str, int] = field(default_factory=lambda: dict.fromkeys(SPLITS, 0))

    def chunks(self, blocks: Iterable[tuple[object, str]]) -> Iterator[list[Segment]]:
        """Consecutive blocks of one document on one side form a piece. A chunk ends at the first piece end
        after ``chunk_chars`` characters; a piece still open at twice that is cut where BPE splits anyway."""
        chunk: list[Segment] = []
        size, key, parts = 0, None, []
        for document, block in blocks:
            is_val = _block_hash(block, self.seed) < self.threshold
            self.blocks[SPLITS[is_val]] += 1
            if key is not None and key != (document, is_val):
                chunk.append((key[1], "".join(parts), True))
                parts = []
                if size >= self.chunk_chars:
                    yield chunk
                    chunk, size = [], 0
            key = (document, is_val)
            parts.append(block)
            size += len(block)
            if size >= 2 * self.chunk_chars:
                text = "".join(parts)
                cut = safe_cut(text, len(text), 1)
                yield [*chunk, (is_val, text[:cut], False)]
                chunk, parts, size = [], [text[cut:]], len(text) - cut
        if key is not None:
            chunk.append((key[1], "".join(parts), True))
        if chunk:
            yield chunk


def safe_cut(text: str, end: int, floor: int) -> int:
    """The last index in ``[max(floor, end - CUT_WINDOW), end)`` that ``SAFE_CUT`` allows, else ``end`` itself
    (a hard cut: BPE tokens may then differ from the whole text's around it, as in text without spaces)."""
    low = max(floor, end - CUT_WINDOW, 1)
    at = text.rfind(" ", low, end)
    while at >= low:
        if SAFE_CUT.match(text, at - 1):
            return at
        at = text.rfind(" ", low, at)
    return end


def text_parts(text: str, limit: int) -> Iterator[str]:
    """``text`` in consecutive parts of at most ``limit`` characters, cut at safe points where there are any."""
    start = 0
    while len(text) - start > limit:
        end = safe_cut(text, start + limit, start + 1)
        yield text[start:end]
        start = end
    yield text[start:]


def _tokenize(chunks: Iterable[list[Segment]], job: Callable[..., Path], directory: Path, processes: int) -> None:
    """Run ``job`` on every chunk (in ``processes`` workers) and append the shards it writes, in chunk order, to
    ``train.bin`` and ``val.bin``; at most ``processes + 2`` chunks are in flight, so memory stays bounded."""
    shards = directory / "shards"
    shards.mkdir()
    with ExitStack() as stack:
        outputs = {split: stack.enter_context((directory / f"{split}.bin").open("wb")) for split in SPLITS}
        submit = _submitter(processes, stack)
        pending: deque[Future] = deque()
        for index, chunk in enumerate(chunks):
            pending.append(submit(job, chunk, shards / f"{index:09d}"))
            while pending and (len(pending) > processes + 1 or pending[0].done()):
                _append(pending.popleft().result(), outputs)
        while pending:
            _append(pending.popleft().result(), outputs)
    shards.rmdir()


def _append(prefix: Path, outputs: dict[str, BinaryIO]) -> None:
    for split, output in outputs.items():
        shard = prefix.with_suffix(f".{split}")
        with shard.open("rb") as stream:
            shutil.copyfileobj(stream, output, 1 << 20)
        shard.unlink()


def _submitter(processes: int, stack: ExitStack) -> Callable[..., Future]:
    """``submit(fn, *args)``: to a pool of ``processes`` workers, or run here at once for one."""
    if processes == 1:
        return _run_here
    pool = ProcessPoolExecutor(processes, mp_context=_worker_context(), initializer=_ignore_interrupts)
    stack.callback(pool.shutdown, wait=True, cancel_futures=True)
    return pool.submit


def _run_here(fn: Callable[..., Any], *args: Any) -> Future:
    future: Future = Future()
    future.set_result(fn(*args))
    return future


def _worker_context() -> Any:
    """Workers forked from a fork server that imported this module once, where the platform has one (a worker
    then starts in milliseconds, not the seconds torch takes to import); spawned otherwise. Never plain fork:
    the caller may run threads (a progress bar, torch's), and forking a threaded process can deadlock."""
    if "forkserver" not in get_all_start_methods():
        return get_context("spawn")
    context = get_context("forkserver")
    context.set_forkserver_preload([__name__])
    return context


def _ignore_interrupts() -> None:
    """Ctrl-C reaches the whole process group: the parent stops the pool and removes the temporary directory,
    so a worker need not print a traceback of its own."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _encode_chunk(chunk: list[Segment], prefix: Path, tokenizer_file: Path | None, dtype: str) -> Path:
    """Encode one chunk into the raw token shards ``prefix.train`` and ``prefix.val`` (runs in a worker)."""
    tokenizer = _tokenizer(tokenizer_file)
    streams: dict[str, list[np.ndarray]] = {split: [np.empty(0, dtype)] for split in SPLITS}
    for is_val, text, closes in chunk:
        parts = text_parts(text + SEPARATOR if closes else text, ENCODE_CHARS)
        streams[SPLITS[is_val]].extend(tokenizer.encode(part) for part in parts)
    for split, arrays in streams.items():
        np.concatenate(arrays).astype(dtype, copy=False).tofile(prefix.with_suffix(f".{split}"))
    return prefix


@lru_cache(maxsize=2)
def _tokenizer(tokenizer_file: Path | None) -> Tokenizer:
    return BPETokenizer(tokenizer_file) if tokenizer_file else ByteTokenizer()


def _check_sides(corpus: Corpus, split: SplitSettings, blocks: dict[str, int]) -> None:
    """Both splits must hold text: an empty validation split would make every perplexity undefined."""
    total = sum(blocks.values())
    if total == 0:
        raise ValueError(f"{corpus.label}: the corpus is empty (no text in its documents)")
    for side, name in (("val", "validation"), ("train", "training")):
        if blocks[side] == 0:
            raise SettingError(
                "{0}: no block went to {1} ({2} block(s) of up to {3} characters, val_fraction {4}); "
                "use more text, a smaller {5} or another {6}",
                corpus.label, name, total, split.block_chars, split.val_fraction, Setting("block_chars"),
                Setting("val_fraction"),
            )  # fmt: skip


def _version() -> str:
    try:
        return importlib.metadata.version("starlab")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"
