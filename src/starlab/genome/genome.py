"""STAR's backbone genome: five integers per LIV slot, with text and JSON forms, repair and canonical form.

Per slot (docs/genome.md):

1. ``cls``                 LIV class id (a key of the pool), or an operator genome ``(f, t, s, n, c)`` of a
                           class outside the pool (operator genes, :mod:`starlab.liv.operator`); written
                           ``[1,2,1,1,3],1,1,1,1`` in text. An operator genome that is a pool class is stored
                           as its id, so both spellings are one architecture.
2. ``featurizer_group``    featurizer-sharing group, 1..N
3. ``featurizer_strategy`` 1 no weights shared, 2 all featurizer weights shared
4. ``feature_group``       feature-group-sharing group, 1..N
5. ``feature_strategy``    1 none, 2 reuse the earliest member's cached features

Sharing happens between slots with the same group id and strategy 2, and only when they are compatible: the
same class for featurizer sharing; equal feature signatures (same kind, differential flag and cached shapes)
for feature-group sharing. The earliest compatible member of a group leads it. A genome is *valid* when every
strategy-2 slot is compatible with its group's leader; :meth:`Genome.repair` makes any in-range genome valid by
setting incompatible strategies to 1. A group whose only member shares is a valid no-op; the canonical form
drops it, sets the group id of non-sharing slots to 1 and numbers sharing groups by first appearance, so
genomes that decode to the same model have the same canonical text and hash.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np

from starlab.genome.backbone_genes import BackboneGenes
from starlab.liv.operator import ClassKey, class_key, format_key, get_class, repair_operator
from starlab.liv.pool import class_ids

FIELDS = ("class", "featurizer_group", "featurizer_strategy", "feature_group", "feature_strategy")
NO_SHARING, SHARING = 1, 2
DEFAULT_BACKBONE = BackboneGenes()
STRATEGIES = (NO_SHARING, SHARING)
JSON_FORMAT = "starlab-genome"
#: The deepest backbone a genome describes. Ten times the paper's deepest (24 slots) and beyond what any
#: assessment here trains in reasonable time; a bound that turns a typo (``--depth 1000000``) into an error.
MAX_SLOTS = 256


class Slot(NamedTuple):
    cls: ClassKey
    featurizer_group: int
    featurizer_strategy: int
    feature_group: int
    feature_strategy: int

    def text(self) -> str:
        if isinstance(self.cls, tuple):
            return ",".join((format_key(self.cls), *map(str, self[1:])))
        if all(0 <= v <= 9 for v in self):
            return "".join(map(str, self))
        return ",".join(map(str, self))

    def json(self) -> list:
        return [list(self.cls) if isinstance(self.cls, tuple) else self.cls, *self[1:]]


def gene_ranges(depth: int) -> list[tuple[int, int]]:
    """Inclusive (low, high) of each of the five genes of a slot, for a genome of ``depth`` slots."""
    ids = class_ids()
    return [(ids[0], ids[-1]), (1, depth), (1, 2), (1, depth), (1, 2)]


def _check_class(slot: int, value: Any, low: int, high: int, repair: bool) -> ClassKey:
    """A pool id in range, or an operator genome (repaired to validity when ``repair``) as its class key."""
    if isinstance(value, (list, tuple)):
        try:
            return class_key(repair_operator(value) if repair else value)
        except ValueError as error:
            raise ValueError(f"slot {slot}, field 'class': {error}") from None
    return _check_value(slot, "class", value, low, high)


def _check_value(slot: int, field: str, value: Any, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"slot {slot}, field {field!r}: expected an integer in {low}..{high}, got {value!r}")
    if not low <= value <= high:
        raise ValueError(f"slot {slot}, field {field!r}: {value} is not in {low}..{high}")
    return int(value)


@dataclass(frozen=True)
class Genome:
    """An immutable backbone genome. Construct through :meth:`from_slots`, :meth:`parse` or :meth:`from_json`.

    ``backbone`` holds the block-structure genes (:mod:`starlab.genome.backbone_genes`); the default is STAR's.
    """

    slots: tuple[Slot, ...]
    backbone: BackboneGenes = DEFAULT_BACKBONE

    # ---- construction ---------------------------------------------------------------------------------
    @classmethod
    def from_slots(
        cls, slots: Iterable[Sequence[int]], repair: bool = False, backbone: Sequence[int] = DEFAULT_BACKBONE
    ) -> Genome:
        """Check ranges (and, unless ``repair``, sharing compatibility) of a list of 5-integer slots."""
        raw = list(slots)
        if not 1 <= len(raw) <= MAX_SLOTS:
            raise ValueError(f"a genome has 1..{MAX_SLOTS} slots, got {len(raw)}")
        ranges = gene_ranges(len(raw))
        checked = []
        for index, values in enumerate(raw, start=1):
            if isinstance(values, (str, bytes)) or not isinstance(values, Sequence) or len(values) != 5:
                raise ValueError(f"slot {index}: expected 5 integers ({', '.join(FIELDS)}), got {values!r}")
            (low, high), *rest = ranges
            genes = (
                _check_value(index, f, v, lo, hi) for f, v, (lo, hi) in zip(FIELDS[1:], values[1:], rest, strict=True)
            )
            checked.append(Slot(_check_class(index, values[0], low, high, repair), *genes))
        genome = cls(tuple(checked), BackboneGenes.checked(backbone))
        return genome.repair() if repair else genome.validate()

    @classmethod
    def parse(cls, text: str, repair: bool = False) -> Genome:
        """Parse the text form: slots joined by ``-``, each five digits or five comma-separated integers, after
        an optional backbone-gene prefix (``b212:``)."""
        if not isinstance(text, str) or not text.strip():
            raise ValueError("genome text is empty; expected slots like 11111-91111")
        text, backbone = text.strip(), DEFAULT_BACKBONE
        if ":" in text:
            prefix, text = text.split(":", 1)
            backbone = BackboneGenes.parse(prefix.strip())
        slots = []
        for index, part in enumerate(text.strip().split("-"), start=1):
            slots.append(_parse_slot(index, part.strip()))
        return cls.from_slots(slots, repair=repair, backbone=backbone)

    @classmethod
    def from_json(cls, document: str | dict | list, repair: bool = False) -> Genome:
        """Read the JSON form: ``{"format": "starlab-genome", "slots": [[...5 ints...], ...]}`` or a bare list."""
        if isinstance(document, str):
            try:
                document = json.loads(document)
            except json.JSONDecodeError as error:
                raise ValueError(f"genome JSON is not valid JSON: {error.msg} at position {error.pos}") from None
            except RecursionError:
                raise ValueError("genome JSON is nested too deeply; a genome is a list of 5-integer lists") from None
        if isinstance(document, dict):
            if "slots" not in document:
                raise ValueError("genome JSON object needs a 'slots' list of 5-integer lists")
            fmt = document.get("format", JSON_FORMAT)
            if fmt != JSON_FORMAT:
                raise ValueError(f"genome JSON 'format' must be {JSON_FORMAT!r}, got {fmt!r}")
            backbone = document.get("backbone", DEFAULT_BACKBONE)
            if not isinstance(backbone, list | tuple):
                raise ValueError(f"genome JSON 'backbone' must be a list of 3 integers, got {backbone!r}")
            document = document["slots"]
        else:
            backbone = DEFAULT_BACKBONE
        if not isinstance(document, list):
            raise ValueError(
                f"genome JSON must be an object with 'slots' or a list of slots, got {type(document).__name__}"
            )
        return cls.from_slots(document, repair=repair, backbone=backbone)

    # ---- forms ----------------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.slots)

    def __str__(self) -> str:
        return self.text()

    def text(self) -> str:
        slots = "-".join(slot.text() for slot in self.slots)
        return slots if self.backbone.is_default else f"{self.backbone.text()}:{slots}"

    def to_json(self, **metadata: Any) -> dict:
        backbone = {} if self.backbone.is_default else {"backbone": list(self.backbone)}
        return {
            "format": JSON_FORMAT,
            "version": 1,
            "text": self.text(),
            "slots": [s.json() for s in self.slots],
            **backbone,
            **metadata,
        }

    # ---- sharing --------------------------------------------------------------------------------------
    def featurizer_leaders(self) -> list[int | None]:
        """For each slot, the index of the slot whose featurizer it uses (itself if it leads), or None."""
        return _SHARING_KINDS[0].leaders(self.slots)

    def feature_sources(self) -> list[int | None]:
        """For each slot, the index of the slot whose cached features it reuses (itself if it leads), or None."""
        return _SHARING_KINDS[1].leaders(self.slots)

    def validate(self) -> Genome:
        """Raise a one-line ``ValueError`` for the first incompatible sharing; return self when valid."""
        for sharing in _SHARING_KINDS:
            for index, (slot, leader) in enumerate(zip(self.slots, sharing.leaders(self.slots), strict=True)):
                if slot[sharing.strategy] == SHARING and leader is None:
                    raise ValueError(
                        f"slot {index + 1}, field {FIELDS[sharing.strategy]!r}: {sharing.why_not(self.slots, index)}; "
                        "use strategy 1 or repair the genome"
                    )
        return self

    def repair(self) -> Genome:
        """The nearest valid genome: every incompatible sharing strategy becomes 1 (in slot order)."""
        slots = list(self.slots)
        for sharing in _SHARING_KINDS:
            for index, leader in enumerate(sharing.leaders(slots)):
                if slots[index][sharing.strategy] == SHARING and leader is None:
                    slots[index] = slots[index]._replace(**{Slot._fields[sharing.strategy]: NO_SHARING})
        return Genome(tuple(slots), self.backbone)

    def canonical(self) -> Genome:
        """Repaired, no-op sharing dropped, group ids 1 for non-sharing slots and by first appearance otherwise."""
        repaired = self.repair()
        fields = []
        for leaders in (repaired.featurizer_leaders(), repaired.feature_sources()):
            members: dict[int, int] = {}
            for leader in leaders:
                if leader is not None:
                    members[leader] = members.get(leader, 0) + 1
            numbering = {leader: n for n, leader in enumerate((lead for lead in members if members[lead] > 1), 1)}
            fields.append([(numbering[lead], SHARING) if lead in numbering else (1, NO_SHARING) for lead in leaders])
        return Genome(
            tuple(
                Slot(s.cls, fg, fs, gg, gs)
                for s, (fg, fs), (gg, gs) in zip(repaired.slots, fields[0], fields[1], strict=True)
            ),
            self.backbone,
        )

    def hash(self) -> str:
        """Identity of the architecture: 16 hex digits of the SHA-256 of the canonical text."""
        return hashlib.sha256(self.canonical().text().encode()).hexdigest()[:16]


def _integers(text: str) -> list[int] | None:
    items = [item.strip() for item in text.split(",")]
    return [int(i) for i in items] if all(i.isascii() and i.isdigit() for i in items) else None


def _parse_slot(index: int, part: str) -> list:
    """``11111``, ``12,1,1,1,1`` or ``[1,2,1,1,3],1,1,1,1`` as a slot's five values."""
    operator, original = None, part
    if part.startswith("[") and "]" in part:
        inner, _, part = part[1:].partition("]")
        operator, part = _integers(inner), part.removeprefix(",")
        if operator is None or len(operator) != 5:
            raise ValueError(
                f"slot {index}: an operator genome is 5 comma-separated integers [f,t,s,n,c], got [{inner}]"
            )
        part = "0," + part  # a placeholder class id for the checks below
    if "," in part:
        items = _integers(part)
    elif len(part) == 5 and part.isascii() and part.isdigit():
        items = [int(i) for i in part]
    else:
        items = None
    if items is None or len(items) != 5:
        expected = "5 digits, 5 comma-separated integers or [f,t,s,n,c] and 4 integers"
        raise ValueError(f"slot {index}: expected {expected}, got {original!r}")
    return [operator, *items[1:]] if operator is not None else items


@dataclass(frozen=True)
class _Sharing:
    """One of the two sharing mechanisms: which genes hold its group and strategy, and what must match."""

    group: int
    strategy: int
    what: str

    def key(self, slot: Slot) -> object:
        """Members of a group must have equal keys; ``None`` means the slot can never share this way."""
        return slot.cls if self.group == 1 else get_class(slot.cls).feature_signature

    def leaders(self, slots: Sequence[Slot]) -> list[int | None]:
        """Leader of each sharing slot: the group's first sharing slot with a key; None if incompatible."""
        first: dict[int, int] = {}
        result: list[int | None] = []
        for index, slot in enumerate(slots):
            if slot[self.strategy] != SHARING or self.key(slot) is None:
                result.append(None)
                continue
            leader = first.setdefault(slot[self.group], index)
            result.append(leader if self.key(slots[leader]) == self.key(slot) else None)
        return result

    def why_not(self, slots: Sequence[Slot], index: int) -> str:
        slot, name = slots[index], get_class(slots[index].cls).name
        if self.key(slot) is None:
            return f"{name} caches nothing, so it has no {self.what} to share"
        leader = next(
            i
            for i, s in enumerate(slots)
            if s[self.group] == slot[self.group] and s[self.strategy] == SHARING and self.key(s) is not None
        )
        return (
            f"{name} cannot share {self.what} with slot {leader + 1} ({get_class(slots[leader].cls).name}), "
            f"the first member of group {slot[self.group]}"
        )


_SHARING_KINDS = (
    _Sharing(group=1, strategy=2, what="featurizer weights"),
    _Sharing(group=3, strategy=4, what="features"),
)


def random_genome(depth: int, rng: np.random.Generator | int | None = None) -> Genome:
    """A uniformly random in-range genome of ``depth`` slots, repaired to validity."""
    if isinstance(depth, bool) or not isinstance(depth, int) or not 1 <= depth <= MAX_SLOTS:
        raise ValueError(f"depth must be an integer in 1..{MAX_SLOTS}, got {depth!r}")
    rng = np.random.default_rng(rng)
    ranges = gene_ranges(depth)
    ids = class_ids()
    slots = []
    for _ in range(depth):
        genes = [int(rng.integers(lo, hi + 1)) for lo, hi in ranges]
        genes[0] = int(rng.choice(ids))  # ids need not be contiguous
        slots.append(genes)
    return Genome.from_slots(slots, repair=True)
