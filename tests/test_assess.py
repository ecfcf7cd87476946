"""The assessment API and the assessment commands: real learning signal, exact sizes, clear errors."""

import json
import subprocess
import sys
from statistics import mean

import pytest
import torch

from starlab.assess import (
    CACHE_LENGTH,
    KINDS,
    Evaluation,
    Status,
    assess,
    genome_sizes,
    get_protocol,
    protocol_names,
)
from starlab.cli import main
from starlab.genome import Genome, preset, resolve
from starlab.model import Backbone, size_report, training_flops_per_token
from starlab.store import RunStore

MEMORYLESS = Genome.parse("91111-91111-91111-91111")


def test_attention_solves_tiny_recall_and_a_memoryless_stack_stays_near_chance():
    attention = assess(preset("transformer++", 4), "tiny")
    blind = assess(MEMORYLESS, "tiny")
    assert attention.status == Status.OK and attention.scores["in-context-recall"] >= 0.9
    assert blind.scores["in-context-recall"] <= 0.4  # 4 values: chance is 0.25
    assert attention.quality == pytest.approx(1 - attention.scores["in-context-recall"])
    sizes = size_report(preset("transformer++", 4), attention.width, 2, CACHE_LENGTH)
    assert (attention.params, attention.cache_bytes) == (sizes.params_non_embedding, sizes.cache_bytes)
    assert blind.cache_bytes == 0


def test_a_diverging_protocol_gives_status_diverged_and_the_worst_quality():
    exploding = get_protocol("tiny").with_settings(grid=((1e9, 0.0),))
    result = assess(preset("transformer++", 2), exploding)
    assert result.status == Status.DIVERGED and result.quality == 1.0


def test_language_modelling_quality_is_validation_perplexity_and_training_lowers_it(capsys):
    trained = assess(preset("gconv", 2), "lm-tiny")
    untrained = assess(preset("gconv", 2), get_protocol("lm-tiny").with_settings(steps=1))
    assert trained.status == Status.OK and trained.metrics["perplexity"] == trained.quality
    assert trained.quality < 0.6 * 256 and trained.quality < 0.6 * untrained.quality  # bytes: uniform is 256
    code, out, _ = run_cli(capsys, "lm", "gconv", "--depth", "2", "--protocol", "lm-tiny", "--steps", "1", "--json")
    report = json.loads(out)  # the command is the same assessment
    assert code == 0 and report["status"] == "ok" and report["steps"] == 1
    assert report["perplexity"] == pytest.approx(untrained.quality) and report["perplexity"] > 1


def test_a_language_model_evaluation_reports_its_training_speed_and_model_flops_utilisation(monkeypatch):
    monkeypatch.setattr("starlab.runtime.peak_flops", lambda device: 1e9)  # 1 GFLOP/s: MFU is FLOPs/s / 1e9
    protocol = get_protocol("lm-tiny")
    result = assess(preset("gconv", 2), protocol)
    flops = training_flops_per_token(Backbone(preset("gconv", 2), protocol.width, 256), protocol.seq_len)
    assert result.metrics["tokens_per_s"] > 1000
    assert result.metrics["mfu"] == pytest.approx(flops * result.metrics["tokens_per_s"] / 1e9)


def test_lm_compile_trains_through_torch_compile(monkeypatch, capsys):
    compiled = []
    monkeypatch.setattr("starlab.train.trainer.torch.compile", lambda module: compiled.append(module) or module)
    code, out, _ = run_cli(capsys, "lm", "gconv", "--depth", "2", "--protocol", "lm-tiny", "--steps", "2", "--compile")
    assert code == 0 and len(compiled) == 1 and "tokens/s, MFU" in out


def test_lm_micro_batch_auto_lets_the_trainer_fit_the_micro_batch(monkeypatch, capsys):
    import starlab.assess.lm as lm_module

    configs, train = [], lm_module.train
    monkeypatch.setattr(lm_module, "train", lambda model, task, config, *a, **k: configs.append(config) or train(
        model, task, config, *a, **k))  # fmt: skip
    code, _, _ = run_cli(capsys, "lm", "gconv", "--depth", "2", "--protocol", "lm-tiny", "--steps", "2",
                         "--micro-batch", "auto")  # fmt: skip
    assert code == 0 and configs[0].fit_micro_batch and configs[0].micro_batch is None
    assert get_protocol("lm-paper").fit_micro_batch  # 64 x 4096 tokens fit no GPU in one pass at width 768


def test_lm_embedding_only_trains_the_embeddings_and_leaves_every_liv_as_initialised(monkeypatch, capsys):
    import starlab.assess.lm as lm_module

    seen, train = {}, lm_module.train

    def spy(model, task, config, *args, **kwargs):
        seen["model"], seen["before"] = model, {n: p.detach().clone() for n, p in model.livs.named_parameters()}
        return train(model, task, config, *args, **kwargs)

    monkeypatch.setattr(lm_module, "train", spy)
    code, out, _ = run_cli(capsys, "lm", "gconv", "--depth", "2", "--protocol", "lm-tiny", "--embedding-only", "--json")
    model = seen["model"]
    assert code == 0 and json.loads(out)["perplexity"] < 0.8 * 256  # the embeddings learned byte statistics
    assert model.head is not None and model.head.weight.requires_grad and model.embed.weight.requires_grad
    assert all(torch.equal(p, seen["before"][n]) and not p.requires_grad for n, p in model.livs.named_parameters())


def test_micro_batches_give_the_language_model_of_the_whole_batch():
    whole = assess(preset("striped-mamba", 2), "lm-tiny")
    pieces = assess(preset("striped-mamba", 2), get_protocol("lm-tiny").with_settings(micro_batch=2))
    assert pieces.status == Status.OK and pieces.quality == pytest.approx(whole.quality, rel=1e-3)
    with pytest.raises(ValueError, match="micro_batch must be a positive divisor of the batch size 8, got 3"):
        get_protocol("lm-tiny").with_settings(micro_batch=3)


def test_unknown_protocol_and_misplaced_data_are_value_errors_that_name_python_settings():
    with pytest.raises(ValueError, match=r"unknown protocol 'fast'; protocols: .*quick"):
        assess(preset("mamba", 2), "fast")
    with pytest.raises(ValueError, match="data applies to language-modelling protocols only") as error:
        assess(preset("mamba", 2), "tiny", data="corpus.txt")
    assert "--" not in str(error.value)  # a Python caller sets data=, not a flag
    with pytest.raises(ValueError, match="lm-paper protocol trains on a real corpus: give one with data=PATH"):
        assess(preset("mamba", 2), "lm-paper")
    with pytest.raises(ValueError, match=r"protocol 'tiny' has no setting 'colour'; settings: .*epochs"):
        get_protocol("tiny").with_settings(colour="red")
    with pytest.raises(ValueError, match="unknown size 'huge' for parentheses; sizes: paper, cpu"):
        get_protocol("algo-parentheses").with_settings(size="huge")


@pytest.fixture(scope="module")
def striped_on_tiny():
    return assess(preset("striped-mamba", 4), "tiny")


def test_an_evaluation_is_carried_and_stored_unchanged(tmp_path, striped_on_tiny):
    evaluation = striped_on_tiny
    carried = Evaluation.from_dict(json.loads(json.dumps(evaluation.to_dict())))  # what an executor does
    assert carried == evaluation and isinstance(carried.status, Status)
    with RunStore(tmp_path, create=True) as store:
        assert store.add_evaluation(carried) and not store.add_evaluation(carried)
        assert store.get_evaluation(evaluation.hash, "tiny", 0) == evaluation
        assert store.evaluations() == [evaluation] and store.evaluations("other") == []
    sizes = genome_sizes(preset("striped-mamba", 4), evaluation.width, get_protocol("tiny").config)
    assert (evaluation.params, evaluation.cache_bytes) == (sizes.params, sizes.cache_bytes)
    with pytest.raises(ValueError, match="status 'great' is not one of ok, completed"):
        Evaluation.from_dict({**evaluation.to_dict(), "status": "great"})


def test_every_kind_of_protocol_is_registered_on_import_of_any_assess_module():
    script = (
        "import starlab.assess.protocol as p; print(sorted({q.kind for q in p.PROTOCOLS.values()}), len(p.PROTOCOLS))"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout
    kinds, count = out.rsplit(" ", 1)
    assert kinds == str(sorted(KINDS)) and int(count) == len(protocol_names()) >= 14


def run_cli(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_mad_command_json_is_the_assessment(capsys, striped_on_tiny):
    code, out, _ = run_cli(capsys, "mad", "striped-mamba", "--protocol", "tiny", "--json")
    report = json.loads(out)
    expected = striped_on_tiny  # deterministic: the same seed trains the same model
    assert code == 0
    assert {"mad_score", "tasks", "params", "cache_bytes", "seconds"} <= set(report)
    assert report["genome"] == preset("striped-mamba", 4).text()
    assert report["mad_score"] == pytest.approx(1 - expected.quality) == pytest.approx(mean(report["tasks"].values()))
    assert report["tasks"] == pytest.approx(expected.scores) and report["mad_score"] > 0.5  # it learned recall
    assert (report["params"], report["cache_bytes"]) == (expected.params, expected.cache_bytes)


def test_mad_command_task_subset_and_errors(capsys):
    code, _, err = run_cli(capsys, "mad", "mamba", "--tasks", "recall")
    assert code == 2 and "unknown MAD task(s) recall; tasks: in-context-recall" in err and err.count("\n") == 1
    with pytest.raises(SystemExit):
        main(["mad", "mamba", "--protocol", "slow"])
    assert "invalid choice" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["mad", "mamba", "--protocol", "tiny", "--tasks", "selective-copying"],
         "protocol 'tiny' has no settings of selective-copying; its tasks: in-context-recall"),
        (["evolve", "--protocol", "tiny", "--protocol-setting", "settings=[]"],
         "protocol 'tiny': its task settings ('settings') must hold at least one MAD task, got ()"),
        (["evolve", "--protocol", "tiny", "--protocol-setting", "settings=1"],
         "protocol 'tiny': its task settings ('settings') are MADSetting objects, which text cannot give"),
    ],
)  # fmt: skip
def test_mad_task_settings_errors_say_what_the_setting_is(capsys, tmp_path, argv, message):
    """They read "setting settings must be at least one MAD setting" (issue 30); a task the protocol has no
    settings of is named as such."""
    code, _, err = run_cli(capsys, *argv, *(["--out", str(tmp_path / "run")] if argv[0] == "evolve" else []))
    assert code == 2 and err.startswith(f"starlab: error: {message}") and err.count("\n") == 1, err
    assert not (tmp_path / "run").exists()


def test_algo_command_embedding_only_trains_exactly_the_embeddings(capsys):
    code, out, _ = run_cli(capsys, "algo", "transformer++", "--depth", "2", "--task", "modular-addition",
                           "--embedding-only", "--steps", "3", "--width", "16", "--json")  # fmt: skip
    report = json.loads(out)
    assert code == 0 and report["embedding_only"] and report["status"] == "completed" and report["steps"] == 3
    vocab = 97 + 1  # p = 97 numbers and '='; positions stay frozen like every other backbone weight
    assert report["trainable_params"] == 16 * 2 * vocab < report["params"]  # embedding + untied unembedding
    assert 0 <= report["score"] <= 1


@pytest.mark.parametrize(("size", "depth"), [("cpu", 4), ("paper", 6)])
def test_algo_builds_a_preset_with_the_blocks_its_budget_was_chosen_for(monkeypatch, size, depth):
    """The circuit student at paper size has the budget's 3 blocks (6 slots), not the commands' default 4: the
    protocol's ``preset_depth``, which ``starlab algo`` builds a preset with."""
    import starlab.assess

    class Built(Exception):
        pass

    def build_only(genome, protocol, *args, **kwargs):
        raise Built(genome, protocol)

    protocol = get_protocol("algo-circuit").with_settings(size=size)
    assert protocol.preset_depth == depth == 2 * protocol.budget.layers
    assert len(resolve("transformer++", default_depth=protocol.preset_depth).slots) == depth
    monkeypatch.setattr(starlab.assess, "assess", build_only)
    with pytest.raises(Built) as built:
        main(["algo", "transformer++", "--task", "circuit-imitation", "--size", size])
    genome, assessed = built.value.args
    assert len(genome.slots) == depth and assessed.size == size
    with pytest.raises(Built) as built:
        main(["mad", "transformer++"])
    assert len(built.value.args[0].slots) == 4 == get_protocol("quick").preset_depth


def test_algo_command_is_the_algorithmic_protocol_and_it_learns(capsys):
    argv = ["algo", "transformer++", "--depth", "2", "--task", "parentheses", "--width", "32", "--json"]
    learned = json.loads(run_cli(capsys, *argv, "--steps", "80")[1])
    barely = json.loads(run_cli(capsys, *argv, "--steps", "1")[1])
    protocol = get_protocol("algo-parentheses").with_settings(steps=80)
    expected = assess(preset("transformer++", 2), protocol, width=32)
    assert learned["score"] == pytest.approx(expected.scores["parentheses"]) == pytest.approx(1 - expected.quality)
    assert learned["score"] > barely["score"] + 0.2 and learned["metrics"]["accuracy"] == learned["score"]


def test_protocols_command_lists_every_kind_with_what_it_trains(capsys):
    code, out, _ = run_cli(capsys, "protocols", "--json")
    rows = {row["name"]: row for row in json.loads(out)}
    assert code == 0 and {row["kind"] for row in rows.values()} == set(KINDS)
    algorithmic = [row for row in rows.values() if row["kind"] == "algorithmic"]
    assert len(algorithmic) >= 6 and "algo-parentheses" in rows
    assert rows["quick"]["width"] == 48 and rows["quick"]["training"]["settings"] == 6
    assert rows["lm-quick"]["training"]["steps"] == 300 and rows["lm-quick"]["training"]["tokens"] == 300 * 16 * 128
    assert rows["algo-parentheses"]["training"]["steps"] == 2500 and rows["algo-parentheses"]["width"] == 128
    assert all(row["description"] and row["training"]["summary"] for row in rows.values())
    measured = [row for row in rows.values() if row["cost_s"] is not None]
    assert {row["name"] for row in rows.values()} - {row["name"] for row in measured} <= {"paper", "lm-paper"}
    code, out, _ = run_cli(capsys, "protocols", "--kind", "lm")
    assert code == 0 and all(name in out for name in ("lm-quick", "lm-tiny", "lm-paper")) and "algo-" not in out


def test_evolve_on_an_algorithmic_protocol_stores_a_full_population(tmp_path, capsys):
    run = tmp_path / "run"
    code, _, _ = run_cli(capsys, "evolve", "--protocol", "algo-parentheses", "--protocol-setting", "steps=2",
                           "--population", "4", "--generations", "0", "--depth", "2", "--out", str(run))  # fmt: skip
    with RunStore(run) as store:
        evaluations = store.evaluations()
        config = store.get_meta("config")
    assert code == 0 and len(evaluations) == 4 and len({e.hash for e in evaluations}) == 4
    assert {e.protocol for e in evaluations} == {"algo-parentheses"} and config["protocol_settings"] == {"steps": 2}
    assert all(e.status == Status.OK and e.metrics["steps"] == 2 for e in evaluations)


def test_evolve_report_export_load(tmp_path, capsys):
    import torch

    import starlab

    run = tmp_path / "run"
    code, out, _ = run_cli(capsys, "evolve", "--out", str(run), "--protocol", "synthetic", "--population", "6",
                           "--generations", "2", "--seeds", "transformer++", "--objectives", "cache")  # fmt: skip
    assert code == 0 and "(quality = analytic stand-in (no training); lower is better)" in out
    from starlab.report.summary import class_names, front_table, headlines
    from starlab.store import load_run

    saved = load_run(run)  # the command line says what the report says: the same front, classes by name
    best = front_table(saved)[0]
    assert best["genome"] in out and ", ".join(class_names(best["genome"])) in out
    assert all(f"- {sentence}\n" in out for sentence in headlines(saved))
    assert "than transformer++" in out
    code, out, _ = run_cli(capsys, "report", str(run))
    html = (run / "report.html").read_text()
    assert code == 0 and "data:image/png;base64," in html and "transformer++" in html
    assert all((run / f"{name}.png").is_file() for name in ("pareto_params", "pareto_cache", "hypervolume"))
    code, _, _ = run_cli(capsys, "export", str(run), "--untrained", "--rank", "1", "--out", str(tmp_path / "model"))
    model = starlab.load(tmp_path / "model")
    config = json.loads((tmp_path / "model" / "config.json").read_text())
    assert code == 0 and model.genome.text() == Genome.parse(config["genome"]).canonical().text()
    assert model(torch.zeros(1, 4, dtype=torch.long)).shape == (1, 4, 256)
    code, _, err = run_cli(capsys, "export", str(run), "--untrained", "--rank", "99", "--out", str(tmp_path / "m2"))
    assert code == 2 and "--rank must be in 1.." in err
    exported = (tmp_path / "model" / "config.json").read_bytes()
    code, _, err = run_cli(capsys, "export", str(run), "--untrained", "--rank", "2", "--out", str(tmp_path / "model"))
    assert code == 2 and "already holds an exported model; choose another --out or pass --force" in err
    assert (tmp_path / "model" / "config.json").read_bytes() == exported  # nothing overwritten
    code, _, _ = run_cli(capsys, "export", str(run), "--untrained", "--rank", "2", "--out", str(tmp_path / "model"),
                         "--force")  # fmt: skip
    assert code == 0 and (tmp_path / "model" / "config.json").read_bytes() != exported
    assert json.loads((tmp_path / "model" / "config.json").read_text())["metadata"]["trained"] is False
    code, _, err = run_cli(capsys, "export", str(run), "--out", str(tmp_path / "silent"))
    assert code == 2 and "rank 1 has no trained weights in the run" in err and "--untrained" in err
    assert not (tmp_path / "silent").exists()  # an untrained model is never passed off as trained


def test_export_as_a_hugging_face_directory(tmp_path, capsys):
    pytest.importorskip("transformers")
    run = tmp_path / "run"
    assert run_cli(capsys, "evolve", "--out", str(run), "--protocol", "synthetic", "--population", "4",
                   "--generations", "0")[0] == 0  # fmt: skip
    code, _, _ = run_cli(capsys, "export", str(run), "--untrained", "--format", "hf", "--out", str(tmp_path / "hf"))
    config = json.loads((tmp_path / "hf" / "config.json").read_text())
    assert code == 0 and config["model_type"] == "starlab" and config["auto_map"]["AutoModelForCausalLM"]
    assert config["starlab"]["trained"] is False and (tmp_path / "hf" / "modeling_starlab.py").is_file()
    code, _, err = run_cli(capsys, "export", str(run), "--untrained", "--format", "hf", "--vocab", "300",
                           "--out", str(tmp_path / "hf2"))  # fmt: skip
    assert code == 2 and "is byte-level: --vocab 256" in err


def test_evolve_errors_are_one_line(tmp_path, capsys):
    corrupt = tmp_path / "corrupt"
    corrupt.mkdir()
    (corrupt / "run.sqlite").write_text("garbage" * 200)
    for argv, message in [
        (["evolve", "--resume", str(corrupt)], "unreadable or corrupt"),
        (["evolve", "--resume", str(tmp_path / "nothing")], "no starlab run in"),
        (["evolve", "--out", str(tmp_path / "x"), "--objectives", "speed"], "objectives must be distinct names"),
        (["evolve", "--out", str(tmp_path / "y"), "--preset", "paper-125m"], "give one with --data PATH"),
        (
            ["evolve", "--out", str(tmp_path / "w"), "--preset", "paper-125m", "--data", str(tmp_path / "nonexistent")],
            "nonexistent: no such file or directory",
        ),
        (["lm", "mamba", "--data", str(tmp_path / "nonexistent")], "nonexistent: no such file or directory"),
        (["lm", "mamba", "--protocol", "lm-tiny", "--micro-batch", "3"], "--micro-batch must be a positive divisor"),
        (["evolve", "--out", str(tmp_path / "w"), "--protocol", "synthetic", "--width", "7"], "multiple of 8, got 7"),
        (["evolve", "--out", str(tmp_path / "w"), "--protocol", "synthetic", "--seed", "-1"], "non-negative integer"),
        (["evolve", "--out", str(tmp_path / "z"), "--protocol-setting", "colour=red"], "has no setting 'colour'"),
        (["report", str(tmp_path / "nothing")], "no starlab run in"),
    ]:
        code, _, err = run_cli(capsys, *argv)
        assert code == 2 and message in err and err.count("\n") == 1, (argv, err)
    assert not (tmp_path / "w").exists()  # checked before the run directory is created


def evaluation_of(protocol: str, quality: float, scores: dict, metrics: dict) -> Evaluation:
    """A record as ``assess()`` returns one, without training (the descriptions only read it)."""
    return Evaluation(genome="11111-91111", hash="h", protocol=protocol, seed=0, width=32, status=Status.OK,
                      quality=quality, scores=scores, params=100, cache_bytes=64, seconds=1.5, worker="w",
                      metrics=metrics)  # fmt: skip


def test_each_protocol_describes_its_own_result():
    """What ``starlab mad/algo/lm --json`` print is the protocol's description of the evaluation: MAD's score is
    1 - quality, the algorithmic one names its task, size and mode, the LM one its perplexity (the quality)."""
    settings = {"recall": {"score": 0.75, "accuracy": 0.8, "status": "completed", "steps": 3, "runs": 1}}
    metrics = {"mad_score": 0.75, "token_accuracy": {"in-context-recall": 0.8}, "settings": settings}
    mad = evaluation_of("tiny", 0.25, {"in-context-recall": 0.75}, metrics)
    described = get_protocol("tiny").describe(mad)
    assert list(described) == ["genome", "hash", "protocol", "mad_score", "tasks", "token_accuracy", "settings",
                               "params", "cache_bytes", "seconds", "status", "width"]  # fmt: skip
    assert described["mad_score"] == 1 - mad.quality and described["tasks"] == mad.scores
    assert described["settings"] == settings and described["protocol"] == "tiny"
    algo = get_protocol("algo-parentheses").with_settings(size="paper", embedding_only=True)
    record = evaluation_of("algo-parentheses", 0.4, {"parentheses": 0.6}, {
        "run_status": "completed", "steps": 7, "trainable_params": 10, "total_params": 90,
        "task_metrics": {"accuracy": 0.6}})  # fmt: skip
    assert algo.describe(record) == {
        "genome": "11111-91111", "task": "parentheses", "size": "paper", "embedding_only": True, "backbone": "star",
        "width": 32, "status": "completed", "steps": 7, "score": 0.6, "metrics": {"accuracy": 0.6},
        "trainable_params": 10, "params": 90, "seconds": 1.5,
    }  # fmt: skip
    lm = evaluation_of("lm-tiny", 12.5, {"text": 0.1}, {"perplexity": 12.5, "steps": 3})
    assert get_protocol("lm-tiny").describe(lm) == {
        "genome": "11111-91111", "protocol": "lm-tiny", "perplexity": 12.5, "status": Status.OK, "params": 100,
        "cache_bytes": 64, "seconds": 1.5, "width": 32, "steps": 3,
    }  # fmt: skip
    assert get_protocol(protocol_names("synthetic")[0]).describe(mad) == mad.to_dict()  # the whole record
