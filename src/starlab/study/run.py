"""Run a study durably: every genome x protocol key x seed evaluated once, into a run store, resumable.

The study's evaluations go into the same SQLite store a search uses (``starlab.store.RunStore``), committed one
by one as they finish, so a killed study continues where it stopped and nothing is evaluated or stored twice:
the store is the evaluation cache. An evaluation is stored under its protocol *key* in the study (``proxy``,
``target``), not under the protocol's registry name, so that two variants of one protocol (``lm-tiny`` with 3
and with 30 steps) do not share a row. The directory keeps the study (meta ``study``) and refuses another one.

This slice evaluates in this process, one after the other (``starlab.assess.assess``); the parallel executors
live in ``starlab.evolve``, which a study may not import (docs/decisions.md).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from starlab.assess import Evaluation, assess
from starlab.model import check_device, check_model_fits
from starlab.store import RunLock, RunStore
from starlab.study.spec import StudySpec

#: Told about each evaluation as it is stored (or found stored): its number (from 1), the total, the
#: evaluation, and whether it ran now.
StudyProgress = Callable[[int, int, Evaluation, bool], None]
STUDY_KEY = "study"


@dataclass(frozen=True)
class StudySummary:
    """What a run of a study did: the evaluations it holds, how many ran now, and where."""

    directory: Path
    evaluations: int
    new_evaluations: int


def run_study(
    spec: StudySpec, directory: str | Path, progress: StudyProgress | None = None, device: str = "cpu"
) -> StudySummary:
    """Evaluate every job of ``spec`` that ``directory``'s store does not hold yet (all of them in a new one)."""
    check_fits(spec, device)  # before the directory is made: a study that cannot run leaves nothing behind
    store = RunStore(directory, create=True)
    lock = None
    try:
        lock = RunLock(directory)
        _claim(store, spec)
        jobs, new = spec.jobs(), 0
        for number, (genome, key, seed) in enumerate(jobs, start=1):
            evaluation = store.get_evaluation(genome.hash(), key, seed)
            ran = evaluation is None
            if ran:
                measured = assess(genome, spec.protocols[key], spec.width, seed, device)
                evaluation = dataclasses.replace(measured, protocol=key)
                store.add_evaluation(evaluation)
                new += 1
            if progress is not None:
                progress(number, len(jobs), evaluation, ran)
        return StudySummary(Path(directory), len(jobs), new)
    finally:
        store.close()
        if lock is not None:
            lock.release()


def check_fits(spec: StudySpec, device: str) -> None:
    """Refuse, before anything is made or trained, a device that is not one and a genome too large to train
    under some protocol variant here (sized without allocating: what ``assess`` checks for each evaluation)."""
    resolved = check_device(device)
    for genome in spec.genomes:
        for protocol in spec.protocols.values():
            width = spec.width or protocol.width  # type: ignore[attr-defined]
            check_model_fits(genome, width, protocol.vocab_bound, resolved, protocol.config, training=True)


def _claim(store: RunStore, spec: StudySpec) -> None:
    """Store the study in a new directory; in one that holds a study already, refuse another identity (a
    changed analysis list is stored: analyses only read the evaluations)."""
    stored = store.get_meta(STUDY_KEY)
    if stored is None:
        if store.get_meta("config") is not None or store.count_evaluations():
            raise ValueError(f"{store.directory} holds a search run, not a study; give a new directory with --out")
    elif not isinstance(stored, dict) or {k: stored.get(k) for k in spec.identity()} != spec.identity():
        changed = [k for k, v in spec.identity().items() if not isinstance(stored, dict) or stored.get(k) != v]
        raise ValueError(
            f"{store.directory} holds another study (its {', '.join(changed)} differ from this file's); "
            "give a new directory with --out, or the study file it was run with"
        )
    if stored != spec.stored():
        store.set_meta(STUDY_KEY, spec.stored())
