"""The block structure around a backbone's LIV slots, as its backbone genes (:mod:`starlab.genome.backbone_genes`) say.

* **residual groups**: the slots that read the same input and add to the stream together; one slot each
  (sequential), or consecutive pairs (parallel, GPT-J; an odd last slot alone);
* **norms**: ``norms[i]`` is the norm slot ``i`` applies. Pre-norm: every slot normalises the input it reads
  (in a parallel pair both read the same stream, each through its own norm, so each keeps its own gain).
  Post-norm: the norm closes a residual add, and a parallel pair has one add, so the pair's last slot holds
  the norm and its first none. RMSNorm (eps 1e-6, as STAR), LayerNorm (eps 1e-5 and a bias, as GPT-2) or
  none;
* **final norm**: pre-norm only. A post-norm stream already ends in the last add's norm (BERT, the original
  Transformer), and with no norm kind there is none.
"""

from __future__ import annotations

from torch import nn

from starlab.genome.backbone_genes import NORMS, BackboneGenes

#: parameters per channel of each norm kind (LayerNorm has a bias beside its gain)
NORM_PARAMS = {"rmsnorm": 1, "layernorm": 2, "none": 0}


def residual_groups(slots: int, residual: int) -> list[tuple[int, ...]]:
    """Slot indices grouped by the residual add they share: ``[(0,), (1,), ...]`` or ``[(0, 1), (2, 3), ...]``."""
    size = 2 if residual == 2 else 1
    return [tuple(range(start, min(start + size, slots))) for start in range(0, slots, size)]


def norm_holders(genes: BackboneGenes, slots: int) -> list[bool]:
    """Whether slot ``i`` has a norm of its own (every slot pre-norm; the last of each group post-norm)."""
    if NORMS[genes.norm] == "none":
        return [False] * slots
    if genes.position == 1:
        return [True] * slots
    last = {group[-1] for group in residual_groups(slots, genes.residual)}
    return [index in last for index in range(slots)]


def build_norm(genes: BackboneGenes, width: int, present: bool = True) -> nn.Module:
    kind = NORMS[genes.norm]
    if not present or kind == "none":
        return nn.Identity()
    if kind == "layernorm":
        return nn.LayerNorm(width, eps=1e-5)
    return nn.RMSNorm(width, eps=1e-6)


def slot_norms(genes: BackboneGenes, slots: int, width: int) -> nn.ModuleList:
    return nn.ModuleList(build_norm(genes, width, present) for present in norm_holders(genes, slots))


def final_norm(genes: BackboneGenes, width: int) -> nn.Module:
    return build_norm(genes, width, present=genes.position == 1)


def norm_params(genes: BackboneGenes, slots: int, width: int) -> int:
    """Parameters of every norm of a backbone (the slots' and the final one), counted without building them."""
    count = sum(norm_holders(genes, slots)) + (genes.position == 1 and NORMS[genes.norm] != "none")
    return count * NORM_PARAMS[NORMS[genes.norm]] * width
