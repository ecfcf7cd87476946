"""The quick MAD table for the baseline presets (4 slots each): per task, mean, size, cache and seconds.

python bench/mad_baselines.py                     # quick protocol, 6 presets, about 6 minutes on 2 cores
python bench/mad_baselines.py --protocol paper    # the paper's protocol (GPU scale)
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import markdown_table, print_table, write_json
from starlab import runtime
from starlab.assess import assess
from starlab.genome import PRESETS, preset
from starlab.tasks.mad import MAD_TASKS

SHORT = {name: spec.shorthand for name, spec in MAD_TASKS.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--protocol", default="quick")
    parser.add_argument("--presets", nargs="+", default=list(PRESETS))
    parser.add_argument("--depth", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    runtime.configure()
    results, rows = [], []
    for name in args.presets:
        result = assess(preset(name, args.depth), args.protocol, seed=args.seed)
        results.append({"preset": name, **result.to_dict()})
        scores = result.scores
        rows.append([name, *[round(scores.get(t, float("nan")), 3) for t in MAD_TASKS], round(1 - result.quality, 3),
                     result.params, result.cache_bytes, round(result.seconds, 1)])  # fmt: skip
        print(f"{name}: MAD {1 - result.quality:.3f} in {result.seconds:.1f} s", flush=True)
    rows.sort(key=lambda row: -row[len(MAD_TASKS) + 1])
    header = ["preset", *SHORT.values(), "MAD", "params", "cache bytes", "seconds"]
    print_table(f"MAD {args.protocol} (macro accuracy), depth {args.depth}", header, rows)
    print(f"wrote {write_json(f'mad_{args.protocol}', {'args': vars(args), 'results': results})}\n")
    print(markdown_table(header, rows))


if __name__ == "__main__":
    main()
