"""Search quality at equal cost: hypervolume after the same evaluation budget, per algorithm and seed.

    python bench/search.py                        # demo protocol, 24 evaluations, 3 seeds, 2 workers
    python bench/search.py --protocol synthetic --budget 120 --executor local   # analytic quality: seconds

Every run starts from the same seeded initial population (two baseline presets + random genomes) and stops
after the generation in which its store reaches the budget. Hypervolume is measured on all evaluated genomes
(the archive) with the run's reference point, so single-objective GA is compared on what it found, too.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import markdown_table, print_table, write_json
from starlab import runtime
from starlab.evolve import ALGORITHMS, Search, SearchConfig, make_executor
from starlab.evolve.presets import BASELINE_SEEDS


def archive_hypervolume(search: Search) -> float:
    """Hypervolume of everything the search evaluated (its archive), not only of the final population."""
    objectives = search.objectives
    return objectives.hypervolume(objectives.values(search.store.evaluations(search.config.protocol)))


def run_one(algorithm: str, seed: int, args: argparse.Namespace, root: Path) -> dict:
    config = SearchConfig(
        protocol=args.protocol, depth=args.depth, algorithm=algorithm, population=args.population,
        generations=1000, seed=seed, seeds=BASELINE_SEEDS, max_evaluations=args.budget,
    )  # fmt: skip
    executor = make_executor(args.executor, args.workers, args.threads)
    search = Search(root / f"{algorithm}-{seed}", executor, config)
    try:
        summary = search.run()
        hypervolume = archive_hypervolume(search)
    finally:
        executor.close()
        search.close()
    return {"algorithm": algorithm, "seed": seed, "evaluations": summary.evaluations,
            "generations": summary.generations + 1, "hypervolume": hypervolume, "seconds": summary.seconds}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--protocol", default="demo")
    parser.add_argument("--budget", type=int, default=24, help="evaluations per run")
    parser.add_argument("--population", type=int, default=8)
    parser.add_argument("--depth", type=int, default=4)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--algorithms", nargs="+", default=list(ALGORITHMS))
    parser.add_argument("--executor", default="process")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    runtime.configure()

    runs = []
    with tempfile.TemporaryDirectory() as root:
        for algorithm in args.algorithms:
            for seed in args.seeds:
                runs.append(run_one(algorithm, seed, args, Path(root)))
                print(runs[-1], flush=True)
    rows = []
    for algorithm in args.algorithms:
        hvs = [r["hypervolume"] for r in runs if r["algorithm"] == algorithm]
        evaluations = [r["evaluations"] for r in runs if r["algorithm"] == algorithm]
        rows.append([algorithm, round(statistics.mean(hvs), 4), round(statistics.pstdev(hvs), 4),
                     " ".join(f"{h:.4f}" for h in hvs), statistics.mean(evaluations)])  # fmt: skip
    header = ["algorithm", "mean HV", "std", "per seed", "mean evaluations"]
    title = f"hypervolume after {args.budget} evaluations ({args.protocol}, depth {args.depth}, pop {args.population})"
    print_table(title, header, rows)
    name = "search" if args.protocol == "demo" else f"search-{args.protocol}"
    print(f"wrote {write_json(name, {'args': vars(args), 'runs': runs})}\n")
    print(markdown_table(header, rows))


if __name__ == "__main__":
    main()
