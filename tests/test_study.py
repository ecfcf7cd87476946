"""Studies: a TOML file checked before any work, run durably into a run store, resumed, and reported."""

from __future__ import annotations

import sqlite3

import numpy as np
import pytest
from scipy import stats

import starlab.study.run as study_run
from starlab.cli import main
from starlab.store import RunStore
from starlab.study import StudySpec, study_tables

STUDY = """
name = "proxy-vs-target"
genomes = ["transformer++", "mamba", "hyena", "31111-91111-31111-91111"]
depth = 4
seeds = [0, 1]
[protocols.proxy]
protocol = "synthetic-noisy"
settings = { noise = 0.1 }
[protocols.target]
protocol = "synthetic"
[[analyses]]
kind = "rank_correlation"
proxy = "proxy"
target = "target"
"""


@pytest.fixture
def study(tmp_path):
    path = tmp_path / "study.toml"
    path.write_text(STUDY)
    return path


@pytest.fixture
def counted(monkeypatch):
    """Every ``assess`` the study runs, as (genome hash, protocol name, seed)."""
    calls = []
    real = study_run.assess

    def assess(genome, protocol, *args, **kwargs):
        calls.append((genome.hash(), protocol.name, args[1]))
        return real(genome, protocol, *args, **kwargs)

    monkeypatch.setattr(study_run, "assess", assess)
    return calls


def test_a_study_runs_once_and_resumes_only_what_is_missing(study, tmp_path, counted, capsys):
    out = tmp_path / "out"
    assert main(["study", "run", str(study), "--out", str(out)]) == 0
    assert len(counted) == 16
    with RunStore(out, readonly=True) as store:
        stored = store.evaluations()
        assert store.get_meta("study")["name"] == "proxy-vs-target"
    assert len(stored) == 16
    assert {e.protocol for e in stored} == {"proxy", "target"}  # stored under the study's keys
    assert len({(e.hash, e.protocol, e.seed) for e in stored}) == 16

    counted.clear()
    assert main(["study", "run", str(study), "--out", str(out)]) == 0
    assert counted == []  # all stored: nothing runs again

    db = sqlite3.connect(out / "run.sqlite")
    with db:
        db.execute("DELETE FROM evaluations WHERE protocol = 'proxy' AND seed = 1")
    db.close()
    assert main(["study", "run", str(study), "--out", str(out)]) == 0
    assert sorted((name, seed) for _, name, seed in counted) == [("synthetic-noisy", 1)] * 4
    with RunStore(out, readonly=True) as store:
        assert store.count_evaluations() == 16
    assert "16 evaluations (4 run now)" in capsys.readouterr().out


def test_a_changed_study_is_refused_in_the_same_directory(study, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["study", "run", str(study), "--out", str(out)]) == 0
    capsys.readouterr()
    study.write_text(STUDY.replace("seeds = [0, 1]", "seeds = [0, 2]"))
    assert main(["study", "run", str(study), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("starlab: error: ") and err.count("\n") == 1 and "seeds" in err
    with RunStore(out, readonly=True) as store:
        assert store.count_evaluations() == 16 and store.get_meta("study")["seeds"] == [0, 1]


def test_two_variants_of_one_protocol_do_not_collide(tmp_path):
    spec = StudySpec.from_dict({
        "name": "steps", "genomes": ["transformer++"], "depth": 2, "seeds": [0],
        "protocols": {"short": {"protocol": "lm-tiny", "settings": {"steps": 2, "max_eval_tokens": 1024}},
                      "long": {"protocol": "lm-tiny", "settings": {"steps": 3, "max_eval_tokens": 1024}}},
    })  # fmt: skip
    study_run.run_study(spec, tmp_path / "out")
    with RunStore(tmp_path / "out", readonly=True) as store:
        stored = {e.protocol: e for e in store.evaluations()}
    assert set(stored) == {"short", "long"}
    assert (stored["short"].metrics["steps"], stored["long"].metrics["steps"]) == (2, 3)  # each its own variant


def test_the_report_is_computed_from_the_stored_numbers(study, tmp_path):
    out = tmp_path / "out"
    assert main(["study", "run", str(study), "--out", str(out)]) == 0
    tables = study_tables(out)
    with RunStore(out, readonly=True) as store:
        stored = store.evaluations()
    genomes = sorted({e.genome for e in stored})

    def means(key):
        return [np.mean([e.quality for e in stored if e.genome == g and e.protocol == key]) for g in genomes]

    proxy, target = means("proxy"), means("target")
    (row,) = tables["rank_correlation"]
    assert row["genomes"] == 4
    assert row["spearman"] == pytest.approx(stats.spearmanr(proxy, target).statistic)
    assert row["kendall"] == pytest.approx(stats.kendalltau(proxy, target).statistic)
    low, high = row["spearman_90"]
    assert -1 <= low <= high <= 1
    first = next(r for r in tables["quality"] if r["genome"] == genomes[0] and r["protocol"] == "proxy")
    qualities = [e.quality for e in stored if e.genome == genomes[0] and e.protocol == "proxy"]
    assert first["seeds"] == 2 and first["std"] == pytest.approx(np.std(qualities, ddof=1))


BAD = {
    "unknown-field": ("seeds = [0, 1]", "seeds = [0, 1]\nsteps = 3", "unknown field"),
    "unknown-protocol": ('protocol = "synthetic"', 'protocol = "nope"', "protocols.target.protocol"),
    "bad-genome": ('"mamba"', '"99999"', "genomes[1]"),
    "empty-genomes": ('genomes = ["transformer++", "mamba", "hyena", "31111-91111-31111-91111"]', "genomes = []",
                      "genomes"),
    "empty-seeds": ("seeds = [0, 1]", "seeds = []", "seeds"),
    "negative-seed": ("seeds = [0, 1]", "seeds = [0, -1]", "seeds[1]"),
    "analysis-key": ('proxy = "proxy"\ntarget', 'proxy = "nope"\ntarget', "analyses[0].proxy"),
    "analysis-kind": ('kind = "rank_correlation"', 'kind = "nope"', "analyses[0].kind"),
    "bad-setting": ("noise = 0.1", "nois = 0.1", "protocols.proxy.settings"),
    "setting-value": ("noise = 0.1", "noise = -1.0", "noise"),
    "not-toml": ("[protocols.proxy]", "[protocols.proxy", "not valid TOML"),
    "duplicate-genome": ('"mamba"', '"transformer++"', "genomes[1]"),
    "width": ("depth = 4", "depth = 4\nwidth = 7", "width"),
}  # fmt: skip


@pytest.mark.parametrize("name", list(BAD))
def test_a_bad_study_file_is_one_line_before_any_work(name, study, tmp_path, capsys, counted):
    old, new, mentions = BAD[name]
    assert old in STUDY
    study.write_text(STUDY.replace(old, new, 1))
    assert main(["study", "run", str(study), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("starlab: error: ") and err.count("\n") == 1, err
    assert mentions in err
    assert counted == [] and not (tmp_path / "out").exists()


def test_the_report_of_a_directory_without_a_study_is_one_line(tmp_path, capsys):
    with RunStore(tmp_path / "run", create=True) as store:
        store.set_meta("config", {"protocol": "synthetic"})
    assert main(["study", "report", str(tmp_path / "run")]) == 2
    assert main(["study", "run", str(tmp_path / "missing.toml"), "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err.splitlines()
    assert "holds no study" in err[0] and "cannot be read" in err[1]
