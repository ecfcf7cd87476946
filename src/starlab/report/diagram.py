"""The backbone as a picture: a column of blocks coloured by family, arcs for sharing.

Slot 1 is at the top (where the embedding enters). Featurizer sharing is drawn as solid arcs on the left,
feature-group sharing as dashed arcs on the right, each from a group's leader to every later member.
Differential classes are hatched.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from matplotlib.axes import Axes
from matplotlib.patches import FancyBboxPatch, PathPatch
from matplotlib.path import Path as MplPath

from starlab.genome import Genome
from starlab.liv import get_class

FAMILY_COLORS = {
    "attention": "#4C72B0",
    "recurrence": "#55A868",
    "convolution": "#DD8452",
    "memoryless": "#8C8C8C",
}
FEATURIZER_COLOR, FEATURE_COLOR = "#8172B3", "#C44E52"
BLOCK_W, BLOCK_H, GAP = 2.2, 0.7, 0.25


def _arc(ax: Axes, y0: float, y1: float, side: int, color: str, style: str) -> None:
    """A bulge from block edge to block edge on the left (side=-1) or right (side=+1)."""
    x = BLOCK_W / 2 * side
    bulge = x + side * (0.35 + 0.12 * abs(y1 - y0))
    path = MplPath(
        [(x, y0), (bulge, y0), (bulge, y1), (x, y1)], [MplPath.MOVETO, MplPath.CURVE4, MplPath.CURVE4, MplPath.CURVE4]
    )
    ax.add_patch(PathPatch(path, fill=False, color=color, lw=1.6, linestyle=style))


def draw_genome(ax: Axes, genome: Genome, title: str | None = None) -> None:
    """Draw ``genome`` into ``ax`` (reports call this for each genome of a Pareto front)."""
    n = len(genome)
    ys = [-(i * (BLOCK_H + GAP)) for i in range(n)]
    for index, (slot, y) in enumerate(zip(genome.slots, ys, strict=True)):
        spec = get_class(slot.cls)
        box = FancyBboxPatch(
            (-BLOCK_W / 2, y - BLOCK_H / 2), BLOCK_W, BLOCK_H, boxstyle="round,pad=0.02",
            facecolor=FAMILY_COLORS[spec.family], edgecolor="black", lw=0.8,
            hatch="///" if spec.differential else None, alpha=0.9,
        )  # fmt: skip
        ax.add_patch(box)
        ax.text(0, y, f"{index + 1}  {spec.name}", ha="center", va="center", fontsize=8, color="white", weight="bold")
    for leaders, side, color, style in (
        (genome.featurizer_leaders(), -1, FEATURIZER_COLOR, "-"),
        (genome.feature_sources(), 1, FEATURE_COLOR, "--"),
    ):
        for index, leader in enumerate(leaders):
            if leader is not None and leader != index:
                _arc(ax, ys[leader], ys[index], side, color, style)
    span = 0.35 + 0.12 * n * (BLOCK_H + GAP) + BLOCK_W / 2 + 0.2
    ax.set_xlim(-span, span)
    ax.set_ylim(ys[-1] - BLOCK_H, BLOCK_H)
    ax.set_aspect("equal")
    ax.axis("off")
    if title:
        ax.set_title(title, fontsize=9)


def legend_handles() -> list:
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    handles = [Patch(facecolor=c, label=f) for f, c in FAMILY_COLORS.items()]
    handles += [
        Line2D([], [], color=FEATURIZER_COLOR, lw=1.6, label="featurizer sharing"),
        Line2D([], [], color=FEATURE_COLOR, lw=1.6, linestyle="--", label="feature-group sharing"),
        Patch(facecolor="white", edgecolor="black", hatch="///", label="differential"),
    ]
    return handles


def save_diagram(genome: Genome, path: str | Path, title: str | None = None) -> Path:
    """Write the diagram of one genome to ``path`` (PNG, or any format matplotlib knows by extension)."""
    path = Path(path)
    height = max(3.0, 0.42 * len(genome) + 1.2)
    fig, ax = plt.subplots(figsize=(4.2, height))
    draw_genome(ax, genome, title or genome.canonical().text() if len(genome) <= 8 else title)
    fig.legend(handles=legend_handles(), loc="lower center", fontsize=6, ncol=2, frameon=False)
    fig.tight_layout(rect=(0, 0.08, 1, 1))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=150)
    plt.close(fig)
    return path
