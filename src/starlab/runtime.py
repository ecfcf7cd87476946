"""Process-level settings for heavy CPU work: OpenMP's spin count, thread count and the C allocator.

Called by entry points (the CLI, the trainer, worker processes, benchmarks), never on import: a library
should not change its host process behind the user's back. The one exception is :func:`spin_briefly`,
which ``import starlab`` calls because it only works before torch is imported (see its docstring).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from pathlib import Path

_M_TRIM_THRESHOLD, _M_TOP_PAD, _M_MMAP_MAX = -1, -2, -4


@cache
def keep_freed_memory() -> bool:
    """Stop glibc from handing large freed blocks back to the OS after every training step.

    Tensors above glibc's mmap threshold are otherwise allocated with fresh ``mmap`` calls and page-faulted
    in on every step. Measured here: forward+backward of a width-256 layer at 32k tokens became 25-35%
    faster, and time grew linearly with sequence length instead of 9-13x for 8x the tokens. The price is
    that the process keeps its peak memory. Returns whether the settings were applied (glibc only).
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    return all(
        mallopt(option, value)
        for option, value in ((_M_MMAP_MAX, 0), (_M_TRIM_THRESHOLD, 2**31 - 1), (_M_TOP_PAD, 256 << 20))
    )


def _raise_interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


_INTERRUPTING: list[bool] = []  # one entry per sigterm_interrupts() being entered


@contextmanager
def sigterm_interrupts() -> Iterator[None]:
    """SIGTERM (``kill``, a scheduler's pre-emption) stops the enclosed work exactly like Ctrl-C. It is also
    how a job started in the background of a script is stopped: such a job inherits SIGINT ignored, and Python
    then never turns SIGINT into ``KeyboardInterrupt``."""
    previous = signal.signal(signal.SIGTERM, _raise_interrupt)
    _INTERRUPTING.append(True)
    try:
        yield
    finally:
        _INTERRUPTING.pop()
        signal.signal(signal.SIGTERM, previous)


def reclaim_sigterm() -> None:
    """Inside :func:`sigterm_interrupts`, make SIGTERM interrupt again after a library took it: ``ray.init``
    installs a Python handler that exits with code 15 and, in its core worker, a C handler that dumps a stack
    and aborts (exit 134). A search on Ray must stop on SIGTERM the way it stops on Ctrl-C (one line, exit
    130, its Ray tasks cancelled)."""
    if _INTERRUPTING and threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _raise_interrupt)


def max_threads() -> int:
    """The most torch threads one worker may ask for: four per core (more only contend; a million exhausts the
    process's threads and breaks every later thread start)."""
    return 4 * (os.cpu_count() or 1)


def check_threads(threads: object) -> int | None:
    """``threads`` (``None``: torch's default), or a one-line ``ValueError``."""
    if threads is None:
        return None
    if isinstance(threads, bool) or not isinstance(threads, int) or not 1 <= threads <= max_threads():
        raise ValueError(f"threads must be an integer in 1..{max_threads()} (4 per core here), got {threads!r}")
    return threads


#: OpenMP settings a user may have chosen; when either is set, :func:`spin_briefly` leaves both alone
WAIT_SETTINGS = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")
#: libgomp's spin count where the user chose none (its default is 300,000; 0 is ``OMP_WAIT_POLICY=PASSIVE``)
SPIN_COUNT = 10_000
#: whether this process's OpenMP threads spin only briefly while they wait: set by the first :func:`spin_briefly`
BRIEF_SPINS: bool | None = None


def spin_briefly() -> bool:
    """Let OpenMP threads that wait for work spin ``SPIN_COUNT`` iterations before they sleep, not 300,000.

    torch's OpenMP (libgomp) makes every idle thread of a parallel region spin for ~300,000 iterations (a few
    ms) before it sleeps. Beside another busy process on the same cores the spinning threads take the cores
    from the threads they wait for. Measured on 2 cores (``bench/throughput.py``, docs/performance.md), three
    demo evaluations with torch's 2 threads took, alone / beside a single-threaded busy process: 9.4 / 203 s
    with libgomp's default, 26.8 / 19.6 s with passive waiting (spin count 0: every wait a sleep and a wake-up),
    9.6 / 51 s at 10,000. 10,000 costs nothing alone and a quarter of the default beside a competitor; the
    thread count :func:`configure` chooses from the idle cores does the rest where the competitor was there
    first. libgomp reads the setting once, when torch is loaded, so this must run before ``import torch``:
    ``import starlab`` calls it, and every starlab entry point (the command line, process and Ray workers)
    imports starlab first. Processes started from this one inherit the setting.

    Nothing is changed when the user has set ``OMP_WAIT_POLICY`` or ``GOMP_SPINCOUNT``. Returns whether this
    process's OpenMP threads spin briefly: ``False`` where torch was loaded before the first call, or where the
    user chose another policy.
    """
    global BRIEF_SPINS
    if BRIEF_SPINS is None:
        if not any(name in os.environ for name in WAIT_SETTINGS):
            os.environ["GOMP_SPINCOUNT"] = str(SPIN_COUNT)
        brief = os.environ.get("GOMP_SPINCOUNT", "").strip() == str(SPIN_COUNT)
        BRIEF_SPINS = brief and "torch" not in sys.modules
    return BRIEF_SPINS


def busy_cores_elsewhere(window_s: float = 0.2) -> float:
    """Cores other processes kept busy over ``window_s`` seconds (``/proc/stat``; 0 where there is none).

    This process sleeps meanwhile, so what the machine did is what the others did."""
    before = machine_busy_s()
    time.sleep(window_s)
    return max(0.0, (machine_busy_s() - before) / window_s)


def machine_busy_s() -> float:
    """CPU-seconds all processes of this machine have used since boot (``/proc/stat``; 0 where there is none)."""
    try:
        fields = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:9]]
    except (OSError, ValueError, IndexError):
        return 0.0
    user, nice, system, _idle, _iowait, irq, softirq, steal = fields
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


#: the thread count :func:`configure` set last (``None``: it has set none yet)
CHOSEN_THREADS: int | None = None


def configure(threads: int | None = None) -> int:
    """Apply :func:`keep_freed_memory` and set torch's intra-op thread count; returns the count in effect.

    ``threads=None`` the first time: torch's default less the cores other processes are busy on (at least
    one), because a thread whose core is taken stalls every other thread of its team at the next barrier
    (measured on 2 cores beside one busy process: a 2-thread demo evaluation took 6-40x its time alone, a
    1-thread one 1.5x, ``bench/throughput.py``). Afterwards ``None`` leaves torch's count as it is: a worker's
    choice, or the user's own ``torch.set_num_threads``, holds for every training that follows.
    """
    import torch  # here, not at the top: ``import starlab`` imports this module before torch may be loaded

    global CHOSEN_THREADS
    keep_freed_memory()
    if check_threads(threads) is not None:
        CHOSEN_THREADS = threads
        torch.set_num_threads(threads)
    elif CHOSEN_THREADS is None:
        idle = (os.cpu_count() or 1) - busy_cores_elsewhere()
        CHOSEN_THREADS = max(1, min(torch.get_num_threads(), round(idle)))
        torch.set_num_threads(CHOSEN_THREADS)
    return torch.get_num_threads()


#: Dense (no sparsity) bf16 tensor-core peaks in FLOP/s from the vendors' data sheets, by a substring of
#: ``torch.cuda.get_device_name``; fp32 runs are counted against the same peak, as nanoGPT does.
BF16_PEAK_FLOPS = {"H200": 989e12, "H100": 989e12, "A100": 312e12, "L40S": 362e12, "A10G": 125e12, "L4": 121e12}


@cache
def peak_flops(device: str) -> float:
    """The peak matmul FLOP/s of ``device``: a known GPU's data-sheet bf16 peak, otherwise measured once per
    process (an fp32 ``torch.mm`` of 2048 x 2048 matrices, best of 5), so MFU exists on every machine."""
    import torch

    target = torch.device(device)
    if target.type == "cuda":
        name = torch.cuda.get_device_name(target)
        for key, peak in BF16_PEAK_FLOPS.items():
            if key in name:
                return peak
    a, b = torch.randn(2048, 2048, device=target), torch.randn(2048, 2048, device=target)
    seconds = []
    for _ in range(6):
        start = time.perf_counter()
        torch.mm(a, b)
        if target.type == "cuda":
            torch.cuda.synchronize(target)
        seconds.append(time.perf_counter() - start)
    return 2 * 2048**3 / min(seconds[1:])
