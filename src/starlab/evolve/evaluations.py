"""Evaluations served from the run store first: the one place a search looks them up, submits and commits them.

Both loops (the generational one and the steady state) ask this service. An evaluation the store holds is
served from it; any other is submitted to the executor and committed the moment it is handed back: its trained
model kept (:mod:`starlab.evolve.weights`), its checkpoints deleted. An exception in the worker is a 'failed'
evaluation with the worst quality, except a file error, which is the run's fault
(:class:`~starlab.evolve.outcome.StorageFault`). What had finished when an interrupt or such an error stopped a
loop is committed by :func:`salvage` before the error goes on, so a resume runs none of it again.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future, as_completed
from contextlib import suppress
from pathlib import Path
from typing import Protocol as TypingProtocol

from starlab.assess import Evaluation, failed_evaluation
from starlab.evolve.config import SearchConfig
from starlab.evolve.execution import Execution
from starlab.evolve.executors import EvalJob, Executor
from starlab.evolve.outcome import StorageFault
from starlab.evolve.weights import evaluation_name, keep
from starlab.genome import Genome
from starlab.status import Status
from starlab.store import RunStore

#: the run directory's folder for the checkpoints of evaluations in progress (one folder per evaluation)
CHECKPOINTS = "checkpoints"


class Reporter(TypingProtocol):
    """Receives progress events (the CLI shows them with rich; tests pass nothing)."""

    def start(self, config: SearchConfig, total: int, done: int) -> None: ...

    def evaluated(self, evaluation: Evaluation, replayed: bool) -> None: ...

    def generation(self, generation: int, front: list[dict], hypervolume: float) -> None: ...


class EvaluationCache(TypingProtocol):
    """Where finished evaluations are kept, each once, by (genome hash, protocol, seed): the run store."""

    def get_evaluation(self, genome_hash: str, protocol: str, seed: int) -> Evaluation | None: ...

    def add_evaluation(self, evaluation: Evaluation) -> bool: ...


class Evaluations:
    """Store-first evaluation for one run: ``store`` (the cache and the run directory), ``executor``, the run's
    ``config`` and model ``width``, and its ``execution`` (the device it trains on, the weights it keeps)."""

    def __init__(
        self,
        store: RunStore,
        executor: Executor,
        config: SearchConfig,
        width: int,
        execution: Execution,
        reporter: Reporter | None = None,
    ) -> None:
        self.store, self.executor, self.config, self.width = store, executor, config, width
        self.device, self.keep_weights, self.reporter = execution.device, execution.keep_weights, reporter
        self.rungs = {protocol.name: protocol for protocol in config.rung_protocols()}
        self.new = 0  # evaluations run (and committed) by this process

    def stored(self, genome: Genome, protocol: str) -> Evaluation | None:
        """The store's evaluation of ``genome`` under ``protocol`` (told to the reporter as replayed)."""
        evaluation = self.store.get_evaluation(genome.hash(), protocol, self.config.seed)
        if evaluation is not None and self.reporter:
            self.reporter.evaluated(evaluation, replayed=True)
        return evaluation

    def submit(self, genome: Genome, protocol: str) -> Future:
        settings = self.config.protocol_settings if protocol == self.config.protocol else {}
        job = EvalJob(genome.canonical().text(), protocol, self.config.seed, self.width, self.device,
                      self.config.data, settings, str(self.checkpoints(genome, protocol)))  # fmt: skip
        return self.executor.submit(job)

    def checkpoints(self, genome: Genome, protocol: str) -> Path:
        """Where an evaluation checkpoints: named by what it is, so a retry of it (a Ray retry, a crashed
        worker's, or ``--resume`` after a crash) finds its checkpoints and continues from the newest."""
        name = evaluation_name(protocol, genome.hash(), self.config.seed)
        return (self.store.directory / CHECKPOINTS / name).resolve()

    def commit(self, genome: Genome, protocol: str, future: Future) -> Evaluation:
        """Keep a finished future's trained model, store its evaluation, then delete its checkpoints: they are
        needed again only if it failed (``--retry-failed`` continues them).

        A file error (a full disk, a run directory that cannot be written) stops the run with nothing stored
        for the evaluation, so that a resume runs it again: it is the run's fault, never the genome's."""
        evaluation = self._finished(genome, protocol, future)
        checkpoints = self.checkpoints(genome, protocol)
        if evaluation.status == Status.OK:
            try:
                keep(self.store.directory, checkpoints, self.keep_weights)
            except OSError as error:
                raise StorageFault.of(error, evaluation.genome, self.store.directory) from None
        self.store.add_evaluation(evaluation)
        self.new += 1
        if evaluation.status != Status.FAILED:
            shutil.rmtree(checkpoints, ignore_errors=True)
        if self.reporter:
            self.reporter.evaluated(evaluation, replayed=False)
        return evaluation

    def _finished(self, genome: Genome, protocol: str, future: Future) -> Evaluation:
        """A finished future's evaluation; an exception becomes a 'failed' one with the worst quality, except a
        file error, which stops the run."""
        error = future.exception()
        if error is None:
            return Evaluation.from_dict(future.result())
        if isinstance(error, OSError):
            raise StorageFault.of(error, genome.canonical().text(), self.store.directory)
        return failed_evaluation(genome, self.rungs[protocol], self.config.seed, self.width, error)

    def evaluate(self, genomes: Sequence[Genome], protocol: str) -> list[Evaluation]:
        """Evaluations for ``genomes`` under ``protocol``, in their order: from the store, or run (in parallel)
        and committed as each finishes; a genome twice in one batch is run once."""
        results: list[Evaluation | None] = [None] * len(genomes)
        pending: dict[Future, list[int]] = {}
        submitted: dict[str, Future] = {}

        def store(future: Future) -> None:
            indices = pending.pop(future)
            evaluation = self.commit(genomes[indices[0]], protocol, future)
            for index in indices:
                results[index] = evaluation

        for index, genome in enumerate(genomes):
            results[index] = self.stored(genome, protocol)
            if results[index] is not None:
                continue
            if genome.hash() in submitted:  # still pending: one that finished inside submit is in the store
                pending[submitted[genome.hash()]].append(index)
                continue
            future = self.submit(genome, protocol)
            submitted[genome.hash()], pending[future] = future, [index]
            if future.done():  # the local executor runs the job inside submit: store it before the next one
                store(future)
        try:
            for future in as_completed(list(pending)):
                store(future)
        except (KeyboardInterrupt, StorageFault):
            salvage(list(pending), store)
            raise
        return results  # type: ignore[return-value]


def salvage(futures: Iterable[Future], commit: Callable[[Future], object]) -> None:
    """Commit each of ``futures`` that finished with a result (when a loop is stopped by Ctrl-C or a file
    error): resuming must not run it again. If the store itself is what failed, the first error is the news."""
    with suppress(ValueError):
        for future in futures:
            if future.done() and not future.cancelled() and future.exception() is None:
                commit(future)
