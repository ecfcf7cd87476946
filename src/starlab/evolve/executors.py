"""Where evaluations run, behind one interface: ``submit(job) -> Future[dict]``.

* ``local``: in this process, one at a time (the default; nothing to set up).
* ``process``: N worker processes on this machine, each with its own torch thread count.
* ``ray``: one Ray task per evaluation on a cluster (``address``) or a local Ray instance; a crashed worker's
  evaluation is retried by Ray (``max_retries``). Ray is an optional extra: ``pip install starlab[ray]``.

A job is plain data (:class:`EvalJob`) and its result an :class:`~starlab.assess.Evaluation` as a plain dict
(``Evaluation.to_dict``), so both cross process and machine boundaries as they are.
"""

from __future__ import annotations

import errno
import math
import os
import queue
import re
import signal
import socket
import sys
import threading
from collections import deque
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from functools import partial
from multiprocessing import get_all_start_methods, get_context
from pathlib import Path
from typing import Any, Protocol

from starlab import runtime
from starlab.assess import assess, get_protocol
from starlab.errors import Setting, SettingError
from starlab.genome import Genome

EXECUTORS = ("local", "process", "ray")


@dataclass(frozen=True)
class EvalJob:
    genome: str  # canonical text
    protocol: str
    seed: int
    width: int | None
    device: str = "cpu"
    data: str | None = None  # corpus for language-modelling protocols
    settings: dict[str, Any] = field(default_factory=dict)  # the protocol's settings changed by the search
    #: where the evaluation checkpoints, if its protocol does: a retried job continues from the newest there
    #: (on a cluster the run directory must be on storage every node sees)
    checkpoints: str | None = None


def run_job(job: EvalJob) -> dict:
    """Assess one genome (runs inside whichever worker the executor chose); the evaluation as a dict."""
    protocol = get_protocol(job.protocol).with_settings(**job.settings)
    checkpointing = protocol.checkpointing(Path(job.checkpoints)) if job.checkpoints else None
    genome = Genome.parse(job.genome)
    try:
        evaluation = assess(genome, protocol, job.width, job.seed, job.device, job.data, checkpointing=checkpointing)
    except Exception as error:
        raise as_os_error(error) from None
    return evaluation.to_dict()


#: How safetensors (Rust) says that writing or reading a file failed: the OS error's text follows.
_SAFETENSORS_IO = re.compile(r"I/O error: (.*?)(?: \(os error (\d+)\))?$")


def as_os_error(error: Exception) -> Exception:
    """``error``, or the ``OSError`` it stands for: safetensors reports a full disk as its own error type,
    and the search must tell a file error (the run's fault) from a genome's failure."""
    match = _SAFETENSORS_IO.search(str(error)) if type(error).__name__ == "SafetensorError" else None
    if match is None:
        return error
    return OSError(int(match[2]) if match[2] else errno.EIO, match[1])


class Executor(Protocol):
    def submit(self, job: EvalJob) -> Future: ...

    def close(self) -> None: ...


class LocalExecutor:
    """Runs each job immediately in this process; the returned future is already done."""

    def __init__(self, threads: int | None = None) -> None:
        runtime.configure(threads)

    def submit(self, job: EvalJob) -> Future:
        future: Future = Future()
        try:
            future.set_result(run_job(job))
        except Exception as error:  # the search records it as a failed evaluation
            future.set_exception(error)
        return future

    def close(self) -> None:
        pass


class WorkerCrashed(RuntimeError):
    """The worker process running an evaluation died every time it was tried (out of memory, a native crash)."""


@dataclass
class _Task:
    job: EvalJob
    future: Future  # what the search holds: resolved once, after any retries
    crashes: int = 0  # times the worker running this very job died


class ProcessExecutor:
    """A pool of ``workers`` spawned processes with ``threads`` torch threads each.

    At most ``workers`` jobs are in the pool at a time; the rest wait here, so a broken pool never touches a
    job that had not started. When a worker dies (killed, out of memory, a crash in native code) the pool is
    rebuilt and every job it was running runs again. Only the job whose own worker died counts the crash;
    after ``max_retries`` retries it is failed with :class:`WorkerCrashed`, so one genome that kills its
    worker cannot take the others down with it.

    One dispatcher thread owns the queue, the pool and the retries; futures' callbacks only post events to
    it, so no pool is ever driven from inside another pool's thread.
    """

    def __init__(self, workers: int, threads: int | None = 1, max_retries: int = 2) -> None:
        self.workers, self.threads, self.max_retries = workers, threads, max_retries
        self.context = _worker_context()
        self.started = self.context.Array("q", workers, lock=False)  # slot -> pid of the worker running its job
        self.events: queue.SimpleQueue = queue.SimpleQueue()
        self.waiting: deque[_Task] = deque()
        self.running: dict[int, _Task] = {}  # slot -> task
        self.processes: dict[int, Any] = {}  # every worker process ever started, by pid
        self.closing = False
        self.pool = self._new_pool()
        self.dispatcher = threading.Thread(target=self._dispatch, name="starlab-process-executor", daemon=True)
        self.dispatcher.start()

    def _new_pool(self) -> ProcessPoolExecutor:
        return ProcessPoolExecutor(
            self.workers, mp_context=self.context, initializer=_start_worker, initargs=(self.threads, self.started)
        )

    def submit(self, job: EvalJob) -> Future:
        task = _Task(job, Future())
        self.events.put(("submit", task))
        return task.future

    def _dispatch(self) -> None:
        while True:
            event, payload = self.events.get()
            if event == "stop":
                return
            if event == "submit":
                self.waiting.append(payload)
            else:
                self._finished(*payload)
            self._start_waiting()

    def _start_waiting(self) -> None:
        while self.waiting and len(self.running) < self.workers and not self.closing:
            slot = min(set(range(self.workers)) - set(self.running))
            task = self.waiting.popleft()
            self.started[slot] = 0
            try:
                inner = self._hand_over(slot, task.job)
            except Exception as error:  # the pool cannot take it (cannot start a worker): fail this job only
                task.future.set_exception(error)
                continue
            self.running[slot] = task
            inner.add_done_callback(partial(self._post_finished, slot, self.pool))

    def _hand_over(self, slot: int, job: EvalJob) -> Future:
        try:
            inner = self.pool.submit(_run_in_slot, slot, job)
        except BrokenProcessPool:  # broke since the last event; its jobs' events are on their way
            self.pool = self._new_pool()
            inner = self.pool.submit(_run_in_slot, slot, job)
        self.processes.update(self.pool._processes)  # workers start on submit; no public list of them
        return inner

    def _post_finished(self, slot: int, pool: ProcessPoolExecutor, inner: Future) -> None:
        """Runs in the pool's thread: note at once whether this job's own worker is dead (a broken pool stops
        its other workers right after failing their futures), then leave the rest to the dispatcher."""
        crashed = None
        worker = self.processes.get(self.started[slot])
        if isinstance(inner.exception(), BrokenProcessPool) and worker is not None:
            worker.join(timeout=0.1)  # a dead process closes its pipes a moment before it can be reaped
            crashed = worker.exitcode
        self.events.put(("finished", (slot, pool, inner, crashed)))

    def _finished(self, slot: int, pool: ProcessPoolExecutor, inner: Future, crashed: int | None) -> None:
        task = self.running.pop(slot)
        if not isinstance(inner.exception(), BrokenProcessPool) or self.closing:
            _copy_outcome(inner, task.future)
            return
        if self.pool is pool:
            self.pool = self._new_pool()
        if crashed is not None:
            task.crashes += 1
            if task.crashes > self.max_retries:
                how = f"killed by signal {-crashed}" if crashed < 0 else f"exit code {crashed}"
                task.future.set_exception(
                    WorkerCrashed(f"the worker process running it died {task.crashes} times ({how})")
                )
                return
        self.waiting.appendleft(task)

    def close(self) -> None:
        """Stop the workers now: running evaluations are abandoned and waiting ones cancelled (the store keeps
        everything that was handed over), so an interrupted search exits in seconds, not after its jobs."""
        self.closing = True
        self.events.put(("stop", None))
        self.dispatcher.join()
        for task in [*self.waiting, *self.running.values()]:
            task.future.cancel()
        self.pool.shutdown(wait=False, cancel_futures=True)
        for process in self.processes.values():
            process.terminate()
        for process in self.processes.values():
            process.join()


def _worker_context() -> Any:
    """Workers forked from a fork server that imported starlab once (a replaced worker starts in milliseconds,
    not the seconds torch takes to import), where the platform has one; spawned otherwise. Never plain fork:
    the parent runs threads (the dispatcher, torch's), and forking a threaded process can deadlock."""
    if "forkserver" not in get_all_start_methods():
        return get_context("spawn")
    context = get_context("forkserver")
    context.set_forkserver_preload(["starlab.evolve.executors"])
    return context


_STARTED: Any = None  # in a worker: the executor's slot -> pid table


def _start_worker(threads: int | None, started: Any) -> None:
    """A pool worker leaves Ctrl-C to its parent, which stops it: an evaluation cut short by the signal must
    never travel back as a 'failed' result the search would store."""
    global _STARTED
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    runtime.configure(threads)
    _STARTED = started


def _run_in_slot(slot: int, job: EvalJob) -> dict:
    _STARTED[slot] = os.getpid()  # so that the parent knows whose job died with this process
    return run_job(job)


def _copy_outcome(source: Future, target: Future) -> None:
    error = source.exception()
    if error is not None:
        target.set_exception(error)
    else:
        target.set_result(source.result())


class RayExecutor:
    """One Ray task per evaluation, ``threads`` CPUs (and ``gpus`` GPUs) each."""

    def __init__(
        self,
        address: str | None = None,
        workers: int | None = None,
        threads: int = 1,
        gpus: float = 0,
        max_retries: int = 2,
    ) -> None:
        if address:
            _authenticate_with_token()
        try:
            import ray
        except ImportError:
            raise ValueError("the ray executor needs Ray: pip install 'starlab[ray]'") from None
        self.ray = ray
        if not ray.is_initialized():
            if address:
                _check_reachable(address)
            local = {} if address else {"num_cpus": (workers or 1) * threads, "include_dashboard": False}
            try:
                ray.init(address=address, log_to_driver=False, **local)
            except ConnectionError as error:
                hint = "" if os.environ.get("RAY_AUTH_MODE") == "token" else TOKEN_HINT
                raise SettingError("cannot connect to the Ray cluster at {0}: {1}{2}", address, error, hint) from None
            finally:
                runtime.reclaim_sigterm()
        options = {"num_cpus": threads, "num_gpus": gpus, "max_retries": max_retries, "retry_exceptions": False}
        self.remote = ray.remote(_ray_job).options(**options)
        self.threads, self.gpus = threads, gpus
        self.running: set[Any] = set()  # object refs of unfinished tasks, cancelled on close

    def submit(self, job: EvalJob) -> Future:
        ref = self.remote.remote(job, self.threads)
        self.running.add(ref)
        future = ref.future()
        future.add_done_callback(lambda _: self.running.discard(ref))  # a finished ref is not held on to
        return future

    def close(self) -> None:
        """Cancel the tasks still running (an interrupted search leaves no work behind), then disconnect."""
        for ref in list(self.running):
            self.ray.cancel(ref, force=True)
        self.ray.shutdown()


TOKEN_HINT = "; if it was started with token authentication, export RAY_AUTH_MODE=token and RAY_AUTH_TOKEN_PATH"


def _authenticate_with_token() -> None:
    """Connect with token authentication when this machine holds a token and nothing says otherwise.

    Clusters started with ``ray start`` use tokens by default since Ray 2.5x, and a client that does not
    send one cannot connect; one that sends a token also connects to a cluster without authentication.
    Ray reads the mode when it is imported, so this must run before ``import ray``.
    """
    if "RAY_AUTH_MODE" in os.environ or "ray" in sys.modules:
        return
    token_file = Path(os.environ.get("RAY_AUTH_TOKEN_PATH") or Path.home() / ".ray" / "auth_token")
    if "RAY_AUTH_TOKEN" in os.environ or token_file.is_file():
        os.environ["RAY_AUTH_MODE"] = "token"


def _check_reachable(address: str, timeout_s: float = 5.0) -> None:
    """Refuse in seconds an address where nothing listens: Ray itself would retry it for minutes."""
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if address == "auto" or not (port.isascii() and port.isdigit()):
        return  # 'auto' and other forms are Ray's to resolve; it fails fast on them
    if not 0 < int(port) < 65536:
        raise SettingError("{0} {1}: the port must be in 1..65535", Setting("ray_address"), address)
    try:
        socket.create_connection((host or "127.0.0.1", int(port)), timeout=timeout_s).close()
    except (OSError, UnicodeError) as error:
        raise SettingError(
            "cannot reach a Ray cluster at {0} ({1}); start one (ray start --head) or check {2}",
            address, getattr(error, "strerror", None) or error, Setting("ray_address"),
        ) from None  # fmt: skip


def _ray_job(job: EvalJob, threads: int) -> dict:
    runtime.configure(threads)
    return run_job(job)


def make_executor(
    name: str, workers: int | None = None, threads: int | None = None, ray_address: str | None = None, gpus: float = 0
) -> Executor:
    """Build an executor by name; ``threads`` is per worker (default: all cores for local, 1 otherwise) and
    ``workers`` the processes (process) or CPUs of a local Ray (default 1). A worker count where it does nothing,
    the local executor or a Ray cluster that has its own CPUs, is refused rather than ignored."""
    if name == "local" and workers not in (None, 1):
        raise SettingError("{0} applies to the process and ray executors; the local executor runs one evaluation "
                           "at a time in this process (run {1:=}process {0:=}{2})", Setting("workers"),
                           Setting("executor"), workers)  # fmt: skip
    if name == "ray" and ray_address is not None and workers not in (None, 1):
        raise SettingError("{0} sets the CPUs of a Ray started here; the cluster at {1:=}{2} has its own",
                           Setting("workers"), Setting("ray_address"), ray_address)  # fmt: skip
    if isinstance(gpus, bool) or not isinstance(gpus, (int, float)) or not (math.isfinite(gpus) and gpus >= 0):
        raise SettingError("{0} must be a finite number >= 0 (GPUs per Ray task), got {1!r}", Setting("gpus"), gpus)
    if name != "ray" and gpus:
        raise SettingError("{0} applies to the ray executor only; to train on a GPU here use {1:=}cuda",
                           Setting("gpus"), Setting("device"))  # fmt: skip
    if name != "ray" and ray_address is not None:
        raise SettingError("{0} applies to the ray executor only", Setting("ray_address"))
    if ray_address is not None and not ray_address.strip():
        raise SettingError("{0} is empty; give host:port, ray://host:port or auto", Setting("ray_address"))
    try:
        runtime.check_threads(threads)
    except ValueError:
        raise SettingError("{0} must be an integer in 1..{1} (4 per core here), got {2!r}", Setting("threads"),
                           runtime.max_threads(), threads) from None  # fmt: skip
    if name == "local":
        return LocalExecutor(threads)
    if name == "process":
        return ProcessExecutor(workers or 1, threads or 1)
    if name == "ray":
        return RayExecutor(ray_address, workers, threads or 1, gpus)
    raise ValueError(f"unknown executor {name!r}; choose one of {', '.join(EXECUTORS)}")
