"""The report of a running search: ``report.html`` rewritten as generations are recorded, so it can be watched.

:class:`LiveReport` is the search's ``on_generation`` hook (the command line passes it to
:class:`starlab.evolve.Search`; evolution never imports reporting). Writing the page draws every figure again,
about 1.5 s for a demo-size run on 2 cores, which would dominate a small synthetic search recorded in
milliseconds per generation; so the page is rewritten when a generation is recorded at least ``every`` seconds
(default 30) after the previous write, or after the hook was made, and always when the run ends. A search
shorter than ``every`` writes one page, its final one; a long one spends at most a few percent of its time on
the page. While the run is live the page reloads itself; the final page (finished, interrupted, or stopped by
an error) does not, and says so.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from starlab.store import Generation

if TYPE_CHECKING:  # the page's drawing (matplotlib) is imported when a page is written, not with the parser
    from starlab.report.report import Phase

#: Seconds between two rewrites of a live report, by default.
REPORT_EVERY_S = 30.0
#: A live page never reloads more often than this (seconds), however often it is rewritten.
MIN_REFRESH_S = 5


class LiveReport:
    """Rewrites ``DIRECTORY/report.html`` as a search runs (call it with each recorded generation), then
    writes the final page with :meth:`finished`, :meth:`interrupted` or :meth:`stopped`."""

    def __init__(
        self, directory: str | Path, every: float = REPORT_EVERY_S, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.directory, self.every, self.clock = Path(directory), every, clock
        self.refresh = max(MIN_REFRESH_S, round(every))
        self.last = clock()  # the first rewrite waits ``every`` too: a short search writes only its final page
        self.live = False  # whether this process has left a page that reloads itself

    def __call__(self, generation: Generation) -> None:
        """The search recorded ``generation`` (the page reads the store, which holds it by now)."""
        if self.clock() - self.last >= self.every and self._write("live"):
            self.live = True

    def finished(self) -> Path:
        """The final page of a finished run (a failure to write it is the caller's to report)."""
        from starlab.report.report import write_report

        return write_report(self.directory, "finished")

    def interrupted(self) -> Path | None:
        """The final page of an interrupted run, saying how to resume it (none before the first generation)."""
        return self._write("interrupted")

    def stopped(self, error: str) -> Path | None:
        """After an error (its message): the page stops reloading, if this process had made it live
        (otherwise the run directory is left as it was)."""
        return self._write("stopped", error.strip().splitlines()[0] if error.strip() else "unknown")

    def _write(self, phase: Phase, error: str | None = None) -> Path | None:
        """Write the page; a page that cannot be written (no generation yet, a full disk) must not stop the
        search, so it is skipped (the final one raises, from :meth:`finished`)."""
        if phase == "stopped" and not self.live:
            return None
        from starlab.report.report import write_report

        try:
            path = write_report(self.directory, phase, self.refresh, error)
        except (OSError, ValueError):  # ValueError: StoreError, or the report's own one-line errors
            return None
        finally:
            self.last = self.clock()
        return path
