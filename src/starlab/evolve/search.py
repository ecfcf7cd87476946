"""One STAR run in a directory: its store, lock and settings, and the loop that runs it.

:class:`Search` is where a run's parts are put together: the run store (created, or read back and checked when
resuming), the lock that keeps a second writer out, the search config and the execution settings stored with
it, the genome problem and objectives, the archive of what was told, the store-first
:class:`~starlab.evolve.evaluations.Evaluations` and the :class:`~starlab.evolve.recorder.GenerationRecorder`.
Its loop is one of two strategies given both explicitly: :class:`~starlab.evolve.generational.Generational`
(STAR's generational loop, the default) or :class:`~starlab.evolve.steady.SteadyState` (``--async``). A run
whose evaluations all diverged or failed ends in :class:`~starlab.evolve.outcome.SearchFailed`; otherwise its
summary is read from the store (:func:`~starlab.evolve.outcome.summarize`).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path

from starlab.assess import Objectives
from starlab.errors import Setting, SettingError
from starlab.evolve.archive import Archive
from starlab.evolve.config import SearchConfig
from starlab.evolve.evaluations import CHECKPOINTS, Evaluations, Reporter
from starlab.evolve.execution import EXECUTION, Execution
from starlab.evolve.executors import Executor
from starlab.evolve.generational import Generational
from starlab.evolve.outcome import SearchSummary, check_any_succeeded, summarize
from starlab.evolve.parts import LoopParts
from starlab.evolve.problem import GenomeProblem
from starlab.evolve.recorder import GenerationRecorder
from starlab.evolve.steady import SteadyState
from starlab.store import Generation, RunLock, RunStore, StoreError, check_stored_config

__all__ = ["CHECKPOINTS", "Reporter", "Search", "SearchSummary"]


class Search:
    """One run in ``directory``: create it from ``config``, or (``resume``) continue the run stored there.

    ``on_generation`` is called with each generation record once it is stored, by both loops (the generational
    one, replayed generations included, and the steady state): the command line hangs the live report and
    TensorBoard on it, since evolution does not import reporting."""

    def __init__(
        self,
        directory: str | Path,
        executor: Executor,
        config: SearchConfig | None = None,
        resume: bool = False,
        reporter: Reporter | None = None,
        retry_failed: bool = False,
        on_generation: Callable[[Generation], None] | None = None,
        execution: Execution | None = None,
    ) -> None:
        if retry_failed and not resume:
            raise SettingError("{0} goes with {1} (it runs a stored run's failed evaluations again)",
                               Setting("retry_failed"), Setting("resume"))  # fmt: skip
        if config is not None and not resume:
            config.check()  # before a run directory exists
        with ExitStack() as undo:  # a refused run leaves the store closed and the lock free
            self.store = RunStore(directory, create=not resume)
            undo.callback(self.store.close)
            self.lock = RunLock(directory)
            undo.callback(self.lock.release)
            config = self._run_config(directory, config, resume)
            self.execution = self._run_execution(directory, execution)
            undo.pop_all()
        self.retried = self.store.remove_failed() if retry_failed else 0
        self.config, self.executor, self.reporter = config, executor, reporter
        protocol, top = config.search_protocol(), config.rung_protocols()[-1]
        self.width = config.width or protocol.width
        self.objectives = Objectives(config.objectives, protocol, config.depth, self.width, top.worst_quality)
        self.problem = GenomeProblem(config.depth, self.objectives, min_depth=config.min_depth,
                                     backbone_genes=config.backbone_genes,
                                     operator_genes=config.operator_genes)  # fmt: skip
        self.archive = Archive(config.rungs(), top.worst_quality)
        self.evaluations = Evaluations(self.store, executor, config, self.width, self.execution, reporter)
        self.recorder = GenerationRecorder(self.store, self.objectives, self.problem, self.execution.keep_weights,
                                           reporter, on_generation)  # fmt: skip
        self.parts = LoopParts(config, self.problem, self.objectives, self.archive, self.evaluations, self.recorder)

    @property
    def new_evaluations(self) -> int:
        """Evaluations this process ran and committed (on every rung)."""
        return self.evaluations.new

    def _run_config(self, directory: str | Path, config: SearchConfig | None, resume: bool) -> SearchConfig:
        """The stored config when resuming; otherwise ``config``, stored (a directory holding a run is refused)."""
        stored = self.store.get_meta("config")
        if resume:
            if stored is None:
                raise StoreError("run store in {0} has no search config; it is not a starlab search", directory)
            # keys and types before anything runs (later-added keys default): 'quality' for a list was refused
            # only by the report, after the resumed run had evaluated and stored new genomes
            config = SearchConfig.from_json(check_stored_config(stored, directory)).check()
            self.store.check()  # every stored record readable before the replay writes anything
            return config
        if stored is not None:
            raise StoreError(
                "{0} already holds a run; use {1:=}{0} or another {2}", directory, Setting("resume"), Setting("out")
            )
        self.store.set_meta("config", config.to_json())
        return config

    def _run_execution(self, directory: str | Path, execution: Execution | None) -> Execution:
        """``execution``, stored with the run (a resume without it reads the stored one: nothing the run was
        started with is dropped, such as the weights it keeps or where it runs)."""
        if execution is None:
            execution = Execution.from_json(self.store.get_meta(EXECUTION), directory)
        self.store.set_meta(EXECUTION, execution.to_json())
        return execution

    def run(self) -> SearchSummary:
        """Run the search to its end with its loop; :class:`~starlab.evolve.outcome.SearchFailed` if nothing
        succeeded."""
        start = time.perf_counter()
        loop = SteadyState if self.config.asynchronous else Generational  # --async: a candidate per free worker
        if self.reporter:
            self.reporter.start(self.config, self.config.total_evaluations(), self.store.count_evaluations())
        loop(self.parts).run()
        self.store.set_meta("finished", True)
        check_any_succeeded(self.store.evaluations(self.config.protocol), "in the whole run")
        return summarize(self.store, self.config, self.evaluations.new, time.perf_counter() - start)

    def close(self) -> None:
        self.store.close()
        self.lock.release()
