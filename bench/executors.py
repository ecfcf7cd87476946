"""Evaluation throughput of the executors: evaluations per hour with 1 and 2 workers on this machine.

    python bench/executors.py                 # 8 demo-protocol evaluations per configuration

Configurations: 1 worker x 1 thread, 1 worker x 2 threads, 2 workers x 1 thread (process executor), and
2 Ray workers x 1 thread when Ray is installed. The same 8 genomes (fresh, so nothing is served from a store)
are assessed in each; each configuration is timed from submission of the first job to the last result.
"""

from __future__ import annotations

import argparse
import sys
import time
from concurrent.futures import wait
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import markdown_table, print_table, write_json
from starlab import runtime
from starlab.evolve import EvalJob, make_executor
from starlab.genome import random_genome


def evaluations_per_hour(name: str, workers: int, threads: int, jobs: list[EvalJob]) -> float:
    executor = make_executor(name, workers, threads)
    try:
        executor.submit(EvalJob(jobs[0].genome, "synthetic", 0, None)).result()  # start the workers up
        start = time.perf_counter()
        futures = [executor.submit(job) for job in jobs]
        wait(futures)
        for future in futures:
            future.result()
        return len(jobs) * 3600 / (time.perf_counter() - start)
    finally:
        executor.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--protocol", default="demo")
    parser.add_argument("--jobs", type=int, default=8)
    parser.add_argument("--depth", type=int, default=4)
    args = parser.parse_args()
    runtime.configure()
    jobs = [
        EvalJob(random_genome(args.depth, seed).canonical().text(), args.protocol, 0, None) for seed in range(args.jobs)
    ]
    configurations = [("process", 1, 1), ("process", 1, 2), ("process", 2, 1)]
    try:
        import ray  # noqa: F401

        configurations.append(("ray", 2, 1))
    except ImportError:
        pass
    rows, results = [], []
    for name, workers, threads in configurations:
        rate = evaluations_per_hour(name, workers, threads, jobs)
        results.append({"executor": name, "workers": workers, "threads": threads, "evaluations_per_hour": rate})
        rows.append([name, workers, threads, round(rate)])
        print(results[-1], flush=True)
    base = results[0]["evaluations_per_hour"]
    rows = [[*row, round(row[3] / base, 2)] for row in rows]
    header = ["executor", "workers", "threads each", "evaluations / hour", "vs 1 worker x 1 thread"]
    print_table(f"{args.jobs} {args.protocol} evaluations of {args.depth}-slot genomes", header, rows)
    print(f"wrote {write_json('executors', {'args': vars(args), 'results': results})}\n")
    print(markdown_table(header, rows))


if __name__ == "__main__":
    main()
