"""A finished (or running) search as data: its config, evaluations and generations, read from its store.

The report draws it and ``export`` picks genomes from it; neither needs the search machinery. Its
:attr:`RunData.front` is *the* result of the run — the non-dominated set of every successful evaluation on the
run's objectives — and the one front that tables, plots, headlines and export all read.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from starlab.assess import Objectives, Protocol, get_protocol, pareto_front
from starlab.assess.ladder import comparable_evaluations, measured, rung_correlations
from starlab.assess.record import Evaluation, spent
from starlab.genome import PRESETS, preset
from starlab.status import Status
from starlab.store.settings import ADDED_DEFAULTS, SEARCH_SETTINGS, range_problem, type_problem
from starlab.store.sqlite import Generation, RunStore, StoreError


def check_config_keys(config: Any, directory: str | Path) -> dict[str, Any]:
    """The stored config as a dict holding exactly the search settings' keys (:mod:`starlab.store.settings`), or a
    one-line error. A run stored before a setting existed reads as having its ``added`` default."""
    if not isinstance(config, dict):
        kind = "nothing" if config is None else f"a JSON {type(config).__name__}"
        raise StoreError("run {0} is corrupt: its stored search config is {1}, not an object", directory, kind)
    config = {**ADDED_DEFAULTS, **config}
    unknown, missing = sorted(set(config) - set(SEARCH_SETTINGS)), sorted(set(SEARCH_SETTINGS) - set(config))
    if unknown or missing:
        what = "; ".join(
            part for part in (unknown and f"unknown {', '.join(map(str, unknown))}",
                              missing and f"missing {', '.join(missing)}") if part
        )  # fmt: skip
        raise StoreError("run {0} is corrupt: its stored search config has settings {1}", directory, what)
    return config


def check_stored_config(config: Any, directory: str | Path) -> dict[str, Any]:
    """The stored config, checked as far as a reader needs: keys, types, the protocol and its settings, the
    objectives, depth and width. A one-line ``StoreError`` names the first setting that is wrong."""
    config = check_config_keys(config, directory)

    def corrupt(message: str) -> StoreError:
        return StoreError("run {0} is corrupt: its stored search config {1}", directory, message)

    for key in SEARCH_SETTINGS:
        problem = type_problem(key, config[key], given=False) or range_problem(key, config[key])
        if problem:
            raise corrupt(f"has {key} = {str(config[key])[:60]!r}, {problem.replace('must be', 'not', 1)}")
    try:  # the objectives as the run normalised them: names, protocol and its settings, depth and width
        protocol = get_protocol(config["protocol"]).with_settings(**config["protocol_settings"])
        Objectives(config["objectives"], protocol, config["depth"], config["width"] or protocol.width)
    except ValueError as error:
        raise corrupt(f"is not usable: {error}") from None
    return config


#: Evaluations that measured nothing: they keep the protocol's worst quality and never enter a front.
UNSUCCESSFUL = (Status.FAILED, Status.DIVERGED)


@dataclass
class RunData:
    """Everything a report shows, read from the run store.

    ``evaluations`` are the search protocol's, in the order they were stored, with the qualities the search
    compared: with a ladder, on its top rung's scale (measured there where promoted, estimated otherwise:
    :mod:`starlab.assess.ladder`). ``rungs`` holds every rung's evaluations as measured.
    """

    config: dict[str, Any]
    evaluations: list[Evaluation]
    generations: list[Generation]
    rungs: dict[str, list[Evaluation]] = field(default_factory=dict)

    @cached_property
    def protocol(self) -> Protocol:
        """The search protocol with the run's settings (what every candidate was assessed with)."""
        return get_protocol(self.config["protocol"]).with_settings(**self.config.get("protocol_settings", {}))

    @property
    def top(self) -> Protocol:
        """The protocol whose scale qualities are on: the ladder's top rung, or the search protocol."""
        ladder = self.config.get("ladder") or []
        return get_protocol(ladder[-1]) if len(ladder) > 1 else self.protocol

    @property
    def quality_meaning(self) -> str:
        """What the run's quality numbers are, in words."""
        if self.top is self.protocol:
            return self.protocol.quality_meaning
        return (f"{self.top.quality_meaning} on the top rung {self.top.name} (measured where promoted, "
                f"else estimated from the lower rungs)")  # fmt: skip

    def spent(self) -> dict[str, dict[str, float]]:
        """Per rung (cheapest first): evaluations stored and the wall, CPU and GPU seconds they took."""
        return {rung: spent(evaluations) for rung, evaluations in self.rungs.items()}

    def rung_correlations(self) -> list[dict]:
        """Per step up the ladder, Spearman's and Kendall's rank agreement over the genomes measured on both."""
        return rung_correlations(list(self.rungs), [measured(e) for e in self.rungs.values()])

    def surrogate_agreement(self) -> list[dict]:
        """Per screened generation, the rank agreement of the surrogate's predictions (made before the
        generation was assessed) with the qualities then measured."""
        screened = [g for g in self.generations if "surrogate" in g.stats]
        return [{"generation": g.generation, **g.stats["surrogate"]} for g in screened]

    @property
    def width(self) -> int:
        """The model width the run used (its config's, or the protocol's where the config left it out)."""
        return self.config.get("width") or self.protocol.width  # type: ignore[attr-defined]

    @cached_property
    def objectives(self) -> Objectives:
        """The run's objective vector, normalised exactly as the search normalised it."""
        depth, worst = self.config["depth"], self.top.worst_quality
        return Objectives(self.config["objectives"], self.protocol, depth, self.width, worst)

    @property
    def successful(self) -> list[Evaluation]:
        """The evaluations that measured a quality (neither failed nor diverged)."""
        return [e for e in self.evaluations if e.status not in UNSUCCESSFUL]

    @cached_property
    def front(self) -> list[dict[str, Any]]:
        """The Pareto front over all successful evaluations of the search protocol, on the run's objectives.

        Members are ``{"genome", "hash", <objective>: value...}`` with the values normalised as the stored
        generations have them (sizes relative to all-SA-1), best quality first (rank 1), ties by the other
        objectives, then the smaller parameters and cache. This — not the last population's front, which may
        have lost members found earlier — is the run's result.
        """
        evaluations = self.successful
        if not evaluations:
            return []
        values = self.objectives.values(evaluations)
        names = self.objectives.names
        members = [
            {"genome": e.genome, "hash": e.hash, **dict(zip(names, values[i].tolist(), strict=True))}
            for i, e in ((i, evaluations[i]) for i in pareto_front(values))
        ]
        by_hash = {e.hash: e for e in evaluations}

        def rank(member: dict[str, Any]) -> tuple:
            e = by_hash[member["hash"]]
            return (e.quality, *(member[n] for n in names), e.params, e.cache_bytes)

        return sorted(members, key=rank)

    @property
    def last_population_front(self) -> list[dict[str, Any]]:
        """The last generation's Pareto front as stored with it (its surviving population only), best quality
        first."""
        return sorted(self.generations[-1].front_members, key=lambda m: m.get("quality", 0.0))

    def baselines(self) -> dict[str, Evaluation]:
        """Presets of the run's depth that were evaluated (as seeds or otherwise), by name."""
        depth = self.config["depth"]
        if depth % 2:
            return {}
        hashes = {name: preset(name, depth).hash() for name in PRESETS}
        return {name: self._by_hash[h] for name, h in hashes.items() if h in self._by_hash}

    def evaluation_of(self, genome_hash: str) -> Evaluation | None:
        return self._by_hash.get(genome_hash)

    def status_counts(self) -> dict[str, int]:
        """How many evaluations ended with each status, most common first."""
        return dict(Counter(e.status.value for e in self.evaluations).most_common())

    def first_error(self) -> str | None:
        """The error message of the first failed evaluation that recorded one."""
        return next((e.metrics["error"] for e in self.evaluations if e.metrics.get("error")), None)

    @cached_property
    def _by_hash(self) -> dict[str, Evaluation]:
        return {e.hash: e for e in self.evaluations}


def load_run(directory: str | Path) -> RunData:
    """Read the run in ``directory``; a one-line error if it is not a search or has no generation yet."""
    with RunStore(directory, readonly=True) as store:
        config = store.get_meta("config")
        if config is None:
            raise StoreError("{0} holds no search config; is it a starlab search directory?", directory)
        config = check_stored_config(config, directory)
        rungs = {rung: store.evaluations(rung) for rung in config["ladder"] or [config["protocol"]]}
        generations = store.generations()
    if not generations:
        raise StoreError("{0}: the search has not finished a generation yet; nothing to report", directory)
    run = RunData(config, [], generations, rungs)
    run.evaluations = comparable_evaluations(list(rungs.values()), run.top.worst_quality)
    return run
