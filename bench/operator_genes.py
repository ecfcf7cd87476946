"""Operator genes at small scale: does a search that may compose LIVs outside the 17 put one on its final front,
and what does it cost?

    python bench/operator_genes.py                    # search, retrain, report; skips what is stored
    python bench/operator_genes.py --stage report     # the tables again, from the JSON alone

The search is ``bench/star_small.py``'s "quality" search (NSGA-II on ``lm-small@150``, population 16, 96
evaluations, seeded with transformer++, striped-mamba and striped-hyena at 8 slots) with operator genes on
(``--operator-genes``): the same proxy, budget, population, seeds and search seed; only the genome's alphabet
differs. Its picks (the best evolved genomes by proxy quality, as for the original search) are retrained on
the target ``lm-small`` with seeds 0, 1 and 2 and set beside the original search's picks and the baselines,
read from ``bench/results/star_small.json``.

Resumable as ``star_small.py`` is: every evaluation is stored in ``bench/results/operator_genes.json`` as it
finishes. Evaluations ``star_small.json`` already holds (same genome, protocol, settings and seed) are reused
rather than run again: the pool's layers and the backbone compute as they did when those were measured
(``tests/test_operator_genes.py``, ``tests/test_backbone_genes.py`` compare with recorded outputs).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import sys
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
import star_small as base
from common import RESULTS, markdown_table, print_table
from starlab.genome import Genome
from starlab.liv import get_class
from starlab.store import load_run

PATH = RESULTS / "operator_genes.json"
SEARCH = "quality+operators"
OBJECTIVES = ("quality",)
PROXY = "lm-small@150"
STAGES = ("search", "retrain", "report")


class ReusingStudy(base.Study):
    """A study that also serves the evaluations of an earlier study (read-only) with the same identity."""

    def __init__(self, path: Path, current: dict[str, Any], earlier: Path) -> None:
        super().__init__(path, current)
        self.earlier_data = json.loads(earlier.read_text()) if earlier.is_file() else {}
        self.earlier = {(e["hash"], e["key"], e["seed"]): e for e in self.earlier_data.get("evaluations", [])}

    def get(self, genome: Genome, key: str, seed: int = 0) -> dict[str, Any] | None:
        return super().get(genome, key, seed) or self.earlier.get((genome.hash(), key, seed))


def outside_pool(genome: str) -> list[str]:
    """Names of the slots' classes that are not pool classes (operator genomes), in slot order."""
    return [get_class(slot.cls).name for slot in Genome.parse(genome).slots if isinstance(slot.cls, tuple)]


# ---- the stages -------------------------------------------------------------------------------------------
def stage_search(study: ReusingStudy, executor: base.StudyExecutor, args: argparse.Namespace) -> None:
    config = dataclasses.replace(base.search_config(OBJECTIVES, PROXY, args), operator_genes=True)
    print(f"search {SEARCH} on {PROXY}: {args.budget} evaluations")
    run = load_run(base.run_search(SEARCH, config, executor))
    record = base.search_record(run, OBJECTIVES, PROXY, args.picks)
    evaluated = [e.genome for e in run.successful]
    record["composed"] = {
        "evaluated_genomes": len(evaluated),
        "genomes_with_composed": sum(bool(outside_pool(g)) for g in evaluated),
        "class_counts": dict(Counter(name for g in evaluated for name in outside_pool(g)).most_common()),
        "top": [{**base.brief(e), "outside_pool": outside_pool(e.genome)} for e in sorted(
            run.successful, key=lambda e: (e.quality, e.params))[: 2 * args.population]],
    }  # fmt: skip
    study.data["search"] = record
    study.save()


def stage_retrain(study: ReusingStudy, executor: base.StudyExecutor, args: argparse.Namespace) -> None:
    if "search" not in study.data:
        raise SystemExit("no search stored: run --stage search first")
    genomes = [Genome.parse(member["genome"]) for member in study.data["search"]["picks"]]
    jobs = [base.job_for(g, base.TARGET, seed) for seed in base.TARGET_SEEDS for g in genomes]
    base.run_all(executor, jobs, f"retrain: {len(genomes)} picks x {len(base.TARGET_SEEDS)} seeds on {base.TARGET}")


def retrained(study: ReusingStudy) -> list[dict[str, Any]]:
    """This search's retrained picks, then the original searches' picks and the baselines (star_small's rows)."""
    rows = []
    for i, member in enumerate(study.data.get("search", {}).get("picks", [])):
        genome = Genome.parse(member["genome"])
        runs = base.target_runs(study, genome)
        if len(runs) == len(base.TARGET_SEEDS):
            first = study.get(genome, base.TARGET, 0)
            rows.append({"name": f"{SEARCH}-{i + 1}", "origin": SEARCH, "genome": member["genome"],
                         "perplexities": runs, "mean": statistics.mean(runs), "std": statistics.stdev(runs),
                         "params": first["params"], "cache_bytes": first["cache_bytes"],
                         "makeup": base.makeup(genome), "outside_pool": outside_pool(member["genome"])})  # fmt: skip
    earlier = study.earlier_data.get("analysis", {}).get("retrained", [])
    rows += [{**row, "outside_pool": []} for row in earlier if row["origin"] in ("baseline", "quality")]
    return sorted(rows, key=lambda row: row["mean"])


def stage_report(study: ReusingStudy, executor: base.StudyExecutor | None, args: argparse.Namespace) -> None:
    record = study.data.get("search")
    if record is None:
        raise SystemExit("no search stored: run --stage search first")
    composed = record["composed"]
    front = [(m["genome"], outside_pool(m["genome"])) for m in record["front"]]
    on_front = sorted({name for _, names in front for name in names})
    answer = f"yes: {', '.join(on_front)}" if on_front else "no"
    print(f"{SEARCH}: {record['evaluations']} evaluations; {composed['genomes_with_composed']} of "
          f"{composed['evaluated_genomes']} evaluated genomes hold a class outside the pool")  # fmt: skip
    print(f"a class outside the pool on the final front: {answer}")
    counts = [[name, count, get_class(_key(name)).description] for name, count in composed["class_counts"].items()]
    if counts:
        print_table("classes outside the pool among the evaluated genomes", ["class", "slots", "what"], counts)
        print(markdown_table(["class", "slots", "what"], counts))
    top = [[i + 1, t["genome"], round(t["quality"], 3), t["params"], round(t["cache_bytes"] / 1024),
            ", ".join(t["outside_pool"]) or "-"] for i, t in enumerate(composed["top"][:8])]  # fmt: skip
    header = ["rank", "genome", f"{PROXY} perplexity", "params", "cache KiB", "outside the pool"]
    print_table(f"{SEARCH}: best genomes by proxy quality", header, top)
    print(markdown_table(header, top))
    rows = retrained(study)
    study.data["analysis"] = {"front_has_composed": bool(on_front), "front_composed": on_front, "retrained": rows}
    study.save()
    if rows:
        header = ["genome", "from", "perplexity (3 seeds)", "params", "cache KiB", "makeup"]
        table = [[r["name"], r["origin"], f"{r['mean']:.3f} ± {r['std']:.3f}", r["params"],
                  round(r["cache_bytes"] / 1024), r["makeup"]] for r in rows]  # fmt: skip
        print_table(f"retrained on {base.TARGET}", header, table)
        print(markdown_table(header, table))


def _key(name: str):
    """A class name as printed (``[1,2,1,1,3]``) back to its operator genome."""
    return tuple(int(v) for v in name.strip("[]").split(","))


RUNNERS = {"search": stage_search, "retrain": stage_retrain, "report": stage_report}


def main(argv: Iterable[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--stage", choices=(*STAGES, "all"), default="all")
    parser.add_argument("--budget", type=int, default=96, help="evaluations (star_small's searches had 96)")
    parser.add_argument("--population", type=int, default=16)
    parser.add_argument("--picks", type=int, default=4, help="genomes retrained (star_small retrained 4)")
    parser.add_argument("--workers", type=int, default=2, help="evaluation processes (1 torch thread each)")
    parser.add_argument("--out", type=Path, default=PATH, help="the results file (its runs beside it)")
    parser.add_argument("--earlier", type=Path, default=base.PATH, help="star_small's results, reused and compared")
    args = parser.parse_args(argv)
    settings = {"star_small": base.settings(args), "search": SEARCH, "proxy": PROXY, "operator_genes": True}
    study = ReusingStudy(args.out, settings, args.earlier)
    return base.run_stages(study, STAGES if args.stage == "all" else (args.stage,), RUNNERS, args)


if __name__ == "__main__":
    sys.exit(main())
