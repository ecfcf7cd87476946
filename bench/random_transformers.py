"""Table 1 of *Algorithmic Capabilities of Random Transformers* (Zhong & Andreas 2024) at CPU scale.

python bench/random_transformers.py                  # run the grid (resumes: stored runs are skipped)
python bench/random_transformers.py --stage time     # seconds per run at each width (sets the step budget)
python bench/random_transformers.py --stage report   # the markdown table from the stored runs

The paper's network (``--backbone gpt2``: Hugging Face GPT-2, 2 blocks = 4 slots of transformer++) on
parentheses balancing and decimal addition at their ``cpu`` sizes, widths 16..256, embedding-only vs fully
trained, 3 seeds; the median and min-max over seeds per cell. Every run is stored in
``bench/results/random_transformers.json`` as it finishes (written atomically), so an interrupted grid
continues where it stopped. One torch thread by default: the budget is counted in single-core hours.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import RESULTS, machine, markdown_table, print_table
from starlab import runtime
from starlab.assess import assess, get_protocol
from starlab.assess.algorithmic import protocol_for_task
from starlab.files import write_text_atomically
from starlab.genome import preset

PATH = RESULTS / "random_transformers.json"
TASKS = ("parentheses", "decimal-addition")
WIDTHS = (16, 32, 64, 128, 256)
MODES = ("embedding-only", "full")
SEEDS = (0, 1, 2)
#: optimizer steps per run, chosen from ``--stage time`` so the grid fits ~2 single-core hours (docs/results.md)
STEPS = {"parentheses": 1000, "decimal-addition": 1500}
SLOTS = 4  # the paper's 2 GPT-2 blocks
DATA_SEED = 0  # one data set for every run, as the paper's fixed test set; seeds vary the initialisation


def protocol(task: str, mode: str, steps: int):
    return get_protocol(protocol_for_task(task)).with_settings(
        backbone="gpt2", embedding_only=mode == "embedding-only", steps=steps, data_seed=DATA_SEED
    )


def key(task: str, width: int, mode: str, seed: int) -> str:
    return f"{task}/{width}/{mode}/{seed}"


def stored() -> dict:
    return json.loads(PATH.read_text()) if PATH.is_file() else {"runs": {}, "timings": {}}


def save(data: dict) -> None:
    write_text_atomically(PATH, json.dumps({**data, "machine": machine()}, indent=2))


def run_one(task: str, width: int, mode: str, seed: int, steps: int) -> dict:
    evaluation = assess(preset("transformer++", SLOTS), protocol(task, mode, steps), width=width, seed=seed)
    metrics = evaluation.metrics
    return {
        "task": task, "width": width, "mode": mode, "seed": seed, "steps": metrics["steps"],
        "score": evaluation.scores[task], "status": evaluation.status, "seconds": evaluation.seconds,
        "cpu_seconds": metrics["cpu_seconds"],
        "trainable_params": metrics["trainable_params"], "params": metrics["total_params"],
        "task_metrics": metrics["task_metrics"],
    }  # fmt: skip


def time_widths(data: dict, steps: int) -> None:
    """CPU seconds of one full-training run per (task, width) at ``steps`` and ``2 * steps`` (same evaluations):
    the fixed part (data, evaluations) and seconds per step, to choose ``STEPS``. CPU time, not wall time: the
    machine is shared, and the budget is single-core time."""
    for task in TASKS:
        for width in WIDTHS:
            name = f"{task}/{width}"
            if name in data["timings"]:
                continue
            short, long = (run_one(task, width, "full", 0, s)["cpu_seconds"] for s in (steps, 2 * steps))
            per_step = (long - short) / steps
            data["timings"][name] = {"fixed_s": short - steps * per_step, "per_step_s": per_step, "steps": steps}
            save(data)
            print(f"{name}: {per_step * 1000:.1f} ms/step, fixed {short - steps * per_step:.1f} s", flush=True)


def run_grid(data: dict) -> None:
    for seed in SEEDS:  # seed-major: every cell gets a first value before any gets its third
        for task in TASKS:
            for width in WIDTHS:
                for mode in MODES:
                    name = key(task, width, mode, seed)
                    if name in data["runs"]:
                        continue
                    start = time.perf_counter()
                    data["runs"][name] = run_one(task, width, mode, seed, STEPS[task])
                    save(data)
                    result = data["runs"][name]
                    print(f"{name}: {result['score']:.4f} ({time.perf_counter() - start:.0f} s)", flush=True)


def cell(runs: list[dict]) -> str:
    """Median accuracy in percent, with min-max and the number of seeds when more than one."""
    if not runs:
        return "not run"
    scores = [100 * r["score"] for r in runs]
    median = f"{statistics.median(scores):.1f}"
    if len(scores) == 1:
        return f"{median} (1 seed)"
    return f"{median} ({min(scores):.1f}-{max(scores):.1f}, {len(scores)} seeds)"


def report(data: dict) -> str:
    header = ["task", "width", "embedding-only", "fully trained", "trainable (emb-only / full)", "CPU s per run"]
    rows = []
    for task in TASKS:
        for width in WIDTHS:
            by_mode = {
                mode: [data["runs"][k] for s in SEEDS if (k := key(task, width, mode, s)) in data["runs"]]
                for mode in MODES
            }
            sizes = [str(runs[0]["trainable_params"]) if runs else "-" for runs in by_mode.values()]
            seconds = [r["cpu_seconds"] for runs in by_mode.values() for r in runs]
            mean = f"{statistics.mean(seconds):.0f}" if seconds else "-"
            rows.append([task, width, *(cell(runs) for runs in by_mode.values()), " / ".join(sizes), mean])
    print_table("Table 1 at CPU scale: test accuracy %, median (min-max) over seeds", header, rows)
    return markdown_table(header, rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stage", choices=["run", "time", "report"], default="run")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--time-steps", type=int, default=100, help="with --stage time: steps of the short run")
    args = parser.parse_args()
    data = stored()
    if args.stage == "report":
        print(report(data))
        return
    runtime.configure(args.threads)
    if args.stage == "time":
        time_widths(data, args.time_steps)
    else:
        run_grid(data)
    print(report(data))


if __name__ == "__main__":
    main()
