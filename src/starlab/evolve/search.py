"""STAR's loop — assessment, pairing, recombination, mutation — as an ask/tell loop over a durable store.

Each generation the algorithm is asked for candidates; every candidate not yet in the store is submitted to
the executor, each result is committed as it arrives, and the objective values are told back. Resuming is
*replay*: the algorithm is rebuilt from the run's seed and re-asked generation by generation, and every
evaluation the store already holds is served from it. pymoo's operators draw only from the seeded generator,
so the replayed algorithm passes through exactly the same states: a run that was killed and resumed ends
with the same populations as one that never stopped, and no finished evaluation is lost or run twice.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from concurrent.futures import Future, as_completed
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Protocol as TypingProtocol

import numpy as np
from pymoo.core.evaluator import Evaluator
from pymoo.core.termination import NoTermination
from pymoo.indicators.hv import HV
from pymoo.operators.survival.rank_and_crowding import RankAndCrowding
from pymoo.problems.static import StaticProblem
from pymoo.util.nds.non_dominated_sorting import NonDominatedSorting

from starlab.evolve.algorithms import ALGORITHMS, make_algorithm
from starlab.evolve.executors import EvalJob, Executor
from starlab.evolve.problem import GenomeProblem, check_objectives
from starlab.genome import Genome, resolve
from starlab.model import size_report
from starlab.store import Evaluation, RunStore, StoreError
from starlab.train.assess import CACHE_LENGTH, FAILED, get_protocol

#: Size objectives are divided by those of an all-SA-1 genome of the same depth and width (1.0 = that size);
#: the hypervolume reference point is the protocol's worst quality and twice the reference sizes.
SIZE_REFERENCE_CLASS = 1
SIZE_REFERENCE_POINT = 2.0


@dataclass(frozen=True)
class SearchConfig:
    """Everything that defines a run. Stored in the run directory; ``--resume`` reuses it as is."""

    protocol: str = "demo"
    depth: int = 4
    width: int | None = None  # None: the protocol's width
    objectives: tuple[str, ...] = ("quality", "params", "cache")
    algorithm: str = "nsga2"
    population: int = 16
    generations: int = 18
    seed: int = 0
    seeds: tuple[str, ...] = ()  # genomes or preset names for the initial population
    mutation_prob: float = 0.1
    crossover_at_slots: bool = True
    elites: int = 2
    weights: tuple[float, ...] = ()  # GA: weights of the objectives in the weighted sum (default equal)
    expensive_protocol: str | None = None  # multi-fidelity: re-assess each generation's top-k with this
    top_k: int = 0
    data: str | None = None  # corpus for language-modelling protocols
    max_evaluations: int | None = None  # stop after the generation in which this many are stored

    def __post_init__(self) -> None:
        object.__setattr__(self, "objectives", check_objectives(self.objectives))
        object.__setattr__(self, "seeds", tuple(self.seeds))
        object.__setattr__(self, "weights", tuple(self.weights))
        checks = {
            "algorithm": (self.algorithm in ALGORITHMS, f"one of {', '.join(ALGORITHMS)}"),
            "depth": (self.depth >= 1, "a positive integer"),
            "population": (self.population >= 4, "an integer >= 4"),
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
        get_protocol(self.protocol).with_data(self.data)
        if self.expensive_protocol is not None:
            get_protocol(self.expensive_protocol).with_data(self.data)

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict) -> SearchConfig:
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(
                f"unknown search settings: {', '.join(sorted(unknown))}; known: {', '.join(sorted(known))}"
            )
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in data.items()})


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
    ) -> None:
        self.store = RunStore(directory, create=not resume)
        stored = self.store.get_meta("config")
        if resume:
            if stored is None:
                raise StoreError(f"run store in {directory} has no search config; it is not a starlab search")
            config = SearchConfig.from_json(stored)
        elif stored is not None:
            raise StoreError(f"{directory} already holds a run; use --resume {directory} or another --out")
        else:
            self.store.set_meta("config", config.to_json())
        self.config, self.executor, self.reporter, self.device = config, executor, reporter, device
        self.protocol = get_protocol(config.protocol)
        self.width = config.width or self.protocol.width
        self.problem = GenomeProblem(config.depth, 1 if config.algorithm == "ga" else len(config.objectives))
        self.reference = self._reference_sizes()
        self.new_evaluations = 0

    # ---- objectives ----------------------------------------------------------------------------------
    def _reference_sizes(self) -> dict[str, float]:
        genome = Genome.from_slots([(SIZE_REFERENCE_CLASS, 1, 1, 1, 1)] * self.config.depth)
        report = size_report(genome, self.width, vocab_size=2, seq_len=CACHE_LENGTH, config=self.protocol.config)
        return {"quality": 1.0, "params": report.params_non_embedding, "cache": report.cache_bytes}

    def objective_values(self, evaluation: Evaluation) -> np.ndarray:
        """The run's objectives for one evaluation, sizes relative to the all-SA-1 reference."""
        raw = {"quality": evaluation.quality, "params": evaluation.params, "cache": evaluation.cache_bytes}
        return np.array([raw[name] / self.reference[name] for name in self.config.objectives])

    def fitness(self, values: np.ndarray) -> np.ndarray:
        """What the algorithm minimises: the objectives, or for GA their weighted sum."""
        if self.config.algorithm != "ga":
            return values
        weights = np.array(self.config.weights or [1.0] * values.shape[1])
        return (values @ weights)[:, None]

    def reference_point(self) -> np.ndarray:
        worst = {"quality": self.protocol.worst_quality, "params": SIZE_REFERENCE_POINT, "cache": SIZE_REFERENCE_POINT}
        return np.array([worst[name] for name in self.config.objectives])

    # ---- evaluation ----------------------------------------------------------------------------------
    def evaluate(self, genomes: Sequence[Genome], protocol: str) -> list[Evaluation]:
        """Evaluations for ``genomes`` under ``protocol``: from the store, or run (in parallel) and stored."""
        results: list[Evaluation | None] = [None] * len(genomes)
        futures: dict[Future, list[int]] = {}
        submitted: dict[str, Future] = {}
        for index, genome in enumerate(genomes):
            stored = self.store.get_evaluation(genome.hash(), protocol, self.config.seed)
            if stored is not None:
                results[index] = stored
                if self.reporter:
                    self.reporter.evaluated(stored, replayed=True)
            elif genome.hash() in submitted:
                futures[submitted[genome.hash()]].append(index)
            else:
                job = EvalJob(
                    genome.canonical().text(), protocol, self.config.seed, self.width, self.device, self.config.data
                )
                future = self.executor.submit(job)
                submitted[genome.hash()], futures[future] = future, [index]
        for future in as_completed(futures):
            genome = genomes[futures[future][0]]
            evaluation = self._to_evaluation(genome, protocol, future)
            self.store.add_evaluation(genome, evaluation)
            self.new_evaluations += 1
            for index in futures[future]:
                results[index] = evaluation
            if self.reporter:
                self.reporter.evaluated(evaluation, replayed=False)
        return results  # type: ignore[return-value]

    def _to_evaluation(self, genome: Genome, protocol: str, future: Future) -> Evaluation:
        """A finished future as an Evaluation; an exception becomes a 'failed' one with the worst quality."""
        error = future.exception()
        if error is None:
            r = future.result()
            return Evaluation(
                r["hash"], protocol, self.config.seed, r["status"], r["quality"], r["params"], r["cache_bytes"],
                r["seconds"], r["worker"], {"scores": r["scores"], **r["metrics"]},
            )  # fmt: skip
        sizes = size_report(genome, self.width, vocab_size=2, seq_len=CACHE_LENGTH, config=self.protocol.config)
        return Evaluation(
            genome.hash(), protocol, self.config.seed, FAILED, get_protocol(protocol).worst_quality,
            sizes.params_non_embedding, sizes.cache_bytes, 0.0, "", {"error": f"{type(error).__name__}: {error}"},
        )  # fmt: skip

    def assess_population(self, pop) -> None:
        """Evaluate an asked population (with multi-fidelity top-k) and set its F for the algorithm."""
        genomes = [self.problem.decode(x) for x in pop.get("X")]
        evaluations = self.evaluate(genomes, self.config.protocol)
        values = np.array([self.objective_values(e) for e in evaluations])
        if self.config.top_k:
            for index, better in self._refine(genomes, values).items():
                values[index] = self.objective_values(better)
        Evaluator().eval(StaticProblem(self.problem, F=self.fitness(values)), pop)
        pop.set("values", values)
        pop.set("genome", np.array([g.canonical().text() for g in genomes], dtype=object))

    def _refine(self, genomes: list[Genome], values: np.ndarray) -> dict[int, Evaluation]:
        """Multi-fidelity: re-assess the ``top_k`` best of this batch (rank, then crowding) expensively."""
        order = RankAndCrowding().do(self.problem, _population(values), n_survive=self.config.top_k)
        chosen = [int(i) for i in order.get("index")]
        expensive = self.evaluate([genomes[i] for i in chosen], self.config.expensive_protocol)
        return dict(zip(chosen, expensive, strict=True))

    # ---- the loop ------------------------------------------------------------------------------------
    def run(self) -> SearchSummary:
        start, config = time.perf_counter(), self.config
        seeds = [resolve(text, config.depth if _is_preset(text) else None) for text in config.seeds]
        algorithm = make_algorithm(
            config.algorithm, self.problem, config.population, seeds, config.mutation_prob,
            config.crossover_at_slots, config.elites,
        )  # fmt: skip
        algorithm.setup(self.problem, termination=NoTermination(), seed=config.seed)
        if self.reporter:
            self.reporter.start(config, config.population * (config.generations + 1), self.store.count_evaluations())
        hypervolume, front = 0.0, []
        for generation in range(config.generations + 1):
            pop = algorithm.ask()
            if pop is None or len(pop) == 0:  # nothing new could be bred: the search has converged
                break
            self.assess_population(pop)
            algorithm.tell(infills=pop)
            front, hypervolume = self._record_generation(generation, algorithm.pop)
            if config.max_evaluations and self.store.count_evaluations() >= config.max_evaluations:
                break
        self.store.set_meta("finished", True)
        return SearchSummary(
            self.store.directory, generation, self.store.count_evaluations(), self.new_evaluations,
            time.perf_counter() - start, front, hypervolume,
        )  # fmt: skip

    def _record_generation(self, generation: int, pop) -> tuple[list[dict], float]:
        values = np.array(pop.get("values"), dtype=float)
        members = [
            {
                "genome": g,
                "hash": Genome.parse(g).hash(),
                **dict(zip(self.config.objectives, map(float, v), strict=True)),
            }
            for g, v in zip(pop.get("genome"), values, strict=True)
        ]
        first = NonDominatedSorting().do(values, only_non_dominated_front=True)
        front = [members[i] for i in first]
        hypervolume = float(HV(ref_point=self.reference_point())(values))
        self.store.add_generation(generation, members, hypervolume)
        if self.reporter:
            self.reporter.generation(generation, front, hypervolume)
        return front, hypervolume

    def close(self) -> None:
        self.store.close()


def _population(values: np.ndarray):
    from pymoo.core.population import Population

    pop = Population.new("F", values)
    pop.set("index", np.arange(len(values)))
    return pop


def _is_preset(text: str) -> bool:
    from starlab.genome import PRESETS

    return text.strip().lower() in PRESETS


def search_config_from_file(path: str | Path) -> SearchConfig:
    """A SearchConfig from a JSON file (the run directory keeps its config the same way)."""
    try:
        return SearchConfig.from_json(json.loads(Path(path).read_text()))
    except (OSError, json.JSONDecodeError) as error:
        raise ValueError(f"cannot read search config {path}: {error}") from None
