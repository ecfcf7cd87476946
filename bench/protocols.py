"""Seconds per 4-slot genome for every CPU-scale protocol: the costs ``starlab protocols`` shows.

python bench/protocols.py                       # every protocol but the GPU-scale ones, 2 genomes each
python bench/protocols.py --protocols quick     # some of them
python bench/protocols.py --protocols algo-needle --genomes transformer++ --extrapolate-from 250

Each (protocol, genome) is assessed once with 2 torch threads (one process on 2 cores). Results are stored
in ``bench/results/protocols.json`` as they come and skipped when present, so an interrupted run resumes.
Copy the per-protocol means into the protocols' ``cost_s`` (rounded: machines differ up to ~3.5x).

``--extrapolate-from S`` is for step-budgeted protocols that take many minutes (the algorithmic ones): it
times the protocol at S and 2S steps (same number of evaluations, so the fixed part is the same) and
extrapolates the straight line to the protocol's own step budget.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import RESULTS, markdown_table, print_table, write_json
from starlab import runtime
from starlab.assess import assess, get_protocol, protocol_names
from starlab.genome import preset

GPU_SCALE = ("paper", "lm-paper")
GENOMES = ("transformer++", "striped-mamba")


def stored() -> list[dict]:
    path = RESULTS / "protocols.json"
    return json.loads(path.read_text())["results"] if path.is_file() else []


def extrapolated(protocol, genome: str, steps: int) -> dict:
    """Seconds at the protocol's step budget from a line through the times at ``steps`` and ``2 * steps``."""
    short, long = (assess(preset(genome, 4), protocol.with_settings(steps=s)).seconds for s in (steps, 2 * steps))
    budget = protocol.training()["steps"]
    per_step = (long - short) / steps
    return {"protocol": protocol.name, "genome": genome, "seconds": short + (budget - steps) * per_step,
            "extrapolated_from": [steps, short, 2 * steps, long], "seconds_per_step": per_step}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--protocols", nargs="+", default=[n for n in protocol_names() if n not in GPU_SCALE])
    parser.add_argument("--genomes", nargs="+", default=list(GENOMES))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--extrapolate-from", type=int, help="time S and 2S steps and extrapolate to the budget")
    args = parser.parse_args()
    runtime.configure(args.threads)
    results = stored()
    done = {(r["protocol"], r["genome"]) for r in results}
    for name in args.protocols:
        for genome in args.genomes:
            if (name, genome) in done:
                continue
            protocol = get_protocol(name)
            if args.extrapolate_from:
                results.append(extrapolated(protocol, genome, args.extrapolate_from))
            else:
                evaluation = assess(preset(genome, 4), protocol)
                results.append({"protocol": name, "genome": genome, "seconds": evaluation.seconds,
                                "quality": evaluation.quality, "status": evaluation.status.value})  # fmt: skip
            write_json("protocols", {"args": vars(args), "results": results})
            print(f"{name} / {genome}: {results[-1]['seconds']:.1f} s", flush=True)
    rows = []
    for name in dict.fromkeys(r["protocol"] for r in results):
        seconds = [r["seconds"] for r in results if r["protocol"] == name]
        rows.append([name, len(seconds), round(statistics.mean(seconds), 1), round(max(seconds), 1)])
    header = ["protocol", "genomes", "mean seconds", "max seconds"]
    print_table(f"seconds per 4-slot genome ({args.threads} threads)", header, rows)
    print(markdown_table(header, rows))


if __name__ == "__main__":
    main()
