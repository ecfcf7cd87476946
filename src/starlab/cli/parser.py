"""The command line's parser: ``starlab <group> <command>``, its flags and the argument types that check them."""

from __future__ import annotations

import argparse
import json
from typing import NoReturn

from starlab.cli.commands import (
    algo,
    data_prepare,
    evolve,
    export,
    genome_diagram,
    genome_random,
    genome_show,
    liv_build,
    liv_list,
    lm,
    mad,
    protocols,
    report,
    study_report,
    study_run,
)  # fmt: skip


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


JSON_HELP = "print JSON instead of a table"
REPAIR_HELP = "repair incompatible sharing instead of failing"


class Parser(argparse.ArgumentParser):
    """argparse with starlab's error form: one line on stderr, naming the command, and exit code 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"starlab: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    from starlab.assess import CACHE_LENGTH

    parser = Parser(prog="starlab", description="Command-line interface: ``starlab <group> <command>``.")
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
    add_lm_command(groups, genome_help)
    listing = groups.add_parser("protocols", help="list the assessment protocols: what each trains and costs")
    listing.add_argument("--kind", choices=KINDS, help="only protocols of this kind")
    listing.add_argument("--json", action="store_true", help=JSON_HELP)
    listing.set_defaults(handler=protocols)


def add_lm_command(groups, genome_help: str) -> None:
    from starlab.assess import protocol_names
    from starlab.tasks.tokenizer import DEFAULT_BPE_VOCAB

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
    add_evolve_command(groups)
    add_report_and_export_commands(groups)


def add_evolve_command(groups) -> None:
    """``starlab evolve``: where the run is, the search settings, then how it executes."""
    from starlab.assess import OBJECTIVE_PRESETS, OBJECTIVES, protocol_names
    from starlab.evolve import ALGORITHMS, SEARCH_PRESETS

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
    add_execution_arguments(ev)
    ev.set_defaults(handler=evolve)


def add_execution_arguments(ev: argparse.ArgumentParser) -> None:
    """How a run executes (``starlab.evolve.execution.Execution``): stored with it, replaced when given again."""
    from starlab.evolve import EXECUTORS
    from starlab.evolve.weights import KEEP_WEIGHTS
    from starlab.report.live import REPORT_EVERY_S

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


def add_report_and_export_commands(groups) -> None:
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
