"""A search keeps the trained models of its front's genomes, and ``starlab export`` gives those (not initial
weights); with ``--format hf`` the export carries the BPE the weights were trained with."""

import json
import subprocess
import sys

import pytest
import torch

import starlab
from starlab.cli import main
from starlab.store import load_run
from starlab.tasks.tokenizer import BPETokenizer

BPE = ["--protocol-setting", "tokenizer=bpe", "--protocol-setting", "vocab_size=300"]
#: perplexity on 4,096 validation tokens, not lm-tiny's 65,536: most of an evaluation's time, and nothing here
#: depends on how precise it is
SEARCH = ["evolve", "--protocol", "lm-tiny", "--depth", "2", "--population", "4", "--generations", "1", "--seed", "3",
          *BPE, "--protocol-setting", "max_eval_tokens=4096"]  # fmt: skip


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    directory = tmp_path_factory.mktemp("weights") / "run"
    assert main([*SEARCH, "--out", str(directory)]) == 0
    return directory


def test_the_weights_of_the_front_are_kept_and_the_others_pruned(run):
    saved = load_run(run)
    front = {member["hash"] for member in saved.front}
    kept = {folder.name.rsplit("-", 2)[1] for folder in (run / "weights").iterdir()}
    assert kept == front and len(saved.evaluations) > len(front)  # some evaluated genomes left the front
    assert not any((run / "checkpoints").iterdir())


def test_export_gives_the_kept_trained_model(run, tmp_path, capsys):
    assert main(["export", str(run), "--rank", "1", "--out", str(tmp_path / "model")]) == 0
    model, best = starlab.load(tmp_path / "model"), load_run(run).front[0]
    kept = starlab.load(next((run / "weights").glob(f"*-{best['hash']}-seed3")))
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), kept.state_dict().values(), strict=True))
    metadata = json.loads((tmp_path / "model" / "config.json").read_text())["metadata"]
    evaluation = next(e for e in load_run(run).evaluations if e.hash == best["hash"])
    assert metadata["trained"] and metadata["weights"] == "kept by the run" and model.vocab_size == 300
    assert metadata["perplexity"] == pytest.approx(evaluation.quality)
    assert (tmp_path / "model" / "tokenizer.json").is_file()


@pytest.mark.parametrize("fmt", ["starlab", "hf"])
def test_export_refuses_a_vocab_that_kept_weights_would_ignore(run, tmp_path, capsys, fmt):
    """Kept weights have the vocabulary they were trained with (here a 300-token BPE); ``--vocab`` was
    ignored in silence, a 256 or 50257 asked for and a 300 written (issue 30)."""
    argv = ["export", str(run), "--rank", "1", "--format", fmt, "--vocab", "512", "--out", str(tmp_path / "model")]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("starlab: error: --vocab sets the vocabulary of initial weights; rank 1 exports the "
                          "trained weights the run kept") and err.count("\n") == 1, err  # fmt: skip
    assert not (tmp_path / "model").exists()


def test_a_hugging_face_export_of_kept_weights_uses_their_bpe(run, tmp_path):
    pytest.importorskip("transformers")
    assert main(["export", str(run), "--rank", "1", "--format", "hf", "--out", str(tmp_path / "hf")]) == 0
    text = "And God said, Let there be light: and there was light."
    expected = BPETokenizer(tmp_path / "hf" / "tokenizer.json").encode(text).tolist()
    script = (
        "import sys, json; sys.modules['starlab'] = None\n"
        "from transformers import AutoTokenizer\n"
        f"tokenizer = AutoTokenizer.from_pretrained({str(tmp_path / 'hf')!r}, trust_remote_code=True)\n"
        f"print(json.dumps(tokenizer({text!r}).input_ids))\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(done.stdout.splitlines()[-1]) == expected


def test_keep_weights_none_keeps_nothing(tmp_path):
    directory = tmp_path / "run"
    assert main([*SEARCH, "--out", str(directory), "--keep-weights", "none", "--generations", "0"]) == 0
    assert not (directory / "weights").exists() or not any((directory / "weights").iterdir())


def test_keep_weights_all_keeps_every_evaluations_and_a_plain_resume_keeps_them_too(tmp_path, capsys):
    """The policy is stored with the run: a resume (which replays, and prunes under ``front``) without the flag
    deletes nothing (it pruned 8 kept models to the front's 5); one given with ``--resume`` replaces it."""
    directory = tmp_path / "run"
    assert main([*SEARCH, "--out", str(directory), "--keep-weights", "all"]) == 0

    def kept() -> set[str]:
        return {folder.name.rsplit("-", 2)[1] for folder in (directory / "weights").iterdir()}

    run = load_run(directory)
    every, front = {e.hash for e in run.evaluations}, {member["hash"] for member in run.front}
    assert kept() == every and len(front) < len(every)
    capsys.readouterr()
    assert main(["evolve", "--resume", str(directory)]) == 0
    assert kept() == every and "note" not in capsys.readouterr().err
    assert main(["evolve", "--resume", str(directory), "--keep-weights", "front"]) == 0
    err = capsys.readouterr().err
    assert "note: resuming with --keep-weights 'front' (the run's was 'all'); stored for later resumes" in err
    assert kept() == front
