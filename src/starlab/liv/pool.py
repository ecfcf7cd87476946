"""The LIV class pool: STAR's alphabet of 17 operator classes, as plain data.

A class is an operator genome (featurizer class, token mixing, sparsity, nonlinearity, channel mixing) plus the
featurizer settings that make it concrete (key/value repeat factor, state expansion, kernel length, ...) and
the name of the layer *kind* that implements it. Nothing here imports torch: genomes, repair and search read
this table to know which classes exist and which of them can share features, without building a model.

Adding a class is one :func:`register` call with a new id; evolution picks it up from :func:`class_ids`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

#: Operator-genome codes (docs/liv.md, "Operator genes"). Token mixing and channel mixing are the paper's option pools.
TOKEN_MIXING = {1: "diagonal", 2: "low-rank", 3: "scaled Toeplitz", 4: "semi-separable"}
CHANNEL_MIXING = {1: "diagonal", 2: "dense", 3: "grouped"}
NONLINEARITY = {1: "none", 2: "softmax", 4: "SiLU gate"}
SPARSITY = {1: "none"}

#: Operator family by token-mixing code; this is the family the taxonomy table names.
FAMILY_BY_TOKEN_MIXING = {1: "memoryless", 2: "attention", 3: "convolution", 4: "recurrence"}

#: Layer kinds (implementations) and the featurizer settings that fix the shape of their cached features.
#: Two classes can share feature groups only if they have the same kind, differential flag and these values.
#: ``None`` marks kinds whose features are never cached, so feature-group sharing does not apply.
CACHE_SHAPE_SETTINGS: dict[str, tuple[str, ...] | None] = {
    "attention": ("kv_repeat", "channel_mixing"),
    "linear_attention": ("kv_repeat", "channel_mixing"),
    "recurrence": ("state_expansion", "channel_mixing"),
    "short_conv": ("kernel_size",),
    "long_conv": (),
    "memoryless": None,
}


@dataclass(frozen=True)
class LIVClass:
    """One entry of the pool.

    Attributes:
        id: the integer written in a backbone genome's class gene.
        name: human name (``SA-1``, ``Rec-1-Diff``, ...).
        kind: which layer implements it (a key of ``CACHE_SHAPE_SETTINGS``).
        operator_genome: (featurizer class, token mixing, sparsity, nonlinearity, channel mixing).
        settings: featurizer settings read by the layer (e.g. ``kv_repeat``, ``state_expansion``).
        base: for a differential class, the class it doubles (a pool id, or the operator genome of a composed
            class, :mod:`starlab.liv.operator`); ``None`` otherwise.
        description: one line for tables and docs.
    """

    id: int
    name: str
    kind: str
    operator_genome: tuple[int, int, int, int, int]
    settings: Mapping[str, int] = field(default_factory=dict)
    base: int | tuple[int, ...] | None = None
    description: str = ""

    @property
    def differential(self) -> bool:
        return self.base is not None

    @property
    def family(self) -> str:
        return FAMILY_BY_TOKEN_MIXING[self.operator_genome[1]]

    @property
    def operator_genome_text(self) -> str:
        """Five digits when every value is a single digit (``12123``), else comma-separated (``10,2,1,2,3``)."""
        values = self.operator_genome
        if all(0 <= v <= 9 for v in values):
            return "".join(str(v) for v in values)
        return ",".join(str(v) for v in values)

    @property
    def feature_signature(self) -> tuple | None:
        """Hashable description of the cached feature groups; equal signatures can share them."""
        keys = CACHE_SHAPE_SETTINGS[self.kind]
        if keys is None:
            return None
        return (self.kind, self.differential, *(self.settings.get(k) for k in keys))


_POOL: dict[int, LIVClass] = {}


def register(liv_class: LIVClass) -> LIVClass:
    """Add a class to the pool. Ids must be new; the kind must be a known layer kind."""
    if liv_class.id in _POOL:
        raise ValueError(f"LIV class id {liv_class.id} is already registered as {_POOL[liv_class.id].name}")
    if liv_class.kind not in CACHE_SHAPE_SETTINGS:
        raise ValueError(f"LIV kind {liv_class.kind!r} is not one of {sorted(CACHE_SHAPE_SETTINGS)}")
    if len(liv_class.operator_genome) != 5:
        raise ValueError(f"operator genome of {liv_class.name} must have 5 integers")
    if liv_class.base is not None and liv_class.base not in _POOL:
        raise ValueError(f"base class {liv_class.base} of {liv_class.name} is not registered")
    _POOL[liv_class.id] = liv_class
    return liv_class


def get_class(key: int | str) -> LIVClass:
    """Look a class up by id (``1``) or name (``"SA-1"``, case-insensitive). An id given as text is ASCII digits:
    ``"１"`` or ``"٣"`` (which ``int`` reads) is no class name and no id."""
    if isinstance(key, str) and not (key.strip().isascii() and key.strip().isdigit()):
        for liv_class in _POOL.values():
            if liv_class.name.lower() == key.strip().lower():
                return liv_class
        names = ", ".join(c.name for c in _POOL.values())
        raise ValueError(f"unknown LIV class {key!r}; known classes: {names}")
    class_id = int(key)
    if class_id not in _POOL:
        raise ValueError(f"LIV class {class_id} is not in {min(_POOL)}..{max(_POOL)}")
    return _POOL[class_id]


def class_ids() -> list[int]:
    return sorted(_POOL)


def classes() -> list[LIVClass]:
    return [_POOL[i] for i in class_ids()]


def _register_defaults() -> None:
    base_classes = [
        LIVClass(
            1,
            "SA-1",
            "attention",
            (1, 2, 1, 2, 3),
            {"kv_repeat": 1, "qkv_conv": 0},
            description="multi-head softmax attention, linear Q/K/V, RoPE",
        ),
        LIVClass(
            2,
            "SA-2",
            "attention",
            (2, 2, 1, 2, 3),
            {"kv_repeat": 1, "qkv_conv": 3},
            description="softmax attention, Q/K/V through a causal depthwise conv (k=3)",
        ),
        LIVClass(
            3,
            "SA-3",
            "attention",
            (3, 2, 1, 2, 3),
            {"kv_repeat": 4, "qkv_conv": 0},
            description="grouped-query attention, K/V repeat factor 4",
        ),
        LIVClass(
            4,
            "SA-4",
            "attention",
            (4, 2, 1, 2, 3),
            {"kv_repeat": 2, "qkv_conv": 0},
            description="grouped-query attention, K/V repeat factor 2",
        ),
        LIVClass(
            5,
            "Rec-1",
            "recurrence",
            (5, 4, 1, 1, 1),
            {"state_expansion": 16, "conv_size": 3},
            description="selective diagonal linear recurrence, state expansion 16",
        ),
        LIVClass(
            6,
            "Rec-2",
            "recurrence",
            (6, 4, 1, 1, 1),
            {"state_expansion": 2, "conv_size": 3},
            description="selective diagonal linear recurrence, state expansion 2",
        ),
        LIVClass(
            7,
            "GConv-1",
            "short_conv",
            (7, 3, 1, 1, 1),
            {"kernel_size": 3},
            description="gated short convolution, explicit kernel length 3",
        ),
        LIVClass(
            8,
            "GConv-2",
            "long_conv",
            (8, 3, 1, 1, 1),
            {"conv_size": 3},
            description="Hyena-style gated long convolution, implicit filter, FFT",
        ),
        LIVClass(9, "GMemless", "memoryless", (9, 1, 1, 4, 2), {}, description="SwiGLU gated MLP"),
    ]
    for liv_class in base_classes:
        register(liv_class)
    for offset, base in enumerate(base_classes[:8]):
        class_id = 10 + offset
        register(
            LIVClass(
                class_id,
                f"{base.name}-Diff",
                base.kind,
                (class_id, *base.operator_genome[1:]),
                base.settings,
                base=base.id,
                description=f"differential {base.name}: out(mix_a(x) - lambda * mix_b(x))",
            )
        )


_register_defaults()
