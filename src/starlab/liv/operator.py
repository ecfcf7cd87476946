"""Operator genes: a LIV written as its operator genome ``[f, t, s, n, c]`` instead of a pool class id.

STAR's genome is hierarchical (backbone -> operator -> featurizer), but its pool fixes 17 combinations. Here an
operator genome is composed from parts, so combinations outside the pool exist where they make sense:

* ``f`` featurizer class, 1..17: the featurizer of pool class ``f`` (its projections and settings: K/V
  repeat, short convs, state expansion, kernel length). ``f`` in 10..17 is the differential variant of the
  featurizer ``f - 9`` (two sets of feature groups, ``mix_a - lambda * mix_b``);
* ``t`` token mixing: 1 diagonal, 2 low-rank, 3 scaled Toeplitz, 4 semi-separable;
* ``s`` sparsity: 1 none (the only code the paper defines);
* ``n`` nonlinearity: 1 none, 2 softmax, 4 SiLU gate;
* ``c`` channel mixing: 1 diagonal, 2 dense, 3 grouped.

Validity (:func:`why_invalid`) says which parts fit together. A featurizer fills the token mixing its feature
groups are made for: Q/K/V featurizers (1-4) low-rank, recurrence featurizers (5, 6) semi-separable,
convolution featurizers (7, 8) scaled Toeplitz, the gated-MLP featurizer (9) diagonal. Within that:

=================  ==========================  =====================================================
featurizer         nonlinearity n              channel mixing c
=================  ==========================  =====================================================
Q/K/V (1-4)        2 softmax attention,        3 heads (grouped); 2 one head over the whole width
                   1 none: linear attention    (dense; only without K/V grouping, i.e. 1 and 2)
                   (constant state)
recurrence (5, 6)  1                           1 shared B/C, a decay per head (the pool's); 3 each
                                               head its own B, C and decay; 2 one decay, B and C
                                               for the whole width
convolution (7, 8) 1 linear gate C, 4 SiLU(C)  1 a kernel per channel (the pool's); 3 one kernel
                                               per head of channels; 2 one kernel for all channels
gated MLP (9)      4 SiLU gate (SwiGLU),       2 (its projections mix all channels)
                   1 none (bilinear GLU)
=================  ==========================  =====================================================

Channel mixing is read as "how many distinct token-mixing operators the channels have": one per channel,
one per group of channels, one for all. :func:`repair_operator` maps any in-range genome to the nearest valid one by
keeping the featurizer and replacing each part that does not fit it with the featurizer's pool value.

A genome that equals a pool class's operator genome *is* that class (:func:`class_key` returns its id), so
the 17 classes are exactly the combinations they were, and genomes that name them either way hash equally.
"""

from __future__ import annotations

import functools
import itertools
import numbers
from collections.abc import Sequence
from typing import Any

from starlab.liv import pool
from starlab.liv.pool import LIVClass

#: Inclusive ranges of the five operator genes (f, t, s, n, c); codes outside the named ones are invalid.
OPERATOR_GENE_RANGES = ((1, 17), (1, 4), (1, 1), (1, 4), (1, 3))
OPERATOR_FIELDS = ("featurizer", "token_mixing", "sparsity", "nonlinearity", "channel_mixing")
#: The nonlinearity codes the paper names (3 is not one of them).
NONLINEARITY_CODES = tuple(pool.NONLINEARITY)
FIRST_DIFFERENTIAL = 10
DIFFERENTIAL_OFFSET = FIRST_DIFFERENTIAL - 1

#: A class gene: a pool id or an operator genome.
ClassKey = int | tuple[int, int, int, int, int]

#: Per featurizer family: the token mixing it fills, and the nonlinearities and channel mixings it allows.
_RULES: dict[str, tuple[int, tuple[int, ...], tuple[int, ...]]] = {
    "attention": (2, (2, 1), (3, 2)),
    "recurrence": (4, (1,), (1, 3, 2)),
    "short_conv": (3, (1, 4), (1, 3, 2)),
    "long_conv": (3, (1, 4), (1, 3, 2)),
    "memoryless": (1, (4, 1), (2,)),
}
_NAMES = {
    ("attention", 2): "softmax attention",
    ("attention", 1): "linear attention",
    ("recurrence", 1): "selective recurrence",
    ("short_conv", 1): "gated short convolution",
    ("short_conv", 4): "SiLU-gated short convolution",
    ("long_conv", 1): "gated long convolution",
    ("long_conv", 4): "SiLU-gated long convolution",
    ("memoryless", 4): "SwiGLU MLP",
    ("memoryless", 1): "bilinear GLU MLP",
}
_CHANNELS = {1: "a token mixer per channel", 2: "one token mixer for all channels", 3: "a token mixer per head"}


def _featurizer_class(f: int) -> LIVClass:
    """The pool class whose featurizer ``f`` names (its base class for a differential one)."""
    return pool.get_class(f - DIFFERENTIAL_OFFSET if f >= FIRST_DIFFERENTIAL else f)


def check_genes(genes: Any, where: str = "operator genome") -> tuple[int, int, int, int, int]:
    """Five integers within their gene ranges, or a one-line ``ValueError`` naming the gene."""
    if isinstance(genes, (str, bytes)) or not isinstance(genes, Sequence) or len(genes) != 5:
        raise ValueError(f"{where}: expected 5 integers [{','.join(OPERATOR_FIELDS)}], got {genes!r}")
    for field, value, (low, high) in zip(OPERATOR_FIELDS, genes, OPERATOR_GENE_RANGES, strict=True):
        if isinstance(value, bool) or not isinstance(value, numbers.Integral) or not low <= value <= high:
            raise ValueError(f"{where}, gene {field!r}: expected an integer in {low}..{high}, got {value!r}")
    return tuple(int(v) for v in genes)  # type: ignore[return-value]


def why_invalid(genes: Sequence[int]) -> str | None:
    """Why an in-range operator genome cannot be built, in one phrase; ``None`` when it can."""
    f, t, s, n, c = genes
    base = _featurizer_class(f)
    token_mixing, nonlinearities, channels = _RULES[base.kind]
    name = base.name
    if t != token_mixing:
        return f"featurizer {f} ({name}) fills {pool.TOKEN_MIXING[token_mixing]} token mixing (t={token_mixing})"
    if s != 1:
        return "sparsity must be 1 (none)"
    if n not in nonlinearities:
        return f"featurizer {f} ({name}) allows nonlinearity {' or '.join(map(str, nonlinearities))}"
    if c not in channels:
        return f"featurizer {f} ({name}) allows channel mixing {' or '.join(map(str, channels))}"
    if base.kind == "attention" and c == 2 and base.settings.get("kv_repeat", 1) > 1:
        return f"featurizer {f} ({name}) groups K/V heads, so it cannot mix all channels as one head (c=2)"
    return None


def is_valid(genes: Sequence[int]) -> bool:
    return why_invalid(genes) is None


def repair_operator(genes: Sequence[int]) -> tuple[int, int, int, int, int]:
    """The nearest valid genome: the featurizer is kept; each part that does not fit it takes its pool value."""
    f, _, _, n, c = check_genes(genes)
    base = _featurizer_class(f)
    _, pool_t, pool_s, pool_n, pool_c = base.operator_genome
    _, nonlinearities, channels = _RULES[base.kind]
    repaired = (f, pool_t, pool_s, n if n in nonlinearities else pool_n, c if c in channels else pool_c)
    return repaired if is_valid(repaired) else (f, pool_t, pool_s, repaired[3], pool_c)


def class_key(genes: Sequence[int]) -> ClassKey:
    """A valid operator genome as a class gene: the pool id when it is a pool class, else the genome itself."""
    genes = check_genes(genes)
    if (reason := why_invalid(genes)) is not None:
        raise ValueError(f"operator genome [{','.join(map(str, genes))}] is not valid: {reason}")
    return _pool_ids().get(genes, genes)


def get_class(key: ClassKey | str | Sequence[int]) -> LIVClass:
    """The class of a class gene: a pool id or name, or a valid operator genome (composed, see module doc)."""
    if isinstance(key, (str, int)):
        return pool.get_class(key)
    return _compose(class_key(key))


@functools.cache
def _compose(genes: ClassKey) -> LIVClass:
    if isinstance(genes, int):
        return pool.get_class(genes)
    f, t, s, n, c = genes
    base = _featurizer_class(f)
    kind = "linear_attention" if base.kind == "attention" and n == 1 else base.kind
    _, _, _, pool_n, pool_c = base.operator_genome
    settings = dict(base.settings)
    if c != pool_c:
        settings["channel_mixing"] = c
    if n != pool_n and kind != "linear_attention":
        settings["nonlinearity"] = n
    text = f"[{','.join(map(str, genes))}]"
    description = f"{_NAMES[base.kind, n]} from {base.name}'s featurizer, {_CHANNELS[c]}"
    if f >= FIRST_DIFFERENTIAL:
        base_key = class_key((f - DIFFERENTIAL_OFFSET, t, s, n, c))
        return LIVClass(0, text, kind, genes, settings, base=base_key, description=f"differential {description}")
    return LIVClass(0, text, kind, genes, settings, description=description)


def valid_operator_genomes() -> list[tuple[int, int, int, int, int]]:
    """Every valid operator genome, in gene order (the pool's 17 among them)."""
    ranges = [range(low, high + 1) for low, high in OPERATOR_GENE_RANGES]
    return [genes for genes in itertools.product(*ranges) if is_valid(genes)]


def parse_operator(text: str) -> tuple[int, int, int, int, int] | str:
    """``[1,2,1,1,3]`` or ``1,2,1,1,3`` as five in-range genes; any other text is passed on as a pool id or name.
    Brackets come in a pair and digits are ASCII: ``[1,2,1,1,3`` (a bracket left open) and Arabic-Indic or
    fullwidth digits, which Python's ``int`` reads, are refused rather than guessed at."""
    stripped = text.strip()
    opened, closed = stripped.startswith("["), stripped.endswith("]")
    inner = stripped.removeprefix("[").removesuffix("]")
    if "," not in inner and not (opened or closed):
        return stripped
    items = [item.strip() for item in inner.split(",")]
    if opened != closed:
        where = "left open" if opened else "closed but never opened"
        raise ValueError(f"an operator genome [f,t,s,n,c] has its bracket {where}: got {text!r}")
    if len(items) != 5 or not all(item.isascii() and item.isdigit() for item in items):
        raise ValueError(f"an operator genome is 5 comma-separated integers [f,t,s,n,c] (digits 0-9), got {text!r}")
    return check_genes([int(item) for item in items])


def format_key(key: ClassKey) -> str:
    """A class gene as genome text writes it: ``1`` or ``[1,2,1,1,3]``."""
    return str(key) if isinstance(key, int) else f"[{','.join(map(str, key))}]"


def _pool_ids() -> dict[tuple[int, ...], int]:
    """Pool ids by operator genome (read each time: :func:`starlab.liv.pool.register` may add classes)."""
    return {liv_class.operator_genome: liv_class.id for liv_class in pool.classes()}
