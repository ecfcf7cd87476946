"""Search quality at equal cost: hypervolume against evaluations and seconds, per search variant and seed.

    python bench/search.py                                  # demo protocol, budget 96, seeds 0 1 2, 2 workers
    python bench/search.py --protocol synthetic-noisy --budget 288 --seeds 0 1 2 3 4 --executor local

Variants: ``random`` (random search), ``nsga2``, ``surrogate`` (NSGA-II + surrogate pre-screening) and
``ladder`` (NSGA-II with promotions from the protocol to ``--ladder-top``, best 1/``--eta`` per generation).
Every run of one seed starts from the same seeded initial population (two baseline presets + random
genomes) and stores exactly ``--budget`` evaluations of the protocol. Hypervolume is that of everything a
run evaluated (its archive) with the run's reference point, on the bottom rung's measured qualities for
every variant (the ladder's extra measurements are its cost, counted in seconds); for the synthetic
protocols it is on the noise-free synthetic quality, which is known.

Resumable: every run lives in ``--work`` (default ``bench/results/search-runs``); a finished run is read
back, an interrupted one resumed; results are rewritten after every run. A run already in the results JSON
(same protocol, budget, depth, population and ladder) is taken from there, so a fresh checkout, which has the
JSON but not the run directories, measures only what is missing. Evaluations are deterministic in
(genome, protocol, seed), so runs of one seed share them through a cache (each keeps its own store and the
seconds the evaluation took when it was really run).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from concurrent.futures import Future
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from common import RESULTS, markdown_table, print_table, run_to_end, write_json
from starlab import runtime
from starlab.assess import synthetic_quality
from starlab.evolve import EvalJob, SearchConfig, make_executor
from starlab.evolve.search_presets import BASELINE_SEEDS
from starlab.genome import Genome
from starlab.store import RunStore, load_run
from starlab.study.analysis import search_curves

VARIANTS = ("random", "nsga2", "surrogate", "ladder")
CHECKPOINTS = (32, 64, 96)


class SharedEvaluations:
    """An executor that serves evaluations other runs of the same seed already made (they are deterministic)."""

    def __init__(self, inner, known: dict[tuple[str, str], dict]) -> None:
        self.inner, self.known = inner, known

    def submit(self, job: EvalJob) -> Future:
        key = (Genome.parse(job.genome).hash(), job.protocol)
        if key not in self.known:
            return self.inner.submit(job)
        future: Future = Future()
        future.set_result(self.known[key])
        return future

    def close(self) -> None:
        self.inner.close()


def config_for(variant: str, seed: int, args: argparse.Namespace) -> SearchConfig:
    settings = {"protocol": args.protocol, "depth": args.depth, "population": args.population, "seed": seed,
                "seeds": BASELINE_SEEDS if args.depth % 2 == 0 else (), "budget": args.budget, "generations": None,
                "algorithm": "random" if variant == "random" else "nsga2",
                "surrogate": variant == "surrogate"}  # fmt: skip
    if variant == "ladder":
        settings.update(ladder=(args.protocol, args.ladder_top), eta=args.eta)
    return SearchConfig(**settings)


def known_evaluations(work: Path, seed: int) -> dict[tuple[str, str], dict]:
    known = {}
    for store_file in sorted(work.glob(f"*-seed{seed}/run.sqlite")):
        with RunStore(store_file.parent) as store:
            known.update({(e.hash, e.protocol): e.to_dict() for e in store.evaluations() if e.status.value == "ok"})
    return known


def run_one(variant: str, seed: int, args: argparse.Namespace) -> dict:
    directory = Path(args.work) / f"{args.protocol}-{variant}-seed{seed}"
    workers = None if args.executor == "local" else args.workers  # the local executor takes no worker count
    inner = make_executor(args.executor, workers, args.threads)
    executor = SharedEvaluations(inner, known_evaluations(Path(args.work), seed))
    run_to_end(directory, executor, config_for(variant, seed, args))
    executor.close()
    return measure(variant, seed, directory, args)


#: the arguments that define a comparison: runs stored under other values are not reused
COMPARISON = ("protocol", "ladder_top", "eta", "budget", "population", "depth")


def stored_runs(path: Path, args: argparse.Namespace) -> dict[tuple[str, int], dict]:
    """The finished runs of an earlier invocation's results file, where it made the same comparison."""
    if not path.is_file():
        return {}
    previous = json.loads(path.read_text())
    if any(previous["args"].get(k) != getattr(args, k) for k in COMPARISON):
        return {}
    return {(r["variant"], r["seed"]): r for r in previous["runs"]}


def true_quality(protocol: str):
    """The quality a hypervolume is measured on: the synthetic formula where known, else as measured."""
    if protocol.startswith("synthetic"):
        return lambda e: synthetic_quality(Genome.parse(e.genome))
    return lambda e: e.quality


def measure(variant: str, seed: int, directory: Path, args: argparse.Namespace) -> dict:
    """Hypervolume after each bottom-rung evaluation, and the seconds spent by then on every rung
    (``starlab.study.analysis.search_curves``)."""
    run = load_run(directory)
    with RunStore(directory) as store:
        everything = store.evaluations()  # every rung, in the order stored
    curves = search_curves(run.objectives, everything, args.protocol, true_quality(args.protocol))
    promotions = {rung: len(es) for rung, es in run.rungs.items() if rung != args.protocol}
    return {"variant": variant, "seed": seed, "evaluations": len(curves.hypervolume), "promotions": promotions,
            "hypervolume": curves.hypervolume[-1], "hv_curve": curves.hypervolume, "seconds_curve": curves.seconds,
            "seconds": sum(e.seconds for e in everything), "surrogate": run.surrogate_agreement(),
            "correlations": run.rung_correlations()}  # fmt: skip


def reached(curve: list[float], target: float) -> int | None:
    """Evaluations a run needed to reach ``target`` hypervolume (``None``: never)."""
    return next((i + 1 for i, hv in enumerate(curve) if hv >= target - 1e-12), None)


def summarise(runs: list[dict], args: argparse.Namespace) -> tuple[list[str], list[list]]:
    checkpoints = [c for c in CHECKPOINTS if c <= args.budget] or [args.budget]
    if args.budget not in checkpoints:
        checkpoints.append(args.budget)
    random_final = {r["seed"]: r["hypervolume"] for r in runs if r["variant"] == "random"}
    header = ["variant", "seeds", *(f"HV@{c}" for c in checkpoints), "evals to random's final HV (median)",
              "ratio to random", "above random (seeds)", "seconds (mean)"]  # fmt: skip
    rows = []
    for variant in args.variants:
        mine = [r for r in runs if r["variant"] == variant]
        if not mine:
            continue
        cells = []
        for c in checkpoints:
            hvs = [r["hv_curve"][min(c, len(r["hv_curve"])) - 1] for r in mine]
            cells.append(f"{statistics.mean(hvs):.4f} ± {statistics.pstdev(hvs):.4f}")
        needed = [reached(r["hv_curve"], random_final[r["seed"]]) for r in mine if r["seed"] in random_final]
        finite = [n if n is not None else float("inf") for n in needed]
        median = statistics.median(finite) if finite else float("nan")
        above = sum(r["hypervolume"] > random_final[r["seed"]] for r in mine if r["seed"] in random_final)
        ratio = median / args.budget if finite else float("nan")
        seconds = round(statistics.mean(r["seconds"] for r in mine))
        rows.append([variant, len(mine), *cells, "never" if median == float("inf") else median,
                     round(ratio, 3), f"{above}/{len(needed)}", seconds])  # fmt: skip
    return header, rows


def plot(runs: list[dict], args: argparse.Namespace, path: Path) -> None:
    fig, (by_evals, by_seconds) = plt.subplots(1, 2, figsize=(12, 4.5))
    for variant in args.variants:
        mine = [r for r in runs if r["variant"] == variant]
        if not mine:
            continue
        n = min(len(r["hv_curve"]) for r in mine)
        mean = np.mean([r["hv_curve"][:n] for r in mine], axis=0)
        line = by_evals.plot(range(1, n + 1), mean, label=f"{variant} ({len(mine)} seeds)")[0]
        for r in mine:
            by_seconds.plot(r["seconds_curve"], r["hv_curve"], color=line.get_color(), alpha=0.6, lw=1)
        by_seconds.plot([], [], color=line.get_color(), label=variant)
    by_evals.set(xlabel=f"evaluations of {args.protocol}", ylabel="hypervolume (mean over seeds)",
                 title="Hypervolume against evaluations (higher is better)")  # fmt: skip
    by_seconds.set(xlabel="seconds of evaluation (all rungs)", ylabel="hypervolume",
                   title="Hypervolume against evaluation seconds (one line per seed)")  # fmt: skip
    for ax in (by_evals, by_seconds):
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--protocol", default="demo")
    parser.add_argument("--ladder-top", default=None, help="the ladder's top rung (default: quick, or synthetic)")
    parser.add_argument("--eta", type=int, default=3)
    parser.add_argument("--budget", type=int, default=96, help="evaluations of the protocol per run")
    parser.add_argument("--population", type=int, default=8)
    parser.add_argument("--depth", type=int, default=4)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS)
    parser.add_argument("--executor", default="process")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--work", default=str(RESULTS / "search-runs"), help="run directories (kept: resumable)")
    args = parser.parse_args()
    args.ladder_top = args.ladder_top or ("synthetic" if args.protocol.startswith("synthetic") else "quick")
    runtime.configure()
    Path(args.work).mkdir(parents=True, exist_ok=True)
    name = "search" if args.protocol == "demo" else f"search-{args.protocol}"
    stored, runs = stored_runs(RESULTS / f"{name}.json", args), []
    for seed in args.seeds:  # seed by seed: an interrupted benchmark has whole seeds to compare
        for variant in args.variants:
            runs.append(stored.get((variant, seed)) or run_one(variant, seed, args))
            r = runs[-1]
            print(json.dumps({k: r[k] for k in ("variant", "seed", "evaluations", "hypervolume", "seconds")}),
                  flush=True)  # fmt: skip
            header, rows = summarise(runs, args)
            write_json(name, {"args": vars(args), "header": header, "rows": rows, "runs": runs})
            plot(runs, args, RESULTS / f"{name}.png")
    title = f"{args.protocol}, budget {args.budget}, depth {args.depth}, population {args.population}"
    print_table(f"hypervolume of the archive ({title})", header, rows)
    print(f"wrote {RESULTS / name}.json and .png\n")
    print(markdown_table(header, rows))


if __name__ == "__main__":
    main()
