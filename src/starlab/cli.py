"""Command-line interface: ``starlab <group> <command>``.

Every command prints a rich table by default and JSON with ``--json``. Bad input ends with one line on
stderr (``starlab: error: ...``) and exit code 2, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from rich.console import Console
from rich.table import Table

from starlab import runtime


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def print_table(title: str, rows: list[dict], columns: Sequence[str]) -> None:
    table = Table(title=title)
    for column in columns:
        justify = "right" if isinstance(rows[0][column], int) else "left"
        table.add_column(column, justify=justify, no_wrap=True)
    for row in rows:
        table.add_row(*(f"{row[c]:,}" if isinstance(row[c], int) else str(row[c]) for c in columns))
    console = Console()
    (console if console.is_terminal else Console(width=160)).print(table)


# ---- liv ---------------------------------------------------------------------------------------------


def liv_list(args: argparse.Namespace) -> None:
    """One row per pool class with its size and inference cache at the given width and length."""
    from starlab.liv import build_liv, check_width, classes

    width = check_width(args.width)
    rows = []
    for spec in classes():
        layer = build_liv(spec, width)
        rows.append(
            {
                "id": spec.id,
                "name": spec.name,
                "operator_genome": spec.operator_genome_text,
                "family": spec.family,
                "params": sum(p.numel() for p in layer.parameters()),
                "cache_bytes": layer.cache_bytes(args.seq_len),
                "description": spec.description,
            }
        )
    if args.json:
        print(json.dumps(rows, indent=2))
        return
    title = f"LIV classes at width {width}, cache at {args.seq_len} tokens (16-bit values)"
    print_table(title, rows, ["id", "name", "operator_genome", "family", "params", "cache_bytes"])


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


# ---- parser ------------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="starlab", description=__doc__.splitlines()[0])
    groups = parser.add_subparsers(dest="group", required=True)

    liv = groups.add_parser("liv", help="the LIV operator pool").add_subparsers(dest="command", required=True)
    listing = liv.add_parser("list", help="list the LIV classes with parameters and cache size")
    listing.add_argument("--width", type=positive_int, default=768, help="model width (default 768)")
    listing.add_argument("--seq-len", type=positive_int, default=4096, help="sequence length for the cache")
    listing.add_argument("--json", action="store_true", help="print JSON instead of a table")
    listing.set_defaults(handler=liv_list)

    genome = groups.add_parser("genome", help="backbone genomes").add_subparsers(dest="command", required=True)
    genome_help = "a genome (11111-91111-...), a JSON document or .json file, or a preset name"
    show = genome.add_parser("show", help="per-slot parameters and cache of a genome or preset")
    show.add_argument("genome", help=genome_help)
    show.add_argument("--width", type=positive_int, default=768)
    show.add_argument("--depth", type=positive_int, help="depth of a preset (default 24)")
    show.add_argument("--seq-len", type=positive_int, default=4096)
    show.add_argument("--vocab", type=positive_int, default=50257, help="vocabulary size (default: GPT-2's)")
    show.add_argument("--repair", action="store_true", help="repair incompatible sharing instead of failing")
    show.add_argument("--json", action="store_true")
    show.set_defaults(handler=genome_show)
    rand = genome.add_parser("random", help="a random valid genome")
    rand.add_argument("--depth", type=positive_int, required=True)
    rand.add_argument("--seed", type=int, default=0)
    rand.add_argument("--json", action="store_true")
    rand.set_defaults(handler=genome_random)
    diagram = genome.add_parser("diagram", help="draw a genome as coloured blocks with sharing arcs")
    diagram.add_argument("genome", help=genome_help)
    diagram.add_argument("-o", "--output", required=True, help="output image (.png, .svg, .pdf)")
    diagram.add_argument("--depth", type=positive_int, help="depth of a preset (default 24)")
    diagram.add_argument("--repair", action="store_true")
    diagram.set_defaults(handler=genome_diagram)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    runtime.configure()
    try:
        args.handler(args)
    except ValueError as error:
        print(f"starlab: error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
