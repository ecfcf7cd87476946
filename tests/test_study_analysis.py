"""starlab.study.analysis against known answers: scipy on fixed data, Holm worked by hand, bootstrap intervals
around a known truth, and a search's curves from hand-made evaluations."""

import math

import numpy as np
import pytest
from scipy import stats

from starlab.assess import Evaluation, Objectives, get_protocol
from starlab.genome import preset
from starlab.study import analysis
from starlab.study.analysis import bootstrap_interval, compare, holm, kendall, paired_bootstrap, spearman, welch


def test_rank_correlations_match_scipy_with_ties_and_constant_sides():
    rng = np.random.default_rng(0)
    for _ in range(20):
        x, y = rng.integers(0, 5, 12).astype(float), rng.normal(size=12)
        assert spearman(x, y) == pytest.approx(stats.spearmanr(x, y).statistic)
        assert kendall(x, y) == pytest.approx(stats.kendalltau(x, y).statistic)
    assert spearman(np.ones(5), np.arange(5.0)) == kendall(np.ones(5), np.arange(5.0)) == 0
    batch = rng.normal(size=(3, 8))
    assert kendall(batch, -batch) == pytest.approx(-np.ones(3))


def correlated(n: int, rho: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A bivariate normal sample whose Spearman correlation is known: 6/pi asin(rho/2)."""
    rng = np.random.default_rng(seed)
    x, z = rng.normal(size=(2, n))
    return x, rho * x + math.sqrt(1 - rho**2) * z


def test_a_bootstrap_interval_holds_the_true_correlation_of_a_large_sample():
    x, y = correlated(400, 0.6, seed=1)
    truth = 6 / math.pi * math.asin(0.3)
    low, high = bootstrap_interval(x, y, spearman, np.random.default_rng(0), resamples=1000)
    assert low < truth < high and low < float(spearman(x, y)) < high
    assert high - low < 0.15  # 400 pairs pin it down
    narrow = bootstrap_interval(x, y, spearman, np.random.default_rng(0), resamples=1000, level=0.5)
    assert low < narrow[0] < narrow[1] < high


def test_the_bootstrap_draws_what_the_published_intervals_drew():
    """bench/star_small.py drew 2,000 resamples of the genomes and took the 5th and 95th percentiles."""
    x, y = correlated(24, 0.8, seed=2)
    rng = np.random.default_rng(0)
    index = rng.integers(0, 24, (2000, 24))
    values = spearman(x[index], y[index])
    expected = [float(np.percentile(values, 5)), float(np.percentile(values, 95))]
    assert bootstrap_interval(x, y, spearman, np.random.default_rng(0)) == expected


def test_a_paired_bootstrap_of_two_identical_proxies_is_zero_and_a_better_proxy_is_separated():
    x, target = correlated(60, 0.7, seed=3)
    same = paired_bootstrap(x, x.copy(), target, spearman, np.random.default_rng(0), resamples=500)
    assert same.difference == 0 and same.interval == [0.0, 0.0]
    noise = np.random.default_rng(4).normal(size=60)
    worse = x + 2 * noise  # the same proxy, blurred
    better = paired_bootstrap(x, worse, target, spearman, np.random.default_rng(0), resamples=500)
    assert better.difference == pytest.approx(float(spearman(x, target) - spearman(worse, target)))
    assert 0 < better.interval[0] < better.difference < better.interval[1]


def test_welch_matches_scipy_and_its_interval_is_the_welch_one():
    a, b = [37.6, 38.1, 37.7], [38.6, 39.6, 38.5, 38.9]
    result = welch(a, b)
    reference = stats.ttest_ind(a, b, equal_var=False)
    assert result.p_value == pytest.approx(reference.pvalue) and result.t == pytest.approx(reference.statistic)
    assert result.df == pytest.approx(reference.df)
    assert result.interval == pytest.approx(list(reference.confidence_interval(0.95)))
    assert result.difference == pytest.approx(np.mean(a) - np.mean(b))
    one_sided = welch(a, b, alternative="less")
    assert one_sided.p_value == pytest.approx(reference.pvalue / 2)  # a is lower: half the two-sided p
    assert one_sided.interval == result.interval  # the interval stays two-sided
    with pytest.raises(ValueError, match="at least 2 runs per group, got 1 and 4"):
        welch([37.6], b)


def test_sample_std_is_ddof_1():
    assert analysis.sample_std([1.0, 2.0, 3.0, 4.0]) == pytest.approx(math.sqrt(5 / 3))


def test_holm_by_hand():
    # sorted 0.005, 0.01, 0.03, 0.04 times 4, 3, 2, 1 = 0.02, 0.03, 0.06, 0.04 -> kept monotone: 0.06 for the last
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert holm([0.5, 0.6]) == [1.0, 1.0]  # capped at 1, and never below an earlier one
    assert holm([0.02]) == [0.02] and holm([]) == []


def test_compare_corrects_over_every_comparison():
    base = [40.0, 40.2, 39.9]
    pairs = [("clear", [37.0, 37.1, 36.9], base), ("close", [39.5, 39.8, 39.6], base)]
    alone = [welch(a, b, "less").p_value for _, a, b in pairs]
    results = compare(pairs, alternative="less")
    assert [c.name for c in results] == ["clear", "close"]
    assert [c.p_holm for c in results] == pytest.approx(holm(alone))
    assert results[0].p_holm == pytest.approx(2 * alone[0]) and results[0].significant()  # the smaller p, times 2


def record(quality: float, protocol: str, seconds: float, depth_preset: str = "transformer++") -> Evaluation:
    genome = preset(depth_preset, 2)
    return Evaluation(genome=genome.canonical().text(), hash=f"{genome.hash()}-{quality}", protocol=protocol, seed=0,
                      width=32, status="ok", quality=quality, scores={}, params=1000, cache_bytes=0, seconds=seconds,
                      worker="", metrics={"cpu_seconds": 2 * seconds})  # fmt: skip


def test_search_curves_from_hand_made_evaluations():
    protocol = get_protocol("synthetic")
    objectives = Objectives(("quality",), protocol, depth=2, width=32)
    worst = objectives.worst_quality
    evaluations = [record(0.8, "synthetic", 1.0), record(0.3, "promoted", 10.0), record(0.5, "synthetic", 2.0),
                   record(0.9, "synthetic", 4.0)]  # fmt: skip
    curves = analysis.search_curves(objectives, evaluations, "synthetic")
    assert curves.best_quality == [0.8, 0.5, 0.5]
    assert curves.hypervolume == pytest.approx([worst - 0.8, worst - 0.5, worst - 0.5])  # one objective: a length
    assert curves.seconds == [1.0, 13.0, 17.0]  # the promotion's 10 s count from when it was spent
    assert curves.cpu_seconds == [2.0, 26.0, 34.0]
    known = analysis.search_curves(objectives, evaluations, "synthetic", quality=lambda e: 0.1)
    assert known.best_quality == [0.1, 0.1, 0.1] and known.hypervolume == pytest.approx([worst - 0.1] * 3)
    assert analysis.search_curves(objectives, [], "synthetic").hypervolume == []
