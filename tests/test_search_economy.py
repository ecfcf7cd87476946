"""A search that earns its evaluations: exact budgets, a multi-fidelity ladder on one scale, surrogate
pre-screening. Everything runs on the synthetic protocol (analytic quality), with synthetic rungs whose
relation to each other is known."""

import json

import numpy as np
import pytest
from scipy.stats import spearmanr

from starlab.assess import SyntheticProtocol, register_protocol, unregister_protocol
from starlab.assess.ladder import comparable_evaluations, comparable_qualities, monotone_map
from starlab.cli import main
from starlab.evolve import ALGORITHMS, Search, SearchConfig, make_executor
from starlab.genome import Genome
from starlab.store import RunStore, load_run

#: A synthetic ladder: the top rung is a known monotone transform of the bottom one plus a little noise, and
#: it *looks better* (lower numbers): a rule that compared raw rung qualities would favour the promoted.
LOW = SyntheticProtocol(name="rung-low", noise=0.02)
HIGH = SyntheticProtocol(name="rung-high", scale=0.5, offset=-0.05, noise=0.005)


@pytest.fixture
def ladder():
    for protocol in (LOW, HIGH):
        register_protocol(protocol)
    yield (LOW.name, HIGH.name)
    for protocol in (LOW, HIGH):
        unregister_protocol(protocol.name)


def run_search(directory, **settings):
    config = SearchConfig(**{"protocol": "synthetic", "depth": 3, "population": 8, "generations": None, **settings})
    search = Search(directory, make_executor("local"), config)
    try:
        return search.run()
    finally:
        search.close()


def stored(directory, protocol):
    with RunStore(directory) as store:
        return store.evaluations(protocol)


# ---- exact budgets --------------------------------------------------------------------------------------


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_the_budget_is_exact_for_every_algorithm(tmp_path, algorithm):
    """13 is no multiple of any generation size (GA breeds population - elites): the last one is cut."""
    summary = run_search(tmp_path / "run", algorithm=algorithm, population=6, budget=13)
    assert summary.evaluations == len(stored(tmp_path / "run", "synthetic")) == 13


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_a_converged_search_is_topped_up_until_the_genome_space_is_spent(tmp_path, algorithm):
    """At depth 1 there are 17 genomes: a population of 4 converges long before the budget of 17 is spent;
    fresh random genomes spend it, and a budget beyond the space stops when nothing new is left."""
    summary = run_search(tmp_path / "run", algorithm=algorithm, depth=1, population=4, budget=17)
    assert summary.evaluations == 17
    assert run_search(tmp_path / "more", algorithm=algorithm, depth=1, population=4, budget=30).evaluations == 17


def test_a_budget_smaller_than_the_population_cuts_the_initial_population(tmp_path):
    assert run_search(tmp_path / "run", budget=3, seeds=("11111-11111-11111",)).evaluations == 3


def test_a_budget_without_generations_runs_until_it_is_spent_and_generations_still_cap(tmp_path):
    config = SearchConfig.from_preset("demo", protocol="synthetic", budget=40)
    assert config.generations is None and config.total_evaluations() == 40
    capped = run_search(tmp_path / "capped", budget=40, generations=1)
    assert capped.evaluations == 16  # two generations of 8, short of the budget: the cap came first
    with pytest.raises(ValueError, match="needs generations or budget"):
        SearchConfig(protocol="synthetic", generations=None)


# ---- the ladder: one scale ------------------------------------------------------------------------------

TRUE_SCALE, TRUE_OFFSET, HIGH_NOISE = 0.5, -0.05, 0.005


def synthetic_ladder(rng, n=60):
    """Bottom-rung qualities, the top rung as a known monotone transform plus noise, and the transform."""
    low = {f"g{i}": float(q) for i, q in enumerate(rng.uniform(0.2, 1.0, n))}
    truth = {h: TRUE_SCALE * q + TRUE_OFFSET for h, q in low.items()}
    high = {h: t + float(rng.normal(0, HIGH_NOISE)) for h, t in truth.items()}
    return low, high, truth


def misranked_share(comparable, promoted, truth, margin=4 * HIGH_NOISE):
    """Among (promoted, not promoted) pairs whose true top-rung qualities differ by more than the noise, the
    share the comparable qualities order the wrong way."""
    pairs = [
        (p, n) for p in promoted for n in truth if n not in promoted and abs(truth[p] - truth[n]) > margin
    ]  # fmt: skip
    wrong = [(p, n) for p, n in pairs if (comparable[p] < comparable[n]) != (truth[p] < truth[n])]
    return len(wrong) / len(pairs)


@pytest.mark.parametrize("promotion", ["best third", "random third"])
def test_a_promoted_candidate_does_not_win_because_it_was_promoted(promotion):
    rng = np.random.default_rng(0)
    low, high, truth = synthetic_ladder(rng)
    order = sorted(low, key=low.get)
    promoted = set(order[:20] if promotion == "best third" else rng.choice(order, 20, replace=False))
    comparable = comparable_qualities([low, {h: high[h] for h in promoted}])

    assert all(comparable[h] == high[h] for h in promoted)  # measured on the top rung: kept as measured
    assert spearmanr([comparable[h] for h in low], [truth[h] for h in low]).statistic > 0.99
    estimated = [h for h in low if h not in promoted]
    assert np.mean([abs(comparable[h] - truth[h]) for h in estimated]) < 0.02  # on the top rung's scale
    assert misranked_share(comparable, promoted, truth) < 0.02
    if promotion == "random third":  # the rule this replaces (the top-rung quality in place of the bottom
        replaced = {h: high[h] if h in promoted else q for h, q in low.items()}  # one) fails the same test
        assert misranked_share(replaced, promoted, truth) > 0.3


def test_the_map_keeps_a_rungs_own_order_beyond_the_measured_range():
    low = {f"g{i}": q for i, q in enumerate([0.1, 0.2, 0.3, 0.4, 0.6, 0.9])}
    high = {"g0": 0.0, "g1": 0.05, "g2": 0.1}
    carried = monotone_map(low, high)(np.array(list(low.values())))
    assert np.all(np.diff(carried) > 0)  # isotonic regression alone would clip g3..g5 to one value
    assert monotone_map(low, {"g0": 0.5})(np.array([0.3])) == pytest.approx(0.7)  # one pair: a shift
    assert monotone_map(low, {})(np.array([0.3])) == pytest.approx(0.3)  # none: the identity


def test_unsuccessful_evaluations_get_the_top_rungs_worst_quality(tmp_path, ladder):
    run_search(tmp_path / "run", ladder=ladder, protocol=LOW.name, budget=8)
    evaluations = stored(tmp_path / "run", LOW.name)
    failed = evaluations[0].__class__(**{**evaluations[0].to_dict(), "status": "failed"})
    comparable = comparable_evaluations([[failed, *evaluations[1:]], stored(tmp_path / "run", HIGH.name)], 7.0)
    assert comparable[0].quality == 7.0 and comparable[0].status.value == "failed"


def test_a_ladder_search_promotes_one_in_eta_and_selects_on_the_top_rungs_scale(tmp_path, ladder):
    summary = run_search(tmp_path / "run", ladder=ladder, protocol=LOW.name, budget=40, eta=3)
    low, high = stored(tmp_path / "run", LOW.name), stored(tmp_path / "run", HIGH.name)
    assert summary.evaluations == len(low) == 40 and summary.promotions == {HIGH.name: len(high)}
    assert {e.hash for e in high} <= {e.hash for e in low}
    with RunStore(tmp_path / "run") as store:
        generations = store.generations()
    promoted = [g.stats["promoted"][HIGH.name] for g in generations]
    assert promoted[0] == 8 // 3 and sum(promoted) == len(high)  # best 1/eta of each generation's 8
    # the population the algorithm kept carries comparable qualities: measured on the top rung, or estimated
    comparable = {e.hash: e for e in comparable_evaluations([low, high], HIGH.worst_quality)}
    high_by_hash = {e.hash: e.quality for e in high}
    for member in generations[-1].population:
        assert member["quality"] == pytest.approx(comparable[member["hash"]].quality)
        if member["hash"] in high_by_hash:
            assert member["quality"] == high_by_hash[member["hash"]]
    last = generations[-1].stats["correlations"][0]
    assert last["low"] == LOW.name and last["high"] == HIGH.name and last["n"] == len(high)
    assert last["spearman"] > 0.5  # the rungs agree (same formula, independent noise)
    assert generations[-1].stats["evaluations"] == {LOW.name: 40, HIGH.name: len(high)}


def test_ladder_settings_are_checked(ladder):
    for bad, message in [
        ({"ladder": (HIGH.name, LOW.name)}, "ladder starts at the search protocol"),
        ({"ladder": (LOW.name, "nope")}, "unknown protocol 'nope'"),
        ({"ladder": (LOW.name, HIGH.name, LOW.name)}, "names a protocol twice"),
        ({"ladder": (LOW.name, HIGH.name), "eta": 1}, "eta = 1 must be an integer in 2..1000"),
    ]:
        with pytest.raises(ValueError, match=message):
            SearchConfig(**{"protocol": LOW.name, **bad})
    assert SearchConfig(protocol=LOW.name, ladder=f"{LOW.name},{HIGH.name}").rungs() == (LOW.name, HIGH.name)
    assert SearchConfig(protocol=LOW.name, ladder=LOW.name).ladder == ()  # one rung is no ladder


# ---- surrogate ------------------------------------------------------------------------------------------


def test_the_surrogate_screens_many_offspring_and_its_predictions_rank_what_it_kept(tmp_path):
    summary = run_search(tmp_path / "run", surrogate=True, budget=64, depth=4, seed=1)
    assert summary.evaluations == 64
    with RunStore(tmp_path / "run") as store:
        generations = store.generations()
    screened = [g.stats["surrogate"] for g in generations if "surrogate" in g.stats]
    assert len(screened) == len(generations) - 1  # every generation after the initial one
    assert all(s["n"] == 8 for s in screened[:-1]) and screened[-1]["n"] >= 1  # the last one cut to the budget
    # the synthetic quality is a function of the classes: a fitted forest ranks new genomes well
    assert np.median([s["spearman"] for s in screened]) > 0.5


def test_the_surrogate_is_deterministic_under_the_run_seed(tmp_path):
    for name in ("a", "b"):
        run_search(tmp_path / name, surrogate=True, budget=40)
    with RunStore(tmp_path / "a") as a, RunStore(tmp_path / "b") as b:
        assert a.generations() == b.generations()


def test_the_surrogate_finds_a_better_front_than_nsga2_alone_at_equal_budget(tmp_path):
    """On the synthetic protocol (quality a function of the classes), over 3 seeds."""
    wins = 0
    for seed in range(3):
        plain = run_search(tmp_path / f"plain{seed}", budget=48, depth=4, seed=seed)
        screened = run_search(tmp_path / f"surrogate{seed}", budget=48, depth=4, seed=seed, surrogate=True)
        wins += archive_hypervolume(tmp_path / f"surrogate{seed}") > archive_hypervolume(tmp_path / f"plain{seed}")
        assert plain.evaluations == screened.evaluations == 48
    assert wins >= 2


def archive_hypervolume(directory):
    run = load_run(directory)
    return run.objectives.hypervolume(run.objectives.values(run.evaluations))


# ---- seconds spent, and the command line ---------------------------------------------------------------


def test_every_evaluation_records_its_cpu_seconds_and_the_run_what_each_rung_spent(tmp_path, ladder):
    run_search(tmp_path / "run", ladder=ladder, protocol=LOW.name, budget=8)
    low = stored(tmp_path / "run", LOW.name)
    assert all(e.metrics["cpu_seconds"] >= 0 and e.metrics["gpu_seconds"] == 0 for e in low)
    spent = load_run(tmp_path / "run").spent()
    assert list(spent) == [LOW.name, HIGH.name] and spent[LOW.name]["evaluations"] == 8
    assert spent[LOW.name]["seconds"] == pytest.approx(sum(e.seconds for e in low))


def test_the_command_line_runs_a_budgeted_ladder_with_the_surrogate(tmp_path, capsys):
    out = tmp_path / "run"
    main(["evolve", "--ladder", "synthetic-noisy,synthetic", "--budget", "20", "--population", "4", "--surrogate",
          "--depth", "3", "--seeds", "", "--out", str(out)])  # fmt: skip
    printed = capsys.readouterr().out
    assert len(stored(out, "synthetic-noisy")) == 20 and stored(out, "synthetic")
    assert "20 evaluations" in printed
    config = json.loads(json.dumps(load_run(out).config))
    assert config["ladder"] == ["synthetic-noisy", "synthetic"] and config["surrogate"] and config["budget"] == 20
    assert Genome.parse(stored(out, "synthetic")[0].genome)
    assert "Evaluations: 20 on synthetic-noisy" in printed and "against a budget of 20" in printed
    assert printed.strip().endswith(f"report: {out / 'report.html'}")  # `starlab report`'s page (test_live_report)
    page = (out / "report.html").read_text()
    for shown in ("What the search spent", "synthetic-noisy → synthetic", "Spearman (predicted vs measured)"):
        assert shown in page
    assert "on the top rung synthetic (measured where promoted, else estimated" in page
