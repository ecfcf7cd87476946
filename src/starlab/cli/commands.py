"""The commands: each parses nothing and decides nothing a Python user would need; it calls the library and
prints (a rich table by default, JSON with ``--json``)."""

from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING

from starlab.cli.common import Interrupted, flag
from starlab.console import print_table, status
from starlab.errors import SettingError

if TYPE_CHECKING:  # the commands import what they run when they run it: the parser starts fast
    from starlab.report.live import LiveReport


# ---- liv ---------------------------------------------------------------------------------------------


def liv_list(args: argparse.Namespace) -> None:
    """One row per pool class (with ``--operators``, per valid operator genome) with its size and cache."""
    from starlab.liv import liv_sizes

    rows = [size.to_dict() for size in liv_sizes(args.width, args.seq_len, args.operators)]
    if args.json:
        print(json.dumps(rows, indent=2))
        return
    what = "Valid operator genomes" if args.operators else "LIV classes"
    title = f"{what} at width {args.width}, cache at {args.seq_len} tokens (16-bit values)"
    rows = [{**row, "id": row["id"] or ""} for row in rows]  # classes outside the pool have no id
    print_table(title, rows, ["id", "name", "operator_genome", "family", "params", "cache_bytes"])


def liv_build(args: argparse.Namespace) -> None:
    """Build one LIV from its operator genome (or a pool id or name) and print its size and cache."""
    from starlab.liv import liv_size

    row = liv_size(args.operator, args.width, args.seq_len, repair=args.repair).to_dict()
    if args.json:
        print(json.dumps(row, indent=2))
        return
    title = f"{row['name']} at width {args.width}, cache at {args.seq_len} tokens (16-bit values)"
    print_table(title, [row], list(row))


# ---- genome ------------------------------------------------------------------------------------------


def genome_show(args: argparse.Namespace) -> None:
    """Per-slot table and totals: parameters after sharing and inference cache."""
    from starlab.genome import resolve
    from starlab.liv import check_width
    from starlab.model import size_report

    genome = resolve(args.genome, args.depth, repair=args.repair)
    report = size_report(genome, check_width(args.width), args.vocab, args.seq_len)
    if args.json:
        print(json.dumps({"text": genome.text(), **report.to_dict()}, indent=2))
        return
    rows = [
        {
            "slot": s.slot,
            "class": s.name,
            "family": s.family,
            "featurizer from": s.featurizer_leader or "",
            "features from": s.feature_source or "",
            "params": s.params,
            "cache_bytes": s.cache_bytes,
        }
        for s in report.slots
    ]
    print_table(f"{report.canonical}  (hash {report.hash})", rows, list(rows[0]))
    print(f"width {report.width}, vocab {report.vocab_size}: params {report.params:,} ", end="")
    print(f"(non-embedding {report.params_non_embedding:,}); cache at {report.seq_len} tokens {report.cache_bytes:,} B")


def genome_random(args: argparse.Namespace) -> None:
    from starlab.genome import random_genome

    genome = random_genome(args.depth, args.seed)
    print(json.dumps(genome.to_json(hash=genome.hash()), indent=2) if args.json else genome.text())


def genome_diagram(args: argparse.Namespace) -> None:
    from starlab.genome import resolve
    from starlab.report.diagram import save_diagram

    genome = resolve(args.genome, args.depth, repair=args.repair)
    print(save_diagram(genome, args.output, title=args.genome if len(args.genome) < 40 else None))


# ---- assessment ------------------------------------------------------------------------------------------


def _assess(args: argparse.Namespace, protocol, doing: str):
    """``assess()`` with the command's genome (a preset has the protocol's depth), width, seed and device, behind
    a spinner."""
    from starlab.assess import assess
    from starlab.genome import resolve

    genome = resolve(args.genome, args.depth, repair=args.repair, default_depth=protocol.preset_depth)
    with status(f"{doing} {genome.text()}") as progress:
        return assess(genome, protocol, args.width, args.seed, args.device, progress=progress)


def mad(args: argparse.Namespace) -> None:
    """Assess a genome on a MAD protocol (optionally a subset of its tasks)."""
    from starlab.assess import CACHE_LENGTH, get_protocol

    protocol = get_protocol(args.protocol)
    if args.tasks:
        protocol = protocol.only(args.tasks)
    result = _assess(args, protocol, f"assessing on MAD {args.protocol}:")
    report = protocol.describe(result)
    if args.json:
        print(json.dumps(report, indent=2))
        return
    rows = [
        {"task": t, "score (macro acc.)": v, "token accuracy": report["token_accuracy"][t]}
        for t, v in result.scores.items()
    ]
    rows.append({"task": "MAD score", "score (macro acc.)": report["mad_score"], "token accuracy": ""})
    print_table(f"{result.genome} on MAD {args.protocol} (width {result.width})", rows, list(rows[0]))
    print(f"params {result.params:,}; cache {result.cache_bytes:,} B at {CACHE_LENGTH} tokens; ", end="")
    print(f"{result.seconds:.1f} s; {result.status}")


def algo(args: argparse.Namespace) -> None:
    """Train a genome on one algorithmic task, fully or embedding-only (the algo-* protocols)."""
    from starlab.assess import get_protocol
    from starlab.assess.algorithmic import protocol_for_task

    protocol = get_protocol(protocol_for_task(args.task)).with_settings(
        size=args.size, embedding_only=args.embedding_only, positions=not args.no_positions, steps=args.steps,
        backbone=args.backbone,
    )  # fmt: skip
    mode = "embedding-only" if args.embedding_only else "full"
    report = protocol.describe(_assess(args, protocol, f"training ({args.task}, {mode})"))
    if args.json:
        print(json.dumps(report, indent=2))
        return
    rows = [{"metric": k, "value": v} for k, v in report["metrics"].items()]
    flavour = "" if args.backbone == "star" else f", {args.backbone} backbone"
    print_table(f"{args.task} ({args.size}) on {report['genome']}{flavour}", rows, ["metric", "value"])
    print(f"{report['status']} after {report['steps']} steps, {report['seconds']:.1f} s; "
          f"trainable params {report['trainable_params']:,}")  # fmt: skip


def lm(args: argparse.Namespace) -> None:
    """Train a genome as a language model on local text (or the bundled corpus); report perplexity. With
    ``--out DIR`` the run checkpoints into DIR and ``--resume DIR`` continues it."""
    from pathlib import Path

    from starlab.assess import lm_run

    directory = Path(args.resume or args.out) if (args.resume or args.out) else None
    settings = {name: getattr(args, name) for name in lm_run.DEFAULTS}
    if args.resume:
        if args.genome is not None:
            raise ValueError(f"--resume continues the genome stored in {args.resume}: give no genome")
        command = lm_run.read(directory)
        _say_ignored(command.conflicts(**settings))
    else:
        if args.genome is None:
            raise ValueError("give a genome to train, or --resume DIR to continue a run")
        if (args.checkpoint_every or args.checkpoint_minutes) and not args.out:
            raise ValueError("--checkpoint-every and --checkpoint-minutes need --out DIR, where the checkpoints go")
        command = lm_run.LMCommand.from_settings(args.genome, depth=args.depth, repair=args.repair, **settings)
        if directory is not None:
            lm_run.start(directory, command)
    with status(f"training as a language model ({command.protocol}): {command.genome}") as progress:
        report = lm_run.run(directory, command, progress)
    if args.json:
        print(json.dumps(report, indent=2))
        return
    speed = f"; {report['tokens_per_s']:,.0f} tokens/s, MFU {report['mfu']:.1%}" if "mfu" in report else ""
    print(f"{report['genome']}: validation perplexity {report['perplexity']:.3f} ({report['status']}); "
          f"params {report['params']:,}; {report['seconds']:.1f} s{speed}")  # fmt: skip


def protocols(args: argparse.Namespace) -> None:
    """Every registered protocol: kind, width, what it trains and what one 4-slot genome costs."""
    from starlab.assess import get_protocol, protocol_names

    rows = [get_protocol(name).summary() for name in protocol_names(args.kind)]
    if args.json:
        print(json.dumps(rows, indent=2))
        return
    table = [
        {"name": r["name"], "kind": r["kind"], "width": r["width"], "trains": r["training"]["summary"],
         "cost (4 slots, 2 cores)": _cost(r["cost_s"]), "description": r["description"]}
        for r in rows
    ]  # fmt: skip
    print_table(
        "assessment protocols (starlab evolve --protocol NAME)", table, list(table[0]), wrap=("trains", "description")
    )


def _cost(seconds: float | None) -> str:
    if seconds is None:
        return "not measured"
    if seconds < 1:
        return "< 1 s"
    return f"~{seconds:.0f} s" if seconds < 120 else f"~{seconds / 60:.0f} min"


# ---- data ------------------------------------------------------------------------------------------------


def data_prepare(args: argparse.Namespace) -> None:
    """Tokenize a corpus once, in parallel, into memory-mapped token files that LM protocols read (--data DIR)."""
    from starlab.console import progress_bar
    from starlab.tasks.lm import SplitSettings
    from starlab.tasks.prepare import PrepareConfig, prepare
    from starlab.tasks.tokenizer import resolve_vocab_size

    vocab = resolve_vocab_size(args.tokenizer, args.vocab_size)
    split = SplitSettings(args.tokenizer, vocab, args.val_fraction, args.seed, args.block_chars)
    bar, stages = progress_bar("{task.fields[documents]:,} documents"), {}

    def show(stage: str, done: int, total: int, documents: int) -> None:
        if not stages:
            bar.start()  # only once reading starts: a refused input prints its one line and nothing else
        if stage not in stages:
            stages[stage] = bar.add_task(f"{stage} (MB)", total=total / 1e6, documents=0)
        bar.update(stages[stage], completed=done / 1e6, documents=documents)

    try:
        result = prepare(args.path, args.out, PrepareConfig(split, args.text_field, args.workers), show)
    except BaseException:
        bar.live.transient = True  # the error, in one line, is the last word
        bar.live.stop()
        raise
    if stages:
        bar.stop()
    manifest, tokens = result.manifest, result.manifest["tokens"]
    print(f"{result.directory}: {tokens['train']:,} training and {tokens['val']:,} validation tokens "
          f"({args.tokenizer}, vocabulary {manifest['tokenizer_vocab_size']:,}, {manifest['dtype']}) from "
          f"{len(manifest['sources'])} file(s), {manifest['documents']:,} documents, "
          f"in {result.seconds:.1f} s")  # fmt: skip


# ---- evolution -------------------------------------------------------------------------------------------


def evolve(args: argparse.Namespace) -> None:
    """Run (or resume) a search; prints its Pareto front over all evaluations and the result in words, and
    writes its report (rewritten while it runs; see ``starlab.report.live``)."""
    from starlab.console import SearchProgress
    from starlab.evolve import Hooks, SearchConfig, SearchInterrupted, run_search
    from starlab.report.live import REPORT_EVERY_S, LiveReport
    from starlab.report.tensorboard import TensorBoardScalars

    overrides = _search_settings_given(args)
    resume, config = args.resume is not None, None
    if not resume:
        read = SearchConfig.from_file if args.config else SearchConfig.from_preset
        config = read(args.config or args.preset, **overrides).check()  # before any executor starts
    directory = args.resume if resume else args.out
    execution, replaced = _execution(args, directory, resume)
    live = LiveReport(directory, REPORT_EVERY_S if execution.report_every is None else execution.report_every)
    scalars = TensorBoardScalars(execution.tensorboard) if execution.tensorboard else None  # refused before work
    progress = SearchProgress()

    def started(search) -> None:
        if scalars is not None:
            scalars.open(search.store.generations())  # those stored already were written when recorded
        if resume:
            _say_ignored(search.config.conflicts(**overrides))
            _say_replaced(replaced)

    hooks = Hooks(progress, [hook for hook in (live, scalars) if hook is not None], started, live.interrupted,
                  lambda error: live.stopped(_said(error)))  # fmt: skip
    try:
        summary = run_search(directory, config, resume=resume, execution=execution, retry_failed=args.retry_failed,
                             hooks=hooks)  # fmt: skip
    except SearchInterrupted as stop:
        raise Interrupted(f"resume with `starlab evolve --resume {stop.directory}`") from None
    finally:
        progress.stop()
        if scalars is not None:
            scalars.close()
    failed = f", {summary.failed} failed" if summary.failed else ""
    print_result(summary.directory)
    print(f"{summary.evaluations} evaluations ({summary.new_evaluations} run now{failed}) in {summary.seconds:.0f} s; "
          f"hypervolume {summary.hypervolume:.4f}; run directory {summary.directory}")  # fmt: skip
    _final_report(live)


def _search_settings_given(args: argparse.Namespace) -> dict:
    """The search settings (``starlab.store.SEARCH_SETTINGS``) given as flags; ``None`` where not given (a flag
    that only switches a setting on is not given when absent)."""
    from starlab.store import SEARCH_SETTINGS

    given = {name: getattr(args, name) for name in SEARCH_SETTINGS if hasattr(args, name)}
    given = {name: (value or None) if isinstance(value, bool) else value for name, value in given.items()}
    return {**given, "protocol_settings": dict(args.protocol_setting) if args.protocol_setting else None}


def _execution(args: argparse.Namespace, directory: str, resume: bool):
    """Where the run's evaluations run and what it keeps: the flags given, over the run's stored settings when
    resuming (a flag given then replaces the stored setting, is stored, and is named in a note line)."""
    from dataclasses import fields

    from starlab.evolve.execution import Execution, resumed_execution

    given = {setting.name: getattr(args, setting.name) for setting in fields(Execution)}  # each one is a flag
    return resumed_execution(directory, **given) if resume else Execution.resumed(None, "", **given)


def _say_replaced(replaced: dict) -> None:
    """One line on stderr naming the stored execution settings that flags given with ``--resume`` replaced."""
    if replaced:
        changes = "; ".join(f"{flag(k, True)}{new!r} (the run's was {old!r})" for k, (new, old) in replaced.items())
        print(f"starlab: note: resuming with {changes}; stored for later resumes", file=sys.stderr)


def _said(error: Exception) -> str:
    """An error as the command line says it: a ``ValueError``'s message (flags named as flags), or the type
    and message of anything else."""
    if isinstance(error, SettingError):
        return error.render(flag)
    return str(error) if isinstance(error, ValueError) else f"{type(error).__name__}: {error}"


def _final_report(live: LiveReport) -> None:
    """The finished run's report (the search's result stands if it cannot be written: a note, exit 0)."""
    try:
        print(f"report: {live.finished()}")
    except ValueError as error:
        print(f"starlab: note: the report was not written: {error}", file=sys.stderr)


#: The command line shows this many genomes of a front; the report shows them all.
FRONT_ROWS = 12


def print_result(directory) -> None:
    """The run's front over all its evaluations (the report's), classes by name, then the headline sentences."""
    from starlab.report.summary import front_table, headlines
    from starlab.store import load_run

    run = load_run(directory)
    if not run.successful:  # nothing to tabulate: the headlines say why
        for sentence in headlines(run):
            print(f"- {sentence}")
        return
    rows = [
        {"rank": r["rank"], "genome": r["genome"], "classes": r["classes"], "quality": r["quality"],
         "params": r["params"], "cache bytes": r["cache_bytes"], "baseline": r["baseline"] or ""}
        for r in front_table(run)
    ]  # fmt: skip
    title = (f"Pareto front over all {len(run.successful)} successful evaluations "
             f"(quality = {run.quality_meaning}; lower is better)")  # fmt: skip
    print_table(title, rows[:FRONT_ROWS], list(rows[0]), wrap=("classes",))
    if len(rows) > FRONT_ROWS:
        print(f"... and {len(rows) - FRONT_ROWS} more on the front (starlab report {directory} shows all)")
    for sentence in headlines(run):
        print(f"- {sentence}")


def _say_ignored(conflicts: dict) -> None:
    """One line on stderr naming the flags a resumed run ignores (it runs its stored settings)."""
    if conflicts:
        ignored = "; ".join(
            f"{flag(k, True)}{given!r} (the run's: {stored!r})" for k, (given, stored) in conflicts.items()
        )
        print(f"starlab: note: resuming with the run's stored settings, ignoring {ignored}", file=sys.stderr)


def report(args: argparse.Namespace) -> None:
    from starlab.report.report import write_report

    path = write_report(args.directory)
    print_result(args.directory)
    print(path)


def export(args: argparse.Namespace) -> None:
    """Export the rank-R genome of a run's Pareto front: config.json + model.safetensors, or a Hugging Face
    directory (--format hf)."""
    from starlab.export import export_from_run

    path = export_from_run(
        args.directory, args.rank, args.out, args.vocab, args.train_steps, args.data, args.seed, force=args.force,
        format=args.format, untrained=args.untrained,
    )  # fmt: skip
    print(path)


# ---- study -----------------------------------------------------------------------------------------------


def study_run(args: argparse.Namespace) -> None:
    """Run (or continue) a study file into a run directory: one line per evaluation as it is stored."""
    from starlab.study import StudySpec, run_study

    spec = StudySpec.from_file(args.file)  # every field checked before anything is written

    def show(number: int, total: int, evaluation, ran: bool) -> None:
        done = f"{evaluation.seconds:.1f} s" if ran else "stored"
        print(f"[{number}/{total}] {evaluation.protocol} seed {evaluation.seed} {evaluation.genome}: quality "
              f"{evaluation.quality:.4f} ({evaluation.status}, {done})", flush=True)  # fmt: skip

    summary = run_study(spec, args.out, show, device=args.device)
    print(f"{summary.evaluations} evaluations ({summary.new_evaluations} run now) in {summary.directory}; "
          f"starlab study report {summary.directory}")  # fmt: skip


def study_report(args: argparse.Namespace) -> None:
    """A study's tables: quality per genome and protocol key over seeds, and each analysis."""
    from starlab.study import study_tables

    tables = study_tables(args.directory)
    if args.json:
        print(json.dumps(tables, indent=2))
        return
    quality = [{**row, "mean": _number(row["mean"]), "std": _number(row["std"])} for row in tables["quality"]]
    print_table(f"study {tables['study']}: quality (lower is better) over seeds", quality, list(quality[0]))
    for row in tables["rank_correlation"]:
        cells = [{"statistic": name, "value": _number(row[name]), "90% interval": _interval(row[f"{name}_90"])}
                 for name in ("spearman", "kendall")]  # fmt: skip
        print_table(f"rank correlation of {row['proxy']} with {row['target']} over {row['genomes']} genomes", cells,
                    list(cells[0]))  # fmt: skip


def _number(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4f}"


def _interval(values: list[float] | None) -> str:
    return "n/a" if values is None else f"[{values[0]:.3f}, {values[1]:.3f}]"


# ---- parser ------------------------------------------------------------------------------------------
