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
    Console().print(table)


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
