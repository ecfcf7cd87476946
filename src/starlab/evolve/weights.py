"""The trained weights a search keeps, so that ``starlab export`` gives a found architecture trained.

A language-model evaluation writes its trained model (``starlab.model.serialization`` format, with its BPE) into
its checkpoint folder's ``final/``; when the evaluation is stored, the search moves it to
``RUN/weights/PROTOCOL-HASH-seedS/``. With the default policy ``front``, weights of genomes that are no longer
on the run's Pareto front (``RunData.front``, what ``export --rank`` counts) are deleted whenever a generation
is recorded; ``all`` keeps every evaluation's, ``none`` keeps none. Protocols that train many small models
(MAD, algorithmic) keep nothing.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterable, Sequence
from pathlib import Path

from starlab.errors import Setting, SettingError
from starlab.train.checkpoint import FINAL

WEIGHTS = "weights"
KEEP_WEIGHTS = ("front", "all", "none")


def check_keep_weights(policy: str) -> str:
    if policy not in KEEP_WEIGHTS:
        choices = ", ".join(KEEP_WEIGHTS)
        raise SettingError("{0} must be one of {1}, got {2!r}", Setting("keep_weights"), choices, policy)
    return policy


def evaluation_name(protocol: str, genome_hash: str, seed: int) -> str:
    """The name of an evaluation's folders (checkpoints and kept weights): what it is, so retries find them."""
    return f"{protocol}-{genome_hash}-seed{seed}"


def keep(run: Path, checkpoints: Path, policy: str) -> None:
    """Move a stored evaluation's final model out of its checkpoint folder (which is deleted next)."""
    final = checkpoints / FINAL
    if policy != "none" and final.is_dir():
        target = run / WEIGHTS / checkpoints.name
        shutil.rmtree(target, ignore_errors=True)  # a retried evaluation's earlier copy
        target.parent.mkdir(parents=True, exist_ok=True)
        final.rename(target)


def has_weights(run: Path) -> bool:
    return (run / WEIGHTS).is_dir()


def prune(run: Path, front_hashes: Iterable[str]) -> None:
    """Delete the kept weights of genomes not among ``front_hashes``."""
    keep_hashes = set(front_hashes)
    for folder in (run / WEIGHTS).glob("*-seed*"):
        if folder.name.rsplit("-", 2)[1] not in keep_hashes:
            shutil.rmtree(folder, ignore_errors=True)


def kept_weights(run: Path, genome_hash: str, protocols: Sequence[str], seed: int) -> Path | None:
    """The kept model of ``genome_hash``: from the highest rung of ``protocols`` (cheapest first) that has one."""
    for protocol in reversed(protocols):
        folder = run / WEIGHTS / evaluation_name(protocol, genome_hash, seed)
        if folder.is_dir():
            return folder
    return None
