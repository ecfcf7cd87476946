"""Named genomes (baselines and seeds), usable anywhere a genome is: ``transformer++``, ``striped-mamba``, ...

Every preset is a stack of (token mixer, GMemless) pairs with no sharing, so depth must be even. Striped
hybrids put softmax attention (SA-1) in 25% of the mixer positions — MAD's compute-optimal hybridisation
ratio — spread evenly with attention closing each stripe (at depth 4 that is MAD's ``[hyena, swiglu,
attention, swiglu]``), and the hybrid's other family everywhere else.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

from starlab.errors import Setting, SettingError
from starlab.genome.genome import MAX_SLOTS, Genome
from starlab.liv.pool import get_class

ATTENTION_FRACTION = 0.25


def _pairs(mixers: list[str]) -> Genome:
    slots = []
    for name in mixers:
        slots += [(get_class(name).id, 1, 1, 1, 1), (get_class("GMemless").id, 1, 1, 1, 1)]
    return Genome.from_slots(slots)


def _uniform(mixer: str) -> Callable[[int], list[str]]:
    return lambda n: [mixer] * n


def _striped(other: str) -> Callable[[int], list[str]]:
    def mixers(n: int) -> list[str]:
        n_attention = max(1, round(ATTENTION_FRACTION * n))
        # mixer i is attention when the running count of attention slots steps up at i
        return ["SA-1" if (i + 1) * n_attention // n > i * n_attention // n else other for i in range(n)]

    return mixers


PRESETS: dict[str, Callable[[int], list[str]]] = {
    "transformer++": _uniform("SA-1"),
    "striped-mamba": _striped("Rec-1"),
    "striped-hyena": _striped("GConv-2"),
    "mamba": _uniform("Rec-1"),
    "hyena": _uniform("GConv-2"),
    "gconv": _uniform("GConv-1"),
}

DEFAULT_DEPTH = 24


def preset(name: str, depth: int = DEFAULT_DEPTH) -> Genome:
    """The named preset at ``depth`` slots (even, at least 2)."""
    key = name.strip().lower()
    if key not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; presets: {', '.join(PRESETS)}")
    if isinstance(depth, bool) or not isinstance(depth, int) or not 2 <= depth <= MAX_SLOTS or depth % 2:
        raise ValueError(
            f"preset depth must be an even integer in 2..{MAX_SLOTS} (mixer + GMemless pairs), got {depth!r}"
        )
    return _pairs(PRESETS[key](depth // 2))


def resolve(text: str, depth: int | None = None, repair: bool = False, default_depth: int = DEFAULT_DEPTH) -> Genome:
    """A genome from a preset name, a JSON file path, a JSON document or the text form.

    ``depth`` is a preset's depth (refused for a genome, whose text fixes it); without it a preset has
    ``default_depth`` slots: a caller that assesses sizes a preset for its protocol (``Protocol.preset_depth``).
    """
    stripped = text.strip()
    if stripped.lower() in PRESETS:
        return preset(stripped, depth or default_depth)
    if stripped.startswith("{") or re.match(r"\[\s*[\[{\]]", stripped):  # JSON; "[1,2,1,1,3],..." is text
        return Genome.from_json(stripped, repair=repair)
    if stripped.endswith(".json"):
        path = Path(stripped)
        if path.is_dir():
            raise ValueError(f"genome file {stripped} is a directory")
        if not path.is_file():
            raise ValueError(f"genome file {stripped} does not exist")
        try:
            document = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as error:
            raise ValueError(f"genome file {stripped} cannot be read as UTF-8 text ({error})") from None
        try:
            return Genome.from_json(document, repair=repair)
        except ValueError as error:
            raise ValueError(f"genome file {stripped}: {error}") from None
    if depth is not None:
        raise SettingError("{0} applies to presets only; a genome's text fixes its depth", Setting("depth"))
    try:
        return Genome.parse(stripped, repair=repair)
    except ValueError as error:
        if any(c.isalpha() for c in stripped):  # meant as a name, most likely
            raise ValueError(
                f"{stripped!r} is neither a genome preset ({', '.join(PRESETS)}) nor a genome ({error})"
            ) from None
        raise
