"""``starlab lm --out DIR`` checkpoints; killed with SIGKILL and resumed with ``--resume DIR``, it reports
exactly what an uninterrupted run reports."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from starlab.assess import lm_run
from starlab.cli import main

TRAIN = ["mamba", "--protocol", "lm-tiny", "--steps", "100", "--json"]


def test_a_killed_lm_run_resumes_from_its_checkpoint_to_the_same_result(tmp_path, capsys):
    directory = tmp_path / "run"
    argv = [sys.executable, "-m", "starlab.cli", "lm", *TRAIN, "--out", str(directory), "--checkpoint-every", "20"]
    victim = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 120
    while not (directory / "checkpoints" / "latest.json").exists() and victim.poll() is None and time.time() < deadline:
        time.sleep(0.01)
    os.killpg(victim.pid, signal.SIGKILL)
    victim.wait()
    assert not (directory / "result.json").exists()  # killed mid-run, with a checkpoint written
    assert main(["lm", "--resume", str(directory), "--json"]) == 0
    resumed = json.loads(capsys.readouterr().out)
    assert main(["lm", *TRAIN]) == 0
    whole = json.loads(capsys.readouterr().out)
    assert resumed["perplexity"] == whole["perplexity"] and resumed["steps"] == whole["steps"] == 100
    assert not list((directory / "checkpoints").iterdir())  # a finished run keeps its result, not its checkpoints
    assert json.loads((directory / "result.json").read_text())["perplexity"] == whole["perplexity"]
    assert lm_run.read(directory).checkpoint_every == 20


def test_lm_run_directories_refuse_what_does_not_make_sense(tmp_path, capsys):
    cases = [
        (["lm"], "give a genome to train, or --resume DIR"),
        (["lm", "--resume", str(tmp_path / "none")], "no starlab lm run here"),
        (["lm", "mamba", "--checkpoint-every", "5"], "need --out DIR"),
        (["lm", "mamba", "--resume", str(tmp_path)], "give no genome"),
        (["lm", "mamba", "--protocol", "lm-tiny", "--micro-batch", "3", "--out", str(tmp_path / "bad")], "divisor"),
    ]
    for argv, message in cases:
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1, (argv, err)
    assert not (tmp_path / "bad").exists()  # refused before the directory is made


def test_flags_given_with_resume_that_differ_from_the_run_are_named_and_ignored(tmp_path, capsys):
    directory = tmp_path / "run"
    assert main(["lm", "mamba", "--protocol", "lm-tiny", "--steps", "3", "--micro-batch", "auto", "--json",
                 "--out", str(directory)]) == 0  # fmt: skip
    first = json.loads(capsys.readouterr().out)
    again = ["lm", "--resume", str(directory), "--json", "--micro-batch", "auto", "--protocol", "lm-tiny"]
    assert main(again) == 0
    out, err = capsys.readouterr()
    assert json.loads(out) == first and err == ""  # the same settings as stored: nothing to say
    assert main([*again, "--steps", "7", "--seed", "5"]) == 0
    out, err = capsys.readouterr()
    assert json.loads(out)["steps"] == 3  # the stored run, as it was
    assert err.strip() == ("starlab: note: resuming with the run's stored settings, ignoring --seed 5 (the run's: "
                           "0); --steps 7 (the run's: 3)")  # fmt: skip


def checkpointed_lm_run(directory: Path) -> Path:
    """An ``lm --out`` run of 8 steps stopped after its step-4 checkpoint: trained 4 steps with the
    checkpoints kept and the report removed, its command then set to 8 steps (what a kill leaves)."""
    import starlab.assess.lm
    from starlab.train import trainer

    command = lm_run.LMCommand("51111-91111", "lm-tiny", {"steps": 4}, checkpoint_every=2)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(starlab.assess.lm, "train", trainer.train)  # the fuzz suite stops training elsewhere
        patch.setattr(lm_run, "clear_checkpoints", lambda directory: None)
        lm_run.start(directory, command)
        lm_run.run(directory, command)
    (directory / lm_run.RESULT).unlink()
    stored = json.loads((directory / lm_run.COMMAND).read_text())
    (directory / lm_run.COMMAND).write_text(json.dumps({**stored, "settings": {"steps": 8}}))
    return directory


def set_steps(steps):
    """Tamper with an lm run: its command asks for ``steps``."""

    def tamper(directory: Path) -> None:
        stored = json.loads((directory / lm_run.COMMAND).read_text())
        (directory / lm_run.COMMAND).write_text(json.dumps({**stored, "settings": {"steps": steps}}))

    return tamper


@pytest.fixture(scope="module")
def stopped_run(tmp_path_factory):
    return checkpointed_lm_run(tmp_path_factory.mktemp("lm") / "run")


def test_resuming_a_tampered_checkpoint_is_refused_in_one_line(stopped_run, tmp_path, capsys):
    """Found before training (steps below the checkpoint's step) or when the optimizer is rebuilt (a moment of
    another shape): one line naming the file, exit 2, the run left as it was."""
    from test_train import CHECKPOINT_CASES

    moment = next(c[1] for c in CHECKPOINT_CASES if c[0] == "moment-shape")
    for tamper, expected in [
        (set_steps(3), "step-4/state.json: the checkpoint is at step 4, past the run's 3 steps"),
        (lambda d: moment(d / lm_run.CHECKPOINTS), "optimizer.safetensors: 'state.0.exp_avg' is a torch.float32"),
    ]:
        directory = tmp_path / "run"
        shutil.rmtree(directory, ignore_errors=True)
        shutil.copytree(stopped_run, directory)
        tamper(directory)
        assert main(["lm", "--resume", str(directory)]) == 2
        err = capsys.readouterr().err
        assert expected in err and err.count("\n") == 1 and err.startswith("starlab: error: "), err
        assert not (directory / lm_run.RESULT).exists()
    shutil.rmtree(directory)
    shutil.copytree(stopped_run, directory)
    assert main(["lm", "--resume", str(directory), "--json"]) == 0  # untouched, it resumes
    assert json.loads(capsys.readouterr().out)["resumed_from_step"] == 4


def test_lm_out_onto_a_file_or_an_unwritable_path_is_refused_before_training(tmp_path, capsys, monkeypatch):
    (tmp_path / "file").write_text("a file")
    train = ["lm", "mamba", "--protocol", "lm-tiny", "--steps", "2", "--out"]
    for out, expected in [
        (tmp_path / "file", "is a file; an lm run's --out is a directory"),
        (tmp_path / "file" / "run", "cannot write an lm run there (Not a directory)"),
    ]:
        assert main([*train, str(out)]) == 2
        err = capsys.readouterr().err
        assert expected in err and err.count("\n") == 1, err
    assert (tmp_path / "file").read_text() == "a file"

    def full(path, text):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(lm_run, "write_text_atomically", full)
    assert main([*train, str(tmp_path / "new" / "run")]) == 2
    assert "new/run: cannot write an lm run there (No space left on device)" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]  # the folders it made are gone again


def test_an_lm_command_from_plain_values_holds_the_protocol_settings_it_changes():
    """``LMCommand.from_settings`` (what ``starlab lm`` calls with its flags): only changed settings are kept,
    ``micro_batch="auto"`` becomes ``fit_micro_batch``, a BPE tokenizer gets the default vocabulary, a preset
    has the protocol's depth, and what the protocol cannot take is refused before any run directory."""
    from starlab.tasks.tokenizer import DEFAULT_BPE_VOCAB

    plain = lm_run.LMCommand.from_settings("mamba", protocol="lm-tiny")
    assert plain == lm_run.LMCommand("51111-91111-51111-91111", "lm-tiny", {}, checkpoint_every=100)
    command = lm_run.LMCommand.from_settings(
        "transformer++", depth=2, protocol="lm-tiny", steps=3, micro_batch="auto", compile=True, tokenizer="bpe",
        backbone="gpt2", seed=4, checkpoint_minutes=2.0,
    )  # fmt: skip
    assert command.genome == "11111-91111" and (command.seed, command.checkpoint_every) == (4, None)
    assert command.settings == {"steps": 3, "fit_micro_batch": True, "compile": True, "backbone": "gpt2",
                                "tokenizer": "bpe", "vocab_size": DEFAULT_BPE_VOCAB}  # fmt: skip
    with pytest.raises(ValueError, match="divisor"):
        lm_run.LMCommand.from_settings("mamba", protocol="lm-tiny", micro_batch=3)
    with pytest.raises(ValueError, match="depth applies to presets only"):
        lm_run.LMCommand.from_settings("11111", depth=2, protocol="lm-tiny")


def test_conflicts_name_exactly_the_settings_that_differ_from_the_stored_command():
    stored = lm_run.LMCommand.from_settings("mamba", protocol="lm-tiny", steps=3, micro_batch="auto", seed=2)
    assert stored.conflicts(**lm_run.DEFAULTS) == {}  # defaults are what a resume without flags passes
    same = {**lm_run.DEFAULTS, "protocol": "lm-tiny", "steps": 3, "micro_batch": "auto", "seed": 2}
    assert stored.conflicts(**same) == {}
    assert stored.conflicts(protocol="lm-tiny", seed=0, steps=7, compile=True, micro_batch=4, width=64) == {
        "steps": (7, 3), "compile": (True, None), "micro_batch": (4, None), "width": (64, None),
    }  # fmt: skip  # seed 0 is the default: not given, so not named
    with pytest.raises(TypeError, match="depth"):
        stored.conflicts(depth=4)


def test_the_lm_commands_flags_default_to_the_librarys_settings():
    """``starlab lm`` hands its flags to ``LMCommand.from_settings`` and ``conflicts`` by name: the flag's
    default is the setting's (a flag left out on resume is no conflict)."""
    from starlab.cli import build_parser

    parsed = vars(build_parser().parse_args(["lm", "mamba"]))
    assert {name: parsed[name] for name in lm_run.DEFAULTS} == lm_run.DEFAULTS
