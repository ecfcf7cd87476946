"""Test-suite settings, and the hypothesis strategies several test files share.

Hypothesis runs without wall-clock deadlines (shared CI machines are noisy). Test files import the shared
strategies and helpers (``wait_for``) with ``from conftest import ...``.
"""

import time

import numpy as np
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from starlab.genome import Genome
from starlab.liv import class_ids

settings.register_profile("starlab", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("starlab")

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
