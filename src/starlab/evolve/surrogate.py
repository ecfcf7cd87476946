"""Surrogate pre-screening: breed many offspring, assess only those a predictor of quality ranks best.

The predictor is scikit-learn's random forest (robust with the few dozen evaluations a search has early
on, no scaling to tune, deterministic under its ``random_state``), refitted every generation on the run's
own evaluations told so far. Features are what decides a genome's quality as far as the genome shows it:
the class in every slot (one-hot), how many slots each LIV family and the differential variant take, which
slots share featurizers or features, and the exact parameter count and cache size (log scale).

Screening keeps ``n`` of the bred offspring: ``1 - exploration`` of them by NSGA-II's rank and crowding on
(predicted quality, exact sizes) — the search's own objectives with the prediction in place of quality —
and the rest uniformly at random from the remainder, so the predictor keeps seeing genomes it does not
favour (it is only ever as good as the data it was fitted on). Every draw comes from a generator seeded by
the run seed and the generation, so a resumed run screens exactly as the uninterrupted one did.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from pymoo.core.population import Population
from pymoo.core.problem import Problem
from pymoo.operators.survival.rank_and_crowding import RankAndCrowding

from starlab.assess import Evaluation, Sizes
from starlab.genome import Genome
from starlab.liv import class_ids, get_class

FAMILIES = ("attention", "recurrence", "convolution", "memoryless")
#: Fewer evaluations than this: nothing to fit, the offspring are taken as bred.
MIN_TRAINING = 6


def genome_features(genome: Genome, sizes: Sizes) -> np.ndarray:
    """The genome as numbers: per-slot class one-hot, family and differential counts, per-slot sharing
    flags and their counts, log parameters and log cache. A class outside the pool (an operator genome)
    counts in the one-hot as its featurizer class, the first operator gene: its sizes tell the rest."""
    ids = class_ids()
    specs = [get_class(slot.cls) for slot in genome.slots]
    one_hot = np.zeros((len(genome), len(ids)))
    one_hot[np.arange(len(genome)), [ids.index(spec.operator_genome[0]) for spec in specs]] = 1
    families = [sum(s.family == family for s in specs) for family in FAMILIES]
    shares_featurizer = [lead is not None and lead != i for i, lead in enumerate(genome.featurizer_leaders())]
    shares_features = [src is not None and src != i for i, src in enumerate(genome.feature_sources())]
    return np.concatenate([
        one_hot.ravel(), families, [sum(s.differential for s in specs)],
        shares_featurizer, shares_features, [sum(shares_featurizer), sum(shares_features)],
        [np.log1p(sizes.params), np.log1p(sizes.cache_bytes)],
    ]).astype(float)  # fmt: skip


class Surrogate:
    """A quality predictor fitted on evaluations (their qualities as the search compares them)."""

    def __init__(self, seed: int) -> None:
        from sklearn.ensemble import RandomForestRegressor  # here: scikit-learn costs every process a second

        self.model = RandomForestRegressor(n_estimators=200, min_samples_leaf=1, random_state=seed, n_jobs=1)

    def fit(self, features: np.ndarray, evaluations: Sequence[Evaluation]) -> Surrogate:
        self.model.fit(features, [e.quality for e in evaluations])
        return self

    def predict(self, features: np.ndarray) -> np.ndarray:
        return self.model.predict(features)


def screen(predicted: np.ndarray, keep: int, exploration: float, rng: np.random.Generator) -> list[int]:
    """Indices of ``keep`` rows of ``predicted`` (objective vectors with the predicted quality): the best by
    rank and crowding, then ``round(exploration * keep)`` of the rest at random."""
    if len(predicted) <= keep:
        return list(range(len(predicted)))
    explore = min(round(exploration * keep), keep)
    candidates = Population.new("F", predicted, "index", np.arange(len(predicted)))
    problem = Problem(n_var=1, n_obj=predicted.shape[1])
    best = RankAndCrowding().do(problem, candidates, n_survive=keep - explore, random_state=rng)
    chosen = [int(i) for i in best.get("index")] if keep - explore else []
    rest = [i for i in range(len(predicted)) if i not in set(chosen)]
    return chosen + [int(i) for i in rng.choice(rest, size=explore, replace=False)]
