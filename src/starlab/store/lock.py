"""One writer per run directory: an advisory lock held while a search runs.

Two ``starlab evolve --resume DIR`` at once would both run all remaining work. The search takes an exclusive
``flock`` on ``DIR/run.lock`` for its lifetime; a second one is refused with the holder's pid. The kernel
releases the lock when its process ends, however it ends (SIGKILL included), so a lock is never stale: the
pid written in the file is only there to name the holder. Readers (``report``, ``export``) take no lock; they
only ask whether a search holds it (:func:`held_by_a_writer`), to know whether the store's log is a live one.
"""

from __future__ import annotations

import os
from pathlib import Path

from starlab.store.error import StoreError

LOCK_FILE = "run.lock"

try:
    import fcntl
except ImportError:  # Windows: no advisory locks; a run there is not protected against a second writer
    fcntl = None


class RunLock:
    """Hold the run directory's lock until :meth:`release` (or the process ends)."""

    def __init__(self, directory: str | Path) -> None:
        self.path = Path(directory) / LOCK_FILE
        try:
            self.file = open(self.path, "a+")  # noqa: SIM115 (held open for the lock's lifetime)
        except OSError as error:
            raise StoreError("cannot take the lock {0} of the run: {1}", self.path, error.strerror or error) from None
        if fcntl is not None:
            try:
                fcntl.flock(self.file, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                self.file.seek(0)
                holder = self.file.read().strip() or "unknown"
                self.file.close()
                raise StoreError(
                    "run {0} is being run by another starlab process (pid {1}); wait for it or stop it first",
                    Path(directory), holder,
                ) from None  # fmt: skip
        self.file.seek(0)
        self.file.truncate()
        self.file.write(str(os.getpid()))
        self.file.flush()

    def release(self) -> None:
        if not self.file.closed:
            self.file.close()  # closing the descriptor releases the flock


def held_by_a_writer(directory: str | Path) -> bool:
    """Whether a search holds the run's lock now. Probed with a shared lock that is dropped at once (a reader
    neither waits for the lock nor keeps it); no lock file, or no ``flock`` here, means no search is running."""
    if fcntl is None:
        return False
    try:
        descriptor = os.open(Path(directory) / LOCK_FILE, os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(descriptor, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    except OSError:
        return False
    finally:
        os.close(descriptor)  # closing the descriptor drops the probe's lock
    return False
