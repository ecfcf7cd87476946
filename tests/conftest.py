"""Test-suite settings, the hypothesis strategies several test files share, and Ray clusters for the Ray tests.

Hypothesis runs without wall-clock deadlines (shared CI machines are noisy). Test files import the shared
strategies and helpers (``wait_for``, ``RayNodes``) with ``from conftest import ...``.
"""

import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from starlab import runtime
from starlab.genome import Genome
from starlab.liv import class_ids

settings.register_profile("starlab", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("starlab")


#: torch's own thread count in this process, before :func:`one_torch_thread`
TORCH_THREADS = torch.get_num_threads()


@pytest.fixture(autouse=True, scope="session")
def one_torch_thread():
    """What the tests train in this process trains on one thread, as ``--threads 1`` would: their models are
    tiny, and two threads stall on OpenMP barriers whenever the other core is busy (a subprocess or worker of
    the test itself, or another job on the machine; on a shared one, test_assess's tiny-recall test took from
    6 to 62 s). Tests of the thread choice itself start from torch's own count (``TORCH_THREADS``)."""
    runtime.configure(1)


def pytest_xdist_auto_num_workers(config):
    """``-n auto`` (the default, pyproject.toml) runs one test process per core this process may use, at most
    4. Cores, not ``os.cpu_count()``: a container or CI job limited to 2 cores of a large host reports the
    host's count, and twice as many processes as cores stalls the tests that train in subprocesses. At most 4
    because the Ray and kill tests start clusters and worker pools of their own. ``PYTEST_XDIST_AUTO_NUM_WORKERS``
    still overrides it (``-n 0`` runs in this process)."""
    if os.environ.get("PYTEST_XDIST_AUTO_NUM_WORKERS"):
        return None
    return min(4, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)


MAX_CLASS = max(class_ids())


@st.composite
def in_range_slots(draw, max_depth=8, max_group=None):
    """Any in-range slot list; small group ranges make sharing (and incompatibility) frequent."""
    depth = draw(st.integers(1, max_depth))
    top = max_group or depth
    slot = st.tuples(
        st.integers(1, MAX_CLASS),
        st.integers(1, min(top, depth)),
        st.integers(1, 2),
        st.integers(1, min(top, depth)),
        st.integers(1, 2),
    )
    return draw(st.lists(slot, min_size=depth, max_size=depth))


def relabel(genome: Genome, seed: int) -> Genome:
    """The same genome with its group ids renamed by random permutations (and junk ids on strategy-1 slots)."""
    rng = np.random.default_rng(seed)
    n = len(genome)
    fs_perm, fg_perm = rng.permutation(n) + 1, rng.permutation(n) + 1
    slots = [
        (
            s.cls,
            int(fs_perm[s.featurizer_group - 1]) if s.featurizer_strategy == 2 else int(rng.integers(1, n + 1)),
            s.featurizer_strategy,
            int(fg_perm[s.feature_group - 1]) if s.feature_strategy == 2 else int(rng.integers(1, n + 1)),
            s.feature_strategy,
        )
        for s in genome.slots
    ]
    return Genome.from_slots(slots)


def wait_for(condition, what: str, timeout_s: float = 60):
    """Poll ``condition`` every 5 ms until it holds; fail the test after ``timeout_s`` seconds."""
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        if condition():
            return
        time.sleep(0.005)
    raise AssertionError(f"timed out waiting for {what}")


# ---- Ray nodes started with `ray start` -------------------------------------------------------------------

RAY = str(Path(sys.executable).with_name("ray"))


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def kill_tree(pid: int) -> None:
    """SIGKILL a process and everything it started (a node: its raylet and the workers running tasks)."""
    children = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout.split()
    with contextlib.suppress(ProcessLookupError):  # ended meanwhile
        os.kill(pid, signal.SIGKILL)
    for child in children:
        kill_tree(int(child))


class RayNodes:
    """A Ray cluster on this machine, node by node with ``ray start`` (token authentication, Ray's default for
    such clusters), every node in its own temporary directory: a local ``ray.init()`` elsewhere in the suite
    neither finds nor joins it (Ray looks for the last cluster started in /tmp/ray), and :meth:`stop` kills
    only this cluster's processes (``ray stop`` would stop every Ray on the machine, and takes seconds)."""

    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="ray-", dir="/tmp"))  # short: Ray's socket paths must fit 107 B
        token = self.root / "auth_token"
        token.write_text(secrets.token_hex(32))
        #: what a process needs to reach the cluster (given to the nodes, and every process they start, too)
        self.env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(token),
                    "RAY_USAGE_STATS_ENABLED": "0", "RAY_health_check_period_ms": "500",
                    "RAY_health_check_failure_threshold": "2"}  # fmt: skip
        self.address = f"127.0.0.1:{free_port()}"
        self.nodes = 0

    def start(self, cpus: int, resources: dict[str, float]) -> int:
        """Start a node (the head first) with ``cpus`` CPUs and custom ``resources``; the pid of its raylet."""
        directory = self.root / f"node{self.nodes}"
        where = ["--address", self.address] if self.nodes else ["--head", "--port", self.address.split(":")[1],
                                                                  "--include-dashboard", "false"]  # fmt: skip
        subprocess.run([RAY, "start", *where, "--num-cpus", str(cpus), "--resources", json.dumps(resources),
                        "--object-store-memory", str(100 * 2**20), "--disable-usage-stats", "--temp-dir",
                        str(directory)], env=self.env, check=True, capture_output=True, timeout=120)  # fmt: skip
        self.nodes += 1
        found = subprocess.run(["pgrep", "-f", f"raylet/raylet .*{directory}/"], capture_output=True, text=True)
        (raylet,) = found.stdout.split()
        return int(raylet)

    def processes(self) -> list[int]:
        """Every live process that was started with this cluster's token: its nodes' and what they started."""
        mine = f"RAY_AUTH_TOKEN_PATH={self.env['RAY_AUTH_TOKEN_PATH']}".encode()
        found = []
        for environ in Path("/proc").glob("[0-9]*/environ"):
            try:
                if mine in environ.read_bytes().split(b"\0"):
                    found.append(int(environ.parent.name))
            except OSError:  # gone meanwhile, or not ours to read
                continue
        return found

    def stop(self) -> None:
        for pid in self.processes():
            kill_tree(pid)
        shutil.rmtree(self.root, ignore_errors=True)
