"""Command-line interface: ``starlab <group> <command>``.

Every command prints a rich table by default and JSON with ``--json``. Bad input ends with one line on
stderr (``starlab: error: ...``) and exit code 2, never a traceback. ``parser`` builds the parser, ``commands``
holds what each command runs, ``common`` what they share.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

from starlab import runtime
from starlab.cli.common import Interrupted, flag
from starlab.cli.parser import build_parser
from starlab.errors import SettingError

__all__ = ["Interrupted", "build_parser", "flag", "main"]


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
