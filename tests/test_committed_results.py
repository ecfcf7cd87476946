"""The committed studies rebuild: ``--stage report`` of bench/star_small.py and bench/operator_genes.py on the
committed results reproduces the published numbers (README.md, docs/results.md), and a setting later added to a
protocol with a default does not orphan a study's stored results (issue 31 item 4). Each report runs on a
temporary copy, so the figures and the rewritten analysis never touch the repository."""

import dataclasses
import importlib.util
import json
import shutil
import sys
from pathlib import Path

import pytest

from starlab.assess import get_protocol
from starlab.assess.lm import LMProtocol
from starlab.study import protocol_identity

BENCH = Path(__file__).parent.parent / "bench"
RESULTS = BENCH / "results"


def load_bench(monkeypatch, name: str):
    """A bench script as a module (``operator_genes`` imports ``star_small``, which must be this one)."""
    monkeypatch.syspath_prepend(str(BENCH))
    spec = importlib.util.spec_from_file_location(name, BENCH / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, name, module)  # dataclasses look their module up while defined
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def copies(tmp_path) -> Path:
    for name in ("star_small.json", "operator_genes.json"):
        shutil.copy(RESULTS / name, tmp_path / name)
    return tmp_path


def report(module, out: Path, *extra: str) -> int:
    return module.main(["--stage", "report", "--out", str(out), *extra])


def test_star_small_report_rebuilds_the_published_tables(monkeypatch, copies, capsys):
    study = load_bench(monkeypatch, "star_small")
    assert report(study, copies / "star_small.json") == 0
    analysis = json.loads((copies / "star_small.json").read_text())["analysis"]
    assert analysis == json.loads((RESULTS / "star_small.json").read_text())["analysis"]  # exactly as committed
    spearman = {key: round(c["spearman"], 2) for key, c in analysis["correlations"].items()}
    assert spearman == {"demo": 0.08, "quick": -0.09, "lm-quick": 0.74, "lm-small@150": 0.85}  # README, results.md
    assert [round(b, 2) for b in analysis["correlations"]["lm-small@150"]["spearman_90"]] == [0.71, 0.92]
    assert round(analysis["seed_noise"]["pooled_std"], 2) == 0.45
    rows = {row["name"]: row for row in analysis["retrained"]}
    published = {"quality-1": (37.81, 0.28), "striped-mamba": (38.89, 0.59), "transformer++": (44.09, 0.39),
                 "quality+params-4": (70.07, 0.85)}  # fmt: skip
    assert {name: (round(rows[name]["mean"], 2), round(rows[name]["std"], 2)) for name in published} == published
    answer = analysis["answers"]["striped-mamba"]["cache_bytes"]
    assert (answer["answer"], answer["genome"], round(answer["p_value"], 3)) == ("yes", "quality-1", 0.034)
    printed = capsys.readouterr().out
    assert "| lm-small@150 | 24 | 0.85 | [0.71, 0.92] | 0.667 | [0.52, 0.79] | 48.8 |" in printed
    assert (copies / "star_small-proxies.png").is_file() and (copies / "star_small-fronts.png").is_file()


def test_operator_genes_report_rebuilds_the_published_tables(monkeypatch, copies, capsys):
    load_bench(monkeypatch, "star_small")
    genes = load_bench(monkeypatch, "operator_genes")
    assert report(genes, copies / "operator_genes.json", "--earlier", str(copies / "star_small.json")) == 0
    analysis = json.loads((copies / "operator_genes.json").read_text())["analysis"]
    assert analysis == json.loads((RESULTS / "operator_genes.json").read_text())["analysis"]
    assert analysis["front_composed"] == ["[2,2,1,1,3]", "[9,1,1,1,2]"]
    rows = {row["name"]: row for row in analysis["retrained"]}
    published = {"quality+operators-1": (39.14, 0.61), "quality+operators-3": (38.47, 0.43), "quality-1": (37.81, 0.28)}
    assert {name: (round(rows[name]["mean"], 2), round(rows[name]["std"], 2)) for name in published} == published
    assert "90 of 96 evaluated genomes hold a class outside the pool" in capsys.readouterr().out


def lm_small_with_a_new_setting(**changes):
    """lm-small as it would be after a release that adds a defaulted setting to the LM protocols and shows it in
    their summary (as issue 15 did with ``embedding_only`` and ``backbone``)."""
    added = dataclasses.make_dataclass(
        "LMProtocolLater", [("new_setting", bool, dataclasses.field(default=False))], bases=(LMProtocol,),
        frozen=True, kw_only=True, eq=False,
        namespace={"training": lambda self: {**LMProtocol.training(self), "new_setting": self.new_setting}},
    )  # fmt: skip
    lm_small = get_protocol("lm-small")
    fields = {f.name: getattr(lm_small, f.name) for f in dataclasses.fields(lm_small)}
    return added(**{**fields, **changes})


def test_a_setting_added_to_the_target_protocol_with_a_default_does_not_orphan_the_study(monkeypatch, copies):
    study = load_bench(monkeypatch, "star_small")
    later = lm_small_with_a_new_setting()
    assert later.summary() != get_protocol("lm-small").summary()  # what used to orphan the results
    monkeypatch.setattr(study, "get_protocol", lambda name: later if name == "lm-small" else get_protocol(name))
    assert report(study, copies / "star_small.json") == 0
    assert json.loads((copies / "star_small.json").read_text())["analysis"]["correlations"]

    set_later = lm_small_with_a_new_setting(new_setting=True)  # the new setting set: another study
    monkeypatch.setattr(study, "get_protocol", lambda name: set_later if name == "lm-small" else get_protocol(name))
    with pytest.raises(SystemExit, match="other settings"):
        report(study, copies / "star_small.json")
    fewer_steps = get_protocol("lm-small").with_settings(steps=999)  # a real setting of lm-small changed
    monkeypatch.setattr(study, "get_protocol", lambda name: fewer_steps if name == "lm-small" else get_protocol(name))
    with pytest.raises(SystemExit, match="other settings"):
        report(study, copies / "star_small.json")


def test_a_protocols_identity_is_its_name_and_the_settings_it_sets():
    lm_small = get_protocol("lm-small")
    assert protocol_identity(lm_small) == {
        "protocol": "lm-small",
        "settings": {"width": 96, "seq_len": 256, "steps": 1000, "batch_size": 8, "warmup_steps": 100,
                     "tokenizer": "bpe", "vocab_size": 2048},
    }  # fmt: skip
    assert protocol_identity(lm_small_with_a_new_setting()) == protocol_identity(lm_small)
    assert protocol_identity(lm_small_with_a_new_setting(new_setting=True))["settings"]["new_setting"] is True
    assert protocol_identity(lm_small.with_settings(backbone="gpt2"))["settings"]["backbone"] == "gpt2"
    config = dataclasses.replace(lm_small.config, head_dim=8)  # a nested setting: only what differs
    assert protocol_identity(dataclasses.replace(lm_small, config=config))["settings"]["config"] == {"head_dim": 8}
    identity = protocol_identity(get_protocol("demo"))
    assert json.loads(json.dumps(identity)) == identity  # plain JSON: it is compared with what a file reads back
