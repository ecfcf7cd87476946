"""The search settings, declared once: each one's types (as given, and as a run stores it), its allowed range,
and the value runs stored before it existed read as.

``SearchConfig`` (``starlab.evolve.config``) checks what it is given against this table; a run's store keeps
the config as JSON, and readers (``load_run``: the report and export) and a resumed search check it against the
same table. The table lives in the store's room because readers check a stored config without the search
machinery; the command line reads the flags it was given by these names. A check here touches nothing outside
the values: whether a seed genome parses, a corpus is ready or the largest model fits this machine is
``SearchConfig.check()``'s business.

None of these may change when a run is resumed: they define what it finds (a flag given with ``--resume`` that
differs is named in a note and ignored). How a run executes may change (``starlab.evolve.execution``).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from starlab.assess.assessment import MAX_SEED
from starlab.genome import MAX_SLOTS

#: The largest population: pymoo's non-dominated sorting is quadratic in it, and a generation of more
#: genomes than this is more evaluations than any budget here affords (a typo, not a search).
MAX_POPULATION = 4096
#: The largest budget: a million evaluations is beyond any search here (a typo, not a budget).
MAX_BUDGET = 10**6

NULL = type(None)
#: a setting that was not stored: runs from before it existed read as having ``added``
NOT_ADDED = object()


@dataclass(frozen=True)
class Spec:
    """One search setting: the JSON ``stored`` types, the types it may be ``given`` as (text forms that the
    config normalises, such as ``"2:4"`` for a depth range), the type of a list's ``items``, and its range:
    ``ok(value)`` on the normalised value, ``allowed`` in words."""

    stored: tuple[type, ...]
    given: tuple[type, ...] = ()
    items: type | tuple[type, ...] | None = None
    ok: Callable[[Any], bool] | None = None
    allowed: str = ""
    added: Any = NOT_ADDED

    @property
    def accepted(self) -> tuple[type, ...]:
        return self.given or self.stored


def _between(low: float, high: float, optional: bool = False) -> Callable[[Any], bool]:
    return lambda value: (optional and value is None) or low <= value <= high


TEXTS = (str, list, tuple)

SEARCH_SETTINGS: dict[str, Spec] = {
    "protocol": Spec((str,)),
    "protocol_settings": Spec((dict,)),
    "depth": Spec((int,), (int, str), ok=_between(1, MAX_SLOTS), allowed=f"an integer in 1..{MAX_SLOTS}"),
    "min_depth": Spec((int, NULL), added=None, allowed="null or in 1..depth"),  # checked against depth
    "backbone_genes": Spec((bool,), added=False),
    "operator_genes": Spec((bool,), added=False),
    "width": Spec((int, NULL)),
    "objectives": Spec((list,), TEXTS, items=str),
    "algorithm": Spec((str,)),
    "population": Spec((int,), ok=_between(4, MAX_POPULATION), allowed=f"an integer in 4..{MAX_POPULATION}"),
    "generations": Spec((int, NULL), ok=lambda v: v is None or v >= 0, allowed="an integer >= 0 or null"),
    "budget": Spec((int, NULL), ok=_between(1, MAX_BUDGET, optional=True), allowed=f"an integer in 1..{MAX_BUDGET}"),
    "seed": Spec((int,), ok=_between(0, MAX_SEED), allowed="a non-negative integer (at most 2**63-1)"),
    "seeds": Spec((list,), TEXTS, items=str),
    "mutation_prob": Spec((int, float), ok=_between(0, 1), allowed="in [0, 1]"),
    "crossover_at_slots": Spec((bool,)),
    "elites": Spec((int,), allowed="in 0..population-1"),  # checked against population
    "weights": Spec((list,), (list, tuple), items=(int, float)),
    "ladder": Spec((list,), TEXTS, items=str),
    "eta": Spec((int,), ok=_between(2, 1000), allowed="an integer in 2..1000"),
    "surrogate": Spec((bool,)),
    "breed_factor": Spec((int,), ok=_between(1, 64), allowed="an integer in 1..64"),
    "exploration": Spec((int, float), ok=_between(0, 1), allowed="in [0, 1]"),
    "asynchronous": Spec((bool,)),
    "data": Spec((str, NULL)),
}  # fmt: skip

#: Settings added after runs were first stored, with the value every run stored before them had.
ADDED_DEFAULTS: dict[str, Any] = {name: s.added for name, s in SEARCH_SETTINGS.items() if s.added is not NOT_ADDED}


def type_names(kinds: tuple[type, ...]) -> str:
    return " or ".join("null" if kind is NULL else kind.__name__ for kind in kinds)


def has_type(value: Any, kinds: tuple[type, ...]) -> bool:
    """``isinstance`` as JSON means it: a bool is no number."""
    return isinstance(value, kinds) and (not isinstance(value, bool) or bool in kinds)


def type_problem(name: str, value: Any, given: bool) -> str | None:
    """What is wrong with the type of setting ``name`` (``given``: as a caller may give it; else as stored), or
    ``None``. Items of a list must have the item type; numbers must be finite."""
    spec = SEARCH_SETTINGS[name]
    kinds = spec.accepted if given else spec.stored
    if not has_type(value, kinds):
        return f"must be {type_names(kinds)}"
    if spec.items is not None and not isinstance(value, str):
        items = spec.items if isinstance(spec.items, tuple) else (spec.items,)
        if not all(has_type(item, items) and (not isinstance(item, float) or math.isfinite(item)) for item in value):
            return "must be text or a list of text" if spec.items is str else "must be a list of finite numbers"
    return None


def range_problem(name: str, value: Any) -> str | None:
    """What is wrong with the (normalised, well-typed) value of setting ``name``, or ``None``."""
    spec = SEARCH_SETTINGS[name]
    return None if spec.ok is None or spec.ok(value) else f"must be {spec.allowed}"
