"""Search presets: named search settings, ``starlab evolve --preset NAME`` / ``SearchConfig.from_preset``.

``demo`` is what ``make run`` runs: a real search over 4-slot genomes on the lm-demo protocol (150 steps of
language modelling; the proxy the small-scale STAR study found to rank genomes most like a longer LM run, where
the MAD demo protocol ranked them at random), sized to finish in minutes on 2 cores. ``quick`` is the paper's
population and generations on the quick MAD protocol (hours on a laptop). ``paper-125m`` and ``paper-1b`` are
the paper's depth, width, population and per-candidate LM budget (GPUs and a cluster; they need a corpus). Not
to be confused with *genome presets* (``transformer++``..., ``starlab.genome.PRESETS``) or protocol sizes
(``size="cpu"|"paper"`` of the algorithmic protocols).
"""

from __future__ import annotations

BASELINE_SEEDS = ("transformer++", "striped-mamba")

SEARCH_PRESETS: dict[str, dict] = {
    "demo": {"protocol": "lm-demo", "depth": 4, "population": 8, "generations": 2, "seeds": BASELINE_SEEDS},
    "quick": {"protocol": "quick", "depth": 4, "population": 16, "generations": 18, "seeds": BASELINE_SEEDS},
    "paper-125m": {"protocol": "lm-paper", "depth": 24, "width": 768, "population": 16, "generations": 18,
                   "seeds": BASELINE_SEEDS},
    "paper-1b": {"protocol": "lm-paper", "depth": 48, "width": 2048, "population": 16, "generations": 18,
                 "seeds": BASELINE_SEEDS},
}  # fmt: skip


def search_preset(name: str) -> dict:
    if name not in SEARCH_PRESETS:
        raise ValueError(f"unknown search preset {name!r}; presets: {', '.join(SEARCH_PRESETS)}")
    return dict(SEARCH_PRESETS[name])
