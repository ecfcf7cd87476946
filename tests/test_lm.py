"""Language-modelling data: readers, tokenizers, the seeded split, the token cache and the LM task's metrics."""

from __future__ import annotations

import importlib.util
import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from starlab.tasks import lm
from starlab.tasks.lm import LMTask, SplitSettings, cache_key, cache_root, default_corpus, lm_task, open_corpus
from starlab.tasks.tokenizer import ByteTokenizer, token_dtype, train_bpe

HAS_TOKENIZERS = importlib.util.find_spec("tokenizers") is not None
needs_tokenizers = pytest.mark.skipif(not HAS_TOKENIZERS, reason="tokenizers not installed (starlab[bpe])")
TOKENIZER_NAMES = ["byte", pytest.param("bpe", marks=needs_tokenizers)]


def sentences(count: int, start: int = 0) -> str:
    return "".join(f"Line {i}: the quick brown fox saw {i * 7 % 13} lazy dogs.\n" for i in range(start, start + count))


@pytest.fixture
def corpus_file(tmp_path: Path) -> Path:
    path = tmp_path / "corpus" / "text.txt"
    path.parent.mkdir()
    path.write_text(sentences(300))
    return path


def small_task(data: Path, cache: Path, **options) -> LMTask:
    return lm_task(data, 16, cache_dir=cache, block_chars=512, **options)


def texts(corpus_path: Path, **options) -> list[str]:
    return list(open_corpus(corpus_path, **options).documents())


# Tokenizers


@given(st.text())
def test_byte_tokenizer_round_trips_any_text(text: str) -> None:
    tokenizer = ByteTokenizer()
    ids = tokenizer.encode(text)
    assert ids.dtype == np.uint8 and len(ids) == len(text.encode("utf-8"))
    assert tokenizer.decode(ids) == text


@needs_tokenizers
def test_bpe_trains_locally_and_round_trips(tmp_path: Path) -> None:
    bpe = train_bpe([sentences(200)], 300, tmp_path / "tokenizer.json")
    assert (tmp_path / "tokenizer.json").is_file() and 256 < bpe.vocab_size <= 300
    assert len(bpe.encode(sentences(5))) < len(sentences(5).encode())  # merges learned from the corpus are used
    unseen = "Ünïcödé ✓ 😀 text never seen\n\n\twith  odd   spacing\r\n"
    ids = bpe.encode(unseen)
    assert ids.dtype == np.uint16 and bpe.decode(ids) == unseen


def test_token_dtype_is_the_smallest_that_fits() -> None:
    assert [token_dtype(v) for v in (256, 257, 65536, 65537)] == [np.uint8, np.uint16, np.uint16, np.uint32]


# Readers


def test_reads_a_text_file(corpus_file: Path) -> None:
    assert texts(corpus_file) == [sentences(300)]


def test_reads_a_directory_recursively_in_sorted_order(tmp_path: Path) -> None:
    files = {
        "b.txt": "bee",
        "a/z.md": "zed",
        "a/b/c.rst": "sea",
        "skip.csv": "no",
        ".hidden/x.txt": "no",
        "a/.h.txt": "no",
    }
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    assert texts(tmp_path) == ["sea", "zed", "bee"]  # a/b/c.rst < a/z.md < b.txt


def test_reads_jsonl_with_a_chosen_field(tmp_path: Path) -> None:
    path = tmp_path / "docs.jsonl"
    path.write_text('{"text": "one", "body": "uno"}\n\n{"text": "two", "body": "dos"}\n')
    assert texts(path) == ["one", "two"]
    assert texts(path, text_field="body") == ["uno", "dos"]


def test_reads_parquet_with_a_chosen_column(tmp_path: Path) -> None:
    pyarrow = pytest.importorskip("pyarrow")
    parquet = pytest.importorskip("pyarrow.parquet")
    path = tmp_path / "docs.parquet"
    parquet.write_table(pyarrow.table({"id": [1, 2, 3], "content": ["alpha", None, "gamma"]}), path)
    assert texts(path, text_field="content") == ["alpha", "gamma"]
    with pytest.raises(ValueError, match=r"no column 'text' \(columns: id, content\)"):
        texts(path)


def test_default_corpus_is_real_text_of_at_least_a_megabyte(tmp_path: Path) -> None:
    (text,) = default_corpus().documents()
    assert len(text) > 1_000_000 and text.startswith("At the first God made the heaven and the earth.")
    assert "\\" not in text  # the stray chapter:verse markers are gone
    task = lm_task(None, 64, cache_dir=tmp_path)
    assert task.name == "lm-bbe-byte" and task.vocab_size == 256 and len(task.train) > 1_000_000


# Split


def test_split_is_deterministic_disjoint_and_seeded(tmp_path: Path) -> None:
    path = tmp_path / "docs.jsonl"
    path.write_text("".join(json.dumps({"text": f"document {i}"}) + "\n" for i in range(200)))
    corpus = open_corpus(path)
    train, val = lm.split_corpus(corpus, SplitSettings(val_fraction=0.1))
    assert (train, val) == lm.split_corpus(open_corpus(path), SplitSettings(val_fraction=0.1))
    assert len(val) == 20 and not set(train) & set(val) and sorted(train + val) == sorted(corpus.documents())
    assert lm.split_corpus(corpus, SplitSettings(val_fraction=0.1, seed=1))[1] != val


def test_split_cuts_long_documents_into_blocks_and_rejoins_neighbours(corpus_file: Path) -> None:
    text = sentences(300)
    train, val = lm.split_corpus(open_corpus(corpus_file), SplitSettings(val_fraction=0.2, block_chars=100))
    assert sum(map(len, train + val)) == len(text) and all(piece in text for piece in train + val)
    assert round(0.2 * math.ceil(len(text) / 100)) * 100 == sum(map(len, val))  # exact count, all full blocks
    assert len(train) + len(val) < math.ceil(len(text) / 100)  # adjacent same-side blocks were joined


def test_block_hash_is_stable_across_machines() -> None:
    # BLAKE2b keyed by the seed, not Python's salted hash(): this value must never change.
    assert lm._block_hash("In the beginning", 0) == 0x41A90F317293475F


# Cache


@pytest.mark.parametrize("tokenizer", TOKENIZER_NAMES)
def test_cache_is_reused_and_invalidated_when_the_corpus_changes(
    tokenizer: str, corpus_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = []
    encode, train = lm.encode_pieces, lm.train_bpe
    monkeypatch.setattr(lm, "encode_pieces", lambda *a: calls.append("encode") or encode(*a))
    monkeypatch.setattr(lm, "train_bpe", lambda *a: calls.append("train") or train(*a))
    options = {"tokenizer": tokenizer, "vocab_size": 300 if tokenizer == "bpe" else None}
    first = small_task(corpus_file, tmp_path / "cache", **options)
    built = len(calls)
    assert built == (3 if tokenizer == "bpe" else 2)
    second = small_task(corpus_file, tmp_path / "cache", **options)
    assert len(calls) == built and isinstance(second.train, np.memmap)
    assert np.array_equal(first.train, second.train) and np.array_equal(first.eval_windows, second.eval_windows)
    assert second.train.dtype == token_dtype(second.vocab_size)

    corpus_file.write_text(sentences(300, start=1000))
    changed = small_task(corpus_file, tmp_path / "cache", **options)
    assert len(calls) == 2 * built and not np.array_equal(changed.train[:100], first.train[:100])
    assert len(list((tmp_path / "cache").iterdir())) == 2


def test_cache_key_covers_files_and_settings(corpus_file: Path) -> None:
    settings = (SplitSettings(), SplitSettings(seed=1), SplitSettings(val_fraction=0.1), SplitSettings(block_chars=9))
    keys = {cache_key(open_corpus(corpus_file.parent), split) for split in settings}
    keys.add(cache_key(open_corpus(corpus_file.parent, text_field="body"), SplitSettings()))
    (corpus_file.parent / "more.txt").write_text("a new file")
    keys.add(cache_key(open_corpus(corpus_file.parent), SplitSettings()))
    assert len(keys) == 6


def test_a_failed_build_leaves_no_cache_entry(
    corpus_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def crash(*args):
        raise RuntimeError("killed while tokenizing")

    monkeypatch.setattr(lm, "encode_pieces", crash)
    with pytest.raises(RuntimeError):
        small_task(corpus_file, tmp_path / "cache")
    assert list((tmp_path / "cache").iterdir()) == []
    monkeypatch.undo()
    assert len(small_task(corpus_file, tmp_path / "cache").train) > 0


def test_cache_location_follows_starlab_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STARLAB_CACHE", str(tmp_path / "env"))
    assert cache_root() == tmp_path / "env" / "tokens" and cache_root(tmp_path / "arg") == tmp_path / "arg"


# Task


def counting_task(length: int = 5000, seq_len: int = 8, max_eval_tokens: int = 1 << 16) -> LMTask:
    """Tokens 0, 1, 2, ... (mod 256): the next token is always the current one plus one."""
    tokens = (np.arange(length) % 256).astype(np.uint8)
    return LMTask(tokens, tokens.copy(), ByteTokenizer(), seq_len, max_eval_tokens)


def test_train_batches_are_random_windows_shifted_by_one() -> None:
    task = counting_task()
    batches = task.train_batches(32, np.random.default_rng(0))
    for _ in range(20):
        inputs, targets = next(batches)
        assert inputs.shape == targets.shape == (32, 8) and inputs.dtype == targets.dtype == torch.long
        assert torch.equal(targets, (inputs + 1) % 256) and torch.equal(inputs[:, 1:], targets[:, :-1])
    again = next(task.train_batches(32, np.random.default_rng(0)))
    assert torch.equal(again[0], next(task.train_batches(32, np.random.default_rng(0)))[0])


def test_eval_windows_are_fixed_capped_non_overlapping_and_spread() -> None:
    starts = lm._eval_starts(5000, 8, 800)
    assert len(starts) == 100 and np.all(np.diff(starts) >= 8) and starts[-1] > 4900 and np.all(starts % 8 == 0)
    task = counting_task(max_eval_tokens=800)
    assert np.array_equal(task.eval_windows, (starts[:, None] + np.arange(9)) % 256)
    assert len(counting_task(length=20, max_eval_tokens=1).eval_windows) == 1


def test_uniform_model_has_perplexity_equal_to_vocab_size() -> None:
    task = counting_task(max_eval_tokens=1000)
    metrics = task.evaluate(lambda x: torch.zeros(*x.shape, task.vocab_size), 7, torch.device("cpu"))
    assert metrics["perplexity"] == pytest.approx(256, rel=1e-5)
    assert metrics["loss"] == pytest.approx(math.log(256), rel=1e-6)
    assert metrics["score"] == pytest.approx(1 / metrics["perplexity"]) and metrics["tokens"] == 125 * 8


def test_perfect_model_scores_one() -> None:
    task = counting_task()
    metrics = task.evaluate(lambda x: 50.0 * torch.nn.functional.one_hot((x + 1) % 256, 256), 64, torch.device("cpu"))
    assert metrics["perplexity"] == pytest.approx(1.0) and metrics["score"] == pytest.approx(1.0)


# Bad inputs: one line, naming what is wrong


@pytest.mark.parametrize(
    ("files", "data", "options", "message"),
    [
        ({}, "missing.txt", {}, "missing.txt: no such file or directory"),
        ({"empty.txt": ""}, "empty.txt", {}, "empty.txt: the corpus is empty"),
        ({"notes.csv": "a,b"}, "notes.csv", {}, r"notes.csv: unknown format '.csv'; use .txt, .*\.jsonl, \.parquet"),
        ({"d/x.csv": "a"}, "d", {}, r"d: no \.txt, .* files in this directory"),
        ({"a.jsonl": '{"body": "x"}\n'}, "a.jsonl", {}, r"a.jsonl:1: no text field 'text' \(found keys \['body'\]\)"),
        ({"a.jsonl": '{"text": "x"}\n{oops\n'}, "a.jsonl", {}, r"a.jsonl:2: invalid JSON"),
        ({"a.jsonl": '{"text": "x"}\n'}, "a.jsonl", {"text_field": "body"}, "no text field 'body'"),
        ({"a.txt": "x" * 5000}, "a.txt", {"tokenizer": "word"}, "tokenizer must be one of byte, bpe, got 'word'"),
        ({"a.txt": "x" * 5000}, "a.txt", {"vocab_size": 512}, "byte tokenizer has vocab_size 256, got 512"),
        ({"a.txt": "x" * 5000}, "a.txt", {"tokenizer": "bpe", "vocab_size": 200}, "needs vocab_size > 256"),
        ({"a.txt": "x" * 5000}, "a.txt", {"val_fraction": 1.0}, r"val_fraction must be in \(0, 1\), got 1.0"),
        ({"a.txt": "x" * 5000}, "a.txt", {"seq_len": 0}, "seq_len and max_eval_tokens must be positive"),
        ({"a.txt": "x" * 100}, "a.txt", {"block_chars": 1000}, r"too small to split \(1 block"),
        (
            {"a.txt": sentences(30)},
            "a.txt",
            {"seq_len": 100},
            r"the validation split has 52 tokens, fewer than seq_len",
        ),
    ],
)
def test_bad_inputs_give_one_line_value_errors(
    tmp_path: Path, files: dict[str, str], data: str, options: dict, message: str
) -> None:
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    seq_len = options.pop("seq_len", 16)
    with pytest.raises(ValueError, match=message) as error:
        lm_task(tmp_path / data, seq_len, cache_dir=tmp_path / "cache", **{"block_chars": 50, **options})
    assert "\n" not in str(error.value)


@pytest.mark.parametrize(
    ("module", "suffix", "options"), [("pyarrow.parquet", "parquet", {}), ("tokenizers", "txt", {"tokenizer": "bpe"})]
)
def test_a_missing_optional_package_says_how_to_install_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, module: str, suffix: str, options: dict
) -> None:
    monkeypatch.setitem(sys.modules, module, None)  # makes the import fail as if not installed
    path = tmp_path / f"corpus.{suffix}"
    path.write_text(sentences(100))
    extra = "bpe" if module == "tokenizers" else "parquet"
    with pytest.raises(ValueError, match=rf"needs {module.split('.')[0]}: pip install 'starlab\[{extra}\]'"):
        lm_task(path, 16, cache_dir=tmp_path / "cache", block_chars=50, **options)
