"""A study's tables, computed from its stored evaluations alone (the store opened read-only).

Per genome and protocol key: the mean and sample standard deviation (ddof=1) of quality over the seeds measured
``ok``, and how many. Per ``rank_correlation`` analysis: Spearman's rho and Kendall's tau of the proxy's mean
quality against the target's over the genomes measured on both, with 90% bootstrap intervals over genomes
(``starlab.study.analysis``; the bootstrap's generator is seeded, so a report repeats exactly).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from starlab.assess import Evaluation
from starlab.status import Status
from starlab.store import RunStore
from starlab.study.analysis import bootstrap_interval, kendall, spearman
from starlab.study.run import STUDY_KEY

#: the bootstrap's seed: the same stored numbers give the same intervals
BOOTSTRAP_SEED = 0


def study_tables(directory: str | Path) -> dict[str, Any]:
    """``{"study": name, "quality": [row per genome x key], "rank_correlation": [row per analysis]}``."""
    with RunStore(directory, readonly=True) as store:
        study = store.get_meta(STUDY_KEY)
        if not isinstance(study, dict) or not isinstance(study.get("protocols"), dict):
            raise ValueError(f"{directory} holds no study (made by `starlab study run FILE --out DIR`)")
        evaluations = store.evaluations()
    means = _means(evaluations)
    quality = [
        {"genome": genome, "protocol": key, **means.get((genome, key), _EMPTY)}
        for genome in study.get("genomes", [])
        for key in study["protocols"]
    ]
    analyses = [a for a in study.get("analyses", []) if a.get("kind") == "rank_correlation"]
    correlations = [_rank_correlation(a, means) for a in analyses]
    return {"study": study.get("name"), "quality": quality, "rank_correlation": correlations}


_EMPTY = {"mean": None, "std": None, "seeds": 0}


def _means(evaluations: list[Evaluation]) -> dict[tuple[str, str], dict[str, Any]]:
    """Mean, sample std (None below 2 seeds) and seed count of each (genome, key)'s ``ok`` qualities."""
    groups: dict[tuple[str, str], list[float]] = {}
    for e in evaluations:
        if e.status is Status.OK:
            groups.setdefault((e.genome, e.protocol), []).append(e.quality)
    return {
        key: {"mean": float(np.mean(q)), "std": float(np.std(q, ddof=1)) if len(q) > 1 else None, "seeds": len(q)}
        for key, q in groups.items()
    }


def _rank_correlation(analysis: dict[str, str], means: dict[tuple[str, str], dict[str, Any]]) -> dict[str, Any]:
    proxy, target = analysis["proxy"], analysis["target"]
    genomes = sorted({g for g, key in means if key == proxy} & {g for g, key in means if key == target})
    x = np.array([means[(g, proxy)]["mean"] for g in genomes], dtype=float)
    y = np.array([means[(g, target)]["mean"] for g in genomes], dtype=float)
    row: dict[str, Any] = {"proxy": proxy, "target": target, "genomes": len(genomes)}
    if len(genomes) < 3:  # two points always rank alike or opposite: no correlation to speak of
        return {**row, "spearman": None, "spearman_90": None, "kendall": None, "kendall_90": None}
    rng = np.random.default_rng(BOOTSTRAP_SEED)
    return {
        **row,
        "spearman": float(spearman(x, y)),
        "spearman_90": bootstrap_interval(x, y, spearman, rng),
        "kendall": float(kendall(x, y)),
        "kendall_90": bootstrap_interval(x, y, kendall, rng),
    }
