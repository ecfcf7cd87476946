"""The backbone as a picture: a column of blocks coloured by family, arcs for sharing.

Slot 1 is at the top (where the embedding enters). Blocks are light tints of their family's colour with dark
labels; differential classes are hatched in the family colour, their label on a plain patch so that no text
sits on the hatching. Featurizer sharing is drawn as solid arcs on the left, feature-group sharing as dashed
arcs on the right, each from a group's leader to every later member (the farther apart, the wider the arc).
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from matplotlib.axes import Axes
from matplotlib.colors import to_rgb
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
TEXT_COLOR = "#111111"
BLOCK_W, BLOCK_H, GAP = 2.2, 0.7, 0.25
#: The widest arc's bulge beyond the block edge; arcs between neighbours bulge by the minimum.
BULGE_MIN, BULGE_MAX = 0.25, 0.85
SPAN = BLOCK_W / 2 + BULGE_MAX + 0.15


def tint(color: str, amount: float = 0.6) -> tuple[float, float, float]:
    """``color`` mixed with white (``amount`` = share of white): a background dark text reads on."""
    return tuple(c + (1 - c) * amount for c in to_rgb(color))  # type: ignore[return-value]


def _arc(ax: Axes, y0: float, y1: float, side: int, color: str, style: str, reach: float) -> None:
    """A bulge from block edge to block edge on the left (side=-1) or right (side=+1)."""
    x = BLOCK_W / 2 * side
    bulge = x + side * (BULGE_MIN + (BULGE_MAX - BULGE_MIN) * reach)
    path = MplPath(
        [(x, y0), (bulge, y0), (bulge, y1), (x, y1)], [MplPath.MOVETO, MplPath.CURVE4, MplPath.CURVE4, MplPath.CURVE4]
    )
    ax.add_patch(PathPatch(path, fill=False, color=color, lw=1.8, linestyle=style))


def draw_genome(ax: Axes, genome: Genome, title: str | None = None, fontsize: float = 9) -> None:
    """Draw ``genome`` into ``ax`` (reports call this for each genome of a Pareto front).

    The axes' aspect is left free: callers size the panel (about 0.3 inch per slot reads well at 9 pt).
    """
    n = len(genome)
    ys = [-(i * (BLOCK_H + GAP)) for i in range(n)]
    for index, (slot, y) in enumerate(zip(genome.slots, ys, strict=True)):
        spec = get_class(slot.cls)
        color = FAMILY_COLORS[spec.family]
        box = FancyBboxPatch(
            (-BLOCK_W / 2, y - BLOCK_H / 2), BLOCK_W, BLOCK_H, boxstyle="round,pad=0.02",
            facecolor=tint(color), edgecolor="#333333", lw=0.8,
            hatch="//" if spec.differential else None, hatchcolor=color,
        )  # fmt: skip
        ax.add_patch(box)
        plain = {"boxstyle": "round,pad=0.15", "facecolor": tint(color, 0.85), "edgecolor": "none"}
        ax.text(
            0, y, f"{index + 1}  {spec.name}", ha="center", va="center", fontsize=fontsize, color=TEXT_COLOR,
            weight="bold", bbox=plain if spec.differential else None,
        )  # fmt: skip
    for leaders, side, color, style in (
        (genome.featurizer_leaders(), -1, FEATURIZER_COLOR, "-"),
        (genome.feature_sources(), 1, FEATURE_COLOR, "--"),
    ):
        for index, leader in enumerate(leaders):
            if leader is not None and leader != index:
                _arc(ax, ys[leader], ys[index], side, color, style, (index - leader) / max(1, n - 1))
    ax.set_xlim(-SPAN, SPAN)
    ax.set_ylim(ys[-1] - BLOCK_H / 2 - 0.1, BLOCK_H / 2 + 0.1)
    ax.axis("off")
    if title:
        ax.set_title(title, fontsize=fontsize)


def legend_handles() -> list:
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    handles = [Patch(facecolor=tint(c), edgecolor="#333333", label=f) for f, c in FAMILY_COLORS.items()]
    handles += [
        Line2D([], [], color=FEATURIZER_COLOR, lw=1.8, label="featurizer sharing"),
        Line2D([], [], color=FEATURE_COLOR, lw=1.8, linestyle="--", label="feature-group sharing"),
        Patch(facecolor="white", edgecolor="#333333", hatch="//", label="differential"),
    ]
    return handles


def save_diagram(genome: Genome, path: str | Path, title: str | None = None) -> Path:
    """Write the diagram of one genome to ``path`` (PNG, or any format matplotlib knows by extension)."""
    if isinstance(path, str) and not path.strip():  # Path("") is the current directory
        raise ValueError("the diagram's output path is empty; name an image file such as genome.png")
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"{path} is a directory; name an image file such as {path / 'genome.png'}")
    formats = plt.gcf().canvas.get_supported_filetypes()
    plt.close()
    suffix = path.suffix.lower().removeprefix(".")
    if suffix and suffix not in formats:
        raise ValueError(f"{path}: unknown image format {suffix!r}; use one of {', '.join(sorted(formats))}")
    fig, ax = plt.subplots(figsize=(4.2, 0.34 * len(genome) + 1.6), layout="constrained")
    try:
        draw_genome(ax, genome, title or genome.canonical().text() if len(genome) <= 8 else title)
        fig.legend(handles=legend_handles(), loc="outside lower center", fontsize=7, ncol=2, frameon=False)
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=150)
    except OSError as error:
        raise ValueError(f"cannot write {path}: {getattr(error, 'strerror', None) or error}") from None
    finally:
        plt.close(fig)
    return path
