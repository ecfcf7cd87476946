"""A search run end to end, the same for the command line and for Python: ``run_search(directory, config)``.

It checks the config, makes the executor from the run's execution settings, creates (or resumes) the
:class:`~starlab.evolve.search.Search`, runs it and closes everything, whatever ends it. What shows the run
(progress bars, a live report, TensorBoard scalars: the command line's, from rooms above this one) hangs on
:class:`Hooks`. Ctrl-C or SIGTERM ends in :class:`SearchInterrupted`, which names the directory to resume.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from starlab.evolve.config import SearchConfig
from starlab.evolve.evaluations import Reporter
from starlab.evolve.execution import Execution, resumed_execution
from starlab.evolve.outcome import SearchSummary
from starlab.evolve.search import Search
from starlab.store import Generation


@dataclass
class Hooks:
    """What a caller hears of a run: ``reporter`` (evaluations and generations as they come), each of
    ``on_generation`` with every generation record once stored, ``on_start`` with the opened search (before it
    runs), ``on_interrupt`` when Ctrl-C or SIGTERM stops it and ``on_error`` with an error that stops it."""

    reporter: Reporter | None = None
    on_generation: Sequence[Callable[[Generation], None]] = ()
    on_start: Callable[[Search], None] | None = None
    on_interrupt: Callable[[], None] | None = None
    on_error: Callable[[Exception], None] | None = None

    def generation(self, record: Generation) -> None:
        for hook in self.on_generation:
            hook(record)


class SearchInterrupted(KeyboardInterrupt):
    """Ctrl-C or SIGTERM stopped a search; ``directory`` holds it, ready to resume."""

    def __init__(self, directory: Path) -> None:
        super().__init__(str(directory))
        self.directory = directory


def run_search(
    directory: str | Path,
    config: SearchConfig | None = None,
    *,
    resume: bool = False,
    execution: Execution | None = None,
    retry_failed: bool = False,
    hooks: Hooks | None = None,
) -> SearchSummary:
    """Run a new search of ``config`` in ``directory`` (or, ``resume``, the one stored there) to its end.

    ``execution`` says where evaluations run and what the run keeps (default: a new run's defaults, or the
    settings a resumed run was started with)."""
    hooks = hooks or Hooks()
    if config is not None and not resume:
        config.check()  # before an executor (a Ray instance, worker processes) is started
    if execution is None:
        execution = resumed_execution(directory)[0] if resume else Execution()
    executor = execution.make_executor()
    try:
        search = Search(directory, executor, config, resume=resume, reporter=hooks.reporter, retry_failed=retry_failed,
                        on_generation=hooks.generation, execution=execution)  # fmt: skip
        try:
            if hooks.on_start:
                hooks.on_start(search)
            return search.run()
        except KeyboardInterrupt:
            if hooks.on_interrupt:
                hooks.on_interrupt()
            raise SearchInterrupted(search.store.directory) from None
        except Exception as error:
            if hooks.on_error:
                hooks.on_error(error)
            raise
        finally:
            search.close()
    finally:
        executor.close()
