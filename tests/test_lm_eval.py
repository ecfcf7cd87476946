"""lm-evaluation-harness scores an exported model with its own ``hf`` model type on a local task (no hub
download): the shipped BBE continuation task. A trained export beats the untrained one on it."""

import json
import math
import os

import pytest

from starlab.cli import main
from starlab.genome import preset
from starlab.store import load_run
from starlab.tasks.lm import default_corpus

lm_eval = pytest.importorskip("lm_eval")
pytest.importorskip("accelerate")
from starlab.hf.evaltask import DATA, TASK, make_items, write_task  # noqa: E402


def test_the_shipped_task_is_what_make_items_makes_from_the_bundled_corpus():
    items = [json.loads(line) for line in DATA.read_text().splitlines()]
    assert items == make_items(" ".join(default_corpus().documents()))
    assert all(len({len(c) for c in item["choices"]}) == 1 for item in items)  # equal lengths: a fair sum


def test_lm_eval_scores_an_export_and_the_trained_one_scores_higher(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    run = tmp_path / "run"
    assert main(["evolve", "--out", str(run), "--protocol", "synthetic", "--population", "4", "--generations", "0",
                 "--seeds", "striped-mamba", "--seed", "1"]) == 0  # fmt: skip
    front = [member["genome"] for member in load_run(run).front]
    rank = front.index(preset("striped-mamba", 4).canonical().text()) + 1  # a genome that learns in 200 steps
    export = ["export", str(run), "--rank", str(rank), "--format", "hf"]
    assert main([*export, "--train-steps", "200", "--out", str(tmp_path / "trained")]) == 0
    assert main([*export, "--untrained", "--out", str(tmp_path / "untrained")]) == 0
    capsys.readouterr()
    from lm_eval.tasks import TaskManager

    # only the shipped task: indexing lm-eval's thousands of built-in ones took most of this test's time
    tasks = TaskManager(include_path=str(write_task(tmp_path / "tasks").parent), include_defaults=False)
    scores = {}
    for name in ("trained", "untrained"):
        results = lm_eval.simple_evaluate(
            model="hf", model_args=f"pretrained={tmp_path / name},trust_remote_code=True", tasks=[TASK],
            task_manager=tasks, batch_size=8, device="cpu",
        )  # fmt: skip
        scores[name] = results["results"][TASK]["acc,none"]
    assert all(isinstance(s, float) and math.isfinite(s) for s in scores.values())
    assert scores["trained"] > scores["untrained"] + 0.1, scores
    assert os.environ["HF_HUB_OFFLINE"] == "1"


def test_python_m_evaltask_writes_the_task_where_asked(tmp_path):
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-m", "starlab.hf.evaltask", str(tmp_path / "tasks")], capture_output=True,
                          text=True, check=True)  # fmt: skip
    path = tmp_path / "tasks" / f"{TASK}.yaml"
    assert done.stdout.strip() == str(path) and str(DATA) in path.read_text()
