"""What every command of the command line shares: how a setting is named as a flag, and an interrupt that says
what to do next."""

from __future__ import annotations


def flag(name: str, before_value: bool) -> str:
    """How the CLI names a setting in an error message: its flag (``data`` -> ``--data``)."""
    return f"--{name.replace('_', '-')}" + (" " if before_value else "")


class Interrupted(KeyboardInterrupt):
    """Ctrl-C or SIGTERM, with what the user can do next."""
