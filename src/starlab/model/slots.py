"""The LIV slots of a backbone, wired for the genome's sharing (without the embeddings around them).

Kept apart from :mod:`starlab.model.backbone` so that :mod:`starlab.model.memory` can build a genome's slots on
the meta device (exact sizes, no storage) while the backbone itself calls the memory check.
"""

from __future__ import annotations

from typing import Any

from starlab.genome import Genome
from starlab.liv import LIV, LIVConfig, build_featurizer, build_liv


def build_slots(genome: Genome, width: int, config: LIVConfig) -> list[LIV]:
    """One LIV per slot, in slot order, wired for the genome's featurizer and feature-group sharing.

    A shared featurizer is created just before its group's first slot, so parameters are drawn from the
    random stream in the same order as without sharing; relabelled genomes therefore build identical models.
    """
    leaders, sources = genome.featurizer_leaders(), genome.feature_sources()
    reuses = [source is not None and source != index for index, source in enumerate(sources)]
    featurizers: dict[int, Any] = {}
    livs = []
    for index, slot in enumerate(genome.slots):
        leader = leaders[index]
        if leader == index:
            members = [i for i, lead in enumerate(leaders) if lead == leader]
            cached = not all(reuses[i] for i in members)  # build the cached side if any member computes it
            featurizers[leader] = build_featurizer(slot.cls, width, config, cached=cached)
        featurizer = featurizers.get(leader) if leader is not None else None
        livs.append(build_liv(slot.cls, width, config, featurizer=featurizer, reuse_features=reuses[index]))
    return livs
