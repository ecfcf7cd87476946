"""A finished (or running) search as data: its config, evaluations and generations, read from its store.

The report draws it and ``export`` picks genomes from it; neither needs the search machinery.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from starlab.assess.record import Evaluation
from starlab.genome import PRESETS, preset
from starlab.store.sqlite import Generation, RunStore, StoreError


@dataclass
class RunData:
    """Everything a report shows, read from the run store."""

    config: dict[str, Any]
    evaluations: list[Evaluation]  # the search protocol's evaluations, in the order they were stored
    generations: list[Generation]

    @property
    def front(self) -> list[dict[str, Any]]:
        """The final generation's Pareto front (as stored with it), best quality first."""
        return sorted(self.generations[-1].front_members, key=lambda m: m.get("quality", 0.0))

    def baselines(self) -> dict[str, Evaluation]:
        """Presets of the run's depth that were evaluated (as seeds or otherwise), by name."""
        depth = self.config["depth"]
        if depth % 2:
            return {}
        by_hash = {e.hash: e for e in self.evaluations}
        hashes = {name: preset(name, depth).hash() for name in PRESETS}
        return {name: by_hash[h] for name, h in hashes.items() if h in by_hash}

    def evaluation_of(self, genome_hash: str) -> Evaluation | None:
        return next((e for e in self.evaluations if e.hash == genome_hash), None)


def load_run(directory: str | Path) -> RunData:
    """Read the run in ``directory``; a one-line error if it is not a search or has no generation yet."""
    with RunStore(directory) as store:
        config = store.get_meta("config")
        if config is None:
            raise StoreError("{0} holds no search config; is it a starlab search directory?", directory)
        evaluations = store.evaluations(config["protocol"])
        generations = store.generations()
    if not generations:
        raise StoreError("{0}: the search has not finished a generation yet; nothing to report", directory)
    return RunData(config, evaluations, generations)
