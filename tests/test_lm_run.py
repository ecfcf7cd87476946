"""``starlab lm --out DIR`` checkpoints; killed with SIGKILL and resumed with ``--resume DIR``, it reports
exactly what an uninterrupted run reports."""

import json
import os
import signal
import subprocess
import sys
import time

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
