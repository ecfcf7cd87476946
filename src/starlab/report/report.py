"""A run's report: PNG figures and one self-contained ``report.html`` (figures inlined, opens offline).

Figures: Pareto fronts (quality vs parameters, quality vs cache) with every evaluation, the final front and
the baseline presets marked; hypervolume per generation; LIV class frequencies and sharing patterns of the
population per generation; diagrams of the final front's genomes.
"""

from __future__ import annotations

import base64
import html
import json
from collections import Counter
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from starlab.assess import CACHE_LENGTH, pareto_front
from starlab.genome import Genome
from starlab.liv import classes, get_class
from starlab.report.diagram import draw_genome
from starlab.store import RunData, load_run

MAX_FRONT_DIAGRAMS = 8


# ---- figures ---------------------------------------------------------------------------------------------


def pareto_figure(run: RunData, size: str, path: Path) -> Path:
    """Quality against ``size`` ('params' or 'cache') for all evaluations, the front and the baselines."""
    column = {"params": "params", "cache": "cache_bytes"}[size]
    fig, ax = plt.subplots(figsize=(6, 4.2))
    xs = [getattr(e, column) for e in run.evaluations]
    ys = [e.quality for e in run.evaluations]
    ax.scatter(xs, ys, s=14, color="#BBBBBB", label="evaluated")
    points = np.array([[x, y] for x, y in zip(xs, ys, strict=True)])
    front = points[pareto_front(points)]
    front = front[np.argsort(front[:, 0])]
    ax.step(front[:, 0], front[:, 1], where="post", color="#C44E52", lw=1.5)
    ax.scatter(front[:, 0], front[:, 1], s=28, color="#C44E52", label=f"front (quality vs {size})", zorder=3)
    for name, evaluation in run.baselines().items():
        x, y = getattr(evaluation, column), evaluation.quality
        ax.scatter([x], [y], marker="*", s=160, color="#4C72B0", edgecolor="black", zorder=4)
        ax.annotate(name, (x, y), textcoords="offset points", xytext=(6, 4), fontsize=8)
    cache_label = f"inference cache at {CACHE_LENGTH} tokens (bytes)"
    ax.set_xlabel("non-embedding parameters" if size == "params" else cache_label)
    ax.set_ylabel(f"quality ({run.config['protocol']}; lower is better)")
    if min(xs) > 0 and max(xs) / min(xs) > 20:
        ax.set_xscale("log")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return _save(fig, path)


def hypervolume_figure(run: RunData, path: Path) -> Path:
    fig, ax = plt.subplots(figsize=(6, 3.2))
    measured = [g for g in run.generations if g.hypervolume is not None]
    ax.plot([g.generation for g in measured], [g.hypervolume for g in measured], marker="o", color="#55A868")
    ax.set_xlabel("generation")
    ax.set_ylabel("hypervolume of the population")
    ax.grid(alpha=0.3)
    return _save(fig, path)


def class_frequency_figure(run: RunData, path: Path) -> Path:
    """Stacked share of each LIV class among the population's slots, per generation."""
    names = [c.name for c in classes()]
    counts = np.array([
        [Counter(get_class(s.cls).name for m in g.population for s in Genome.parse(m["genome"]).slots)[n]
         for n in names]
        for g in run.generations
    ], dtype=float)  # fmt: skip
    shares = counts / counts.sum(axis=1, keepdims=True)
    used = shares.sum(axis=0) > 0
    fig, ax = plt.subplots(figsize=(7, 3.8))
    cmap = plt.get_cmap("tab20")
    ax.stackplot([g.generation for g in run.generations], shares[:, used].T,
                 labels=[n for n, u in zip(names, used, strict=True) if u],
                 colors=[cmap(i % 20) for i, u in enumerate(used) if u])  # fmt: skip
    ax.set_xlabel("generation")
    ax.set_ylabel("share of slots")
    ax.set_ylim(0, 1)
    ax.legend(fontsize=6, ncol=2, loc="center left", bbox_to_anchor=(1, 0.5))
    return _save(fig, path)


def sharing_figure(run: RunData, path: Path) -> Path:
    """Share of slots that reuse a featurizer or features, and the mean distance to their leader."""
    rows = []
    for generation in run.generations:
        genomes = [Genome.parse(m["genome"]) for m in generation.population]
        slots = sum(len(g) for g in genomes)
        stats = []
        for leaders_of in (Genome.featurizer_leaders, Genome.feature_sources):
            links = [
                (i, lead) for g in genomes for i, lead in enumerate(leaders_of(g)) if lead is not None and lead != i
            ]
            stats += [len(links) / slots, float(np.mean([i - lead for i, lead in links])) if links else 0.0]
        rows.append(stats)
    rows = np.array(rows)
    gens = [g.generation for g in run.generations]
    fig, (left, right) = plt.subplots(1, 2, figsize=(8, 3.2))
    left.plot(gens, rows[:, 0], marker="o", label="featurizer sharing", color="#8172B3")
    left.plot(gens, rows[:, 2], marker="s", label="feature-group sharing", color="#C44E52")
    left.set_ylabel("share of slots reusing")
    right.plot(gens, rows[:, 1], marker="o", color="#8172B3")
    right.plot(gens, rows[:, 3], marker="s", color="#C44E52")
    right.set_ylabel("mean distance to the leader (slots)")
    for ax in (left, right):
        ax.set_xlabel("generation")
        ax.grid(alpha=0.3)
    left.legend(fontsize=7)
    return _save(fig, path)


def front_diagrams_figure(run: RunData, path: Path) -> Path:
    front = run.front[:MAX_FRONT_DIAGRAMS]
    depth = run.config["depth"]
    fig, axes = plt.subplots(1, len(front), figsize=(2.3 * len(front), 0.45 * depth + 1.4), squeeze=False)
    for rank, (ax, member) in enumerate(zip(axes[0], front, strict=True), start=1):
        title = f"#{rank}  q={member['quality']:.3f}" if "quality" in member else f"#{rank}"
        draw_genome(ax, Genome.parse(member["genome"]), title)
    return _save(fig, path)


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=130)
    plt.close(fig)
    return path


# ---- the page --------------------------------------------------------------------------------------------


def write_report(directory: str | Path) -> Path:
    """Write the figures and ``report.html`` into the run directory; returns the HTML path."""
    directory = Path(directory)
    run = load_run(directory)
    figures = [
        pareto_figure(run, "params", directory / "pareto_params.png"),
        pareto_figure(run, "cache", directory / "pareto_cache.png"),
        hypervolume_figure(run, directory / "hypervolume.png"),
        class_frequency_figure(run, directory / "class_frequencies.png"),
        sharing_figure(run, directory / "sharing.png"),
        front_diagrams_figure(run, directory / "front_genomes.png"),
    ]
    path = directory / "report.html"
    path.write_text(render_html(run, figures))
    return path


def render_html(run: RunData, figures: list[Path]) -> str:
    front_rows = "".join(
        f"<tr><td>{rank}</td><td><code>{html.escape(m['genome'])}</code></td>"
        + "".join(f"<td>{m[o]:.4g}</td>" for o in run.config["objectives"])
        + f"<td>{_sizes_and_time(run, m['hash'])}</td></tr>"
        for rank, m in enumerate(run.front, start=1)
    )
    baseline_rows = "".join(
        f"<tr><td>{html.escape(name)}</td><td>{e.quality:.4g}</td><td>{e.params:,}</td><td>{e.cache_bytes:,}</td></tr>"
        for name, e in run.baselines().items()
    )
    statuses = Counter(e.status.value for e in run.evaluations)
    images = "".join(
        f'<figure><img alt="{p.stem}" src="data:image/png;base64,{base64.b64encode(p.read_bytes()).decode()}">'
        f"<figcaption>{p.stem.replace('_', ' ')}</figcaption></figure>"
        for p in figures
    )
    objective_heads = "".join(f"<th>{o} (relative)</th>" if o != "quality" else "<th>quality</th>"
                              for o in run.config["objectives"])  # fmt: skip
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>starlab search report</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1100px; color: #222; }}
table {{ border-collapse: collapse; margin: 1em 0; font-size: 0.9em; }}
td, th {{ border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: right; }}
td:nth-child(2) {{ text-align: left; }}
figure {{ display: inline-block; margin: 0.5em; vertical-align: top; }}
img {{ max-width: 100%; }} code {{ font-size: 0.85em; }}
</style></head><body>
<h1>starlab search report</h1>
<p>{len(run.evaluations)} evaluated genomes ({", ".join(f"{n} {s}" for s, n in statuses.items())}),
{len(run.generations)} generations. Sizes in the front table are relative to an all-SA-1 genome of the same
depth and width; the evaluation column gives absolute values.</p>
<h2>Final Pareto front</h2>
<table><tr><th>rank</th><th>genome</th>{objective_heads}<th>params / cache bytes / seconds</th></tr>{front_rows}</table>
<h2>Baselines</h2>
<table><tr><th>preset</th><th>quality</th><th>params</th><th>cache bytes</th></tr>{
        baseline_rows or "<tr><td colspan=4>no preset of this depth was evaluated</td></tr>"
    }</table>
<h2>Figures</h2>{images}
<h2>Configuration</h2><pre>{html.escape(json.dumps(run.config, indent=2))}</pre>
</body></html>
"""


def _sizes_and_time(run: RunData, genome_hash: str) -> str:
    e = run.evaluation_of(genome_hash)
    return "-" if e is None else f"{e.params:,} / {e.cache_bytes:,} / {e.seconds:.1f}"
