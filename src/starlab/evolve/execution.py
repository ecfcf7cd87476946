"""How a run executes, stored with it, so that ``--resume`` continues it the way it was started.

:class:`~starlab.evolve.config.SearchConfig` says what a run *is* (its results depend on it, and it never
changes). These settings say where its evaluations run and what it keeps beside its results: the executor,
its workers and threads, the Ray address and GPUs per task, the device, which trained models it keeps, and
the command line's report cadence and TensorBoard folder. A run started with ``--executor process --workers
2 --keep-weights all`` and resumed with a plain ``--resume`` runs in two worker processes and keeps every
model, as it did before it stopped. A setting given with ``--resume`` replaces the stored one; it is stored
too (the next plain resume keeps it) and the command line names it in its ``note:`` line.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from starlab.errors import Setting, SettingError
from starlab.evolve.executors import EXECUTORS, Executor, make_executor
from starlab.evolve.weights import check_keep_weights
from starlab.model import check_device
from starlab.store import RunStore, StoreError

#: the store's meta key of a run's execution settings
EXECUTION = "execution"


@dataclass(frozen=True)
class Execution:
    """Where a run's evaluations run and what it keeps. ``report_every`` ``None``: the command line's default."""

    executor: str = "local"
    workers: int = 1
    threads: int | None = None
    ray_address: str | None = None
    gpus: float = 0
    device: str = "cpu"
    keep_weights: str = "front"
    report_every: float | None = None
    tensorboard: str | None = None

    def __post_init__(self) -> None:
        if self.executor not in EXECUTORS:
            raise SettingError("{0} must be one of {1}, got {2!r}", Setting("executor"), ", ".join(EXECUTORS),
                               self.executor)  # fmt: skip
        check_keep_weights(self.keep_weights)
        check_device(self.device)

    def make_executor(self) -> Executor:
        return make_executor(self.executor, self.workers, self.threads, self.ray_address, self.gpus)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: Any, where: str | Path) -> Execution:
        """The stored settings (:meth:`resumed` without changes)."""
        return cls.resumed(data, where)[0]

    @classmethod
    def resumed(cls, data: Any, where: str | Path, **given: Any) -> tuple[Execution, dict[str, tuple[Any, Any]]]:
        """The stored settings ``data`` with the ``given`` ones (``None``: not given) in their place, and those
        replaced: name -> (given, stored). A run stored before these settings were kept has the defaults it ran
        with (local, cpu, the front's weights). The settings of the stored executor (workers, Ray address, GPUs)
        fall back to their defaults when another executor is given without them: two process workers do not
        follow a run into the local executor, nor a Ray cluster's address into the process executor."""
        stored = {**asdict(cls()), **_checked(data, where)}
        given = {name: value for name, value in given.items() if value is not None}
        changed = {name: (value, stored[name]) for name, value in given.items() if value != stored[name]}
        if "executor" in changed:  # the stored executor's own settings do not follow the run to another
            given = {**{name: asdict(cls())[name] for name in ("workers", "ray_address", "gpus")}, **given}
        try:
            return cls(**{**stored, **given}), changed
        except ValueError as error:
            if changed or data is None:
                raise
            template, values = (error.template, error.values) if isinstance(error, SettingError) else ("{0}", (error,))
            raise SettingError(f"the run in {{{len(values)}}} cannot be resumed as it was started: {template}; give "
                               "the setting again to resume otherwise", *values, where) from None  # fmt: skip


def _checked(data: Any, where: str | Path) -> dict[str, Any]:
    """Stored execution settings as written, or a one-line ``StoreError`` for a damaged record."""
    if data is None:
        return {}
    kinds = {f.name: f.type for f in fields(Execution)}
    if not isinstance(data, dict) or set(data) - set(kinds):
        raise StoreError("run {0} is corrupt: its stored execution settings are not what starlab wrote", where)
    for name, value in data.items():
        if not _fits(value, kinds[name]):  # type: ignore[arg-type]
            raise StoreError("run {0} is corrupt: its stored execution setting {1} = {2!r} is not {3}", where,
                             name, str(value)[:40], kinds[name])  # fmt: skip
    return data


def _fits(value: Any, kind: str) -> bool:
    """Whether a stored JSON value has the type the field is annotated with (the annotations are text here)."""
    if value is None:
        return "None" in kind
    if isinstance(value, bool):
        return False
    if isinstance(value, str):
        return kind.startswith("str")
    if isinstance(value, int):
        return kind.startswith(("int", "float"))
    return isinstance(value, float) and kind.startswith("float") and math.isfinite(value)


def resumed_execution(directory: str | Path, **given: Any) -> tuple[Execution, dict[str, tuple[Any, Any]]]:
    """The execution settings stored with the run in ``directory``, ``given`` ones in their place
    (:meth:`Execution.resumed`)."""
    with RunStore(directory, readonly=True) as store:
        return Execution.resumed(store.get_meta(EXECUTION), directory, **given)
