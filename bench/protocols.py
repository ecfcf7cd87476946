"""Seconds per 4-slot genome for every CPU-scale protocol: the costs ``starlab protocols`` shows.

python bench/protocols.py                       # every protocol but the GPU-scale ones, 2 genomes each
python bench/protocols.py --protocols quick     # some of them

Each (protocol, genome) is assessed once with 2 torch threads (one process on 2 cores). Results are stored
in ``bench/results/protocols.json`` as they come and skipped when present, so an interrupted run resumes.
Copy the per-protocol means into the protocols' ``cost_s`` (rounded: machines differ up to ~3.5x).
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--protocols", nargs="+", default=[n for n in protocol_names() if n not in GPU_SCALE])
    parser.add_argument("--genomes", nargs="+", default=list(GENOMES))
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    runtime.configure(args.threads)
    results = stored()
    done = {(r["protocol"], r["genome"]) for r in results}
    for name in args.protocols:
        for genome in args.genomes:
            if (name, genome) in done:
                continue
            evaluation = assess(preset(genome, 4), get_protocol(name))
            results.append({"protocol": name, "genome": genome, "seconds": evaluation.seconds,
                            "quality": evaluation.quality, "status": evaluation.status.value})  # fmt: skip
            write_json("protocols", {"args": vars(args), "results": results})
            print(f"{name} / {genome}: {evaluation.seconds:.1f} s, quality {evaluation.quality:.4g}", flush=True)
    rows = []
    for name in dict.fromkeys(r["protocol"] for r in results):
        seconds = [r["seconds"] for r in results if r["protocol"] == name]
        rows.append([name, len(seconds), round(statistics.mean(seconds), 1), round(max(seconds), 1)])
    header = ["protocol", "genomes", "mean seconds", "max seconds"]
    print_table(f"seconds per 4-slot genome ({args.threads} threads)", header, rows)
    print(markdown_table(header, rows))


if __name__ == "__main__":
    main()
