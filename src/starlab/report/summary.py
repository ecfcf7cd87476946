"""A run's result in words and rows: headline sentences, the front table, the settings as used.

Pure data and text (no matplotlib), so the command line can print the same sentences the report shows.
Everything reads :attr:`starlab.store.RunData.front` (the Pareto front over all successful evaluations), the
one front of a run.

Relative numbers compare a genome's value ``v`` with a baseline's ``b`` as ``|b − v| / b`` (quality: lower is
better, so ``v < b`` is *better*; sizes: *fewer* parameters, *less* cache), written as a whole percentage from
10 % up and with one decimal below (:func:`percent`).
"""

from __future__ import annotations

import json
import statistics
from collections import Counter
from dataclasses import dataclass
from typing import Any

from starlab.assess import CACHE_LENGTH
from starlab.assess.record import Evaluation
from starlab.genome import Genome
from starlab.liv import get_class
from starlab.store import RunData
from starlab.store.run import UNSUCCESSFUL

SIZES = ("params", "cache")
#: Per size objective: the pair's title, how one genome's value is said, and the words for less / more.
SIZE_WORDS = {
    "params": ("Quality vs parameters", "parameters", "fewer parameters", "more parameters", "as many parameters"),
    "cache": ("Quality vs cache", "inference cache", "less cache", "more cache", "the same cache"),
}
#: From this ratio up, "more" is said as a multiple (``"5.5 × the cache"``) rather than a percentage.
MULTIPLE = 2.0
#: Genomes longer than this are named by their first slots and hash, their classes by counts.
LONG_GENOME = 8


# ---- naming and numbers ----------------------------------------------------------------------------------


def class_names(genome: Genome | str) -> list[str]:
    """The LIV class of each slot by name, slot 1 first (``["SA-1", "Rec-1", "GMemless", "SA-1"]``)."""
    genome = Genome.parse(genome) if isinstance(genome, str) else genome
    return [get_class(slot.cls).name for slot in genome.slots]


def class_counts(genome: Genome | str) -> list[tuple[str, int]]:
    """Each LIV class of the genome with its number of slots, the most frequent first (ties: the first seen)."""
    return Counter(class_names(genome)).most_common()


def describe_classes(genome: Genome | str) -> str:
    """``"SA-1, Rec-1, GMemless, SA-1"``; a genome of more than :data:`LONG_GENOME` slots by counts
    (``"12 × GMemless, 6 × SA-1, 6 × Rec-1"``)."""
    names = class_names(genome)
    if len(names) <= LONG_GENOME:
        return ", ".join(names)
    return ", ".join(f"{count} × {name}" if count > 1 else name for name, count in class_counts(genome))


def genome_label(genome: Genome | str, genome_hash: str | None = None) -> str:
    """The genome's canonical text with its classes: ``"21211-31112 (SA-2, SA-3)"``; a long genome by its
    first slots and hash."""
    genome = Genome.parse(genome) if isinstance(genome, str) else genome
    text = genome.canonical().text()
    if len(genome) > LONG_GENOME:
        text = f"{'-'.join(text.split('-')[:3])}-… ({len(genome)} slots, hash {genome_hash or genome.hash()}"
        return f"{text}; {describe_classes(genome)})"
    return f"{text} ({describe_classes(genome)})"


def format_quality(value: float) -> str:
    """Three decimals for scores below 10 (MAD, algorithmic), fewer for perplexities."""
    if abs(value) < 10:
        return f"{value:.3f}"
    return f"{value:.1f}" if abs(value) < 1000 else f"{value:,.0f}"


def format_count(value: float) -> str:
    """``812``, ``95.9 k``, ``1.2 M``, ``1.3 G``."""
    for scale, unit in ((1e9, " G"), (1e6, " M"), (1e3, " k")):
        if abs(value) >= scale:
            return f"{value / scale:.3g}{unit}"
    return f"{value:.0f}"


def format_bytes(value: float) -> str:
    """``0 B``, ``256 B``, ``1.05 MB`` (decimal units)."""
    for scale, unit in ((1e9, " GB"), (1e6, " MB"), (1e3, " kB")):
        if abs(value) >= scale:
            return f"{value / scale:.3g}{unit}"
    return f"{value:.0f} B"


def format_size(objective: str, evaluation: Evaluation) -> str:
    """A genome's size in words: ``"95.9 k parameters"`` or ``"a 1.05 MB inference cache"``."""
    if objective == "params":
        return f"{format_count(evaluation.params)} parameters"
    return f"a {format_bytes(evaluation.cache_bytes)} inference cache"


def size_value(objective: str, evaluation: Evaluation) -> int:
    return evaluation.params if objective == "params" else evaluation.cache_bytes


def short_size(objective: str, value: float, beside: float | None = None) -> str:
    """``"95.9 k"`` or ``"1.05 MB"``; exact (``"1,050,624 B"``) where it would read the same as ``beside``."""
    short = format_count if objective == "params" else format_bytes
    if beside is not None and value != beside and short(value) == short(beside):
        return f"{value:,}" if objective == "params" else f"{value:,} B"
    return short(value)


def percent(fraction: float) -> str:
    """``0.352`` → ``"35 %"``, ``0.0234`` → ``"2.3 %"`` (whole from 10 % up, one decimal below)."""
    value = abs(fraction) * 100
    return f"{value:.0f} %" if value >= 10 else f"{value:.1f} %"


def compare(value: float, reference: float, lower: str, higher: str, same: str, noun: str | None = None) -> str:
    """``"35 % fewer parameters"``: ``value`` against ``reference`` in relative terms (``lower`` when smaller);
    with a ``noun``, :data:`MULTIPLE` times or more is said as ``"5.5 × the cache"``."""
    if value == reference:
        return same
    if reference == 0:
        return f"{higher} (the other has none)"
    if noun is not None and value >= MULTIPLE * reference:
        return f"{value / reference:.1f} × the {noun}"
    return f"{percent((reference - value) / reference)} {lower if value < reference else higher}"


def compare_size(size: str, value: float, reference: float) -> str:
    """``"35 % fewer parameters"``, ``"12 % less cache"``, ``"5.5 × the cache"``."""
    _, _, lower, higher, same = SIZE_WORDS[size]
    return compare(value, reference, lower, higher, same, noun={"params": "parameters", "cache": "cache"}[size])


def compare_quality(value: float, reference: float) -> str:
    return compare(value, reference, "better quality", "worse quality", "the same quality")


# ---- the headline ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Pair:
    """Quality against one size objective: the best genome of the front on it and each baseline's verdict."""

    size: str  # "params" or "cache"
    best: Evaluation
    baselines: dict[str, Evaluation]

    def beats(self, evaluation: Evaluation, baseline: Evaluation) -> bool:
        """``evaluation`` dominates ``baseline`` on (quality, size): no worse on both, better on one."""
        a = (evaluation.quality, size_value(self.size, evaluation))
        b = (baseline.quality, size_value(self.size, baseline))
        return a[0] <= b[0] and a[1] <= b[1] and a != b

    def comparison(self, baseline_name: str) -> str:
        """``"49 % better quality than transformer++ (0.352) at 2.0 % fewer parameters (97.6 k)"``."""
        baseline = self.baselines[baseline_name]
        mine, theirs = size_value(self.size, self.best), size_value(self.size, baseline)
        quality = compare_quality(self.best.quality, baseline.quality)
        against = "as" if quality == "the same quality" else "than"
        return (
            f"{quality} {against} {baseline_name} ({format_quality(baseline.quality)}) at "
            f"{compare_size(self.size, mine, theirs)} ({short_size(self.size, theirs, mine)})"
        )


def best_of(run: RunData, size: str | None = None) -> Evaluation | None:
    """The front's best-quality genome (ties: the smaller on ``size``, or on parameters then cache), as its
    evaluation; ``None`` when no evaluation succeeded."""
    members = [run.evaluation_of(m["hash"]) for m in run.front]
    members = [e for e in members if e is not None]
    if not members:
        return None
    sizes = [size] if size else list(SIZES)
    return min(members, key=lambda e: (e.quality, *(size_value(s, e) for s in sizes)))


def _baseline_name(run: RunData, evaluation: Evaluation) -> str | None:
    return next((name for name, e in run.baselines().items() if e.hash == evaluation.hash), None)


def _context(run: RunData) -> str:
    config = run.config
    total, successful, generations, front = len(run.evaluations), len(run.successful), len(run.generations), run.front
    sentence = (
        f"This {config.get('algorithm', 'nsga2')} search assessed {total} genomes of {_slots(config)} at "
        f"width {run.width} under protocol {config['protocol']} in {generations} "
        f"generation{'s' * (generations != 1)}, minimising {', '.join(config['objectives'])}; the Pareto front "
        f"over all {successful} successful evaluations holds {len(front)} genome{'s' * (len(front) != 1)}. "
        f"Quality means: {run.quality_meaning}; lower is better."
    )
    sentence += " " + spending_sentence(run)
    unsuccessful = total - successful
    if unsuccessful:
        counts = run.status_counts()
        detail = " and ".join(f"{n} {status}" for status, n in counts.items() if status in ("failed", "diverged"))
        error = run.first_error()
        sentence += f" {detail} {'is' if unsuccessful == 1 else 'are'} left out of the front"
        sentence += f" (the first error: {error})." if error else "."
    return sentence


def _slots(config: dict) -> str:
    """``4 slots``, ``2 to 4 slots`` (a depth range), with ``and evolved backbone genes`` where they were."""
    depth, low = config["depth"], config.get("min_depth")
    slots = f"{depth} slots" if low is None else f"{low} to {depth} slots"
    return slots + (" and evolved backbone genes" if config.get("backbone_genes") else "")


def spending_sentence(run: RunData) -> str:
    """What the evaluations cost, per rung, against the budget; with a ladder, how far its rungs agree; with
    the surrogate, how well it predicted."""
    spent = run.spent()
    budget = run.config.get("budget")
    parts = [
        f"{s['evaluations']:.0f} on {rung} ({s['seconds']:.0f} wall-s, {s['cpu_seconds']:.0f} CPU-s"
        + (f", {s['gpu_seconds']:.0f} GPU-s)" if s["gpu_seconds"] else ")")
        for rung, s in spent.items()
    ]
    sentence = f"Evaluations: {'; '.join(parts)}"
    sentence += f", against a budget of {budget} on {run.config['protocol']}." if budget else "."
    for step in run.rung_correlations():
        if step["spearman"] is not None:
            sentence += (f" Over the {step['n']} genomes measured on both {step['low']} and {step['high']}, "
                         f"their ranks agree with Spearman {step['spearman']:.2f} "
                         f"(Kendall {step['kendall']:.2f}).")  # fmt: skip
    agreement = [a["spearman"] for a in run.surrogate_agreement() if a["spearman"] is not None]
    if agreement:
        sentence += (f" The surrogate's predictions, made before each generation was assessed, ranked it with "
                     f"a median Spearman of {statistics.median(agreement):.2f} over {len(agreement)} "
                     "generations.")  # fmt: skip
    return sentence


def headlines(run: RunData) -> list[str]:
    """The result in sentences: the search in one line, then for each of the run's objective pairs (quality vs
    parameters, quality vs cache; for a quality-only search just quality) the best genome found against every
    evaluated baseline preset, in absolute and relative terms, and which baselines it does not beat."""
    lines = [_context(run)]
    best = best_of(run)
    if best is None:
        lines.append("No evaluation succeeded, so the run found no genome.")
        return lines
    usable = {name: e for name, e in run.baselines().items() if e.status not in UNSUCCESSFUL}
    lost = sorted(set(run.baselines()) - set(usable))
    if lost:
        lines.append(f"Baseline {', '.join(lost)} did not evaluate successfully and is not compared.")
    if not usable:
        lines.append(_alone(run, best))
        depth = run.config["depth"]
        if depth % 2:
            lines.append(
                f"No baseline preset was evaluated: presets exist at even depths only and this run has depth {depth}, "
                "so there is nothing to compare the result with."
            )
        elif not lost:
            lines.append(
                f"No baseline preset (transformer++, striped-mamba, ...) was evaluated at depth {depth}, so there is "
                "nothing to compare the result with; seed the search with presets to get a reference."
            )
        return lines
    sizes = [s for s in SIZES if s in run.config["objectives"]]
    if not sizes:
        lines.append(_quality_only(run, best, usable))
        return lines
    previous = None
    for size in sizes:
        pair = Pair(size, best_of(run, size), usable)  # type: ignore[arg-type]
        lines.append(_pair_sentence(run, pair, same_as_before=previous == pair.best.hash))
        lines.extend(_not_beaten(run, pair))
        previous = pair.best.hash
    return lines


def _opening(run: RunData, best: Evaluation, sizes: str, same_as_before: bool = False) -> str:
    """``"the best genome found, X (classes), reaches quality 0.178 with 95.9 k parameters"``."""
    if same_as_before:
        return f"the same genome has {sizes}"
    label, quality = genome_label(best.genome, best.hash), format_quality(best.quality)
    name = _baseline_name(run, best)
    if name is not None:
        return f"the best genome found is the baseline {name} itself, {label}, with quality {quality} and {sizes}"
    return f"the best genome found, {label}, reaches quality {quality} with {sizes}"


def _alone(run: RunData, best: Evaluation) -> str:
    opening = _opening(run, best, f"{format_size('params', best)} and {format_size('cache', best)}")
    return f"{opening[0].upper()}{opening[1:]}."


def _quality_only(run: RunData, best: Evaluation, baselines: dict[str, Evaluation]) -> str:
    comparisons = [
        f"{compare_quality(best.quality, e.quality)} than {name} ({format_quality(e.quality)})"
        for name, e in baselines.items()
        if e.hash != best.hash
    ]
    sentence = _alone(run, best)
    return sentence[:-1] + ": " + "; ".join(comparisons) + "." if comparisons else sentence


def _pair_sentence(run: RunData, pair: Pair, same_as_before: bool) -> str:
    opening = _opening(run, pair.best, format_size(pair.size, pair.best), same_as_before)
    comparisons = [pair.comparison(name) for name, e in pair.baselines.items() if e.hash != pair.best.hash]
    sentence = f"{SIZE_WORDS[pair.size][0]}: {opening}"
    return sentence + ": " + "; ".join(comparisons) + "." if comparisons else sentence + "."


def _not_beaten(run: RunData, pair: Pair) -> list[str]:
    """For each baseline the best genome does not dominate on the pair: why, and the front's best genome that
    does (or that none does)."""
    words = SIZE_WORDS[pair.size]
    lines = []
    for name, baseline in pair.baselines.items():
        if baseline.hash == pair.best.hash or pair.beats(pair.best, baseline):
            continue
        if pair.best.quality > baseline.quality:
            why = f"{name} has better quality ({format_quality(baseline.quality)})"
        elif pair.best.quality == baseline.quality:
            why = f"{name} has the same quality and {words[2]}"
        else:
            theirs = size_value(pair.size, baseline)
            why = f"{name} has {words[2]} ({short_size(pair.size, theirs, size_value(pair.size, pair.best))})"
        sentence = f"It does not beat {name} on both quality and {words[1]}: {why}; "
        members = [run.evaluation_of(m["hash"]) for m in run.front]
        winners = [e for e in members if e is not None and pair.beats(e, baseline)]
        if winners:
            winner = min(winners, key=lambda e: (e.quality, size_value(pair.size, e)))
            mine, theirs = size_value(pair.size, winner), size_value(pair.size, baseline)
            sentence += (
                f"the best genome that does is {genome_label(winner.genome, winner.hash)}, quality "
                f"{format_quality(winner.quality)} ({compare_quality(winner.quality, baseline.quality)}) with "
                f"{format_size(pair.size, winner)} ({compare_size(pair.size, mine, theirs)})."
            )
        else:
            sentence += f"no genome found beats {name} on both."
        lines.append(sentence)
    return lines


# ---- the front table and the settings --------------------------------------------------------------------


def score_tasks(evaluations: list[Evaluation]) -> list[str]:
    """The task names of the evaluations' scores, in order of first appearance."""
    return list(dict.fromkeys(task for e in evaluations for task in e.scores))


def front_table(run: RunData) -> list[dict[str, Any]]:
    """One row per genome of the run's front, best quality first: rank, genome, hash, classes (names),
    baseline (its preset name, or ``None``), quality, absolute params and cache bytes, the objectives as the
    search saw them (``relative``: sizes relative to all-SA-1), per-task ``scores``, status and seconds."""
    baselines = {e.hash: name for name, e in run.baselines().items()}
    rows = []
    for rank, member in enumerate(run.front, start=1):
        evaluation = run.evaluation_of(member["hash"])
        assert evaluation is not None  # the front is made of the run's evaluations
        rows.append({
            "rank": rank, "genome": member["genome"], "hash": member["hash"],
            "classes": describe_classes(member["genome"]), "baseline": baselines.get(member["hash"]),
            "quality": evaluation.quality, "params": evaluation.params, "cache_bytes": evaluation.cache_bytes,
            "relative": {name: member[name] for name in run.objectives.names},
            "scores": dict(evaluation.scores), "status": evaluation.status.value, "seconds": evaluation.seconds,
        })  # fmt: skip
    return rows


def settings_used(run: RunData) -> dict[str, Any]:
    """The settings as the run actually used them: the stored search config with ``width`` resolved, the
    search protocol as configured (its summary, training included), and the evaluations by status with the
    first error message."""
    search = {**run.config, "width": run.width}
    protocol = run.protocol.summary()
    if protocol["width"] != run.width:
        protocol["width"] = f"{run.width} (set by the search; the protocol's own is {protocol['width']})"
    evaluations: dict[str, Any] = {"total": len(run.evaluations), "by status": run.status_counts()}
    error = run.first_error()
    if error:
        evaluations["first error"] = error
    evaluations["sizes"] = f"params are non-embedding, after sharing; cache is at {CACHE_LENGTH} tokens, 16-bit"
    return {"search": search, "protocol": protocol, "evaluations": evaluations}


def settings_text(run: RunData) -> str:
    """:func:`settings_used` as indented JSON (what the report prints)."""
    return json.dumps(settings_used(run), indent=2, default=str, ensure_ascii=False)
