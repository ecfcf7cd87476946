"""The assessment API and the assessment commands: real learning signal, exact sizes, clear errors."""

import dataclasses
import json

import pytest

from starlab.cli import main
from starlab.genome import Genome, preset
from starlab.model import size_report
from starlab.train.assess import CACHE_LENGTH, DIVERGED, OK, assess, get_protocol

MEMORYLESS = Genome.parse("91111-91111-91111-91111")


def test_attention_solves_tiny_recall_and_a_memoryless_stack_stays_near_chance():
    attention = assess(preset("transformer++", 4), "tiny")
    blind = assess(MEMORYLESS, "tiny")
    assert attention.status == OK and attention.scores["in-context-recall"] >= 0.9
    assert blind.scores["in-context-recall"] <= 0.4  # 4 values: chance is 0.25
    assert attention.quality == pytest.approx(1 - attention.scores["in-context-recall"])
    sizes = size_report(preset("transformer++", 4), attention.width, 2, CACHE_LENGTH)
    assert (attention.params, attention.cache_bytes) == (sizes.params_non_embedding, sizes.cache_bytes)
    assert blind.cache_bytes == 0


def test_a_diverging_protocol_gives_status_diverged_and_the_worst_quality():
    exploding = dataclasses.replace(get_protocol("tiny"), grid=((1e9, 0.0),))
    result = assess(preset("transformer++", 2), exploding)
    assert result.status == DIVERGED and result.quality == 1.0


def test_language_modelling_quality_is_validation_perplexity():
    result = assess(preset("gconv", 2), "lm-tiny")
    assert result.status == OK and 1 < result.quality < 256  # better than a uniform guess over bytes
    assert result.metrics["perplexity"] == result.quality


def test_unknown_protocol_and_misplaced_data_are_value_errors():
    with pytest.raises(ValueError, match=r"unknown protocol 'fast'; protocols: .*quick"):
        assess(preset("mamba", 2), "fast")
    with pytest.raises(ValueError, match="--data applies to lm-\\* protocols"):
        assess(preset("mamba", 2), "tiny", data="corpus.txt")
    with pytest.raises(ValueError, match="lm-paper protocol trains on a real corpus: give one with --data PATH"):
        assess(preset("mamba", 2), "lm-paper")


def run_cli(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_mad_command_json(capsys):
    code, out, _ = run_cli(capsys, "mad", "striped-mamba", "--protocol", "tiny", "--json")
    report = json.loads(out)
    assert code == 0
    assert {"mad_score", "tasks", "params", "cache_bytes", "seconds"} <= set(report)
    assert report["genome"] == preset("striped-mamba", 4).text() and 0 <= report["mad_score"] <= 1


def test_mad_command_task_subset_and_errors(capsys):
    code, _, err = run_cli(capsys, "mad", "mamba", "--tasks", "recall")
    assert code == 2 and "unknown MAD task(s) recall; tasks: in-context-recall" in err and err.count("\n") == 1
    with pytest.raises(SystemExit):
        main(["mad", "mamba", "--protocol", "slow"])
    assert "invalid choice" in capsys.readouterr().err


def test_algo_command_embedding_only(capsys):
    code, out, _ = run_cli(capsys, "algo", "transformer++", "--depth", "2", "--task", "modular-addition",
                           "--embedding-only", "--steps", "3", "--width", "16", "--json")  # fmt: skip
    report = json.loads(out)
    assert code == 0 and report["embedding_only"] and report["status"] == "completed"
    assert report["trainable_params"] < report["params"]
    assert 0 <= report["score"] <= 1


def test_lm_command_json(capsys):
    code, out, _ = run_cli(capsys, "lm", "gconv", "--depth", "2", "--protocol", "lm-tiny", "--steps", "5", "--json")
    report = json.loads(out)
    assert code == 0 and report["perplexity"] > 1 and report["status"] == "ok"


def test_evolve_report_export_load(tmp_path, capsys):
    import torch

    import starlab

    run = tmp_path / "run"
    code, out, _ = run_cli(capsys, "evolve", "--out", str(run), "--protocol", "synthetic", "--population", "6",
                           "--generations", "2", "--seeds", "transformer++", "--objectives", "cache")  # fmt: skip
    assert code == 0 and "final front (quality, cache" in out
    code, out, _ = run_cli(capsys, "report", str(run))
    html = (run / "report.html").read_text()
    assert code == 0 and "data:image/png;base64," in html and "transformer++" in html
    assert all((run / f"{name}.png").is_file() for name in ("pareto_params", "pareto_cache", "hypervolume"))
    code, _, _ = run_cli(capsys, "export", str(run), "--rank", "1", "--out", str(tmp_path / "model"))
    model = starlab.load(tmp_path / "model")
    config = json.loads((tmp_path / "model" / "config.json").read_text())
    assert code == 0 and model.genome.text() == Genome.parse(config["genome"]).canonical().text()
    assert model(torch.zeros(1, 4, dtype=torch.long)).shape == (1, 4, 256)
    code, _, err = run_cli(capsys, "export", str(run), "--rank", "99", "--out", str(tmp_path / "m2"))
    assert code == 2 and "--rank must be in 1.." in err


def test_evolve_errors_are_one_line(tmp_path, capsys):
    corrupt = tmp_path / "corrupt"
    corrupt.mkdir()
    (corrupt / "run.sqlite").write_text("garbage" * 200)
    for argv, message in [
        (["evolve", "--resume", str(corrupt)], "unreadable or corrupt"),
        (["evolve", "--resume", str(tmp_path / "nothing")], "no starlab run in"),
        (["evolve", "--out", str(tmp_path / "x"), "--objectives", "speed"], "objectives must be distinct names"),
        (["evolve", "--out", str(tmp_path / "y"), "--preset", "paper-125m"], "give one with --data PATH"),
        (["report", str(tmp_path / "nothing")], "no starlab run in"),
    ]:
        code, _, err = run_cli(capsys, *argv)
        assert code == 2 and message in err and err.count("\n") == 1, (argv, err)
