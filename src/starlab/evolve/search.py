"""STAR's loop — assessment, pairing, recombination, mutation — as an ask/tell loop over a durable store.

Each generation: ask the algorithm for candidates; evaluate them (pymoo's ``Evaluator`` on the
:class:`GenomeProblem`, whose assess function serves every evaluation the store holds and submits the rest
to the executor, committing each result as it arrives); tell the algorithm; record the generation (its
population, Pareto front and hypervolume). Resuming is *replay*: the algorithm is rebuilt from the run's
seed and re-asked generation by generation, and every evaluation the store already holds is served from it.
pymoo's operators draw only from the seeded generator, so the replayed algorithm passes through exactly the
same states: a run that was killed and resumed ends with the same populations as one that never stopped,
and no finished evaluation is lost or run twice.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from collections.abc import Sequence
from concurrent.futures import Future, as_completed
from contextlib import ExitStack
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any
from typing import Protocol as TypingProtocol

import numpy as np
from pymoo.core.evaluator import Evaluator
from pymoo.core.population import Population
from pymoo.core.termination import NoTermination
from pymoo.operators.survival.rank_and_crowding import RankAndCrowding

from starlab.assess import (
    Evaluation,
    Objectives,
    Protocol,
    check_objectives,
    failed_evaluation,
    get_protocol,
    pareto_front,
)
from starlab.assess.assessment import MAX_SEED
from starlab.errors import Setting, SettingError
from starlab.evolve.algorithms import ALGORITHMS, make_algorithm
from starlab.evolve.executors import EvalJob, Executor
from starlab.evolve.presets import search_preset
from starlab.evolve.problem import GenomeProblem
from starlab.genome import MAX_SLOTS, PRESETS, Genome, resolve
from starlab.liv import check_width
from starlab.model import check_device, check_largest_model_fits
from starlab.status import Status
from starlab.store import Generation, RunLock, RunStore, StoreError, check_config_keys

#: The largest population: pymoo's non-dominated sorting is quadratic in it, and a generation of more
#: genomes than this is more evaluations than any budget here affords (a typo, not a search).
MAX_POPULATION = 4096


@dataclass(frozen=True)
class SearchConfig:
    """Everything that defines a run. Stored in the run directory; resuming reuses it as is.

    ``objectives`` may be given as a list, comma-separated text or a preset (``quality``, ``size``, ``cache``);
    ``seeds`` (genomes or preset names for the initial population) as a list or comma-separated text.
    """

    protocol: str = "demo"
    protocol_settings: dict[str, Any] = field(default_factory=dict)  # e.g. {"size": "paper"}: a variant
    depth: int = 4
    width: int | None = None  # None: the protocol's width
    objectives: tuple[str, ...] = ("quality", "params", "cache")
    algorithm: str = "nsga2"
    population: int = 16
    generations: int = 18
    seed: int = 0
    seeds: tuple[str, ...] = ()
    mutation_prob: float = 0.1
    crossover_at_slots: bool = True
    elites: int = 2
    weights: tuple[float, ...] = ()  # GA: weights of the objectives in the weighted sum (default equal)
    expensive_protocol: str | None = None  # multi-fidelity: re-assess each generation's top-k with this
    top_k: int = 0
    data: str | None = None  # corpus for language-modelling protocols
    max_evaluations: int | None = None  # stop after the generation in which this many are stored

    def __post_init__(self) -> None:
        self._check_types()
        seeds = self.seeds.split(",") if isinstance(self.seeds, str) else self.seeds
        object.__setattr__(self, "objectives", check_objectives(self.objectives))
        object.__setattr__(self, "seeds", tuple(s.strip() for s in seeds if s.strip()))
        object.__setattr__(self, "weights", tuple(self.weights))
        checks = {
            "algorithm": (self.algorithm in ALGORITHMS, f"one of {', '.join(ALGORITHMS)}"),
            "depth": (1 <= self.depth <= MAX_SLOTS, f"an integer in 1..{MAX_SLOTS}"),
            "seed": (0 <= self.seed <= MAX_SEED, "a non-negative integer (at most 2**63-1)"),
            "population": (4 <= self.population <= MAX_POPULATION, f"an integer in 4..{MAX_POPULATION}"),
            "generations": (self.generations >= 0, "an integer >= 0"),
            "mutation_prob": (0 <= self.mutation_prob <= 1, "in [0, 1]"),
            "elites": (0 <= self.elites < self.population, "in 0..population-1"),
            "top_k": (0 <= self.top_k <= self.population, "in 0..population"),
            "max_evaluations": (self.max_evaluations is None or self.max_evaluations >= 1, "a positive integer"),
            "weights": (not self.weights or len(self.weights) == len(self.objectives), "one per objective"),
        }
        for name, (ok, allowed) in checks.items():
            if not ok:
                raise ValueError(f"search setting {name} = {getattr(self, name)!r} must be {allowed}")
        if self.top_k and self.expensive_protocol is None:
            raise ValueError("search setting top_k needs expensive_protocol (the protocol for the top-k)")
        object.__setattr__(self, "protocol_settings", dict(self.protocol_settings))
        if self.width is not None:
            check_width(self.width)
        protocol = self.search_protocol()
        width = self.width or protocol.width
        check_largest_model_fits(self.depth, width, protocol.vocab_bound, config=protocol.config, training=True)
        self.seed_genomes()
        protocol.check_ready()  # a corpus too small for the protocol: refused now, not in every evaluation
        if self.expensive_protocol is not None:
            get_protocol(self.expensive_protocol).with_data(self.data).check_ready()

    def _check_types(self) -> None:
        """Settings read from a file may have any JSON type; a wrong one is a one-line error, not a traceback."""
        kinds = {
            "protocol": (str,), "depth": (int,), "population": (int,), "generations": (int,), "seed": (int,),
            "elites": (int,), "top_k": (int,), "crossover_at_slots": (bool,), "mutation_prob": (int, float),
            "width": (int, type(None)), "max_evaluations": (int, type(None)), "data": (str, type(None)),
            "expensive_protocol": (str, type(None)), "protocol_settings": (dict,),
            "objectives": (str, list, tuple), "seeds": (str, list, tuple), "weights": (list, tuple),
        }  # fmt: skip
        for name, allowed in kinds.items():
            value = getattr(self, name)
            if not isinstance(value, allowed) or (isinstance(value, bool) and bool not in allowed):
                names = " or ".join("null" if t is type(None) else t.__name__ for t in allowed)
                raise ValueError(f"search setting {name} = {_short(value)} must be {names}")
        for name in ("objectives", "seeds"):
            value = getattr(self, name)
            if not isinstance(value, str) and not all(isinstance(item, str) for item in value):
                raise ValueError(f"search setting {name} = {_short(value)} must be text or a list of text")
        if not all(isinstance(w, (int, float)) and not isinstance(w, bool) and math.isfinite(w) for w in self.weights):
            raise ValueError(f"search setting weights = {_short(self.weights)} must be a list of finite numbers")

    def search_protocol(self) -> Protocol:
        """The protocol every candidate is assessed with: the named one, with this search's settings and data."""
        return get_protocol(self.protocol).with_settings(**self.protocol_settings).with_data(self.data)

    def seed_genomes(self) -> list[Genome]:
        """The initial population's seeds as genomes (presets at the search depth), checked before any work."""
        genomes = [self._seed_genome(text) for text in self.seeds]
        for text, genome in zip(self.seeds, genomes, strict=True):
            if len(genome) != self.depth:
                raise ValueError(f"seed genome {text} has {len(genome)} slots; this search uses depth {self.depth}")
        return genomes

    def _seed_genome(self, text: str) -> Genome:
        if text.strip().lower() not in PRESETS:
            return resolve(text)
        try:
            return resolve(text, self.depth)
        except ValueError as error:
            raise SettingError("seed genome {0} cannot be built at depth {1} ({2}); change {3} or {4}",
                               text, self.depth, error, Setting("depth"), Setting("seeds")) from None  # fmt: skip

    def conflicts(self, **overrides: Any) -> dict[str, tuple[Any, Any]]:
        """The given settings (``None``: not given) that differ from this config: name -> (given, this one's).

        Resuming runs the stored config; the CLI uses this to say which of its flags it ignores.
        """
        given = _given(overrides)
        changed = dataclasses.replace(self, **given) if given else self
        return {k: (getattr(changed, k), getattr(self, k)) for k in given if getattr(changed, k) != getattr(self, k)}

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
        return cls.from_json({**search_preset(name), **_given(overrides)})

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
        return cls.from_json({**settings, **_given(overrides)})


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    keys = [key for key, _ in pairs]
    repeated = sorted({key for key in keys if keys.count(key) > 1})
    if repeated:  # json.loads would keep the last one silently
        raise ValueError(f"setting {', '.join(repeated)} is given more than once")
    return dict(pairs)


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else f"{text[:40]}… ({len(text)} characters)"


def _given(overrides: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in overrides.items() if v is not None}


class SearchFailed(ValueError):
    """The search cannot produce anything meaningful (every evaluation of a generation failed)."""


class Reporter(TypingProtocol):
    """Receives progress events (the CLI shows them with rich; tests pass nothing)."""

    def start(self, config: SearchConfig, total: int, done: int) -> None: ...

    def evaluated(self, evaluation: Evaluation, replayed: bool) -> None: ...

    def generation(self, generation: int, front: list[dict], hypervolume: float) -> None: ...


@dataclass
class SearchSummary:
    directory: Path
    generations: int
    evaluations: int
    new_evaluations: int
    seconds: float
    front: list[dict] = field(default_factory=list)
    hypervolume: float = 0.0
    failed: int = 0  # stored evaluations of the search protocol whose status is 'failed'


class Search:
    """One run in ``directory``: create it from ``config``, or (``resume``) continue the run stored there."""

    def __init__(
        self,
        directory: str | Path,
        executor: Executor,
        config: SearchConfig | None = None,
        resume: bool = False,
        reporter: Reporter | None = None,
        device: str = "cpu",
        retry_failed: bool = False,
    ) -> None:
        if retry_failed and not resume:
            raise SettingError("{0} goes with {1} (it runs a stored run's failed evaluations again)",
                               Setting("retry_failed"), Setting("resume"))  # fmt: skip
        check_device(device)  # before a run directory exists: a bad device would fail every evaluation
        with ExitStack() as undo:  # a refused run leaves the store closed and the lock free
            self.store = RunStore(directory, create=not resume)
            undo.callback(self.store.close)
            self.lock = RunLock(directory)
            undo.callback(self.lock.release)
            config = self._run_config(directory, config, resume)
            undo.pop_all()
        self.retried = self.store.remove_failed() if retry_failed else 0
        self.config, self.executor, self.reporter, self.device = config, executor, reporter, device
        self.protocol = config.search_protocol()
        self.width = config.width or self.protocol.width
        self.objectives = Objectives(config.objectives, self.protocol, config.depth, self.width)
        self.problem = GenomeProblem(config.depth, self.objectives, self.assess_genomes)
        self.new_evaluations = 0

    def _run_config(self, directory: str | Path, config: SearchConfig | None, resume: bool) -> SearchConfig:
        """The stored config when resuming; otherwise ``config``, stored (a directory holding a run is refused)."""
        stored = self.store.get_meta("config")
        if resume:
            if stored is None:
                raise StoreError("run store in {0} has no search config; it is not a starlab search", directory)
            config = SearchConfig.from_json(check_config_keys(stored, directory))  # a missing key is no default
            self.store.check()  # every stored record readable before the replay writes anything
            return config
        if stored is not None:
            raise StoreError(
                "{0} already holds a run; use {1:=}{0} or another {2}", directory, Setting("resume"), Setting("out")
            )
        self.store.set_meta("config", config.to_json())
        return config

    # ---- evaluation ----------------------------------------------------------------------------------
    def evaluate(self, genomes: Sequence[Genome], protocol: str) -> list[Evaluation]:
        """Evaluations for ``genomes`` under ``protocol``: from the store, or run (in parallel) and stored."""
        results: list[Evaluation | None] = [None] * len(genomes)
        pending: dict[Future, list[int]] = {}
        submitted: dict[str, Future] = {}  # a genome twice in one batch is run once
        for index, genome in enumerate(genomes):
            stored = self.store.get_evaluation(genome.hash(), protocol, self.config.seed)
            if stored is not None:
                results[index] = stored
                if self.reporter:
                    self.reporter.evaluated(stored, replayed=True)
                continue
            if genome.hash() in submitted:  # still pending: one that finished inside submit is in the store
                pending[submitted[genome.hash()]].append(index)
                continue
            future = self.executor.submit(self._job(genome, protocol))
            submitted[genome.hash()], pending[future] = future, [index]
            if future.done():  # the local executor runs the job inside submit: store it before the next one
                self._store(genomes, protocol, future, pending.pop(future), results)
        try:
            for future in as_completed(list(pending)):
                self._store(genomes, protocol, future, pending.pop(future), results)
        except KeyboardInterrupt:  # keep what finished meanwhile: resuming must not run it again
            for future, indices in pending.items():
                if future.done() and not future.cancelled() and future.exception() is None:
                    self._store(genomes, protocol, future, indices, results)
            raise
        return results  # type: ignore[return-value]

    def _job(self, genome: Genome, protocol: str) -> EvalJob:
        settings = self.config.protocol_settings if protocol == self.config.protocol else {}
        return EvalJob(
            genome.canonical().text(), protocol, self.config.seed, self.width, self.device, self.config.data, settings
        )

    def _store(self, genomes, protocol: str, future: Future, indices: list[int], results: list) -> None:
        """Commit a finished future's evaluation (the moment it is handed over) and fill in its slots."""
        evaluation = self._finished(genomes[indices[0]], protocol, future)
        self.store.add_evaluation(evaluation)
        self.new_evaluations += 1
        for index in indices:
            results[index] = evaluation
        if self.reporter:
            self.reporter.evaluated(evaluation, replayed=False)

    def _finished(self, genome: Genome, protocol: str, future: Future) -> Evaluation:
        """A finished future's evaluation; an exception becomes a 'failed' one with the worst quality."""
        error = future.exception()
        if error is None:
            return Evaluation.from_dict(future.result())
        assessed_by = self.protocol if protocol == self.config.protocol else get_protocol(protocol)
        return failed_evaluation(genome, assessed_by, self.config.seed, self.width, error)

    def assess_genomes(self, genomes: Sequence[Genome]) -> list[Evaluation]:
        """The problem's assess function: the search protocol's evaluations, where multi-fidelity is on with
        the ``top_k`` best of the batch (rank, then crowding) re-assessed by the expensive protocol."""
        evaluations = self.evaluate(genomes, self.config.protocol)
        if self.config.top_k:
            candidates = Population.new("F", self.objectives.values(evaluations), "index", np.arange(len(genomes)))
            best = RankAndCrowding().do(self.problem, candidates, n_survive=self.config.top_k)
            chosen = [int(i) for i in best.get("index")]
            expensive = self.evaluate([genomes[i] for i in chosen], self.config.expensive_protocol)
            for index, better in zip(chosen, expensive, strict=True):
                evaluations[index] = better
        return evaluations

    # ---- the loop ------------------------------------------------------------------------------------
    def run(self) -> SearchSummary:
        start, config = time.perf_counter(), self.config
        algorithm = make_algorithm(
            config.algorithm, self.problem, config.population, config.seed_genomes(), config.mutation_prob,
            config.crossover_at_slots, config.elites, config.weights,
        )  # fmt: skip
        algorithm.setup(self.problem, termination=NoTermination(), seed=config.seed)
        if self.reporter:
            self.reporter.start(config, config.population * (config.generations + 1), self.store.count_evaluations())
        record = Generation(-1, [], [], 0.0)
        for generation in range(config.generations + 1):
            pop = algorithm.ask()
            if pop is None or len(pop) == 0:  # nothing new could be bred: the search has converged
                break
            Evaluator().eval(self.problem, pop)
            self._check_not_all_failed(generation, pop)
            algorithm.tell(infills=pop)
            record = self._record_generation(generation, algorithm.pop)
            if config.max_evaluations and self.store.count_evaluations() >= config.max_evaluations:
                break
        self.store.set_meta("finished", True)
        failed = sum(e.status == Status.FAILED for e in self.store.evaluations(config.protocol))
        return SearchSummary(
            self.store.directory, record.generation, self.store.count_evaluations(), self.new_evaluations,
            time.perf_counter() - start, record.front_members, record.hypervolume or 0.0, failed,
        )  # fmt: skip

    def _check_not_all_failed(self, generation: int, pop) -> None:
        """A generation in which every candidate failed means the setup is broken, not the architectures."""
        genomes = [self.problem.decode(x) for x in pop.get("X")]
        evaluations = [self.store.get_evaluation(g.hash(), self.config.protocol, self.config.seed) for g in genomes]
        if evaluations and all(e is not None and e.status == Status.FAILED for e in evaluations):
            raise SearchFailed(
                f"every evaluation of generation {generation} failed ({len(evaluations)} of {len(evaluations)}); "
                f"the first: {evaluations[0].metrics.get('error', 'no error recorded')}"
            )

    def _record_generation(self, generation: int, pop) -> Generation:
        """Store the surviving population with its objective values, Pareto front and hypervolume."""
        values = np.array(pop.get("F"), dtype=float)
        genomes = [self.problem.decode(x) for x in pop.get("X")]
        members = [
            {
                "genome": g.canonical().text(),
                "hash": g.hash(),
                **dict(zip(self.objectives.names, v.tolist(), strict=True)),
            }
            for g, v in zip(genomes, values, strict=True)
        ]
        record = Generation(generation, members, pareto_front(values), self.objectives.hypervolume(values))
        self.store.add_generation(record)
        if self.reporter:
            self.reporter.generation(generation, record.front_members, record.hypervolume)
        return record

    def close(self) -> None:
        self.store.close()
        self.lock.release()
