"""An analytic stand-in for quality, for testing and benchmarking search without training."""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from starlab.assess.protocol import Outcome, Progress, Protocol, Range, register_protocol
from starlab.genome import Genome
from starlab.liv import get_class
from starlab.train import Checkpointing

#: How much each family's token mixing is worth to the synthetic quality.
SYNTHETIC_VALUE = {"attention": 1.0, "recurrence": 0.75, "convolution": 0.55, "memoryless": 0.25}


def synthetic_quality(genome: Genome) -> float:
    """Rewards token mixers in proportion to their expressiveness (attention > recurrence > convolution >
    memoryless, differential a little more), needs at least one gated MLP, and charges a small price for every
    slot that shares: it conflicts with the size objectives the way real quality does, so the Pareto fronts
    are non-trivial."""
    specs = [get_class(slot.cls) for slot in genome.slots]
    value = sum(SYNTHETIC_VALUE[s.family] + 0.15 * s.differential for s in specs) / len(specs)
    has_mlp = any(s.family == "memoryless" for s in specs)
    sharing = sum(lead is not None and lead != i for i, lead in enumerate(genome.featurizer_leaders()))
    sharing += sum(src is not None and src != i for i, src in enumerate(genome.feature_sources()))
    return math.exp(-1.5 * value) * (0.9 if has_mlp else 1.0) + 0.02 * sharing / len(specs)


@dataclass(frozen=True, kw_only=True, eq=False)
class SyntheticProtocol(Protocol):
    """:func:`synthetic_quality` as a protocol: deterministic, and instantaneous unless given a cost.

    ``scale``, ``offset`` and ``noise`` turn it into a rung of a stand-in ladder: quality
    ``scale * synthetic_quality + offset`` plus Gaussian noise of standard deviation ``noise``, drawn from the
    genome and the seed (so a measurement repeats exactly, and two rungs' noises are independent when their
    ``noise`` differs). ``delay_s`` makes each assessment take that long (a stand-in for training when
    measuring executors or durability), and ``journal`` names a file to which each assessment appends
    ``<time> start|end <hash> <pid>`` lines, so that benchmarks and tests can count the work that was really
    done, in whichever process ran it.
    """

    kind: ClassVar[str] = "synthetic"
    quality_meaning: ClassVar[str] = "analytic stand-in (no training)"
    #: an hour per assessment is longer than any stand-in needs; a larger delay is a typo that would hang a run
    RANGES: ClassVar[dict[str, Range]] = {
        "delay_s": Range(0, 3600), "scale": Range(0, 100, open_low=True), "offset": Range(-100, 100),
        "noise": Range(0, 10),
    }  # fmt: skip
    name: str = "synthetic"
    description: str = "analytic quality, no training (tests and search benchmarks)"
    width: int = 64
    scale: float = 1.0
    offset: float = 0.0
    noise: float = 0.0
    delay_s: float = 0.0
    journal: str | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.journal is not None and not Path(self.journal).parent.is_dir():
            self._refuse("journal", "a file in an existing directory", self.journal)

    def run(
        self, genome: Genome, width: int, seed: int, device: torch.device, progress: Progress | None = None,
        checkpointing: Checkpointing | None = None,
    ) -> Outcome:  # fmt: skip
        self._note("start", genome)
        time.sleep(self.delay_s)
        quality = self.scale * synthetic_quality(genome) + self.offset + self.noise * self._draw(genome, seed)
        self._note("end", genome)
        return Outcome(quality=quality, scores={"synthetic": 1.0 - quality})

    def _draw(self, genome: Genome, seed: int) -> float:
        """A standard normal number fixed by the genome, the seed and this rung's noise level."""
        key = [int(genome.hash()[:15], 16), seed, int(self.noise * 1e6)]
        return float(np.random.default_rng(key).standard_normal())

    def _note(self, event: str, genome: Genome) -> None:
        if self.journal is not None:
            with open(self.journal, "a") as journal:  # one short append per line: whole lines across processes
                journal.write(f"{time.time():.6f} {event} {genome.hash()} {os.getpid()}\n")

    def training(self) -> dict[str, Any]:
        return {"summary": "nothing (a formula of the genome)", "steps": 0}


register_protocol(SyntheticProtocol(cost_s=0.0))
register_protocol(
    SyntheticProtocol(
        name="synthetic-noisy", noise=0.05, cost_s=0.0,
        description="synthetic quality plus seeded noise (a bottom rung: --ladder synthetic-noisy,synthetic)",
    )
)  # fmt: skip
