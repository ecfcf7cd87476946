"""Ray as a cluster: a head and a second node started with ``ray start`` on this machine, each with its own
resources; a search connects with ``--ray-address``; the second node is killed while it trains; its
evaluation is retried on the head and continues from its checkpoint. Nothing is lost or stored twice, and the
resumed evaluation ends exactly as one never interrupted (CPU, one thread each).

This is the recipe of docs/evolve.md ("Running on a Ray cluster") run for real.
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from conftest import RayNodes, kill_tree, wait_for
from starlab.evolve.executors import EvalJob, run_job
from starlab.genome import Genome
from starlab.store import RunStore

ray = pytest.importorskip("ray")
#: 100 steps: the second node's evaluation is still training well after its first checkpoint, when it is killed;
#: perplexity on fewer validation tokens than lm-tiny's 65,536 (the same number either way, uninterrupted or not)
SETTINGS = {"steps": 100, "checkpoint_every": 10, "max_eval_tokens": 4096}
SEARCH = ["--protocol", "lm-tiny", "--depth", "2", "--population", "4", "--generations", "0", "--seed", "2",
          *(f"--protocol-setting={key}={value}" for key, value in SETTINGS.items())]  # fmt: skip


@pytest.fixture
def cluster():
    """(address, environment, pid of the second node's raylet); both nodes are stopped afterwards."""
    nodes = RayNodes()
    try:
        nodes.start(1, {"head": 1})
        second = nodes.start(1, {"second": 1})
        yield nodes.address, nodes.env, second
    finally:
        nodes.stop()


def checkpointed(run: Path) -> int:
    return len(list((run / "checkpoints").glob("*/latest.json")))


def test_a_search_on_two_ray_nodes_survives_losing_one_mid_evaluation(tmp_path, cluster):
    address, env, second = cluster
    run = tmp_path / "run"
    argv = [sys.executable, "-m", "starlab.cli", "evolve", *SEARCH, "--executor", "ray", "--ray-address", address,
            "--threads", "1", "--out", str(run)]  # fmt: skip
    search = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    wait_for(lambda: checkpointed(run) >= 2, "both nodes to checkpoint", timeout_s=120)  # one per node, 1 CPU each
    kill_tree(second)
    output, _ = search.communicate(timeout=240)
    assert search.returncode == 0, output
    with RunStore(run) as store:
        evaluations = store.evaluations("lm-tiny")
    assert len(evaluations) == len({e.hash for e in evaluations}) == 4  # none lost, none stored twice
    assert all(e.status == "ok" for e in evaluations), [e.error for e in evaluations]
    (resumed,) = [e for e in evaluations if e.metrics.get("resumed_from_step")]  # the second node's, retried
    # from a checkpoint of the lost node: any of its ten (the last one too, when the node died after writing it)
    assert resumed.metrics["resumed_from_step"] in range(10, 101, 10)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the Ray workers ran
    try:
        whole = run_job(EvalJob(Genome.parse(resumed.genome).text(), "lm-tiny", 2, None, settings=SETTINGS))
    finally:
        torch.set_num_threads(threads)
    assert resumed.quality == whole["quality"]  # continued from its checkpoint, bit-identical
    assert not any((run / "checkpoints").iterdir())


class FakeRay:
    def __init__(self, resources):
        self.resources = resources

    def cluster_resources(self):
        return self.resources


class FakeRayExecutor:
    def __init__(self, resources, threads, gpus):
        self.ray, self.threads, self.gpus = FakeRay(resources), threads, gpus


@pytest.mark.parametrize(
    ("resources", "threads", "gpus", "at_once"),
    [({"CPU": 32.0}, 4, 0, 8), ({"CPU": 32.0, "GPU": 2.0}, 4, 1, 2), ({"CPU": 8.0, "GPU": 8.0}, 4, 0.5, 2)],
)
def test_evaluations_at_once_follow_the_clusters_cpus_and_gpus(resources, threads, gpus, at_once):
    from starlab.evolve.steady import parallelism

    assert parallelism(FakeRayExecutor(resources, threads, gpus)) == at_once


def test_a_client_with_a_token_on_this_machine_connects_with_token_authentication(tmp_path, monkeypatch):
    from starlab.evolve.executors import _authenticate_with_token

    monkeypatch.delitem(sys.modules, "ray")  # as in a fresh `starlab evolve`, which imports Ray only here
    monkeypatch.delenv("RAY_AUTH_MODE", raising=False)
    monkeypatch.delenv("RAY_AUTH_TOKEN", raising=False)
    monkeypatch.setenv("RAY_AUTH_TOKEN_PATH", str(tmp_path / "auth_token"))
    _authenticate_with_token()
    assert "RAY_AUTH_MODE" not in os.environ  # no token: Ray's own default
    (tmp_path / "auth_token").write_text("0" * 64)
    _authenticate_with_token()
    assert os.environ["RAY_AUTH_MODE"] == "token"
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")
    _authenticate_with_token()
    assert os.environ["RAY_AUTH_MODE"] == "disabled"  # the user's choice stands
