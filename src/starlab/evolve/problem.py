"""The search problem: genomes as a pymoo integer problem, and X -> F as pymoo intends.

pymoo sees a genome as a fixed-length integer vector with per-gene bounds; everything it does (sorting,
crowding, tournaments, hypervolume) works on that vector. The vector is ``depth`` slots of the genes
:class:`SlotLayout` lists (the class, then the four sharing genes; with ``operator_genes``,
:class:`OperatorSlotLayout`: the five operator genes in place of the class), then, with ``backbone_genes``,
the three backbone genes (norm, position, residual). With a fixed depth every slot is occupied and the vector is
exactly the genome's ``5 * depth`` integers. With a depth range ``min_depth..depth`` the vector keeps room for
the deepest genome: a class gene of :data:`EMPTY` (0) marks a slot as empty, only slots past ``min_depth`` may
be empty (their class gene's lower bound is 0, the others' a class id), and decoding drops the empty slots, so
a genome's depth is its number of occupied slots and is always within the range. Encoding writes a genome's
slots first and the empty ones after them.

Decoding repairs, so every candidate evaluated is valid: genes are clipped to range, sharing group ids are
renumbered by first appearance when slots can be dropped (group ids are labels; renumbering keeps every group
and fits them in ``1..len`` of the shorter genome), then :meth:`Genome.repair` sets incompatible sharing to 1.
Evaluating a population decodes it, has every genome assessed (by whatever ``assess`` the search plugs in: the
store first, then the executor) and turns the evaluations into the objective vectors with
:class:`~starlab.assess.Objectives`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from pymoo.core.problem import Problem

from starlab.assess import Evaluation, Objectives
from starlab.genome import BACKBONE_GENE_RANGES, FIELDS, BackboneGenes, Genome, Slot, gene_ranges
from starlab.genome.backbone_genes import BACKBONE_FIELDS
from starlab.liv import class_ids, get_class
from starlab.liv.operator import NONLINEARITY_CODES, OPERATOR_FIELDS, OPERATOR_GENE_RANGES

#: Assesses genomes (in order) and returns one evaluation each.
AssessGenomes = Callable[[Sequence[Genome]], list[Evaluation]]
#: A class gene of 0 marks an empty slot of a variable-depth vector (no class has id 0).
EMPTY = 0
#: The slot fields that hold sharing-group ids (labels, renumbered when slots are dropped).
GROUP_FIELDS = (Slot._fields.index("featurizer_group"), Slot._fields.index("feature_group"))


@dataclass(frozen=True)
class Gene:
    """One integer of the search vector: inclusive bounds, and ``values`` where only some integers between them
    are allowed (class ids need not be contiguous); mutation and random slots draw from ``values``."""

    name: str
    low: int
    high: int
    values: tuple[int, ...] | None = None


class SlotLayout:
    """What one slot is as search genes: the one place that knows it.

    Today a slot's genes are the genome's own five integers, the class gene first. Operator genes will replace
    the class gene by the five integers of an operator genome; :meth:`genes`, :meth:`to_slot` and
    :meth:`from_slot` are what then changes. The first gene is the one whose :data:`EMPTY` marks an empty slot.
    """

    def genes(self, depth: int) -> tuple[Gene, ...]:
        """The slot's genes in a genome of ``depth`` slots (sharing groups range over ``1..depth``)."""
        (low, high), *sharing = gene_ranges(depth)
        rest = (Gene(name, lo, hi) for name, (lo, hi) in zip(FIELDS[1:], sharing, strict=True))
        return Gene(FIELDS[0], low, high, values=tuple(class_ids())), *rest

    @property
    def size(self) -> int:
        return len(FIELDS)

    def to_slot(self, genes: Sequence[int]) -> list[int]:
        """A genome slot (as :meth:`Genome.from_slots` reads it) from the slot's genes."""
        return [int(gene) for gene in genes]

    def from_slot(self, slot: Slot) -> list[int]:
        """The slot's genes; a class outside the pool (an operator genome) has no class gene here."""
        if not isinstance(slot.cls, int):
            raise ValueError(f"slot {slot.text()} has an operator genome for its class; this search's class genes "
                             "hold pool class ids (search with operator_genes, --operator-genes)")  # fmt: skip
        return list(slot)

    def empty(self) -> list[int]:
        """The genes of an empty slot: :data:`EMPTY`, then every other gene at its lowest."""
        return [EMPTY, *(gene.low for gene in self.genes(1)[1:])]

    def random(self, depth: int, rng: np.random.Generator) -> list[int]:
        """A uniformly random slot of a genome of ``depth`` slots (in :func:`starlab.genome.random_genome`'s
        draw order, so a fixed-depth search samples the genomes it always did)."""
        genes = self.genes(depth)
        drawn = [int(rng.integers(gene.low, gene.high + 1)) for gene in genes]
        for index, gene in enumerate(genes):
            if gene.values is not None:
                drawn[index] = int(rng.choice(gene.values))
        return drawn


class OperatorSlotLayout(SlotLayout):
    """Operator genes: a slot's class is its operator genome ``[f, t, s, n, c]`` (:mod:`starlab.liv.operator`),
    five genes, so mutation and crossover act below the class level. Decoding repairs the operator genome
    (the featurizer gene ``f`` is kept, the parts that do not fit it take its pool values) and a genome equal to
    a pool class's is that class. The featurizer gene comes first: its :data:`EMPTY` marks an empty slot."""

    def genes(self, depth: int) -> tuple[Gene, ...]:
        operator = [
            Gene(name, low, high) for name, (low, high) in zip(OPERATOR_FIELDS, OPERATOR_GENE_RANGES, strict=True)
        ]
        nonlinearity = OPERATOR_FIELDS.index("nonlinearity")
        operator[nonlinearity] = dataclasses.replace(operator[nonlinearity], values=NONLINEARITY_CODES)
        return *operator, *super().genes(depth)[1:]

    @property
    def size(self) -> int:
        return len(OPERATOR_FIELDS) + len(FIELDS) - 1

    def to_slot(self, genes: Sequence[int]) -> list:
        operator, sharing = [int(g) for g in genes[: len(OPERATOR_FIELDS)]], genes[len(OPERATOR_FIELDS) :]
        return [operator, *(int(g) for g in sharing)]

    def from_slot(self, slot: Slot) -> list[int]:
        return [*get_class(slot.cls).operator_genome, *slot[1:]]


class GenomeProblem(Problem):
    """Genomes of ``min_depth..depth`` slots (default: exactly ``depth``), with the backbone genes when
    ``backbone_genes`` and operator genomes for classes when ``operator_genes``; F = ``objectives`` of what
    ``assess`` returns (both optional for operators)."""

    def __init__(
        self, depth: int, objectives: Objectives | None = None, assess: AssessGenomes | None = None, *,
        min_depth: int | None = None, backbone_genes: bool = False, operator_genes: bool = False,
    ) -> None:  # fmt: skip
        self.depth, self.objectives, self.assess = depth, objectives, assess
        self.min_depth = depth if min_depth is None else min_depth
        if not 1 <= self.min_depth <= depth:
            raise ValueError(f"min_depth must be in 1..depth ({depth}), got {self.min_depth}")
        self.backbone_genes, self.operator_genes = backbone_genes, operator_genes
        self.layout = OperatorSlotLayout() if operator_genes else SlotLayout()
        self.genes = self._gene_table()
        n_obj = len(objectives.names) if objectives else 1
        xl, xu = (np.array([getattr(gene, bound) for gene in self.genes]) for bound in ("low", "high"))
        super().__init__(n_var=len(self.genes), n_obj=n_obj, xl=xl, xu=xu, vtype=int)

    def _gene_table(self) -> list[Gene]:
        genes: list[Gene] = []
        for index in range(self.depth):
            slot = list(self.layout.genes(self.depth))
            if index >= self.min_depth:  # a slot the shallowest genomes leave empty
                slot[0] = dataclasses.replace(slot[0], low=EMPTY)
            genes += slot
        if self.backbone_genes:
            genes += [Gene(n, lo, hi) for n, (lo, hi) in zip(BACKBONE_FIELDS, BACKBONE_GENE_RANGES, strict=True)]
        return genes

    # ---- the vector's parts ------------------------------------------------------------------------------
    @property
    def variable(self) -> bool:
        """Whether genomes of different depths are searched (slots may be empty, inserted and deleted)."""
        return self.min_depth < self.depth

    @property
    def slot_genes(self) -> int:
        """How many leading genes of the vector are slot genes (the backbone genes follow them)."""
        return self.depth * self.layout.size

    def class_columns(self) -> np.ndarray:
        return np.arange(0, self.slot_genes, self.layout.size)

    def choice_columns(self) -> list[tuple[np.ndarray, tuple[int, ...]]]:
        """The columns whose genes draw from a list of values, grouped by list (all class genes share one)."""
        groups: dict[tuple[int, ...], list[int]] = {}
        for column, gene in enumerate(self.genes):
            if gene.values is not None:
                groups.setdefault(gene.values, []).append(column)
        return [(np.array(columns), values) for values, columns in groups.items()]

    def depths(self, X: np.ndarray) -> np.ndarray:
        """The number of occupied slots of every vector (the last axis is the vector)."""
        return (np.asarray(X)[..., self.class_columns()] != EMPTY).sum(axis=-1)

    def occupied_genes(self, X: np.ndarray) -> np.ndarray:
        """Per gene of every row: does it belong to an occupied slot (backbone genes always do)."""
        occupied = np.ones(X.shape, dtype=bool)
        slots = X[:, self.class_columns()] != EMPTY
        occupied[:, : self.slot_genes] = np.repeat(slots, self.layout.size, axis=1)
        return occupied

    def slot_rows(self, x: np.ndarray) -> list[list[int]]:
        """The genes of the occupied slots of vector ``x``, in order."""
        rows = np.asarray(x)[: self.slot_genes].reshape(self.depth, self.layout.size)
        return [[int(g) for g in row] for row in rows if row[0] != EMPTY]

    def packed(self, rows: Sequence[Sequence[int]]) -> np.ndarray:
        """The slot genes of a vector holding ``rows`` first and empty slots after them."""
        empty = [self.layout.empty()] * (self.depth - len(rows))
        return np.array([gene for row in [*rows, *empty] for gene in row], dtype=int)

    # ---- genomes -----------------------------------------------------------------------------------------
    def _evaluate(self, X: np.ndarray, out: dict, *args, **kwargs) -> None:
        if self.objectives is None or self.assess is None:
            raise ValueError("this GenomeProblem was built without objectives and an assess function")
        out["F"] = self.objectives.values(self.assess([self.decode(x) for x in X]))

    def decode(self, x: np.ndarray) -> Genome:
        """A valid genome from a gene vector (out-of-range genes clipped, empty slots dropped, group ids
        renumbered where slots can be dropped, then sharing repaired)."""
        genes = np.clip(np.rint(x), self.xl, self.xu).astype(int)
        slots = [self.layout.to_slot(row) for row in self.slot_rows(genes)]
        if self.variable:
            slots = renumbered(slots)
        backbone = [int(g) for g in genes[self.slot_genes :]] if self.backbone_genes else BackboneGenes()
        return Genome.from_slots(slots, repair=True, backbone=backbone)

    def encode(self, genome: Genome) -> np.ndarray:
        if not self.min_depth <= len(genome) <= self.depth:
            raise ValueError(
                f"genome {genome.text()} has {len(genome)} slots; this search uses depth {self.depth_text()}"
            )
        if not self.backbone_genes and not genome.backbone.is_default:
            raise ValueError(f"genome {genome.text()} has backbone genes {genome.backbone.text()}; this search keeps "
                             "the default backbone (it evolves backbone genes only when told to)")  # fmt: skip
        slots = renumbered(genome.slots) if self.variable else genome.slots  # as decoding would return it
        backbone = np.array(genome.backbone if self.backbone_genes else (), dtype=int)
        return np.concatenate([self.packed([self.layout.from_slot(Slot(*slot)) for slot in slots]), backbone])

    def depth_text(self) -> str:
        """``"4"`` or ``"2:4"``, as ``--depth`` takes it."""
        return depth_text(self.min_depth, self.depth)

    def random_genome(self, rng: np.random.Generator) -> Genome:
        """A uniformly random valid genome: its depth uniform in the range, then every gene uniform (a fixed
        depth draws exactly what :func:`starlab.genome.random_genome` draws)."""
        depth = int(rng.integers(self.min_depth, self.depth + 1)) if self.variable else self.depth
        slots = [self.layout.to_slot(self.layout.random(depth, rng)) for _ in range(depth)]
        backbone = BackboneGenes()
        if self.backbone_genes:
            backbone = BackboneGenes(*(int(rng.integers(lo, hi + 1)) for lo, hi in BACKBONE_GENE_RANGES))
        return Genome.from_slots(slots, repair=True, backbone=backbone)


def depth_text(min_depth: int | None, depth: int) -> str:
    """A search's depth as ``--depth`` takes it: ``"4"``, or ``"2:4"`` for a range (``min_depth`` below
    ``depth``). One spelling, for the problem, the config and every message that names the depth."""
    return f"{min_depth}:{depth}" if min_depth is not None and min_depth < depth else str(depth)


def renumbered(slots: Sequence[Sequence[int]]) -> list[list[int]]:
    """``slots`` with each kind of sharing-group id renumbered 1, 2, ... by first appearance: the same groups,
    with ids within ``1..len(slots)``."""
    numbers: tuple[dict[int, int], ...] = tuple({} for _ in GROUP_FIELDS)
    result = []
    for slot in slots:
        slot = list(slot)
        for field, seen in zip(GROUP_FIELDS, numbers, strict=True):
            slot[field] = seen.setdefault(slot[field], len(seen) + 1)
        result.append(slot)
    return result
