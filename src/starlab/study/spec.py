"""A study as a small declarative TOML file: genomes, protocol variants, seeds and analyses.

Everything a study file says is checked here, before any evaluation runs or anything is written: each bad input
is one ``ValueError`` line naming the field and what it allows (the CLI prints it as ``starlab: error: ...``).
A study's :meth:`StudySpec.identity` is what its stored evaluations were measured under; a run directory refuses
a study of another identity, so that results of different experiments are never mixed.

Example (``examples/study.toml``)::

    name = "proxy-vs-target"
    genomes = ["transformer++", "mamba", "11111-91111-11111-91111"]
    depth = 4
    seeds = [0, 1]
    [protocols.proxy]
    protocol = "synthetic-noisy"
    [protocols.target]
    protocol = "synthetic"
    [[analyses]]
    kind = "rank_correlation"
    proxy = "proxy"
    target = "target"
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from starlab.assess import Protocol, get_protocol, protocol_names
from starlab.assess.assessment import check_seed
from starlab.errors import one_line, show
from starlab.genome import PRESETS, Genome, resolve
from starlab.liv import check_width
from starlab.study.identity import protocol_identity

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover (Python 3.10)
    import tomli as tomllib

FIELDS = ("name", "genomes", "depth", "width", "seeds", "protocols", "analyses")
VARIANT_FIELDS = ("protocol", "settings")
ANALYSIS_FIELDS = {"rank_correlation": ("kind", "proxy", "target")}
#: a preset's depth when the study gives none: the depth protocol costs are measured at (``preset_depth``)
PRESET_DEPTH = 4
#: protocol keys and study names: what reads well in a table and a file name
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")


@dataclass(frozen=True)
class Analysis:
    """One analysis of the stored results: its ``kind`` and the protocol keys it compares."""

    kind: str
    proxy: str
    target: str

    def to_dict(self) -> dict[str, str]:
        return {"kind": self.kind, "proxy": self.proxy, "target": self.target}


@dataclass(frozen=True)
class StudySpec:
    """A checked study: genomes (canonical), seeds, protocol variants by key, and analyses."""

    name: str
    genomes: tuple[Genome, ...]
    depth: int | None
    width: int | None
    seeds: tuple[int, ...]
    protocols: dict[str, Protocol]
    analyses: tuple[Analysis, ...] = ()

    @classmethod
    def from_file(cls, path: str | Path) -> StudySpec:
        """Read and check a study file (TOML)."""
        path = Path(path)
        try:
            text = path.read_bytes().decode("utf-8")
        except IsADirectoryError:
            raise ValueError(f"study file {path} is a directory, not a TOML file") from None
        except (OSError, UnicodeDecodeError) as error:
            reason = getattr(error, "strerror", None) or "not UTF-8 text"
            raise ValueError(f"study file {path} cannot be read: {reason}") from None
        try:
            data = tomllib.loads(text)
        except (ValueError, RecursionError) as error:  # TOMLDecodeError, or an integer of 5,000 digits
            raise ValueError(f"study file {path} is not valid TOML: {one_line(error, 200)}") from None
        try:
            return cls.from_dict(data)
        except ValueError as error:
            raise ValueError(f"study file {path}: {one_line(error)}") from None

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> StudySpec:
        """Check a study's fields (as TOML reads them); a ``ValueError`` naming the first bad one."""
        _known(data, FIELDS, "field")
        name = _name(data.get("name"), "name")
        depth = None if data.get("depth") is None else _positive(data["depth"], "depth")
        width = None if data.get("width") is None else _width(data["width"])
        genomes = _genomes(data.get("genomes"), depth)
        seeds = _seeds(data.get("seeds"))
        protocols = _protocols(data.get("protocols"))
        analyses = _analyses(data.get("analyses", []), protocols)
        return cls(name, genomes, depth, width, seeds, protocols, analyses)

    def identity(self) -> dict[str, Any]:
        """What the stored evaluations were measured under (the analyses are not part of it: they only read)."""
        return {
            "name": self.name,
            "genomes": [g.text() for g in self.genomes],
            "depth": self.depth,
            "width": self.width,
            "seeds": list(self.seeds),
            "protocols": {key: protocol_identity(p) for key, p in self.protocols.items()},
        }

    def stored(self) -> dict[str, Any]:
        """The study as its run directory keeps it (meta ``study``): its identity and its analyses."""
        return {**self.identity(), "analyses": [a.to_dict() for a in self.analyses]}

    def jobs(self) -> list[tuple[Genome, str, int]]:
        """Every evaluation the study asks for: genome x protocol key x seed, in that order."""
        return [(g, key, seed) for g in self.genomes for key in self.protocols for seed in self.seeds]


def _known(data: Any, allowed: tuple[str, ...], what: str, where: str = "") -> None:
    if not isinstance(data, dict):
        raise ValueError(f"{where or 'a study'} must be a table with {', '.join(allowed)}, got {show(data)}")
    unknown = [key for key in data if key not in allowed]
    if unknown:
        place = f" in {where}" if where else ""
        raise ValueError(f"unknown {what} {show(unknown[0])}{place}; {what}s: {', '.join(allowed)}")


def _name(value: Any, field: str) -> str:
    if not isinstance(value, str) or not NAME.fullmatch(value):
        raise ValueError(f"{field} must be a name of letters, digits, '_', '.' or '-' (at most 64), got {show(value)}")
    return value


def _positive(value: Any, field: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value <= 256:
        raise ValueError(f"{field} must be an integer in 1..256, got {show(value)}")
    return value


def _width(value: Any) -> int:
    try:
        if isinstance(value, bool) or not isinstance(value, int) or value > 2**20:
            raise ValueError
        return check_width(value)
    except ValueError:
        raise ValueError(f"width must be a positive multiple of 8 (at most 2**20), got {show(value)}") from None


def _genomes(value: Any, depth: int | None) -> tuple[Genome, ...]:
    if not isinstance(value, list) or not value:
        raise ValueError(f"genomes must be a non-empty list of genome texts or presets ({', '.join(PRESETS)}), "
                         f"got {show(value)}")  # fmt: skip
    genomes: list[Genome] = []
    for i, text in enumerate(value):
        if not isinstance(text, str):
            raise ValueError(f"genomes[{i}] must be a genome text or a preset name, got {show(text)}")
        try:
            genome = resolve(text, None, default_depth=depth or PRESET_DEPTH).canonical()
        except ValueError as error:
            raise ValueError(f"genomes[{i}]: {one_line(error, 200)}") from None
        if any(g.hash() == genome.hash() for g in genomes):
            raise ValueError(f"genomes[{i}] {show(text)} is the same genome as one before it; list each once")
        genomes.append(genome)
    return tuple(genomes)


def _seeds(value: Any) -> tuple[int, ...]:
    if not isinstance(value, list) or not value:
        raise ValueError(f"seeds must be a non-empty list of non-negative integers, got {show(value)}")
    seeds = []
    for i, seed in enumerate(value):
        try:
            seeds.append(check_seed(seed, f"seeds[{i}]"))
        except ValueError as error:
            raise ValueError(str(error)) from None
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"seeds must be different from each other, got {show(value)}")
    return tuple(seeds)


def _protocols(value: Any) -> dict[str, Protocol]:
    if not isinstance(value, dict) or not value:
        raise ValueError("protocols must be a non-empty table of variants, such as [protocols.proxy] with "
                         f"protocol = \"synthetic\", got {show(value)}")  # fmt: skip
    variants = {}
    for key, variant in value.items():
        where = f"protocols.{_name(key, 'a protocols key')}"
        _known(variant, VARIANT_FIELDS, "field", where)
        name = variant.get("protocol")
        if not isinstance(name, str) or name not in protocol_names():
            raise ValueError(f"{where}.protocol must be one of {', '.join(protocol_names())}, got {show(name)}")
        settings = variant.get("settings", {})
        if not isinstance(settings, dict):
            raise ValueError(f"{where}.settings must be a table of protocol settings, got {show(settings)}")
        try:
            variants[key] = get_protocol(name).with_settings(**settings)
        except (ValueError, TypeError) as error:
            raise ValueError(f"{where}.settings: {one_line(error, 200)}") from None
    return variants


def _analyses(value: Any, protocols: dict[str, Protocol]) -> tuple[Analysis, ...]:
    if not isinstance(value, list):
        raise ValueError(f"analyses must be a list of tables ([[analyses]]), got {show(value)}")
    analyses = []
    for i, item in enumerate(value):
        where = f"analyses[{i}]"
        kind = item.get("kind") if isinstance(item, dict) else None
        if kind not in ANALYSIS_FIELDS:
            raise ValueError(f"{where}.kind must be one of {', '.join(ANALYSIS_FIELDS)}, got {show(kind)}")
        _known(item, ANALYSIS_FIELDS[kind], "field", where)
        for side in ("proxy", "target"):
            if item.get(side) not in protocols:
                raise ValueError(f"{where}.{side} must be a key of protocols ({', '.join(protocols)}), "
                                 f"got {show(item.get(side))}")  # fmt: skip
        if item["proxy"] == item["target"]:
            raise ValueError(f"{where}: proxy and target must be different protocol keys, got {show(item['proxy'])}")
        analyses.append(Analysis(kind, item["proxy"], item["target"]))
    return tuple(analyses)
