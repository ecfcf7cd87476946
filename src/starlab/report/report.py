"""A run's report: PNG figures and one self-contained ``report.html`` (figures inlined, opens offline).

The page opens with the result in words (:func:`starlab.report.summary.headlines`), then the Pareto front over
all evaluations as a table, the baselines, the figures and the settings as the run used them. Figures:
quality against parameters and against cache (every evaluation, the front, the baselines); hypervolume, LIV
class shares and sharing patterns of the population per generation; diagrams of the front's genomes. Every
table, plot and sentence reads the same front, :attr:`starlab.store.RunData.front`.

Every file is written to a hidden temporary name beside it and renamed into place, so a browser reloading the
live page of a running search (:mod:`starlab.report.live`) reads the old page or the new one, never half of one.
The page says where the run stands (:data:`PHASES`); only a live page reloads itself.
"""

from __future__ import annotations

import base64
import html
import math
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, NamedTuple

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from starlab.assess import CACHE_LENGTH, pareto_front
from starlab.files import replace_atomically, write_text_atomically
from starlab.genome import Genome
from starlab.liv import classes, get_class
from starlab.report.diagram import draw_genome, legend_handles
from starlab.report.summary import (
    describe_classes,
    format_bytes,
    format_count,
    format_quality,
    front_table,
    headlines,
    score_tasks,
    settings_text,
)
from starlab.store import RunData, RunStore, load_run
from starlab.store.run import UNSUCCESSFUL

MAX_FRONT_DIAGRAMS = 8
DIAGRAM_COLUMNS = 4
DPI = 130
FRONT_COLOR, BASELINE_COLOR, EVALUATED_COLOR = "#C44E52", "#4C72B0", "#BBBBBB"
SIZE_LABELS = {"params": "non-embedding parameters", "cache": f"inference cache at {CACHE_LENGTH} tokens (bytes)"}


# ---- which genomes of the front each plot draws ----------------------------------------------------------


def _size(evaluation, size: str) -> int:
    return evaluation.params if size == "params" else evaluation.cache_bytes


def pair_front(run: RunData, size: str) -> list[str]:
    """Hashes of the run's front members that are also non-dominated on (quality, ``size``) alone: the trade-off
    a quality-vs-size plot draws as a staircase. A subset of :attr:`RunData.front`, never a second front."""
    members = [run.evaluation_of(m["hash"]) for m in run.front]
    if not members:
        return []
    points = np.array([[e.quality, _size(e, size)] for e in members], dtype=float)
    return [members[i].hash for i in pareto_front(points)]


# ---- figures ---------------------------------------------------------------------------------------------


def pareto_figure(run: RunData, size: str) -> Figure:
    """Quality against ``size`` ('params' or 'cache'): every evaluation, the run's front, the baselines."""
    fig, ax = plt.subplots(figsize=(7, 5), layout="constrained")
    front = {m["hash"] for m in run.front}
    trade_off = set(pair_front(run, size))
    others = [e for e in run.successful if e.hash not in front]
    failed = [e for e in run.evaluations if e.status in UNSUCCESSFUL]
    ax.scatter([_size(e, size) for e in others], [e.quality for e in others], s=16, color=EVALUATED_COLOR,
               label=f"evaluated ({len(others)} off the front)")  # fmt: skip
    if failed:
        ax.scatter([_size(e, size) for e in failed], [e.quality for e in failed], s=22, marker="x", color="#888888",
                   label=f"failed or diverged ({len(failed)}; worst quality)")  # fmt: skip
    members = [run.evaluation_of(m["hash"]) for m in run.front]
    on_pair = sorted((e for e in members if e.hash in trade_off), key=lambda e: _size(e, size))
    off_pair = [e for e in members if e.hash not in trade_off]
    objectives = ", ".join(run.config["objectives"])
    word = "parameters" if size == "params" else "cache"
    if on_pair:
        xs, ys = [_size(e, size) for e in on_pair], [e.quality for e in on_pair]
        ax.step(xs, ys, where="post", color=FRONT_COLOR, lw=1.5)
        ax.scatter(xs, ys, s=34, color=FRONT_COLOR, zorder=3, gid="front",
                   label=f"Pareto front ({objectives}): on the quality–{word} trade-off ({len(on_pair)})")  # fmt: skip
    if off_pair:
        other = [o for o in run.config["objectives"] if o not in ("quality", size)]
        through = " and ".join(other) if other else "a tie on this pair"
        ax.scatter([_size(e, size) for e in off_pair], [e.quality for e in off_pair], s=34, facecolor="white",
                   edgecolor=FRONT_COLOR, lw=1.5, zorder=3, gid="front",
                   label=f"Pareto front: on it through {through} ({len(off_pair)})")  # fmt: skip
    if members:
        best = members[0]
        ax.annotate("#1", (_size(best, size), best.quality), textcoords="offset points", xytext=(-22, -4),
                    fontsize=9, color=FRONT_COLOR, weight="bold")  # fmt: skip
    for name, evaluation in run.baselines().items():
        x, y = _size(evaluation, size), evaluation.quality
        ax.scatter([x], [y], marker="*", s=180, color=BASELINE_COLOR, edgecolor="black", zorder=4)
        ax.annotate(name, (x, y), textcoords="offset points", xytext=(7, 4), fontsize=9)
    ax.set_xlabel(SIZE_LABELS[size])
    ax.set_ylabel("quality (lower is better)")
    xs = [_size(e, size) for e in run.evaluations]
    positive = [x for x in xs if x > 0]
    if positive and max(xs) / min(positive) > 20:
        ax.set_xscale("log") if min(xs) > 0 else ax.set_xscale("symlog", linthresh=min(positive))
    fig.legend(fontsize=8, loc="outside lower center", frameon=False)
    ax.grid(alpha=0.3)
    word = "parameters" if size == "params" else "inference cache"
    fig.suptitle(f"Quality vs {word}: {len(run.evaluations)} evaluations, {len(members)} on the Pareto front")
    return fig


def hypervolume_figure(run: RunData) -> Figure:
    fig, ax = plt.subplots(figsize=(7, 3.4), layout="constrained")
    measured = [g for g in run.generations if g.hypervolume is not None]
    ax.plot([g.generation for g in measured], [g.hypervolume for g in measured], marker="o", color="#55A868")
    ax.set_xlabel("generation")
    ax.set_ylabel("hypervolume (higher is better)")
    _per_generation(ax)
    fig.suptitle("Hypervolume of each generation's population")
    return fig


def class_frequency_figure(run: RunData) -> Figure:
    """Stacked share of each LIV class among the population's slots, per generation; classes outside the pool
    (operator genomes) after the pool's, by their operator genome, in order of first appearance."""
    per_generation = [
        Counter(get_class(s.cls).name for m in g.population for s in Genome.parse(m["genome"]).slots)
        for g in run.generations
    ]
    names = [c.name for c in classes()]
    names += list(dict.fromkeys(n for counter in per_generation for n in counter if n not in names))
    counts = np.array([[counter[n] for n in names] for counter in per_generation], dtype=float)
    shares = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    fig, ax = plt.subplots(figsize=(8, 3.8), layout="constrained")
    cmap, bottom = plt.get_cmap("tab20"), np.zeros(len(run.generations))
    gens = [g.generation for g in run.generations]
    for i, name in enumerate(names):
        if shares[:, i].sum() > 0:
            ax.bar(gens, shares[:, i], bottom=bottom, width=0.8, label=name, color=cmap(i % 20))
            bottom += shares[:, i]
    ax.set_xlabel("generation")
    ax.set_ylabel("share of slots")
    ax.set_ylim(0, 1)
    _per_generation(ax, grid=False)
    ax.legend(fontsize=8, ncol=2, loc="center left", bbox_to_anchor=(1, 0.5))
    fig.suptitle("LIV classes in each generation's population")
    return fig


def sharing_figure(run: RunData) -> Figure:
    """Share of slots that reuse a featurizer or features, and the mean distance to their leader."""
    rows = []
    for generation in run.generations:
        genomes = [Genome.parse(m["genome"]) for m in generation.population]
        slots = max(1, sum(len(g) for g in genomes))
        stats = []
        for leaders_of in (Genome.featurizer_leaders, Genome.feature_sources):
            links = [
                (i, lead) for g in genomes for i, lead in enumerate(leaders_of(g)) if lead is not None and lead != i
            ]
            stats += [len(links) / slots, float(np.mean([i - lead for i, lead in links])) if links else 0.0]
        rows.append(stats)
    rows = np.array(rows)
    gens = [g.generation for g in run.generations]
    fig, (left, right) = plt.subplots(1, 2, figsize=(8.5, 3.4), layout="constrained")
    left.plot(gens, rows[:, 0], marker="o", label="featurizer sharing", color="#8172B3")
    left.plot(gens, rows[:, 2], marker="s", label="feature-group sharing", color="#C44E52")
    left.set_ylabel("share of slots reusing")
    right.plot(gens, rows[:, 1], marker="o", color="#8172B3")
    right.plot(gens, rows[:, 3], marker="s", color="#C44E52")
    right.set_ylabel("mean distance to the leader (slots)")
    for ax in (left, right):
        ax.set_xlabel("generation")
        ax.set_ylim(bottom=0, top=None if rows.any() else 1)
        _per_generation(ax)
    left.legend(fontsize=8)
    fig.suptitle("Featurizer and feature-group sharing in each generation's population")
    return fig


def front_diagrams_figure(run: RunData) -> Figure:
    """The best-quality genomes of the front as diagrams, in rows of :data:`DIAGRAM_COLUMNS`."""
    front = run.front[:MAX_FRONT_DIAGRAMS]
    depth, count = run.config["depth"], max(1, len(front))
    columns = min(count, DIAGRAM_COLUMNS)
    rows = math.ceil(count / columns)
    panel_height = 0.32 * depth + 0.75
    fig, axes = plt.subplots(
        rows, columns, figsize=(2.75 * columns, rows * panel_height + 1.3), squeeze=False, layout="constrained"
    )
    for ax in axes.flat[len(front) :]:
        ax.axis("off")
    baselines = {e.hash: name for name, e in run.baselines().items()}
    for rank, (ax, member) in enumerate(zip(axes.flat, front, strict=False), start=1):
        evaluation = run.evaluation_of(member["hash"])
        name = baselines.get(member["hash"])
        title = f"#{rank}  {name + ',  ' if name else ''}quality {format_quality(evaluation.quality)}\n"
        title += f"{format_count(evaluation.params)} params · {format_bytes(evaluation.cache_bytes)} cache"
        draw_genome(ax, Genome.parse(member["genome"]), title, fontsize=9.5)
    fig.legend(handles=legend_handles(), loc="outside lower center", fontsize=9, ncol=4, frameon=False)
    shown = f"The {len(front)} best-quality genomes" if len(front) < len(run.front) else "The genomes"
    fig.suptitle(f"{shown} of the Pareto front ({len(run.front)} in all), slot 1 at the top")
    return fig


def _per_generation(ax, grid: bool = True) -> None:
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    if grid:
        ax.grid(alpha=0.3)


@dataclass(frozen=True)
class FigureSpec:
    """One figure of the report: its file name (without ``.png``), how to draw it and its caption in words."""

    name: str
    alt: str  # a few words for the image's alt text
    draw: Callable[[RunData], Figure]
    caption: Callable[[RunData], str]


def _pareto_caption(size: str) -> Callable[[RunData], str]:
    word = "non-embedding parameters" if size == "params" else f"inference cache at {CACHE_LENGTH} tokens"
    short = "parameters" if size == "params" else "cache"

    def caption(run: RunData) -> str:
        return (
            f"Quality (lower is better) against {word} for all {len(run.evaluations)} evaluations (grey). Red: "
            f"the Pareto front over all evaluations on the run's objectives ({', '.join(run.config['objectives'])}),"
            f" the same {len(run.front)} genomes as the table; the staircase joins those that are also the "
            f"quality–{short} trade-off, hollow circles are on the front through another objective. Stars: the "
            "evaluated baseline presets; #1: the best quality."
        )

    return caption


FIGURES = [
    FigureSpec("pareto_params", "quality vs parameters", lambda run: pareto_figure(run, "params"),
               _pareto_caption("params")),
    FigureSpec("pareto_cache", "quality vs inference cache", lambda run: pareto_figure(run, "cache"),
               _pareto_caption("cache")),
    FigureSpec("hypervolume", "hypervolume per generation", hypervolume_figure, lambda run: (
        "Hypervolume of each generation's surviving population on the run's objectives (reference point: the "
        "protocol's worst quality and twice the all-SA-1 sizes); it grows as the population improves."
    )),
    FigureSpec("class_frequencies", "LIV class shares per generation", class_frequency_figure, lambda run: (
        "Share of each LIV class among the slots of each generation's population."
    )),
    FigureSpec("sharing", "sharing per generation", sharing_figure, lambda run: (
        "Left: share of slots that reuse an earlier slot's featurizer (solid arcs in the diagrams) or features "
        "(dashed), per generation. Right: how many slots back the reused leader is, on average."
    )),
    FigureSpec("front_genomes", "diagrams of the front's genomes", front_diagrams_figure, lambda run: (
        f"The best-quality genomes of the Pareto front ({min(len(run.front), MAX_FRONT_DIAGRAMS)} of "
        f"{len(run.front)}), slot 1 at the top: blocks coloured by LIV family and hatched where differential; arcs "
        "join a shared featurizer (solid, left) or shared features (dashed, right) to their leader."
    )),
]  # fmt: skip


def save_figure(fig: Figure, path: Path) -> Path:
    try:
        return replace_atomically(path, lambda temporary: fig.savefig(temporary, dpi=DPI, format="png"))
    finally:
        plt.close(fig)


# ---- the page --------------------------------------------------------------------------------------------


#: Where a run stands when its page is written: ``live`` (a search is running and rewrites the page),
#: ``finished``, ``interrupted`` (Ctrl-C), ``stopped`` (by an error), ``unfinished`` (none of these is known:
#: ``starlab report`` on a run that has not finished).
Phase = Literal["live", "finished", "interrupted", "stopped", "unfinished"]
PHASES: tuple[Phase, ...] = ("live", "finished", "interrupted", "stopped", "unfinished")
#: How often a live page reloads itself by default (seconds).
REFRESH_S = 30


class PageStatus(NamedTuple):
    """The page's first line (where the run stands) and, for a live page only, its reload interval."""

    phase: Phase
    text: str
    refresh: int | None = None


def write_report(
    directory: str | Path, phase: Phase | None = None, refresh: int = REFRESH_S, error: str | None = None
) -> Path:
    """Write the figures and ``report.html`` into the run directory; returns the HTML path.

    ``phase`` says where the run stands (``None``: finished if the search said so, else unfinished); a live
    page reloads itself every ``refresh`` seconds; ``error`` is what stopped a ``stopped`` run."""
    directory = Path(directory)
    run = load_run(directory)
    if phase is None:
        with RunStore(directory, readonly=True) as store:
            phase = "finished" if store.get_meta("finished") else "unfinished"
    status = page_status(run, directory, phase, refresh, error)
    path = directory / "report.html"
    targets = [path, *(directory / f"{spec.name}.png" for spec in FIGURES)]
    for target in targets:  # before drawing anything: a figure that cannot be written is found in a second
        if target.exists() and not target.is_file():
            raise ValueError(f"cannot write the report: {target} is not a file")
    try:
        figures = [
            (save_figure(spec.draw(run), directory / f"{spec.name}.png"), spec.alt, spec.caption(run))
            for spec in FIGURES
        ]
        page = render_html(run, figures, status)
        write_text_atomically(path, page)
    except OSError as failure:
        reason = getattr(failure, "strerror", None) or failure
        raise ValueError(f"cannot write the report into {directory}: {reason}") from None
    return path


def _e(value: object) -> str:
    return html.escape(str(value))


def page_status(
    run: RunData, directory: Path, phase: Phase, refresh: int = REFRESH_S, error: str | None = None
) -> PageStatus:
    """Where the run stands, in one sentence: its last recorded generation (of how many), its evaluations, and
    what to do next; a live page also says when it was written and reloads itself every ``refresh`` s."""
    if phase not in PHASES:
        raise ValueError(f"unknown report phase {phase!r}; one of {', '.join(PHASES)}")
    resume = f"resume with `starlab evolve --resume {directory}`"
    where = _progress(run)
    text = {
        "live": f"Live: {where}; updated {time.strftime('%H:%M:%S')}. This page reloads itself every {refresh} s "
        "while the search runs.",
        "finished": f"Finished: {where}.",
        "interrupted": f"Interrupted: {where}; {resume}.",
        "stopped": f"Stopped by an error: {where}; the error: {str(error).rstrip('.')}. Once it is fixed, "
        f"{resume[:-1]} --retry-failed` (which runs the failed evaluations again).",
        "unfinished": f"Not finished: {where}. If the search is no longer running, {resume}.",
    }[phase]
    return PageStatus(phase, text, refresh if phase == "live" else None)


def _progress(run: RunData) -> str:
    """``"generation 3 of 10 recorded, 32 evaluations"`` (with a budget: ``"... 32 of 100 evaluations"``)."""
    config, last = run.config, run.generations[-1].generation
    of = f" of {config['generations']}" if config["generations"] is not None and not config["budget"] else ""
    budget = f" of {config['budget']}" if config["budget"] else ""
    count = len(run.evaluations)
    return f"generation {last}{of} recorded, {count}{budget} evaluation{'s' * (count != 1)}"


def _front_table(run: RunData) -> str:
    rows = front_table(run)
    tasks = score_tasks([run.evaluation_of(r["hash"]) for r in rows])
    relative = [n for n in run.objectives.names if n != "quality"]
    heads = ["rank", "genome", "classes", "quality", "params", "cache bytes"]
    heads += [f"{n} (× all-SA-1)" for n in relative] + [f"score: {t}" for t in tasks] + ["status", "seconds"]
    body = []
    for r in rows:
        baseline = f" <em>= {_e(r['baseline'])}</em>" if r["baseline"] else ""
        cells = [
            str(r["rank"]), f"<code>{_e(r['genome'])}</code>{baseline}", _e(r["classes"]),
            _e(format_quality(r["quality"])), f"{r['params']:,}", f"{r['cache_bytes']:,}",
            *(f"{r['relative'][n]:.3g}" for n in relative),
            *(f"{r['scores'][t]:.3f}" if t in r["scores"] else "–" for t in tasks),
            _e(r["status"]), f"{r['seconds']:.1f}",
        ]  # fmt: skip
        body.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    if not body:
        body.append(f'<tr><td colspan="{len(heads)}">no evaluation succeeded</td></tr>')
    return _table(heads, body, "front")


def _baseline_table(run: RunData) -> str:
    front = {m["hash"] for m in run.front}
    heads = ["preset", "genome", "classes", "quality", "params", "cache bytes", "on the front", "status"]
    body = [
        "<tr>" + "".join(f"<td>{c}</td>" for c in (
            _e(name), f"<code>{_e(e.genome)}</code>", _e(describe_classes(e.genome)),
            _e(format_quality(e.quality)), f"{e.params:,}", f"{e.cache_bytes:,}",
            "yes" if e.hash in front else "no", _e(e.status.value),
        )) + "</tr>"
        for name, e in run.baselines().items()
    ]  # fmt: skip
    if not body:
        none = f"no baseline preset of depth {run.config['depth']} was evaluated"
        body.append(f'<tr><td colspan="{len(heads)}">{_e(none)}</td></tr>')
    return _table(heads, body, "baselines")


def _last_population_note(run: RunData) -> str:
    last = {m["hash"] for m in run.last_population_front}
    kept = len(last & {m["hash"] for m in run.front})
    return (
        f"The last generation's population has {len(last)} genomes on its own front, {kept} of them on this one "
        f"(the search may drop front genomes from its population; this table keeps every one found)."
    )


def _economy_tables(run: RunData) -> str:
    """What each rung spent; with a ladder, its rank agreement; with the surrogate, its per-generation one."""
    heads = ["rung", "evaluations", "wall seconds", "CPU seconds", "GPU seconds"]
    body = [
        "<tr>" + "".join(f"<td>{c}</td>" for c in (
            _e(rung), f"{s['evaluations']:.0f}", *(f"{s[k]:.1f}" for k in ("seconds", "cpu_seconds", "gpu_seconds"))
        )) + "</tr>"
        for rung, s in run.spent().items()
    ]  # fmt: skip
    html_ = _table(heads, body, "spent")
    steps = run.rung_correlations()
    if steps:
        rows = ["<tr>" + "".join(f"<td>{_e(c)}</td>" for c in (
            f"{s['low']} → {s['high']}", s["n"], _number(s["spearman"]), _number(s["kendall"]))) + "</tr>"
            for s in steps]  # fmt: skip
        html_ += _table(["ladder step", "genomes on both", "Spearman", "Kendall"], rows, "ladder")
    agreement = run.surrogate_agreement()
    if agreement:
        rows = ["<tr>" + "".join(f"<td>{_e(c)}</td>" for c in (
            a["generation"], a["n"], _number(a["spearman"]), _number(a["kendall"]))) + "</tr>"
            for a in agreement]  # fmt: skip
        html_ += _table(["generation", "assessed", "Spearman (predicted vs measured)", "Kendall"], rows, "surrogate")
    return html_


def _number(value: float | None) -> str:
    return "–" if value is None else f"{value:.3f}"


def _status_line(run: RunData) -> str:
    counts = ", ".join(f"{n} {status}" for status, n in run.status_counts().items())
    error = run.first_error()
    return f"Evaluations by status: {counts}" + (f"; the first error: {error}." if error else ".")


def _table(heads: list[str], body: list[str], css_class: str) -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in heads)
    return f'<div class="scroll"><table class="{css_class}"><tr>{head}</tr>{"".join(body)}</table></div>'


def render_html(run: RunData, figures: list[tuple[Path, str, str]], status: PageStatus | None = None) -> str:
    """The page: ``figures`` are (PNG path, alt text, caption), inlined as base64; ``status`` (where the run
    stands) opens it, and a live one makes it reload itself."""
    sentences = headlines(run)
    headline = f'<p class="context">{_e(sentences[0])}</p>' + "".join(f"<p>{_e(s)}</p>" for s in sentences[1:])
    images = "".join(
        f'<figure><img alt="{_e(alt)}" src="data:image/png;base64,{base64.b64encode(p.read_bytes()).decode()}">'
        f"<figcaption>{_e(caption)}</figcaption></figure>"
        for p, alt, caption in figures
    )
    reload = f'<meta http-equiv="refresh" content="{status.refresh}">' if status and status.refresh else ""
    state = f'<p class="state {status.phase}">{_e(status.text)}</p>' if status else ""
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">{reload}<title>starlab search report: {_e(run.config["protocol"])}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1100px; color: #222; line-height: 1.45; }}
.headline {{ background: #f4f6fa; border-left: 4px solid #4C72B0; padding: 0.6em 1.2em; }}
.headline p {{ margin: 0.6em 0; }} .headline .context {{ color: #555; }}
.scroll {{ overflow-x: auto; }}
table {{ border-collapse: collapse; margin: 1em 0; font-size: 0.88em; }}
td, th {{ border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: right; }}
th {{ background: #f4f4f4; }} td:nth-child(2), td:nth-child(3) {{ text-align: left; }}
figure {{ margin: 1.5em 0; }} figcaption {{ font-size: 0.9em; color: #444; max-width: 900px; }}
img {{ max-width: 100%; }} code {{ font-size: 0.85em; }} pre {{ background: #f8f8f8; padding: 0.8em; }}
.state {{ padding: 0.4em 1em; border-left: 4px solid #C44E52; background: #fbf1f1; }}
.state.live {{ border-color: #DD8452; background: #fdf5ee; }}
.state.finished {{ border-color: #55A868; background: #f0f7f2; }}
</style></head><body>
<h1>starlab search report</h1>
{state}
<section class="headline"><h2>Result</h2>{headline}</section>
<h2>Pareto front over all evaluations</h2>
<p>The non-dominated genomes among all {len(run.successful)} successful evaluations on the run's objectives
({_e(", ".join(run.config["objectives"]))}), best quality first (rank 1 is what <code>starlab export --rank 1</code>
writes). Sizes are absolute (non-embedding parameters; inference cache at {CACHE_LENGTH} tokens in 16-bit values);
the "× all-SA-1" columns are the objectives as the search saw them. Scores are per task, higher is better.
{_e(_last_population_note(run))}</p>
{_front_table(run)}
<h2>What the search spent</h2>
<p>Evaluations and seconds per rung (the budget counts the first); for a ladder, how far neighbouring rungs
rank the genomes measured on both alike; for the surrogate, how well its predictions, made before each
generation was assessed, ranked what was then measured.</p>
{_economy_tables(run)}
<h2>Baselines</h2>
<p>Genome presets of the run's depth that were evaluated (as seeds or found by the search).</p>
{_baseline_table(run)}
<h2>Figures</h2>{images}
<h2>Settings as actually used</h2>
<p>{_e(_status_line(run))} Below: the stored search config with the width resolved, the search protocol as
configured (what one assessment trains), and the evaluations by status.</p>
<pre>{_e(settings_text(run))}</pre>
</body></html>
"""
