"""Files replaced in one step, so that a reader (a browser, a resumed run) sees the old file or the new one.

Used for everything a run rewrites while something may read it: checkpoint pointers, ``starlab lm`` run
records, the report and its figures.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path


def replace_atomically(path: Path, write: Callable[[Path], object]) -> Path:
    """``write`` a hidden temporary file beside ``path``, then rename it into place (one step on every local
    file system): a reader sees the old file or the new one, and a failed write leaves the old one."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{time.monotonic_ns()}.tmp")
    try:
        write(temporary)
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
    return path


def write_text_atomically(path: Path, text: str) -> Path:
    """:func:`replace_atomically` for UTF-8 text."""
    return replace_atomically(path, lambda temporary: temporary.write_text(text, encoding="utf-8"))
