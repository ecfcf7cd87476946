"""A search's settings as one record: what defines a run, checked before any work, stored with the run.

Budgets: ``budget`` is the number of evaluations of the search protocol (the ladder's bottom rung) a run
stores, exactly, whatever the algorithm; ``generations`` caps the generations (``None``: until the budget is
spent). Multi-fidelity: ``ladder`` names the rungs, cheapest first, and ``eta`` how selective each promotion
is. ``surrogate`` pre-screens ``breed_factor`` times more offspring than are assessed; ``asynchronous`` breeds
a new candidate whenever a worker is free instead of generation by generation.

Genome shape: ``depth`` slots, or with ``min_depth`` any depth in ``min_depth..depth`` (given as text
``"MIN:MAX"`` in ``depth``, stored as the two integers); ``backbone_genes`` makes the backbone's norm, norm
position and residual genes part of the search. Presets named as seeds are built at ``depth``, the deepest.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from starlab.assess import Protocol, check_objectives, get_protocol
from starlab.errors import Setting, SettingError, show
from starlab.evolve.algorithms import ALGORITHMS
from starlab.evolve.problem import GenomeProblem, depth_text
from starlab.evolve.search_presets import search_preset
from starlab.genome import MAX_SLOTS, PRESETS, Genome, resolve
from starlab.liv import check_width
from starlab.model import check_largest_model_fits
from starlab.store.settings import SEARCH_SETTINGS, range_problem, type_problem


def split_seeds(text: str) -> list[str]:
    """Seeds given as text: separated by semicolons when there is one (genome texts such as
    ``12,1,1,1,1-91111`` or ``[1,2,1,1,3],1,1,1,1-91111`` hold commas), else by commas."""
    return text.split(";") if ";" in text else text.split(",")


@dataclass(frozen=True)
class SearchConfig:
    """Everything that defines a run. Stored in the run directory; resuming reuses it as is.

    ``objectives`` may be given as a list, comma-separated text or a preset (``quality``, ``size``, ``cache``);
    ``seeds`` (genomes or preset names for the initial population) as a list or text (:func:`split_seeds`).
    """

    protocol: str = "demo"  # the search protocol: every candidate is assessed with it (the ladder's bottom rung)
    protocol_settings: dict[str, Any] = field(default_factory=dict)  # e.g. {"size": "paper"}: a variant
    depth: int = 4  # slots per genome; the deepest with min_depth. Text "N" or "MIN:MAX" sets both
    min_depth: int | None = None  # None: every genome has depth slots; else the shallowest (variable depth)
    backbone_genes: bool = False  # evolve the backbone genes (norm, position, residual); else STAR's backbone
    operator_genes: bool = False  # classes as operator genomes [f,t,s,n,c]: search below the pool's 17 classes
    width: int | None = None  # None: the protocol's width
    objectives: tuple[str, ...] = ("quality", "params", "cache")
    algorithm: str = "nsga2"
    population: int = 16
    generations: int | None = 18  # generations after the initial population; None: until the budget is spent
    budget: int | None = None  # store exactly this many evaluations of the search protocol
    seed: int = 0
    seeds: tuple[str, ...] = ()
    mutation_prob: float = 0.1
    crossover_at_slots: bool = True
    elites: int = 2
    weights: tuple[float, ...] = ()  # GA: weights of the objectives in the weighted sum (default equal)
    ladder: tuple[str, ...] = ()  # multi-fidelity rungs, cheapest first (the first is the search protocol)
    eta: int = 3  # each generation the best 1/eta of a rung's candidates are promoted to the next rung
    surrogate: bool = False  # pre-screen offspring with a predictor of quality fitted on the run's evaluations
    breed_factor: int = 8  # with the surrogate: offspring bred per offspring assessed
    exploration: float = 0.25  # with the surrogate: share of the assessed offspring picked at random
    asynchronous: bool = False  # breed a candidate whenever a worker is free (steady state)
    data: str | None = None  # corpus for language-modelling protocols

    def __post_init__(self) -> None:
        """Types, ranges and combinations, from the values alone (:mod:`starlab.store.settings`); what needs the
        machine (seed genomes, the corpus, the largest model) is :meth:`check`'s."""
        self._check_types()
        self._read_depth()
        seeds = split_seeds(self.seeds) if isinstance(self.seeds, str) else self.seeds
        object.__setattr__(self, "objectives", check_objectives(self.objectives))
        object.__setattr__(self, "seeds", tuple(s.strip() for s in seeds if s.strip()))
        object.__setattr__(self, "weights", tuple(self.weights))
        ladder = self.ladder.split(",") if isinstance(self.ladder, str) else self.ladder
        if isinstance(self.ladder, str) and not self.ladder.strip():  # "" would quietly mean no ladder
            raise SettingError("{0} is empty; name its protocols, cheapest first (e.g. demo,quick), or leave it out",
                               Setting("ladder"))  # fmt: skip
        if any(not name.strip() for name in ladder) and (len(ladder) > 1 or not isinstance(self.ladder, str)):
            raise SettingError("{0} = {1!r} names an empty rung; name protocols, cheapest first (e.g. demo,quick)",
                               Setting("ladder"), ",".join(ladder))  # fmt: skip
        ladder = tuple(name.strip() for name in ladder if name.strip())
        object.__setattr__(self, "ladder", ladder if len(ladder) > 1 else ())
        self._check_ranges()
        self._check_combinations()
        object.__setattr__(self, "protocol_settings", dict(self.protocol_settings))
        if self.width is not None:
            check_width(self.width)
        self.rung_protocols()  # unknown protocols and settings

    def _check_ranges(self) -> None:
        checks = {name: range_problem(name, getattr(self, name)) for name in SEARCH_SETTINGS}
        checks["algorithm"] = None if self.algorithm in ALGORITHMS else f"must be one of {', '.join(ALGORITHMS)}"
        if self.min_depth is not None and not 1 <= self.min_depth <= self.depth:
            checks["min_depth"] = f"must be {SEARCH_SETTINGS['min_depth'].allowed}"
        if not 0 <= self.elites < self.population:
            checks["elites"] = f"must be {SEARCH_SETTINGS['elites'].allowed}"
        if self.weights and len(self.weights) != len(self.objectives):
            checks["weights"] = "must be one per objective"
        for name, problem in checks.items():
            if problem:
                raise ValueError(f"search setting {name} = {getattr(self, name)!r} {problem}")

    def check(self) -> SearchConfig:
        """What the values alone cannot tell, checked once before a run starts (``Search`` calls it): the seed
        genomes parse and fit the search's genes, each rung's corpus is ready (tokenized once, cached for the
        evaluations) and the largest genome the search could meet trains in this machine's memory. Checked once
        per config object (a changed copy, ``dataclasses.replace``, is checked again)."""
        if self.__dict__.get("_checked"):
            return self
        self.seed_genomes()
        for rung in self.rung_protocols():
            check_largest_model_fits(self.depth, self.width or rung.width, rung.vocab_bound, config=rung.config,
                                     training=True)  # fmt: skip
            rung.check_ready()  # a corpus too small for the protocol: refused now, not in every evaluation
        object.__setattr__(self, "_checked", True)
        return self

    def _check_combinations(self) -> None:
        if self.generations is None and self.budget is None:
            raise SettingError("a search needs {0} or {1} (or both): with neither it would never stop",
                               Setting("generations"), Setting("budget"))  # fmt: skip
        if self.ladder:
            if self.ladder[0] != self.protocol:
                raise SettingError("{0} starts at the search protocol: {1} is {2!r}, the ladder's first rung {3!r}",
                                   Setting("ladder"), Setting("protocol"), self.protocol, self.ladder[0])  # fmt: skip
            if len(set(self.ladder)) != len(self.ladder):
                raise SettingError("{0} names a protocol twice: {1}", Setting("ladder"), ",".join(self.ladder))
        if self.min_depth is not None and self.surrogate:
            raise SettingError("{0} reads a fixed number of slots; it is not combined with a depth range ({1} "
                               "MIN:MAX) yet", Setting("surrogate"), Setting("depth"))  # fmt: skip
        if self.asynchronous and (self.ladder or self.surrogate or self.algorithm == "firefly"):
            raise SettingError(
                "{0} breeds one candidate at a time with nsga2, ga or random; it is not combined with {1}, {2} "
                "or the firefly algorithm", Setting("asynchronous"), Setting("ladder"), Setting("surrogate"),
            )  # fmt: skip

    def rungs(self) -> tuple[str, ...]:
        """The protocols every run assesses with, cheapest first: the ladder, or the search protocol alone."""
        return self.ladder or (self.protocol,)

    def rung_protocols(self) -> list[Protocol]:
        """The rungs as protocols: the search's own settings apply to the bottom rung only."""
        return [self.search_protocol(), *(get_protocol(name).with_data(self.data) for name in self.rungs()[1:])]

    def total_evaluations(self) -> int:
        """The bottom-rung evaluations the run will store if nothing is converged or cut short."""
        by_generations = math.inf if self.generations is None else self.population * (self.generations + 1)
        return int(min(by_generations, self.budget or math.inf))

    def _check_types(self) -> None:
        """Settings read from a file may have any JSON type; a wrong one is a one-line error, not a traceback."""
        for name in SEARCH_SETTINGS:
            problem = type_problem(name, getattr(self, name), given=True)
            if problem:
                raise ValueError(f"search setting {name} = {show(getattr(self, name))} {problem}")

    def _read_depth(self) -> None:
        """``depth`` given as text: ``"N"`` (a fixed depth) or ``"MIN:MAX"`` (a range); a range of one depth is
        that fixed depth."""
        if isinstance(self.depth, str):
            parts = [part.strip() for part in self.depth.split(":")]
            if len(parts) > 2 or not all(part.isascii() and part.isdigit() and len(part) <= 4 for part in parts):
                raise ValueError(f"search setting depth = {show(self.depth)} must be an integer in 1..{MAX_SLOTS} "
                                 f"or MIN:MAX with 1 <= MIN <= MAX <= {MAX_SLOTS}")  # fmt: skip
            object.__setattr__(self, "min_depth", int(parts[0]))
            object.__setattr__(self, "depth", int(parts[-1]))
            if self.min_depth > self.depth:
                raise ValueError(f"search setting depth = {self.min_depth}:{self.depth} must have MIN <= MAX")
        if self.min_depth == self.depth:
            object.__setattr__(self, "min_depth", None)

    @property
    def depth_range(self) -> tuple[int, int]:
        """The shallowest and the deepest genome of the search (equal for a fixed depth)."""
        return (self.depth if self.min_depth is None else self.min_depth), self.depth

    def depth_text(self) -> str:
        """``"4"`` or ``"2:4"``, as ``--depth`` takes it."""
        return depth_text(self.min_depth, self.depth)

    def search_protocol(self) -> Protocol:
        """The protocol every candidate is assessed with: the named one, with this search's settings and data."""
        return get_protocol(self.protocol).with_settings(**self.protocol_settings).with_data(self.data)

    def seed_genomes(self) -> list[Genome]:
        """The initial population's seeds as genomes (presets at the search depth, the deepest of a range),
        checked before any work."""
        genomes = [self._seed_genome(text) for text in self.seeds]
        low, high = self.depth_range
        problem = GenomeProblem(self.depth, min_depth=self.min_depth, backbone_genes=self.backbone_genes,
                                operator_genes=self.operator_genes)  # fmt: skip
        for text, genome in zip(self.seeds, genomes, strict=True):
            if not low <= len(genome) <= high:
                raise ValueError(
                    f"seed genome {text} has {len(genome)} slots; this search uses depth {self.depth_text()}"
                )
            if not (genome.backbone.is_default or self.backbone_genes):
                raise SettingError("seed genome {0} has backbone genes {1}; the search evolves them only with {2}",
                                   text, genome.backbone.text(), Setting("backbone_genes"))  # fmt: skip
            try:
                problem.encode(genome)  # anything else the search's genes cannot hold
            except ValueError as error:
                raise ValueError(f"seed genome {text} cannot be searched: {error}") from None
        return genomes

    def _seed_genome(self, text: str) -> Genome:
        if text.strip().lower() not in PRESETS:
            return resolve(text)
        try:
            return resolve(text, self.depth)
        except ValueError as error:
            deepest = ", the deepest of the range" if self.min_depth is not None else ""
            raise SettingError("seed genome {0} cannot be built at depth {1}{2} ({3}); change {4} or {5}", text,
                               self.depth, deepest, error, Setting("depth"), Setting("seeds")) from None  # fmt: skip

    def conflicts(self, **overrides: Any) -> dict[str, tuple[Any, Any]]:
        """The given settings (``None``: not given) that differ from this config: name -> (given, this one's).

        Resuming runs the stored config; the CLI uses this to say which of its flags it ignores.
        """
        given = _given(overrides)
        changed = dataclasses.replace(self, **given) if given else self

        def shown(config: SearchConfig, name: str) -> Any:  # a depth is its range
            return config.depth_text() if name == "depth" else getattr(config, name)

        return {k: (shown(changed, k), shown(self, k)) for k in given if shown(changed, k) != shown(self, k)}

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> SearchConfig:
        if not isinstance(data, dict):
            raise ValueError(f"search settings must be a JSON object of settings, got {type(data).__name__}")
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(
                f"unknown search settings: {', '.join(sorted(unknown))}; known: {', '.join(sorted(known))}"
            )
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in data.items()})

    @classmethod
    def from_preset(cls, name: str, **overrides: Any) -> SearchConfig:
        """A search preset (``demo``, ``quick``, ``paper-125m``...) with some settings replaced (``None``: kept)."""
        given = _given(overrides)
        return _check_given_apply(cls.from_json(_budget_over_generations({**search_preset(name)}, given)), given)

    @classmethod
    def from_file(cls, path: str | Path, **overrides: Any) -> SearchConfig:
        """Settings from a JSON file (the run directory keeps its config the same way), some replaced."""
        try:
            settings = json.loads(Path(path).read_text(encoding="utf-8"), object_pairs_hook=_no_duplicates)
        except (OSError, ValueError) as error:  # unreadable, not UTF-8, not JSON, a key given twice
            raise ValueError(f"cannot read search config {path}: {error}") from None
        except RecursionError:
            raise ValueError(f"cannot read search config {path}: its JSON is nested too deeply") from None
        if not isinstance(settings, dict):
            raise ValueError(f"search config {path} must hold a JSON object of settings")
        given = _given(overrides)
        return _check_given_apply(cls.from_json(_budget_over_generations(settings, given)), given)


def _check_given_apply(config: SearchConfig, given: dict[str, Any]) -> SearchConfig:
    """``config``, or a one-line refusal of a setting given for a feature the search does not use: ``eta``
    without a ladder, ``breed_factor`` or ``exploration`` without the surrogate would be ignored in silence.
    Only given settings are checked: a preset or a stored config holds every setting, used or not."""
    uses = {"eta": (bool(config.ladder), "ladder", "a ladder of two or more rungs"),
            "breed_factor": (config.surrogate, "surrogate", "the surrogate"),
            "exploration": (config.surrogate, "surrogate", "the surrogate")}  # fmt: skip
    for name, (used, needs, what) in uses.items():
        if name in given and not used:
            raise SettingError("{0} applies to a search with {1} ({2}); this one has none, so it would do nothing",
                               Setting(name), what, Setting(needs))  # fmt: skip
    return config


def _budget_over_generations(settings: dict[str, Any], given: dict[str, Any]) -> dict[str, Any]:
    """Settings with ``given`` applied; a budget given without generations runs until it is spent (a preset's
    generations would otherwise stop the run short of the budget asked for), and a ladder given without a
    protocol searches with its bottom rung."""
    settings = {**settings, **given}
    if "budget" in given and "generations" not in given:
        settings["generations"] = None
    if isinstance(given.get("ladder"), str) and "protocol" not in given:  # the bottom rung is the search protocol
        settings["protocol"] = given["ladder"].split(",")[0].strip()
    return settings


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    keys = [key for key, _ in pairs]
    repeated = sorted({key for key in keys if keys.count(key) > 1})
    if repeated:  # json.loads would keep the last one silently
        raise ValueError(f"setting {', '.join(repeated)} is given more than once")
    return dict(pairs)


def _given(overrides: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in overrides.items() if v is not None}
