"""Where evaluations run, behind one interface: ``submit(job) -> Future[dict]``.

* ``local``: in this process, one at a time (the default; nothing to set up).
* ``process``: N worker processes on this machine, each with its own torch thread count.
* ``ray``: one Ray task per evaluation on a cluster (``address``) or a local Ray instance; a crashed worker's
  evaluation is retried by Ray (``max_retries``). Ray is an optional extra: ``pip install starlab[ray]``.

A job is plain data (:class:`EvalJob`) and its result an :class:`~starlab.assess.Evaluation` as a plain dict
(``Evaluation.to_dict``), so both cross process and machine boundaries as they are.
"""

from __future__ import annotations

import signal
import threading
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from multiprocessing import get_context
from typing import Any, Protocol

from starlab import runtime
from starlab.assess import assess, get_protocol
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


def run_job(job: EvalJob) -> dict:
    """Assess one genome (runs inside whichever worker the executor chose); the evaluation as a dict."""
    protocol = get_protocol(job.protocol).with_settings(**job.settings)
    return assess(Genome.parse(job.genome), protocol, job.width, job.seed, job.device, job.data).to_dict()


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


class ProcessExecutor:
    """A pool of ``workers`` spawned processes with ``threads`` torch threads each.

    A worker that dies (killed, out of memory) breaks a process pool; the pool is then rebuilt and the jobs
    it was running are submitted again, up to ``max_retries`` times each.
    """

    def __init__(self, workers: int, threads: int | None = 1, max_retries: int = 2) -> None:
        self.workers, self.threads, self.max_retries = workers, threads, max_retries
        self.closing = False  # once closing, a broken pool is the executor stopping its workers: no retries
        self.lock = threading.Lock()
        self.pool = self._new_pool()

    def _new_pool(self) -> ProcessPoolExecutor:
        return ProcessPoolExecutor(
            self.workers, mp_context=get_context("spawn"), initializer=_start_worker, initargs=(self.threads,)
        )

    def _replace_broken(self, broken: ProcessPoolExecutor) -> None:
        with self.lock:
            if self.pool is broken:
                self.pool = self._new_pool()

    def submit(self, job: EvalJob) -> Future:
        outer: Future = Future()
        self._submit_into(job, outer, self.max_retries)
        return outer

    def _submit_into(self, job: EvalJob, outer: Future, retries_left: int) -> None:
        pool = self.pool

        def relay(inner: Future) -> None:
            if isinstance(inner.exception(), BrokenProcessPool) and retries_left > 0 and not self.closing:
                self._replace_broken(pool)
                self._submit_into(job, outer, retries_left - 1)
            else:
                _copy_outcome(inner, outer)

        try:
            pool.submit(run_job, job).add_done_callback(relay)
        except BrokenProcessPool as error:
            if retries_left == 0:
                outer.set_exception(error)
                return
            self._replace_broken(pool)
            self._submit_into(job, outer, retries_left - 1)

    def close(self) -> None:
        """Cancel queued jobs and stop the workers now: running evaluations are abandoned (the store keeps
        everything that was handed over), so an interrupted search exits in seconds, not after its jobs."""
        self.closing = True
        processes = list(self.pool._processes.values())  # no public way to stop the workers before Python 3.14
        self.pool.shutdown(wait=False, cancel_futures=True)
        for process in processes:
            process.terminate()
        for process in processes:
            process.join()


def _start_worker(threads: int | None) -> None:
    """A pool worker leaves Ctrl-C to its parent, which stops it: an evaluation cut short by the signal must
    never travel back as a 'failed' result the search would store."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    runtime.configure(threads)


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
        try:
            import ray
        except ImportError:
            raise ValueError("the ray executor needs Ray: pip install 'starlab[ray]'") from None
        self.ray = ray
        if not ray.is_initialized():
            local = {} if address else {"num_cpus": (workers or 1) * threads, "include_dashboard": False}
            ray.init(address=address, log_to_driver=False, **local)
        options = {"num_cpus": threads, "num_gpus": gpus, "max_retries": max_retries, "retry_exceptions": False}
        self.remote = ray.remote(_ray_job).options(**options)
        self.threads = threads

    def submit(self, job: EvalJob) -> Future:
        return self.remote.remote(job, self.threads).future()

    def close(self) -> None:
        self.ray.shutdown()


def _ray_job(job: EvalJob, threads: int) -> dict:
    runtime.configure(threads)
    return run_job(job)


def make_executor(
    name: str, workers: int = 1, threads: int | None = None, ray_address: str | None = None, gpus: float = 0
) -> Executor:
    """Build an executor by name; ``threads`` is per worker (default: all cores for local, 1 otherwise)."""
    if name == "local":
        return LocalExecutor(threads)
    if name == "process":
        return ProcessExecutor(workers, threads or 1)
    if name == "ray":
        return RayExecutor(ray_address, workers, threads or 1, gpus)
    raise ValueError(f"unknown executor {name!r}; choose one of {', '.join(EXECUTORS)}")
