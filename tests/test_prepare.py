"""Prepared corpora: the threshold split, the token files, workers, memory, lm_task over them, and bad inputs."""

from __future__ import annotations

import filecmp
import importlib.util
import json
import re
import subprocess
import sys
import time
from itertools import groupby
from operator import itemgetter
from pathlib import Path

import numpy as np
import pytest

from starlab.assess import get_protocol
from starlab.cli import main
from starlab.genome import preset
from starlab.model import Backbone
from starlab.tasks import lm
from starlab.tasks import prepare as prep
from starlab.tasks.lm import SEPARATOR, SplitSettings, encode_pieces, lm_task, open_corpus, read_manifest
from starlab.tasks.prepare import PrepareConfig, prepare
from starlab.tasks.tokenizer import BPETokenizer
from starlab.train import TrainConfig, train

needs_tokenizers = pytest.mark.skipif(importlib.util.find_spec("tokenizers") is None, reason="needs tokenizers")
STARLAB = [sys.executable, "-m", "starlab.cli"]
WORDS = [
    "the",
    "quick",
    "brown",
    "fox",
    "jumps,",
    "over",
    "a",
    "lazy",
    "naïve",
    "café",
    "😀",
    "don't",
    "42",
    "x1",
    "--",
]


def write_corpus(root: Path, lines: int = 1500) -> Path:
    """Two text files (one with CRLF line ends, cut mid-character by small blocks) and a JSON-lines file."""
    rng = np.random.default_rng(0)
    root.mkdir()

    def line() -> str:
        return " ".join(rng.choice(WORDS, 9))

    (root / "a.txt").write_bytes("\r\n".join(line() for _ in range(lines)).encode())
    (root / "b.md").write_text("\n".join(line() for _ in range(lines)))
    (root / "c.jsonl").write_text("".join(json.dumps({"text": line(), "id": i}) + "\n" for i in range(lines // 3)))
    return root


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    return write_corpus(tmp_path / "corpus")


def small(tokenizer: str = "byte", vocab_size: int = 256, **options) -> PrepareConfig:
    """Small blocks and chunks, so the corpus gives many chunks and long pieces cut across chunks."""
    split = SplitSettings(tokenizer, vocab_size, block_chars=256, val_fraction=0.1)
    return PrepareConfig(split, **{"workers": 1, "chunk_chars": 2048, **options})


def threshold_split(data: Path, settings: SplitSettings) -> tuple[list[str], list[str]]:
    """The rule written out independently: whole documents as ``open_corpus`` reads them, cut into blocks; a block
    is validation iff its hash < val_fraction * 2**64; consecutive same-side blocks of a document joined."""
    blocks = [
        (number, document[start : start + settings.block_chars])
        for number, document in enumerate(open_corpus(data).documents())
        for start in range(0, len(document), settings.block_chars)
    ]
    sided = [(n, lm._block_hash(b, settings.seed) < settings.val_fraction * 2**64, b) for n, b in blocks]
    sides: dict[bool, list[str]] = {False: [], True: []}
    for (_, is_val), run in groupby(sided, key=itemgetter(0, 1)):
        sides[is_val].append("".join(block for _, _, block in run))
    return sides[False], sides[True]


def tokens(directory: Path, split: str) -> np.ndarray:
    return np.fromfile(directory / f"{split}.bin", dtype=read_manifest(directory)["dtype"])


# The token files


def test_byte_files_decode_to_the_pieces_of_the_threshold_split(corpus: Path, tmp_path: Path) -> None:
    config = small()
    result = prepare(corpus, tmp_path / "out", config)
    train, val = threshold_split(corpus, config.split)
    assert train and val
    for split, pieces in (("train", train), ("val", val)):
        assert bytes(tokens(result.directory, split)).decode() == "".join(p + SEPARATOR for p in pieces)
    manifest = result.manifest
    assert manifest["format"] == lm.PREPARED_FORMAT and manifest["tokenizer"] == "byte" and manifest["dtype"] == "uint8"
    assert (manifest["vocab_size"], manifest["tokenizer_vocab_size"], manifest["block_chars"]) == (256, 256, 256)
    assert (manifest["val_fraction"], manifest["seed"], manifest["text_field"]) == (0.1, 0, "text")
    assert manifest["tokens"] == {split: len(tokens(result.directory, split)) for split in ("train", "val")}
    assert manifest["documents"] == 2 + 500 and manifest["bpe_sample_chars"] is None
    assert [Path(s["path"]).name for s in manifest["sources"]] == ["a.txt", "b.md", "c.jsonl"]
    assert all(s["bytes"] == Path(s["path"]).stat().st_size for s in manifest["sources"])
    assert sorted(p.name for p in result.directory.iterdir()) == ["manifest.json", "train.bin", "val.bin"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # the temporary directory is gone


@needs_tokenizers
def test_bpe_files_are_the_tokens_of_whole_pieces(corpus: Path, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(prep, "ENCODE_CHARS", 300)  # workers=1 runs here: long texts are encoded in many parts
    config = small("bpe", 400)
    result = prepare(corpus, tmp_path / "out", config)
    tokenizer = BPETokenizer(result.directory / "tokenizer.json")
    train, val = threshold_split(corpus, config.split)
    for split, pieces in (("train", train), ("val", val)):
        assert np.array_equal(tokens(result.directory, split), encode_pieces(tokenizer, pieces))
    manifest = result.manifest
    assert (manifest["tokenizer"], manifest["vocab_size"], manifest["dtype"]) == ("bpe", 400, "uint16")
    assert 256 < manifest["tokenizer_vocab_size"] == tokenizer.vocab_size <= 400
    assert 0 < manifest["bpe_sample_chars"] == sum(map(len, train))  # a small corpus: all of its training text


@needs_tokenizers
def test_the_bpe_sample_is_bounded(corpus: Path, tmp_path: Path) -> None:
    """About ``bpe_sample_chars`` (the sampling rate is that over the corpus bytes), never a block more."""
    manifest = prepare(corpus, tmp_path / "out", small("bpe", 400, bpe_sample_chars=5000)).manifest
    assert 2500 < manifest["bpe_sample_chars"] < 5000 + 256 < sum(s["bytes"] for s in manifest["sources"]) // 10


def test_cuts_fall_where_the_pre_tokenizer_splits_anyway() -> None:
    text = "one two, three.  4 five\tsix  seven eight"
    safe = {text.index(word) - 1 for word in ("two", "three", "five", "eight")}
    for end in range(1, len(text) + 1):
        cut = prep.safe_cut(text, end, 1)
        assert cut == max((i for i in safe if i < end), default=end), end
    parts = list(prep.text_parts(text, 7))
    assert "".join(parts) == text and max(map(len, parts)) <= 7 and len(parts) > len(text) // 7
    assert prep.safe_cut("x" * 100, 50, 1) == 50  # no safe point: a hard cut


@pytest.mark.parametrize("tokenizer", ["byte", pytest.param("bpe", marks=needs_tokenizers)])
def test_workers_do_not_change_the_files(tokenizer: str, corpus: Path, tmp_path: Path) -> None:
    config = small(tokenizer, 400 if tokenizer == "bpe" else 256)
    one = prepare(corpus, tmp_path / "one", config).directory
    two = prepare(corpus, tmp_path / "two", PrepareConfig(config.split, chunk_chars=2048, workers=2)).directory
    names = sorted(p.name for p in one.iterdir())
    assert names == sorted(p.name for p in two.iterdir())
    assert filecmp.cmpfiles(one, two, names, shallow=False)[0] == names


def test_a_failure_midway_leaves_no_directory(corpus: Path, tmp_path: Path, monkeypatch) -> None:
    def crash(*args, **kwargs):
        raise RuntimeError("killed while tokenizing")

    monkeypatch.setattr(prep, "_encode_chunk", crash)
    with pytest.raises(RuntimeError):
        prepare(corpus, tmp_path / "out", small())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["corpus"]


@pytest.mark.parametrize("empty", ["validation", "training"])
def test_neither_split_is_ever_empty(empty: str, tmp_path: Path) -> None:
    to_val = empty == "training"  # a corpus of one block, which lands on the other side
    texts = (f"a single block of text {i}" for i in range(1000))
    (tmp_path / "one.txt").write_text(next(t for t in texts if (lm._block_hash(t, 0) < 0.05 * 2**64) == to_val))
    with pytest.raises(ValueError, match=rf"one.txt: no block went to {empty} \(1 block\(s\) of up to 65536"):
        prepare(tmp_path / "one.txt", tmp_path / "out")
    assert not (tmp_path / "out").exists()


# Reading a prepared directory


def test_lm_task_reads_the_memory_maps_and_trains(corpus: Path, tmp_path: Path) -> None:
    directory = prepare(corpus, tmp_path / "out", small()).directory
    task = lm_task(directory, 32, max_eval_tokens=320)
    assert isinstance(task.train, np.memmap) and Path(task.train.filename) == (directory / "train.bin").resolve()
    assert np.array_equal(task.eval_windows[0], tokens(directory, "val")[:33]) and len(task.eval_windows) == 10
    assert task.name == "lm-out-byte" and task.vocab_size == 256
    model = Backbone(preset("transformer++", 2), 32, task.vocab_size)
    result = train(model, task, TrainConfig(max_steps=3, batch_size=4, seed=0))
    assert result.steps == 3 and np.isfinite(result.metrics["perplexity"])
    assert get_protocol("lm-tiny").with_data(str(directory)).data == str(directory)  # accepted as --data
    assert open_corpus(directory).label == "out"
    with pytest.raises(ValueError, match="holds token ids, not documents"):
        list(open_corpus(directory).documents())


@needs_tokenizers
def test_the_prepared_tokenizer_and_split_win(corpus: Path, tmp_path: Path) -> None:
    directory = prepare(corpus, tmp_path / "bpe", small("bpe", 400)).directory
    assert lm_task(directory, 16, "bpe", 400).vocab_size == read_manifest(directory)["tokenizer_vocab_size"]
    assert lm_task(directory, 16, "bpe", 400, val_fraction=0.1, block_chars=256).name == "lm-bpe-bpe400"
    refusals = [
        ({}, "was prepared with bpe vocab 400; this task asks for byte$"),
        ({"tokenizer": "bpe", "vocab_size": 512}, "bpe vocab 400; this task asks for bpe vocab 512$"),
        ({"tokenizer": "bpe", "vocab_size": 400, "val_fraction": 0.2}, "with val_fraction 0.1; .* asks for 0.2$"),
        ({"tokenizer": "bpe", "vocab_size": 400, "text_field": "body"}, "with text_field 'text'; .* for 'body'$"),
    ]
    for options, message in refusals:
        with pytest.raises(ValueError, match=message):
            lm_task(directory, 16, **options)


def test_a_damaged_directory_is_refused(corpus: Path, tmp_path: Path) -> None:
    directory = prepare(corpus, tmp_path / "out", small()).directory
    with (directory / "val.bin").open("r+b") as stream:
        stream.truncate(10)
    with pytest.raises(ValueError, match=r"val.bin: not the [\d,]+ bytes its manifest says"):
        lm_task(directory, 16)
    manifest = json.loads((directory / "manifest.json").read_text())
    (directory / "manifest.json").write_text(json.dumps({**manifest, "format": 99}))
    with pytest.raises(ValueError, match="format 99, this starlab reads format 1"):
        open_corpus(directory)


# Memory: neither preparing nor opening holds the corpus or its tokens


def _descendants(root: int) -> set[int]:
    parents = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            parents[int(stat.parent.name)] = int(stat.read_text().rpartition(")")[2].split()[1])
        except (OSError, ValueError, IndexError):
            continue  # gone meanwhile
    family = {root}
    while grown := {pid for pid, parent in parents.items() if parent in family} - family:
        family |= grown
    return family - {root}


def _high_water_mib(pid: int) -> float:
    try:
        line = next(x for x in Path(f"/proc/{pid}/status").read_text().splitlines() if x.startswith("VmHWM:"))
    except (OSError, StopIteration):
        return 0.0
    return int(line.split()[1]) / 1024


WRAPPER = """import resource, subprocess, sys
code = subprocess.call(sys.argv[2:])
with open(sys.argv[1], "w") as out:
    out.write(f"{code} {resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss}")
"""


def peak_rss_mib(argv: list[str], log: Path) -> float:
    """The peak resident memory of the largest process ``argv`` runs as (itself or one of its workers), in MiB.

    A process's ``ru_maxrss`` starts from the memory of the process it was started from (pytest's, here), so
    ``argv`` runs under a small wrapper that reports its children's (exact, for ``argv`` and what it reaps).
    Workers, reaped by a fork server, are sampled from ``/proc`` (``VmHWM``) every 20 ms besides."""
    result = log.with_suffix(".rss")
    with log.open("w") as output:
        wrapper = subprocess.Popen([sys.executable, "-c", WRAPPER, str(result), *argv], stdout=output, stderr=output)
    sampled = 0.0
    while wrapper.poll() is None:
        sampled = max([sampled, *map(_high_water_mib, _descendants(wrapper.pid))])
        time.sleep(0.02)
    code, maxrss_kib = map(int, result.read_text().split())
    assert code == 0, log.read_text()
    return max(maxrss_kib / 1024, sampled)


def write_random_text(path: Path, mib: int) -> None:
    """Letters, spaces and newlines, 16 MiB at a time: seconds for hundreds of MiB, and no two blocks alike."""
    rng = np.random.default_rng(0)
    alphabet = np.frombuffer(b"abcdefghijklmnopqrstuvwxyz      \n", np.uint8)
    with path.open("wb") as stream:
        for _ in range(mib // 16):
            stream.write(alphabet[rng.integers(0, len(alphabet), 16 << 20, dtype=np.uint8)].tobytes())


#: The large corpus, in MiB: holding it, or its tokens, once would add 2.5 x GROWTH_MIB (docs/tasks.md measured
#: the same on a 304 MiB file, which took this test twice as long to write and prepare).
BIG_MIB = 160
#: What memory may grow by when the corpus grows from 1 MiB to BIG_MIB: a few 2 Mi-character chunks in flight
#: (docs/tasks.md "Prepared corpora").
GROWTH_MIB = 64
#: Opens a prepared directory, draws training batches, and prints how much its anonymous and file-backed
#: resident memory grew, and the training tokens it could draw from. A copy of the tokens would be anonymous
#: memory; the memory maps add file-backed pages around the windows read: page cache, dropped under pressure.
OPEN = """import sys
from pathlib import Path
import numpy as np
from starlab.tasks.lm import lm_task
def resident():
    status = dict(line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines())
    return np.array([int(status[key].split()[0]) / 1024 for key in ("RssAnon", "RssFile")])
before = resident()
task = lm_task(sys.argv[1], 256)
batches = task.train_batches(16, np.random.default_rng(0))
windows = [next(batches) for _ in range(20)]
print(*(resident() - before), len(task.train))
"""


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads /proc (Linux)")
def test_memory_does_not_grow_with_the_corpus(tmp_path: Path) -> None:
    big, little = tmp_path / "big.txt", tmp_path / "little.txt"
    write_random_text(big, BIG_MIB)
    with big.open("rb") as stream:
        little.write_bytes(stream.read(1 << 20))
    try:
        peaks = {}
        for path in (little, big):
            out = tmp_path / f"{path.stem}-tokens"
            argv = [*STARLAB, "data", "prepare", str(path), "--tokenizer", "byte", "--out", str(out), "--workers", "2"]
            peaks[path.stem] = peak_rss_mib(argv, tmp_path / f"{path.stem}.log")
        print(f"peak RSS of the largest process, MiB: {peaks}; file {big.stat().st_size / 2**20:.0f} MiB")
        assert peaks["big"] - peaks["little"] < GROWTH_MIB, peaks
        opened = subprocess.run([sys.executable, "-c", OPEN, str(tmp_path / "big-tokens")], capture_output=True,
                                text=True, check=True)  # fmt: skip
        anonymous, mapped, train_tokens = map(float, opened.stdout.split())
        print(f"opening: anonymous memory +{anonymous:.1f} MiB, mapped file pages +{mapped:.1f} MiB, "
              f"over {train_tokens:,.0f} training tokens")  # fmt: skip
        assert train_tokens > 0.9 * (BIG_MIB << 20) and anonymous < 16  # ~5.5 % of the blocks are validation
    finally:
        for path in (big, tmp_path / "big-tokens"):  # do not leave 300 MB in pytest's kept temporary directories
            if path.is_dir():
                for file in path.iterdir():
                    file.unlink()
                path.rmdir()
            else:
                path.unlink(missing_ok=True)


# The command line


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    try:
        code = main(list(argv))
    except SystemExit as refused:  # argparse's refusals exit from inside main
        code = refused.code
    out, err = capsys.readouterr()
    return code, out, err


def test_the_command_prepares_and_protocols_read_it(corpus: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "tokens"
    code, stdout, _ = run_cli(capsys, "data", "prepare", str(corpus), "--tokenizer", "byte", "--out", str(out),
                              "--workers", "1", "--block-chars", "256", "--val-fraction", "0.1")  # fmt: skip
    manifest = read_manifest(out)
    assert code == 0 and stdout.startswith(f"{out}: {manifest['tokens']['train']:,} training and ")
    assert "from 3 file(s), 502 documents, in " in stdout
    code, stdout, err = run_cli(capsys, "lm", "mamba", "--depth", "2", "--protocol", "lm-tiny", "--data", str(out),
                                "--steps", "2", "--json")  # fmt: skip
    assert code == 0, err
    assert json.loads(stdout)["steps"] == 2


def _refused(tmp_path: Path, corpus: Path) -> list[tuple[list[str], str]]:
    (tmp_path / "empty.txt").write_text("")
    (tmp_path / "nul.txt").write_bytes(b"text\0with a NUL" * 10)
    (tmp_path / "noise.txt").write_bytes(np.random.default_rng(0).integers(128, 256, 5000, dtype=np.uint8).tobytes())
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("x")
    (tmp_path / "bad.jsonl").write_text('{"text": "fine"}\n{"text": oops}\n')
    prepared = prepare(corpus, tmp_path / "prepared", small()).directory
    out = ["--out", str(tmp_path / "new")]
    byte = ["--tokenizer", "byte"]
    return [
        (["data", "prepare", str(tmp_path / "empty.txt"), *byte, *out], "empty.txt: the corpus is empty"),
        (["data", "prepare", str(tmp_path / "nul.txt"), *byte, *out], r"nul.txt: binary, not UTF-8 text \(a NUL"),
        (["data", "prepare", str(tmp_path / "noise.txt"), *byte, *out], r"noise.txt: binary.*undecodable bytes"),
        (["data", "prepare", str(tmp_path / "missing"), *byte, *out], "missing: no such file or directory"),
        (["data", "prepare", str(corpus), *byte, "--out", str(tmp_path / "full")], "choose another --out DIR"),
        (["data", "prepare", str(corpus), "--tokenizer", "words", *out], "argument --tokenizer: invalid choice"),
        (["data", "prepare", str(corpus), "--tokenizer", "bpe", "--vocab-size", "100", *out], "needs vocab_size > 256"),
        (["data", "prepare", str(corpus), *byte, "--vocab-size", "512", *out], "byte tokenizer has vocab_size 256"),
        (["data", "prepare", str(corpus), *byte, "--val-fraction", "1", *out], r"val_fraction must be in \(0, 1\)"),
        (["data", "prepare", str(corpus), *byte, "--workers", "100000", *out], r"--workers must be at most \d+"),
        (["data", "prepare", str(tmp_path / "bad.jsonl"), *byte, *out], r"bad.jsonl:2: invalid JSON"),
        (["data", "prepare", str(prepared), *byte, *out], "a prepared corpus already"),
    ]


def test_bad_inputs_are_one_line_and_exit_2(corpus: Path, tmp_path: Path, capsys) -> None:
    for argv, message in _refused(tmp_path, corpus):
        code, out, err = run_cli(capsys, *argv)
        assert code == 2 and out == "" and len(err.splitlines()) == 1 and "Traceback" not in err, (argv, err)
        assert err.startswith("starlab: error: ") and re.search(message, err), (argv, err)
        assert not (tmp_path / "new").exists() and [p.name for p in (tmp_path / "full").iterdir()] == ["x"]


@needs_tokenizers
def test_a_protocol_refuses_a_corpus_prepared_with_another_tokenizer(corpus: Path, tmp_path: Path, capsys) -> None:
    directory = prepare(corpus, tmp_path / "bpe", small("bpe", 400)).directory
    code, out, err = run_cli(capsys, "lm", "mamba", "--depth", "2", "--protocol", "lm-tiny", "--data", str(directory))
    assert code == 2 and out == ""
    assert err == f"starlab: error: {directory} was prepared with bpe vocab 400; this task asks for byte\n"
