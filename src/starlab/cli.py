"""Command-line interface: ``starlab <group> <command>``.

Every command prints a rich table by default and JSON with ``--json``. Bad input ends with one line on
stderr (``starlab: error: ...``) and exit code 2, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, NoReturn

from starlab import runtime
from starlab.console import print_table, status
from starlab.errors import SettingError

if TYPE_CHECKING:  # the commands import what they run when they run it: the parser starts fast
    from starlab.report.live import LiveReport


def _positive(text: str, convert: type[int] | type[float], what: str, zero: bool = False) -> int | float:
    try:
        value = convert(text)
    except ValueError:
        value = -1
    if not (0 <= value if zero else 0 < value) or not value < float("inf"):
        raise argparse.ArgumentTypeError(f"expected a {'non-negative' if zero else 'positive'} {what}, got {text!r}")
    return value


def positive_int(text: str) -> int:
    return _positive(text, int, "integer")


def positive_float(text: str) -> float:
    return _positive(text, float, "number")


def non_negative_float(text: str) -> float:
    return _positive(text, float, "number", zero=True)


def depth_range(text: str) -> str:
    """A positive integer ``N`` or a range ``MIN:MAX`` of them, as text (the search config reads both)."""
    parts = text.split(":")
    if len(parts) > 2:
        raise argparse.ArgumentTypeError(f"expected a positive integer or MIN:MAX, got {text!r}")
    return ":".join(str(_positive(part, int, "integer or MIN:MAX")) for part in parts)


def micro_batch(text: str) -> int | str:
    """A positive integer, or ``auto``: the largest micro-batch the device holds (halved on out-of-memory)."""
    return "auto" if text.strip().lower() == "auto" else _positive(text, int, "integer or auto")


def key_value(text: str) -> tuple[str, object]:
    """``KEY=VALUE`` with VALUE read as JSON where it parses (numbers, true/false, null) and as text otherwise."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    try:
        return key.strip(), json.loads(value)
    except json.JSONDecodeError:
        return key.strip(), value


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
    from starlab.evolve.execution import Execution, resumed_execution

    given = {name: getattr(args, name) for name in EXECUTION_FLAGS}
    return resumed_execution(directory, **given) if resume else Execution.resumed(None, "", **given)


def _say_replaced(replaced: dict) -> None:
    """One line on stderr naming the stored execution settings that flags given with ``--resume`` replaced."""
    if replaced:
        changes = "; ".join(f"{flag(k, True)}{new!r} (the run's was {old!r})" for k, (new, old) in replaced.items())
        print(f"starlab: note: resuming with {changes}; stored for later resumes", file=sys.stderr)


#: The flags of how a run executes (``starlab.evolve.execution.Execution``): stored with the run.
EXECUTION_FLAGS = ("executor", "workers", "threads", "ray_address", "gpus", "device", "keep_weights", "report_every",
                   "tensorboard")  # fmt: skip


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


JSON_HELP = "print JSON instead of a table"
REPAIR_HELP = "repair incompatible sharing instead of failing"


class Parser(argparse.ArgumentParser):
    """argparse with starlab's error form: one line on stderr, naming the command, and exit code 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"starlab: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    from starlab.assess import CACHE_LENGTH

    parser = Parser(prog="starlab", description=__doc__.splitlines()[0])
    groups = parser.add_subparsers(dest="group", required=True)

    liv = groups.add_parser("liv", help="the LIV operator pool").add_subparsers(dest="command", required=True)
    listing = liv.add_parser("list", help="list the LIV classes with parameters and cache size")
    listing.add_argument("--width", type=positive_int, default=768, help="model width (default 768)")
    listing.add_argument("--seq-len", type=positive_int, default=CACHE_LENGTH, help="sequence length for the cache")
    listing.add_argument("--json", action="store_true", help="print JSON instead of a table")
    listing.add_argument("--operators", action="store_true", help="every valid operator genome, not just the pool")
    listing.set_defaults(handler=liv_list)
    build = liv.add_parser("build", help="build a LIV from its operator genome [f,t,s,n,c]; print params and cache")
    build.add_argument("operator", help="an operator genome '[1,2,1,1,3]', a pool class id or name")
    build.add_argument("--width", type=positive_int, default=768, help="model width (default 768)")
    build.add_argument("--seq-len", type=positive_int, default=CACHE_LENGTH, help="sequence length for the cache")
    build.add_argument("--repair", action="store_true", help="build the nearest valid genome of an invalid one")
    build.add_argument("--json", action="store_true", help="print JSON instead of a table")
    build.set_defaults(handler=liv_build)

    genome = groups.add_parser("genome", help="backbone genomes").add_subparsers(dest="command", required=True)
    genome_help = "a genome (11111-91111-...), a JSON document or .json file, or a preset name"
    show = genome.add_parser("show", help="per-slot parameters and cache of a genome or preset")
    show.add_argument("genome", help=genome_help)
    show.add_argument("--width", type=positive_int, default=768, help="model width (default 768)")
    show.add_argument("--depth", type=positive_int, help="depth of a preset (default 24)")
    show.add_argument(
        "--seq-len", type=positive_int, default=CACHE_LENGTH, help=f"tokens for the cache (default {CACHE_LENGTH})"
    )
    show.add_argument("--vocab", type=positive_int, default=50257, help="vocabulary size (default: GPT-2's)")
    show.add_argument("--repair", action="store_true", help=REPAIR_HELP)
    show.add_argument("--json", action="store_true", help=JSON_HELP)
    show.set_defaults(handler=genome_show)
    rand = genome.add_parser("random", help="a random valid genome")
    rand.add_argument("--depth", type=positive_int, required=True, help="number of slots")
    rand.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    rand.add_argument("--json", action="store_true", help=JSON_HELP)
    rand.set_defaults(handler=genome_random)
    diagram = genome.add_parser("diagram", help="draw a genome as coloured blocks with sharing arcs")
    diagram.add_argument("genome", help=genome_help)
    diagram.add_argument("-o", "--output", required=True, help="output image (.png, .svg, .pdf)")
    diagram.add_argument("--depth", type=positive_int, help="depth of a preset (default 24)")
    diagram.add_argument("--repair", action="store_true", help=REPAIR_HELP)
    diagram.set_defaults(handler=genome_diagram)
    add_assessment_commands(groups, genome_help)
    add_data_commands(groups)
    add_evolution_commands(groups)
    add_study_commands(groups)
    return parser


def add_genome_arguments(parser: argparse.ArgumentParser, genome_help: str, optional=False, depth_help="4") -> None:
    """The genome and how it is assessed; a preset's depth defaults to the protocol's ``preset_depth``."""
    parser.add_argument("genome", help=genome_help, **({"nargs": "?"} if optional else {}))
    depth_help = f"depth of a preset (default {depth_help})"
    parser.add_argument("--depth", type=positive_int, default=None, help=depth_help)
    parser.add_argument("--repair", action="store_true", help=REPAIR_HELP)
    parser.add_argument("--width", type=positive_int, help="model width (default: the protocol's)")
    parser.add_argument("--seed", type=int, default=0, help="seed of initialisation and data order (default 0)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--json", action="store_true", help=JSON_HELP)


def add_backbone_argument(parser) -> None:
    from starlab.model import FLAVOURS

    parser.add_argument(
        "--backbone", default="star", choices=list(FLAVOURS),
        help="how the genome is built: star (default) or gpt2, the random-transformer paper's Hugging Face GPT-2 "
        "(LayerNorm, biases, 4 heads, learned positions, GELU MLP, GPT-2 init)",
    )  # fmt: skip


def add_assessment_commands(groups, genome_help: str) -> None:
    from starlab.assess import KINDS, protocol_names
    from starlab.tasks.algorithmic import ALGORITHMIC_TASKS
    from starlab.tasks.mad import MAD_TASKS
    from starlab.tasks.tokenizer import DEFAULT_BPE_VOCAB

    mad_parser = groups.add_parser("mad", help="assess a genome on the MAD synthetic suite")
    add_genome_arguments(mad_parser, genome_help)
    mad_parser.add_argument(
        "--protocol",
        default="quick",
        choices=protocol_names("mad"),
        help="MAD protocol (default quick; starlab protocols --kind mad)",
    )
    mad_parser.add_argument("--tasks", nargs="+", metavar="TASK", help=f"subset of: {', '.join(MAD_TASKS)}")
    mad_parser.set_defaults(handler=mad)

    algo_parser = groups.add_parser("algo", help="train a genome on an algorithmic task (random transformers)")
    add_genome_arguments(algo_parser, genome_help, depth_help="two slots per block of the task's budget")
    algo_parser.add_argument("--task", required=True, choices=list(ALGORITHMIC_TASKS), help="the algorithmic task")
    algo_parser.add_argument(
        "--size", default="cpu", choices=["cpu", "paper"], help="task size: cpu (minutes) or the paper's (default cpu)"
    )
    algo_parser.add_argument("--embedding-only", action="store_true", help="train only embeddings and unembedding")
    algo_parser.add_argument("--no-positions", action="store_true", help="no learned absolute positions")
    algo_parser.add_argument("--steps", type=positive_int, help="training steps (default: the task's budget)")
    add_backbone_argument(algo_parser)
    algo_parser.set_defaults(handler=algo)

    lm_parser = groups.add_parser("lm", help="train a genome as a language model; report perplexity")
    add_genome_arguments(lm_parser, genome_help, optional=True)
    lm_parser.add_argument("--data", help="text file, directory, .jsonl or .parquet (default: bundled corpus)")
    lm_parser.add_argument(
        "--protocol",
        default="lm-quick",
        choices=protocol_names("lm"),
        help="LM protocol (default lm-quick; starlab protocols --kind lm)",
    )
    lm_parser.add_argument(
        "--tokenizer",
        choices=["byte", "bpe"],
        help="byte-level or a BPE trained on the corpus (default: the protocol's)",
    )
    lm_parser.add_argument("--vocab-size", type=positive_int,
                           help=f"BPE vocabulary (default {DEFAULT_BPE_VOCAB} with --tokenizer bpe)")  # fmt: skip
    lm_parser.add_argument("--steps", type=positive_int, help="training steps (default: the protocol's)")
    lm_parser.add_argument("--seq-len", type=positive_int, help="training sequence length (default: the protocol's)")
    lm_parser.add_argument("--out", metavar="DIR",
                           help="run directory: checkpoints while training, result.json at the end")  # fmt: skip
    lm_parser.add_argument("--resume", metavar="DIR", help="continue the run in DIR from its newest checkpoint")
    lm_parser.add_argument("--checkpoint-every", type=positive_int, metavar="N",
                           help="with --out: checkpoint every N steps (default 100)")  # fmt: skip
    lm_parser.add_argument("--checkpoint-minutes", type=positive_float, metavar="M",
                           help="with --out: checkpoint every M minutes")  # fmt: skip
    lm_parser.add_argument("--micro-batch", type=micro_batch, metavar="N|auto",
                           help="sequences per forward/backward pass, gradients accumulated over the batch "
                           "(a divisor of the protocol's batch size; auto: the largest the device holds; "
                           "default: the whole batch at once)")  # fmt: skip
    lm_parser.add_argument("--embedding-only", action="store_true",
                           help="train only the embedding and unembedding (random-transformer setting)")  # fmt: skip
    add_backbone_argument(lm_parser)
    lm_parser.add_argument("--compile", action="store_true",
                           help="train through torch.compile (for long GPU runs; compiling takes a while)")  # fmt: skip
    lm_parser.set_defaults(handler=lm)

    listing = groups.add_parser("protocols", help="list the assessment protocols: what each trains and costs")
    listing.add_argument("--kind", choices=KINDS, help="only protocols of this kind")
    listing.add_argument("--json", action="store_true", help=JSON_HELP)
    listing.set_defaults(handler=protocols)


def add_data_commands(groups) -> None:
    from starlab.tasks.lm import SplitSettings
    from starlab.tasks.tokenizer import DEFAULT_BPE_VOCAB, TOKENIZERS

    defaults = SplitSettings()
    data = groups.add_parser("data", help="corpora for the LM protocols").add_subparsers(dest="command", required=True)
    prep = data.add_parser("prepare", help="tokenize a corpus once, in parallel, into memory-mapped token files "
                           "that LM protocols read with --data DIR")  # fmt: skip
    prep.add_argument("path", help="text file, directory, .jsonl or .parquet")
    prep.add_argument("--tokenizer", required=True, choices=TOKENIZERS, help="byte-level, or a BPE trained here")
    prep.add_argument("--vocab-size", type=positive_int, help=f"BPE vocabulary (default {DEFAULT_BPE_VOCAB})")
    prep.add_argument("--out", required=True, metavar="DIR", help="the new directory for the token files")
    prep.add_argument("--workers", type=positive_int, help="tokenizing processes (default: one per core)")
    prep.add_argument("--val-fraction", type=positive_float, default=defaults.val_fraction,
                      help=f"share of blocks held out (default {defaults.val_fraction})")  # fmt: skip
    prep.add_argument("--seed", type=int, default=defaults.seed, help="keys the hash that splits (default 0)")
    prep.add_argument("--block-chars", type=positive_int, default=defaults.block_chars,
                      help=f"split granularity in characters (default {defaults.block_chars})")  # fmt: skip
    prep.add_argument("--text-field", default="text", help="JSON field or Parquet column of the text (default text)")
    prep.set_defaults(handler=data_prepare)


def add_evolution_commands(groups) -> None:
    from starlab.assess import OBJECTIVE_PRESETS, OBJECTIVES, protocol_names
    from starlab.evolve import ALGORITHMS, EXECUTORS, SEARCH_PRESETS
    from starlab.evolve.weights import KEEP_WEIGHTS
    from starlab.report.live import REPORT_EVERY_S

    ev = groups.add_parser("evolve", help="run or resume a STAR search")
    where = ev.add_mutually_exclusive_group(required=True)
    where.add_argument("--out", help="new run directory")
    where.add_argument("--resume", metavar="DIR", help="continue the run in DIR exactly where it stopped")
    ev.add_argument("--retry-failed", action="store_true",
                    help="with --resume: run the stored run's failed evaluations again")  # fmt: skip
    ev.add_argument("--preset", default="demo", choices=list(SEARCH_PRESETS), help="search preset (default demo)")
    ev.add_argument("--config", help="search settings as a JSON file (instead of --preset)")
    names = protocol_names()
    ev.add_argument("--protocol", choices=names, metavar="NAME",
                    help=f"assessment protocol (starlab protocols lists them): {', '.join(names)}")  # fmt: skip
    ev.add_argument(
        "--protocol-setting",
        type=key_value,
        action="append",
        metavar="KEY=VALUE",
        help="change one setting of the protocol, e.g. size=paper or embedding_only=true (repeatable)",
    )
    ev.add_argument(
        "--algorithm", choices=list(ALGORITHMS), help="evolutionary algorithm (default: the preset's, nsga2)"
    )
    ev.add_argument("--objectives", help=f"comma-separated from {','.join(OBJECTIVES)}, or one of the paper's "
                    f"searches: {'|'.join(OBJECTIVE_PRESETS)}")  # fmt: skip
    ev.add_argument("--population", type=positive_int, help="genomes per generation (4..4096; default: the preset's)")
    ev.add_argument("--generations", type=int, help="generations after the initial population (default: the preset's)")
    ev.add_argument("--depth", type=depth_range, metavar="N|MIN:MAX", help="slots per genome (1..256; default: "
                    "the preset's), or a range: any depth MIN..MAX, with slot insertion and deletion")  # fmt: skip
    ev.add_argument("--backbone-genes", action="store_true", help="also evolve the backbone genes: norm kind, pre- "
                    "or post-norm, sequential or parallel residual (default: STAR's pre-norm RMSNorm)")  # fmt: skip
    ev.add_argument("--operator-genes", action="store_true", help="search each slot's class as its operator genome "
                    "[f,t,s,n,c]: LIVs outside the 17 of the pool (default: pool classes)")  # fmt: skip
    ev.add_argument("--width", type=positive_int, help="model width (default: the protocol's)")
    ev.add_argument("--seed", type=int, help="seed of the search and of every evaluation (default 0)")
    ev.add_argument("--seeds", help="genomes or presets for the initial population, separated by commas (or by "
                    "semicolons when a genome's text holds commas)")  # fmt: skip
    ev.add_argument("--budget", type=positive_int, help="store exactly this many evaluations of the search protocol "
                    "(without --generations: run until it is spent)")  # fmt: skip
    ev.add_argument("--ladder", metavar="P1,P2,...", help="multi-fidelity rungs, cheapest first (e.g. demo,quick): "
                    "all candidates on P1, the best 1/eta of each rung promoted to the next")  # fmt: skip
    ev.add_argument("--eta", type=positive_int, help="ladder: promote the best 1/eta of each rung (default 3)")
    ev.add_argument("--surrogate", action="store_true", help="breed more offspring and assess only those a "
                    "quality predictor fitted on the run's evaluations ranks best")  # fmt: skip
    ev.add_argument("--breed-factor", type=positive_int, help="surrogate: offspring bred per one assessed (default 8)")
    ev.add_argument("--exploration", type=float, help="surrogate: share of assessed offspring picked at random "
                    "(default 0.25)")  # fmt: skip
    ev.add_argument("--async", dest="asynchronous", action="store_true",
                    help="steady state: breed a new candidate whenever a worker is free")  # fmt: skip
    ev.add_argument("--data", help="corpus for lm-* protocols")
    ev.add_argument("--executor", choices=list(EXECUTORS), help="where evaluations run: this process (default), "
                    f"worker processes, or Ray{RESUMED}")  # fmt: skip
    ev.add_argument("--workers", type=positive_int, help="worker processes (process executor) or local Ray CPUs "
                    f"(default 1){RESUMED}")  # fmt: skip
    ev.add_argument("--threads", type=positive_int, help=f"torch threads per worker{RESUMED}")
    ev.add_argument("--ray-address", help=f"Ray cluster address (default: start Ray locally){RESUMED}")
    ev.add_argument("--gpus", type=float, help=f"GPUs per Ray task (default 0){RESUMED}")
    ev.add_argument("--device", help=f"cpu or cuda (where each evaluation trains; default cpu){RESUMED}")
    ev.add_argument("--keep-weights", choices=KEEP_WEIGHTS,
                    help="trained models kept in DIR/weights for export: of the Pareto front's genomes (default), "
                    f"of every evaluation, or none (language-model protocols only){RESUMED}")  # fmt: skip
    ev.add_argument("--report-every", type=non_negative_float, metavar="SECONDS",
                    help="rewrite DIR/report.html (which reloads itself) when a generation is recorded at least "
                    f"this long after the last rewrite; always at the end (default {REPORT_EVERY_S:.0f}; "
                    f"0: every generation){RESUMED}")  # fmt: skip
    ev.add_argument("--tensorboard", metavar="LOGDIR", help="also write per-generation scalars (hypervolume, best "
                    "quality, front size, evaluations, ladder agreement) for TensorBoard to LOGDIR"
                    f"{RESUMED}")  # fmt: skip
    ev.set_defaults(handler=evolve)

    rep = groups.add_parser("report", help="write report.html and figures for a run")
    rep.add_argument("directory", help="a run directory (evolve --out)")
    rep.set_defaults(handler=report)

    exp = groups.add_parser("export", help="export a genome of a run's Pareto front as a loadable model")
    exp.add_argument("directory", help="a run directory (evolve --out)")
    exp.add_argument("--rank", type=positive_int, default=1, help="1 = best quality on the run's Pareto front")
    exp.add_argument("--out", required=True, help="directory for config.json and model.safetensors")
    exp.add_argument("--vocab", type=positive_int, help="vocabulary of exported initial weights (--untrained; "
                     "default 256, byte-level); trained weights keep theirs")  # fmt: skip
    exp.add_argument("--train-steps", type=int, default=0, help="train as a byte-level LM first (or --untrained)")
    exp.add_argument("--data", help="corpus for --train-steps (default: bundled corpus)")
    exp.add_argument("--seed", type=int, default=0, help="seed of the weights (and of training; default 0)")
    exp.add_argument("--force", action="store_true", help="overwrite a model already exported to --out")
    exp.add_argument("--format", choices=["starlab", "hf"], default="starlab",
                     help="starlab (for starlab.load) or hf (transformers; needs starlab[hf])")  # fmt: skip
    exp.add_argument("--untrained", action="store_true",
                     help="export the initial weights, labelled untrained (instead of --train-steps)")  # fmt: skip
    exp.set_defaults(handler=export)


def add_study_commands(groups) -> None:
    study = groups.add_parser("study", help="experiments as files: run a study, report its tables")
    commands = study.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="run (or continue) a study file (TOML) into a run directory")
    run.add_argument("file", help="the study file (TOML; see docs/study.md)")
    run.add_argument("--out", required=True, metavar="DIR", help="its run directory (the same DIR continues it)")
    run.add_argument("--device", default="cpu", help="cpu or cuda (where each evaluation trains; default cpu)")
    run.set_defaults(handler=study_run)
    rep = commands.add_parser("report", help="print a study's tables")
    rep.add_argument("directory", help="a study's run directory (study run --out)")
    rep.add_argument("--json", action="store_true", help=JSON_HELP)
    rep.set_defaults(handler=study_report)


#: How the help of a flag stored with the run ends (``starlab.evolve.execution``).
RESUMED = "; stored with the run: --resume keeps it unless given again"


def flag(name: str, before_value: bool) -> str:
    """How the CLI names a setting in an error message: its flag (``data`` -> ``--data``)."""
    return f"--{name.replace('_', '-')}" + (" " if before_value else "")


class Interrupted(KeyboardInterrupt):
    """Ctrl-C or SIGTERM, with what the user can do next."""


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    runtime.keep_freed_memory()  # threads are chosen where training starts (runtime.configure)
    try:
        with runtime.sigterm_interrupts():
            args.handler(args)
    except KeyboardInterrupt as interrupt:
        hint = f"; {interrupt}" if isinstance(interrupt, Interrupted) else ""
        print(f"starlab: interrupted{hint}", file=sys.stderr)
        return 130
    except ValueError as error:
        message = error.render(flag) if isinstance(error, SettingError) else str(error)
        print(f"starlab: error: {message}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # the reader left (`starlab ... --json | head`): no traceback, and none at exit
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    return 0


if __name__ == "__main__":
    sys.exit(main())
