"""Shared helpers for the benchmark scripts: timing, tables, JSON results.

Benchmarks are scripts, not tests: they print a table and write ``bench/results/<name>.json``. Compare
ratios measured side by side in one run; absolute times on shared machines are noisy.
"""

from __future__ import annotations

import json
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch
from rich.console import Console
from rich.table import Table

RESULTS = Path(__file__).parent / "results"


def run_to_end(directory: Path, executor, config) -> None:
    """Run the search ``config`` in ``directory``, resume it if it was interrupted, or leave it if finished."""
    from starlab.evolve import Search
    from starlab.store import RunStore

    resume = (directory / "run.sqlite").exists()
    if resume:
        with RunStore(directory) as store:
            if store.get_meta("finished"):
                return
    search = Search(directory, executor, None if resume else config, resume=resume)
    try:
        search.run()
    finally:
        search.close()


def timed(fn: Callable[[], object], repeats: int = 3, warmup: int = 1, budget_s: float = 60.0) -> float:
    """Median seconds of ``fn()`` over ``repeats`` runs after ``warmup`` runs; fewer repeats past ``budget_s``."""
    start = time.perf_counter()
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
        if time.perf_counter() - start > budget_s:
            break
    return statistics.median(times)


def interleaved_medians(steps: list[Callable[[], None]], repeats: int = 3, budget_s: float = 60.0) -> list[float]:
    """Median seconds of each step, timed in alternation (a, b, a, b, ...) so drift in machine load is shared."""
    for step in steps:
        step()  # warm-up
    times: list[list[float]] = [[] for _ in steps]
    start = time.perf_counter()
    for _ in range(repeats):
        for step, record in zip(steps, times, strict=True):
            t0 = time.perf_counter()
            step()
            record.append(time.perf_counter() - t0)
        if time.perf_counter() - start > budget_s:
            break
    return [statistics.median(record) for record in times]


def machine() -> dict:
    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "processor": platform.processor() or platform.machine(),
    }


def write_json(name: str, payload: dict) -> Path:
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps({"machine": machine(), **payload}, indent=2))
    return path


def print_table(title: str, header: list[str], rows: list[list[object]]) -> None:
    table = Table(title=title)
    for column in header:
        table.add_column(column, justify="right", no_wrap=True)
    for row in rows:
        table.add_row(*(f"{v:.4g}" if isinstance(v, float) else str(v) for v in row))
    Console(width=200).print(table)


def markdown_table(header: list[str], rows: list[list[object]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(f"{v:.4g}" if isinstance(v, float) else str(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)
