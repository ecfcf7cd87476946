"""A study's analyses as pure functions of stored numbers: rank correlation with bootstrap intervals, Welch
tests with Holm's correction, and a search's quality against what it spent.

Plain numpy and scipy (both declared dependencies in ``pyproject.toml``: scipy for ranks, Student's t and the
Welch test), so that a published table is recomputed from the committed raw results by the same code that
made it, and each function is tested against known answers (``tests/test_study_analysis.py``). Spreads are
sample standard deviations (ddof=1) throughout: a handful of seeds estimates a population's spread.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

from starlab.assess import Evaluation, Objectives

#: resamples of a bootstrap, and the confidence of its percentile interval (what the published tables use)
RESAMPLES, LEVEL = 2000, 0.90
#: a statistic of paired samples, computed along the last axis (a batch of resamples at once)
Statistic = Callable[[np.ndarray, np.ndarray], np.ndarray]


# ---- rank correlation --------------------------------------------------------------------------------------
def spearman(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Spearman's rho along the last axis (average ranks for ties); 0 where a side is constant."""
    return _pearson(stats.rankdata(x, axis=-1), stats.rankdata(y, axis=-1))


def _pearson(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    x, y = x - x.mean(-1, keepdims=True), y - y.mean(-1, keepdims=True)
    scale = np.sqrt((x * x).sum(-1) * (y * y).sum(-1))
    return np.divide((x * y).sum(-1), scale, out=np.zeros_like(scale), where=scale > 0)


def kendall(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Kendall's tau-b along the last axis (what ``scipy.stats.kendalltau`` computes); 0 where a side is constant."""
    sx = np.sign(x[..., :, None] - x[..., None, :])
    sy = np.sign(y[..., :, None] - y[..., None, :])
    scale = np.sqrt((sx * sx).sum((-1, -2)) * (sy * sy).sum((-1, -2)))
    return np.divide((sx * sy).sum((-1, -2)), scale, out=np.zeros_like(scale), where=scale > 0)


def bootstrap_interval(
    x: np.ndarray, y: np.ndarray, statistic: Statistic, rng: np.random.Generator,
    resamples: int = RESAMPLES, level: float = LEVEL,
) -> list[float]:  # fmt: skip
    """The percentile interval of ``statistic`` over pairs (genomes) resampled with replacement."""
    index = rng.integers(0, len(x), (resamples, len(x)))
    return _percentiles(statistic(x[index], y[index]), level)


def _percentiles(values: np.ndarray, level: float) -> list[float]:
    tail = round(50 * (1 - level), 10)  # 5.0 for 90%, not 4.999...: the published intervals used 5 and 95
    return [float(np.percentile(values, tail)), float(np.percentile(values, 100 - tail))]


@dataclass(frozen=True)
class PairedDifference:
    """``statistic(a, target) - statistic(b, target)`` and its percentile interval over resampled genomes."""

    difference: float
    interval: list[float]


def paired_bootstrap(
    a: np.ndarray, b: np.ndarray, target: np.ndarray, statistic: Statistic, rng: np.random.Generator,
    resamples: int = RESAMPLES, level: float = LEVEL,
) -> PairedDifference:  # fmt: skip
    """Whether proxy ``a`` ranks genomes more like ``target`` than proxy ``b`` does, beyond the luck of which
    genomes were measured: each resample draws the genomes once and computes both proxies' statistic on them,
    so what the two share cancels (two bootstraps drawn apart would give intervals that overlap needlessly)."""
    index = rng.integers(0, len(target), (resamples, len(target)))
    differences = statistic(a[index], target[index]) - statistic(b[index], target[index])
    return PairedDifference(float(statistic(a, target) - statistic(b, target)), _percentiles(differences, level))


# ---- runs against runs -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Welch:
    """Welch's t-test of ``mean(a) - mean(b)`` (unequal variances): the difference (the effect size, in the
    quality's units), its confidence interval, t, the Welch-Satterthwaite degrees of freedom and the p-value
    for ``alternative`` (``less``: a's mean is lower)."""

    difference: float
    interval: list[float]
    t: float
    df: float
    p_value: float


def sample_std(values: Sequence[float]) -> float:
    """The sample standard deviation (ddof=1) of a few runs."""
    return float(np.std(np.asarray(values, dtype=float), ddof=1))


def welch(a: Sequence[float], b: Sequence[float], alternative: str = "two-sided", level: float = 0.95) -> Welch:
    """Welch's test of two groups of runs (e.g. one genome's perplexities over seeds against a baseline's);
    the interval is two-sided at ``level`` whatever the alternative."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if len(a) < 2 or len(b) < 2:
        raise ValueError(f"a Welch test needs at least 2 runs per group, got {len(a)} and {len(b)}")
    va, vb = np.var(a, ddof=1) / len(a), np.var(b, ddof=1) / len(b)
    df = (va + vb) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1)) if va + vb > 0 else float("inf")
    test = stats.ttest_ind(a, b, equal_var=False, alternative=alternative)
    difference = float(a.mean() - b.mean())
    half = float(stats.t.ppf((1 + level) / 2, df) * np.sqrt(va + vb))
    return Welch(difference, [difference - half, difference + half], float(test.statistic), float(df),
                 float(test.pvalue))  # fmt: skip


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm's step-down adjusted p-values, in the order given: the smallest of m is multiplied by m, the next by
    m - 1, ..., each at least the one before it and at most 1. Rejecting where the adjusted value is below alpha
    keeps the chance of any false "better" among all the comparisons reported below alpha."""
    order = np.argsort(p_values, kind="stable")
    adjusted, running, m = [0.0] * len(order), 0.0, len(order)
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * float(p_values[i])))
        adjusted[i] = running
    return adjusted


@dataclass(frozen=True)
class Comparison:
    """One reported comparison: its name, the Welch test, and its Holm-adjusted p-value over all of them."""

    name: str
    test: Welch
    p_holm: float

    def significant(self, alpha: float = 0.05) -> bool:
        return self.p_holm < alpha


def compare(
    pairs: Sequence[tuple[str, Sequence[float], Sequence[float]]], alternative: str = "two-sided", level: float = 0.95
) -> list[Comparison]:
    """A Welch test per ``(name, a, b)`` and Holm's correction over every one of them (all that are reported,
    not only those that look interesting)."""
    tests = [welch(a, b, alternative, level) for _, a, b in pairs]
    adjusted = holm([t.p_value for t in tests])
    return [Comparison(name, t, p) for (name, _, _), t, p in zip(pairs, tests, adjusted, strict=True)]


# ---- a search against what it spent -----------------------------------------------------------------------
@dataclass(frozen=True)
class SearchCurves:
    """After each evaluation of the search protocol, in the order stored: the hypervolume and best quality of
    everything evaluated so far, and the wall and CPU seconds spent by then on every rung (a ladder's
    promotions are its cost)."""

    hypervolume: list[float]
    best_quality: list[float]
    seconds: list[float]
    cpu_seconds: list[float]


def search_curves(
    objectives: Objectives, evaluations: Sequence[Evaluation], protocol: str,
    quality: Callable[[Evaluation], float] | None = None,
) -> SearchCurves:  # fmt: skip
    """Curves of a run from its ``evaluations`` (every rung, in the order stored: ``RunStore.evaluations()``);
    ``quality`` replaces the measured quality (the synthetic protocols' noise-free one, known exactly)."""
    measure = quality or (lambda e: e.quality)
    base = [dataclasses.replace(e, quality=measure(e)) for e in evaluations if e.protocol == protocol]
    values = objectives.values(base)
    hypervolume = [objectives.hypervolume(values[: i + 1]) for i in range(len(base))]
    best = np.minimum.accumulate([e.quality for e in base]).tolist() if base else []
    seconds, cpu, elapsed = 0.0, 0.0, {}
    for e in evaluations:
        seconds, cpu = seconds + e.seconds, cpu + e.metrics.get("cpu_seconds", 0.0)
        elapsed[(e.hash, e.protocol)] = (seconds, cpu)
    spent = [elapsed[(e.hash, e.protocol)] for e in base]
    return SearchCurves(hypervolume, best, [s for s, _ in spent], [c for _, c in spent])
