"""Terminal output: tables and live progress (rich), kept apart from the code that computes things."""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

if TYPE_CHECKING:  # the console draws evaluations; it need not import the assessment machinery to do so
    from starlab.assess import Evaluation


def console() -> Console:
    """A console for stdout; wide when output is not a terminal, so tables are not truncated."""
    plain = Console()
    return plain if plain.is_terminal else Console(width=160)


def print_table(title: str, rows: list[dict], columns: Sequence[str], wrap: Sequence[str] = ()) -> None:
    """A rich table; cells never wrap except in the ``wrap`` columns (long prose)."""
    table = Table(title=title)
    for column in columns:
        justify = "right" if isinstance(rows[0][column], (int, float)) else "left"
        table.add_column(column, justify=justify, no_wrap=column not in wrap)
    for row in rows:
        table.add_row(*(_cell(row[c]) for c in columns))
    console().print(table)


def _cell(value: object) -> str:
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


@contextmanager
def status(message: str):
    """A spinner on stderr while a long step runs; yields a function that adds a detail to the message."""
    with Console(stderr=True).status(message) as spinner:
        yield lambda detail: spinner.update(f"{message}: {detail}")


def progress_bar(detail: str) -> Progress:
    """A bar on stderr: description, bar, done/total, ``detail`` (a template over the task's fields), times."""
    return Progress(
        TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn(detail),
        TimeElapsedColumn(), TimeRemainingColumn(), console=Console(stderr=True),
    )  # fmt: skip


class SearchProgress:
    """Live view of a search: generation, evaluations done/total with ETA, size of the current front."""

    def __init__(self) -> None:
        self.progress = progress_bar("{task.fields[note]}")
        self.task = None

    def start(self, config, total: int, done: int) -> None:
        self.progress.start()
        note = f"{done} stored" if done else ""
        self.task = self.progress.add_task("generation 0", total=total, note=note)

    def evaluated(self, evaluation: Evaluation, replayed: bool) -> None:
        self.progress.advance(self.task)

    def generation(self, generation: int, front: list[dict], hypervolume: float) -> None:
        best = min((m.get("quality", float("inf")) for m in front), default=float("nan"))
        note = f"front {len(front)}, best quality {best:.3f}, HV {hypervolume:.3f}"
        self.progress.update(self.task, description=f"generation {generation + 1}", note=note)

    def stop(self) -> None:
        if self.task is not None:  # never started (the run failed to open): print nothing
            self.progress.stop()
