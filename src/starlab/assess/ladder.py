"""One scale for a multi-fidelity ladder: every candidate's quality as the top rung would measure it.

A ladder (``demo → quick``, ``lm-demo → lm-small``) measures every candidate on its cheapest rung and promotes
the best to dearer ones. Qualities of different rungs are not on one scale (1 − demo accuracy is not
1 − quick accuracy; perplexity after lm-demo's 150 steps is not perplexity after lm-small's 1000), so a search
that compared a promoted candidate's top-rung quality with another's bottom-rung quality would favour whatever
it promoted.

The rule here (``docs/decisions.md``, "ladder comparability"): a candidate's comparable quality is its
quality on the top rung where it was measured there; otherwise its quality on the highest rung it reached,
carried up rung by rung through a monotone map fitted on the genomes measured on both rungs of each step.
The map is scikit-learn's isotonic regression inside the range of those genomes, continued outside it by a
straight line with the positive slope of a least-squares fit (isotonic regression alone would clip every
candidate worse than all promoted ones to one value and erase their order). With fewer than three pairs
the map is a shift by the mean difference, and with none the identity. It never reorders a rung's own
candidates; it only puts measurements of different rungs side by side.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence

import numpy as np

from starlab.assess.record import Evaluation
from starlab.status import Status

#: A map from one rung's qualities to the next rung's scale.
QualityMap = Callable[[np.ndarray], np.ndarray]

#: Fewer genomes measured on both rungs than this: the map is a shift, not a fitted curve.
MIN_PAIRS_FOR_FIT = 3


def pairs(low: Mapping[str, float], high: Mapping[str, float]) -> tuple[np.ndarray, np.ndarray]:
    """The qualities, on both rungs, of the genomes (hashes) measured on both, in ``low``'s order."""
    shared = [h for h in low if h in high]
    return np.array([low[h] for h in shared], dtype=float), np.array([high[h] for h in shared], dtype=float)


def monotone_map(low: Mapping[str, float], high: Mapping[str, float]) -> QualityMap:
    """The non-decreasing map from ``low``'s qualities to ``high``'s scale, fitted on their shared genomes."""
    x, y = pairs(low, high)
    if len(x) == 0:
        return lambda q: np.asarray(q, dtype=float)
    if len(x) < MIN_PAIRS_FOR_FIT or np.ptp(x) == 0:
        shift = float(np.mean(y - x))
        return lambda q: np.asarray(q, dtype=float) + shift
    from sklearn.isotonic import IsotonicRegression  # here: scikit-learn and scipy.stats cost a process a second

    isotonic = IsotonicRegression(increasing=True, out_of_bounds="clip").fit(x, y)
    slope = _outside_slope(x, y)
    lo, hi = float(x.min()), float(x.max())

    def carry(q: np.ndarray) -> np.ndarray:
        q = np.asarray(q, dtype=float)
        inside = isotonic.predict(np.clip(q, lo, hi))
        return inside + slope * (q - np.clip(q, lo, hi))  # the straight line beyond the measured range

    return carry


def _outside_slope(x: np.ndarray, y: np.ndarray) -> float:
    """The least-squares slope of y on x where it is positive; else the ratio of the ranges; else 1."""
    slope = float(np.polyfit(x, y, 1)[0])
    if slope > 0:
        return slope
    ratio = float(np.ptp(y) / np.ptp(x))
    return ratio if ratio > 0 else 1.0


def comparable_qualities(rungs: Sequence[Mapping[str, float]]) -> dict[str, float]:
    """Every bottom-rung genome's quality on the top rung's scale (see the module docstring).

    ``rungs[k]`` maps genome hash -> quality measured on rung ``k`` (successful measurements only);
    ``rungs[0]`` holds every candidate. A genome measured on the top rung keeps that measurement.
    """
    if not rungs:
        return {}
    maps = [monotone_map(rungs[k], rungs[k + 1]) for k in range(len(rungs) - 1)]
    comparable = {}
    for genome in rungs[0]:
        highest = max(k for k, rung in enumerate(rungs) if genome in rung)
        quality = np.array([rungs[highest][genome]])
        for carry in maps[highest:]:
            quality = carry(quality)
        comparable[genome] = float(quality[0])
    return comparable


def measured(evaluations: Sequence[Evaluation]) -> dict[str, float]:
    """Genome hash -> quality of the evaluations that measured one (failed and diverged ones did not)."""
    return {e.hash: e.quality for e in evaluations if e.status == Status.OK}


def comparable_evaluations(rungs: Sequence[Sequence[Evaluation]], worst_quality: float) -> list[Evaluation]:
    """The bottom rung's evaluations with their quality on the top rung's scale.

    ``rungs[k]`` are the evaluations of rung ``k``. An evaluation that measured nothing on the bottom rung
    gets ``worst_quality`` (the top rung's); with a single rung the evaluations are returned as they are.
    """
    if len(rungs) < 2:
        return list(rungs[0]) if rungs else []
    comparable = comparable_qualities([measured(rung) for rung in rungs])
    return [
        dataclasses.replace(e, quality=comparable[e.hash] if e.status == Status.OK else worst_quality) for e in rungs[0]
    ]


def rank_agreement(x: Sequence[float], y: Sequence[float]) -> dict[str, float | int | None]:
    """Spearman's and Kendall's rank correlations of two measurements of the same genomes (``None`` where
    fewer than three genomes, or one side constant, leave them undefined)."""
    from scipy.stats import kendalltau, spearmanr

    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if len(x) < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return {"n": len(x), "spearman": None, "kendall": None}
    return {"n": len(x), "spearman": float(spearmanr(x, y).statistic), "kendall": float(kendalltau(x, y).statistic)}


def rung_correlations(names: Sequence[str], rungs: Sequence[Mapping[str, float]]) -> list[dict]:
    """For each step up the ladder, the rank agreement of its two rungs over the genomes measured on both."""
    steps = []
    for k in range(len(rungs) - 1):
        x, y = pairs(rungs[k], rungs[k + 1])
        steps.append({"low": names[k], "high": names[k + 1], **rank_agreement(x, y)})
    return steps
