"""The small-scale STAR study (bench/star_small.py) end to end at toy size: every stage, resumption, replay of
a search from the results file alone, the pick rule and the per-baseline answer."""

import importlib.util
import json
import os
import shutil
import signal
import sys
from dataclasses import asdict
from pathlib import Path

import pytest

from starlab.assess import get_protocol
from starlab.evolve import SearchConfig, make_executor
from starlab.store import load_run

BENCH = Path(__file__).parent.parent / "bench"


def load_study(monkeypatch):
    """bench/star_small.py as a module, with the study's real settings."""
    monkeypatch.syspath_prepend(str(BENCH))
    spec = importlib.util.spec_from_file_location("star_small", BENCH / "star_small.py")
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "star_small", module)  # dataclasses look their module up while defined
    spec.loader.exec_module(module)
    return module


def test_make_run_searches_on_the_proxy_the_study_measured(monkeypatch):
    """The demo preset's protocol is the study's chosen rung exactly, so the study's correlation applies to it."""
    module = load_study(monkeypatch)
    data = json.loads(module.PATH.read_text())
    protocol, settings = module.PROXIES[data["proxy"]]
    demo = SearchConfig.from_preset("demo")
    rung = get_protocol(protocol).with_settings(**settings)
    assert training_settings(get_protocol(demo.protocol)) == training_settings(rung)
    assert demo.seeds == module.SEARCH_SEEDS[: len(demo.seeds)]


def training_settings(protocol) -> dict:
    return {k: v for k, v in asdict(protocol).items() if k not in ("name", "description", "cost_s")}


@pytest.fixture
def study(monkeypatch):
    """The study module with toy settings: depth 2, the seeded-noise synthetic protocol as the target (instant,
    and its seeds differ), the noise-free one and a few steps of a tiny language model as the proxies."""
    module = load_study(monkeypatch)
    monkeypatch.setattr(module, "DEPTH", 2)
    monkeypatch.setattr(module, "TARGET", "synthetic-noisy")
    tiny = {"steps": 5, "warmup_steps": 1, "max_eval_tokens": 2048}  # perplexity on 2,048 tokens, not 65,536
    proxies = {"synthetic": ("synthetic", {}), "lm-tiny@5": ("lm-tiny", tiny)}
    monkeypatch.setattr(module, "PROXIES", proxies)
    monkeypatch.setattr(module, "BASELINES", ("transformer++", "mamba", "hyena"))
    monkeypatch.setattr(module, "SEARCH_SEEDS", ("transformer++",))
    monkeypatch.setattr(module, "RANDOM_GENOMES", 3)
    monkeypatch.setattr(module, "EVOLVED_GENOMES", 2)
    monkeypatch.setattr(module, "TABLE_SEARCH", {"protocol": "synthetic", "population": 4, "budget": 8})
    submitted = []

    def counting_executor(*args):
        inner = make_executor("local", 1, 1)
        original = inner.submit
        inner.submit = lambda job: submitted.append(job) or original(job)
        return inner

    monkeypatch.setattr(module, "make_executor", counting_executor)
    module.submitted = submitted
    return module


def run(study, out: Path, *extra: str) -> int:
    study.submitted.clear()
    return study.main(["--out", str(out), "--budget", "8", "--population", "4", "--picks", "2", *extra])


def test_every_stage_stores_what_the_report_needs_and_nothing_runs_twice(study, tmp_path, capsys):
    out = tmp_path / "study.json"
    assert run(study, out) == 0
    data = json.loads(out.read_text())
    analysis = data["analysis"]
    assert set(analysis["seed_noise"]["genomes"]) == {"transformer++", "mamba", "hyena"}
    assert analysis["seed_noise"]["pooled_std"] > 0  # three seeds really differ
    table = data["table"]
    assert [t["origin"] for t in table].count("random") == 3 and 1 <= [t["origin"] for t in table].count("evolved")
    assert set(analysis["correlations"]) == {"synthetic", "lm-tiny@5"}
    for correlation in analysis["correlations"].values():
        assert correlation["genomes"] == len(table)
        assert correlation["spearman_90"][0] <= correlation["spearman"] <= correlation["spearman_90"][1]
    assert data["proxy"] == max(analysis["correlations"], key=lambda k: analysis["correlations"][k]["spearman"])
    assert set(data["searches"]) == set(study.SEARCHES)
    for search in data["searches"].values():
        assert search["evaluations"] == 8 and 1 <= len(search["picks"]) <= 2
        assert not any(study.is_preset(p["genome"]) for p in search["picks"])
    best = [g for g in study.ranked(load_run(tmp_path / "study-runs" / "quality")) if not study.is_preset(g)]
    assert [p["genome"] for p in data["searches"]["quality"]["picks"]] == best[:2]  # quality only: the top two
    retrained = {row["name"]: row for row in analysis["retrained"]}
    assert {"transformer++", "mamba", "hyena"} <= set(retrained) and len(retrained) > 3
    assert all(len(row["perplexities"]) == 3 for row in retrained.values())
    assert set(analysis["answers"]) == {"transformer++", "mamba", "hyena"}
    assert all(a["answer"] in ("yes", "no") for sizes in analysis["answers"].values() for a in sizes.values())
    assert (tmp_path / "study-proxies.png").stat().st_size > 0 and (tmp_path / "study-fronts.png").stat().st_size > 0
    assert "at <= its params" in capsys.readouterr().out

    stored = len(data["evaluations"])
    assert run(study, out) == 0 and study.submitted == []  # everything is stored: nothing runs again
    shutil.rmtree(tmp_path / "study-runs")  # a fresh checkout: the searches replay from the results file
    assert run(study, out, "--stage", "search") == 0 and study.submitted == []
    assert json.loads(out.read_text())["searches"] == data["searches"]
    data["evaluations"] = data["evaluations"][:-2]  # two evaluations lost (the run was killed)
    out.write_text(json.dumps(data))
    assert run(study, out, "--stage", "retrain") == 0 and len(study.submitted) == 2
    assert len(json.loads(out.read_text())["evaluations"]) == stored


def test_report_rebuilds_from_the_json_alone_and_other_settings_are_refused(study, tmp_path):
    out = tmp_path / "study.json"
    assert run(study, out, "--stage", "target") == 0 and len(study.submitted) == 9
    (tmp_path / "study-runs").mkdir()
    assert run(study, out, "--stage", "report") == 0 and study.submitted == []
    assert json.loads(out.read_text())["analysis"]["seed_noise"]["genomes"]
    with pytest.raises(SystemExit, match="other settings"):
        run(study, out, "--stage", "report", "--budget", "9")
    with pytest.raises(SystemExit, match="proxies stage is not finished"):
        run(study, out, "--stage", "search")


def test_sigterm_stops_the_study_in_one_line_keeping_what_finished(study, tmp_path, monkeypatch, capsys):
    """``kill PID`` is how a study started in the background is stopped (such a job ignores SIGINT)."""
    inner = study.make_executor()
    original = inner.submit

    def terminate_on_the_fourth(job):
        if len(study.submitted) == 3:
            os.kill(os.getpid(), signal.SIGTERM)
        return original(job)

    inner.submit = terminate_on_the_fourth
    monkeypatch.setattr(study, "make_executor", lambda *args: inner)
    out = tmp_path / "study.json"
    before = signal.getsignal(signal.SIGTERM)  # not SIG_DFL where an earlier test started Ray in this process
    assert run(study, out, "--stage", "target") == 130
    assert capsys.readouterr().out.strip().splitlines()[-1] == (
        f"stopped; 3 evaluations are stored in {out}: run the same command again to continue"
    )
    assert signal.getsignal(signal.SIGTERM) == before  # the study's handler does not outlive it
    assert len(json.loads(out.read_text())["evaluations"]) == 3


def test_picks_spread_over_the_front_and_skip_presets(study):
    front = [f"g{i}" for i in range(7)]
    sizes = {g: i for i, g in enumerate(reversed(front))}  # best quality = largest
    study.is_preset = lambda genome: genome == "g3"
    picked = study.pick(front, 3, by=sizes.get)
    assert picked == ["g0", "g4", "g6"]  # both ends and the middle of the six evolved ones, best quality first
    assert study.pick(front[:2], 3, by=sizes.get) == ["g0", "g1"]


def test_a_baseline_is_beaten_only_beyond_the_seed_noise(study):
    def row(name, origin, perplexities, params):
        return {"name": name, "origin": origin, "perplexities": perplexities, "params": params,
                "cache_bytes": 0, "mean": sum(perplexities) / 3}  # fmt: skip

    rows = [row("base", "baseline", [10.0, 10.1, 9.9], 100), row("clear", "quality", [9.0, 9.1, 8.9], 90),
            row("noisy", "quality", [9.0, 11.0, 9.5], 80), row("big", "quality", [5.0, 5.1, 4.9], 200)]  # fmt: skip
    answer = study.answers(rows)["base"]["params"]
    assert answer["answer"] == "yes" and answer["genome"] == "clear" and answer["p_value"] < 0.05
    answer = study.answers([r for r in rows if r["name"] != "clear"])["base"]["params"]
    assert answer["answer"] == "no" and answer["genome"] == "noisy"  # lower mean, within the noise
    assert study.answers(rows[:1] + rows[3:])["base"]["params"]["answer"] == "no"  # only a larger genome is better
