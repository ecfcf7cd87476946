"""Evaluation throughput on CPU: bf16 autocast against fp32, and OpenMP threads beside a competing process.

    python bench/throughput.py                          # every part (about an hour on 2 cores)
    python bench/throughput.py --parts precision        # (a) quick-protocol quality and seconds, fp32 vs bf16
    python bench/throughput.py --parts spin             # (s) libgomp spin counts, alone and beside a busy process
    python bench/throughput.py --parts contention       # (b) demo evaluations/hour alone and beside a busy process
    python bench/throughput.py --parts cli              # (c) `starlab mad transformer++ --protocol quick`, idem

(a) assesses the genome presets at depth 4 and seeded random genomes on the ``quick`` protocol in fp32 and in
bf16 autocast (the protocols' ``precision`` setting), in this process with ``--threads`` torch threads, and
reports the rank agreement of the two qualities (Spearman, Kendall) and the speed ratio of whole evaluations.
(b) runs demo-protocol evaluations in fresh worker processes with 2 torch threads (alone, beside a busy
single-threaded process, beside a twin worker doing the same) and with the thread count ``runtime.configure``
chooses (``auto``: the cores other processes leave idle; alone and beside the busy process), each ``before``
(torch imported first, torch's default threads: libgomp's 300,000-iteration spin, as before the fix) and
``after`` (``import starlab`` first: ``runtime.spin_briefly``, then the row's threads). (c) does the same for
the whole command of the issue. (s) measures one 2-thread worker under libgomp spin counts from 0 to its
default, the measurement ``runtime.SPIN_COUNT`` was chosen by. Data generation and imports are not timed in
(a), (b) and (s); (c) times the whole command.

Every row is written to ``bench/results/throughput.json`` as soon as it is measured and skipped when present,
so an interrupted run resumes. The machine is shared: before each row the script waits (``--quiet-wait``) until
other processes use less than ``--quiet-below`` cores, and records the CPU that other processes used during the
row (``other cores``); ``--redo-noisy X`` measures again the rows where that exceeded X cores, and
``--require-quiet`` keeps only rows measured while others stayed below ``--quiet-below`` and exits with status 1
while any row is missing, so that ``until python bench/throughput.py --require-quiet; do sleep 60; done`` fills
the table in the quiet moments of a busy machine.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RESULTS = Path(__file__).parent / "results"
PATH = RESULTS / "throughput.json"
PARTS = ("precision", "spin", "contention", "cli")
#: (s) libgomp spin counts compared (``None``: its default, 300,000; 0: ``OMP_WAIT_POLICY=PASSIVE``)
SPIN_COUNTS = (None, 0, 1000, 10_000, 30_000)
PRESET_DEPTH = 4
CLI_COMMAND = ["mad", "transformer++", "--protocol", "quick", "--json"]


# ---------------------------------------------------------------------------------------------- bookkeeping


def load(path: Path) -> dict:
    data = json.loads(path.read_text()) if path.is_file() else {}
    return {**data, "path": str(path), "rows": data.get("rows", {})}


def save(data: dict) -> None:
    """Atomically: a session that ends mid-write leaves the previous file, never half of one."""
    from common import machine

    path = Path(data["path"])
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps({**{k: v for k, v in data.items() if k != "path"}, "machine": machine()}, indent=2))
    tmp.replace(path)


def own_cpu_s() -> float:
    """CPU-seconds of this process and of every child it has waited for."""
    total = 0.0
    for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN):
        usage = resource.getrusage(who)
        total += usage.ru_utime + usage.ru_stime
    return total


def wait_quiet(below: float, limit_s: float) -> dict:
    """Wait until other processes use less than ``below`` cores (2-second windows), at most ``limit_s``."""
    from starlab.runtime import machine_busy_s  # not at the top: a "before" worker must load torch first

    start = time.perf_counter()
    while True:
        busy, own = machine_busy_s(), own_cpu_s()
        time.sleep(2.0)
        load = (machine_busy_s() - busy - (own_cpu_s() - own)) / 2.0
        waited = time.perf_counter() - start
        if load < below or waited >= limit_s:
            return {"waited_s": round(waited, 1), "load_before": round(load, 2)}


class Measured:
    """Wall time, own CPU and the CPU other processes used, over a ``with`` block."""

    def __init__(self) -> None:
        from starlab.runtime import machine_busy_s  # not at the top: a "before" worker must load torch first

        self.machine_busy_s = machine_busy_s

    def __enter__(self) -> Measured:
        self.t0, self.busy0, self.own0 = time.perf_counter(), self.machine_busy_s(), own_cpu_s()
        return self

    def __exit__(self, *exc) -> None:
        self.wall = time.perf_counter() - self.t0
        self.own = own_cpu_s() - self.own0
        self.other_cores = max(0.0, (self.machine_busy_s() - self.busy0 - self.own) / self.wall)


def measure_rows(data: dict, part: str, todo: list[tuple[str, object]], args, measure) -> int:
    """Measure every (key, spec) not stored yet (or stored noisy, with ``--redo-noisy``); store each at once.
    Returns how many are still missing (``--require-quiet`` refused them)."""
    rows = data["rows"].setdefault(part, [])
    if args.redo_noisy is not None:
        rows[:] = [r for r in rows if (r.get("other_cores") or 0.0) <= args.redo_noisy]
    done, missing = {r["key"] for r in rows}, 0
    for key, spec in todo:
        if key in done:
            continue
        below = args.quiet_below
        if below is None:
            free = (os.cpu_count() or 1) - args.threads if part == "precision" else 0
            below = max(0.25, free - 0.25)
        quiet = wait_quiet(below, args.quiet_wait)
        if args.require_quiet and quiet["load_before"] >= below:
            print(f"{key}: not measured, other processes used {quiet['load_before']} cores", flush=True)
            missing += 1
            continue
        row = {"key": key, **measure(spec), **quiet}
        if args.require_quiet and row["other_cores"] >= below:
            print(f"{key}: not stored, other processes used {row['other_cores']} cores meanwhile", flush=True)
            missing += 1
            continue
        rows.append(row)
        save(data)
        print(json.dumps(row), flush=True)
    return missing


def child_env() -> dict:
    """This environment without the OpenMP settings the fix is about, so that each child decides."""
    from starlab.runtime import WAIT_SETTINGS

    return {k: v for k, v in os.environ.items() if k not in WAIT_SETTINGS}


def busy_process() -> subprocess.Popen:
    """A competing process: one core's worth of pure-Python spinning."""
    return subprocess.Popen([sys.executable, "-c", "while True: pass"], env=child_env())


def reap(process: subprocess.Popen) -> float:
    """Wait for ``process``; its CPU-seconds (``os.wait4``: ``Popen.wait`` drops them)."""
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    return usage.ru_utime + usage.ru_stime


def stop(process: subprocess.Popen) -> float:
    process.terminate()
    return reap(process)


# ---------------------------------------------------------------------------------- (a) fp32 against bf16


def precision_genomes(random_count: int, seed: int) -> list:
    import numpy as np

    from starlab.genome import PRESETS, preset, random_genome

    genomes = {g.hash(): g for g in (preset(name, PRESET_DEPTH) for name in PRESETS)}
    rng = np.random.default_rng(seed)
    while len(genomes) < len(PRESETS) + random_count:
        genome = random_genome(PRESET_DEPTH, rng).canonical()
        genomes.setdefault(genome.hash(), genome)
    return [g.canonical() for g in genomes.values()]


def part_precision(data: dict, args) -> int:
    from starlab import runtime
    from starlab.assess import assess, get_protocol
    from starlab.assess.mad import setting_task

    runtime.configure(args.threads)
    protocol = get_protocol(args.protocol)
    for setting in protocol.settings:
        setting_task(setting, protocol.data_seed)  # generated once, before anything is timed
    genomes = precision_genomes(args.random, args.seed)
    todo = []
    for i, genome in enumerate(genomes):
        order = ("fp32", "bf16") if i % 2 == 0 else ("bf16", "fp32")  # alternate, so drift is shared
        todo += [(f"{args.protocol}/{args.threads}t/{genome.text()}/{p}", (genome, p)) for p in order]

    def measure(spec) -> dict:
        genome, precision = spec
        with Measured() as m:
            evaluation = assess(genome, protocol.with_settings(precision=precision))
        return {"genome": genome.text(), "precision": precision, "protocol": args.protocol,
                "threads": args.threads, "quality": evaluation.quality, "status": evaluation.status.value,
                "seconds": evaluation.seconds, "cpu_s": round(m.own, 2),
                "other_cores": round(m.other_cores, 2)}  # fmt: skip

    return measure_rows(data, "precision", todo, args, measure)


def precision_tables(data: dict, args) -> None:
    from scipy.stats import kendalltau, spearmanr

    from common import markdown_table, print_table
    from starlab.genome import PRESETS, Genome, preset
    from starlab.liv.pool import get_class

    names = {preset(name, PRESET_DEPTH).canonical().text(): name for name in PRESETS}
    rows = [r for r in data["rows"].get("precision", []) if r["protocol"] == args.protocol]
    by: dict[tuple[str, int], dict[str, dict]] = {}
    for r in rows:
        by.setdefault((r["genome"], r["threads"]), {})[r["precision"]] = r
    for threads in sorted({t for _, t in by}):
        pairs = [(g, p) for (g, t), p in by.items() if t == threads and {"fp32", "bf16"} <= set(p)]
        if not pairs:
            continue
        table = []
        for genome, p in pairs:
            classes = " ".join(get_class(slot.cls).name for slot in Genome.parse(genome).slots)
            table.append([genome, names.get(genome, classes), round(p["fp32"]["quality"], 3),
                          round(p["bf16"]["quality"], 3), round(p["fp32"]["seconds"], 1),
                          round(p["bf16"]["seconds"], 1), round(p["fp32"]["seconds"] / p["bf16"]["seconds"], 2),
                          round(max(p["fp32"]["other_cores"], p["bf16"]["other_cores"]), 2)])  # fmt: skip
        fp32 = [p["fp32"]["quality"] for _, p in pairs]
        bf16 = [p["bf16"]["quality"] for _, p in pairs]
        seconds = [sum(p[k]["seconds"] for _, p in pairs) for k in ("fp32", "bf16")]
        header = ["genome", "classes", "fp32 quality", "bf16 quality", "fp32 s", "bf16 s", "fp32 s / bf16 s",
                  "other cores"]  # fmt: skip
        print_table(f"{args.protocol} protocol, {threads} thread(s): fp32 vs bf16 autocast", header, table)
        print(markdown_table(header, table))
        summary = {
            "genomes": len(pairs),
            "spearman": round(float(spearmanr(fp32, bf16).statistic), 3),
            "kendall": round(float(kendalltau(fp32, bf16).statistic), 3),
            "mean |quality difference|": round(sum(abs(a - b) for a, b in zip(fp32, bf16, strict=True)) / len(fp32), 4),
            "same best genome": fp32.index(min(fp32)) == bf16.index(min(bf16)),
            "total seconds fp32 / bf16": round(seconds[0] / seconds[1], 3),
        }
        print_table("agreement and speed", list(summary), [list(summary.values())])
        print(markdown_table(list(summary), [list(summary.values())]))
        data.setdefault("summary", {})[f"precision/{args.protocol}/{threads}t"] = summary


# ---------------------------------------------------------------- (b) demo evaluations beside a busy process


def worker(argv: list[str]) -> None:
    """A fresh worker process (``--worker SETTINGS THREADS BUDGET_S PROTOCOL GENOME...``): imports, generates
    the data, says ``ready``, waits for a line on stdin, assesses the genomes in turn (starting none after
    ``BUDGET_S`` seconds) and prints one JSON line."""
    settings, threads, budget_s, protocol_name, *genomes = argv
    if settings == "before":
        import torch  # libgomp starts before starlab can choose its spin count, as before the fix

        threads = str(torch.get_num_threads())  # and torch's default thread count
    from starlab import runtime
    from starlab.assess import assess, get_protocol
    from starlab.assess.mad import setting_task
    from starlab.genome import Genome

    runtime.configure(None if threads == "auto" else int(threads))
    protocol = get_protocol(protocol_name)
    for setting in protocol.settings:
        setting_task(setting, protocol.data_seed)
    print("ready", flush=True)
    sys.stdin.readline()
    usage = resource.getrusage(resource.RUSAGE_SELF)
    cpu0, t0 = usage.ru_utime + usage.ru_stime, time.perf_counter()
    qualities = []
    for genome in genomes:
        if time.perf_counter() - t0 > float(budget_s):
            break
        qualities.append(assess(Genome.parse(genome), protocol).quality)
    usage = resource.getrusage(resource.RUSAGE_SELF)
    print(json.dumps({"wall": time.perf_counter() - t0, "cpu": usage.ru_utime + usage.ru_stime - cpu0,
                      "qualities": qualities, "brief_spins": runtime.BRIEF_SPINS,
                      "threads": runtime.configure()}), flush=True)  # fmt: skip


def run_workers(
    count: int, settings: str, threads: int | str, genomes: list[str], busy: bool, budget_s: float, **env: str
) -> list:
    script = [sys.executable, __file__, "--worker", settings, str(threads), str(budget_s), "demo", *genomes]
    competitor = busy_process() if busy else None  # there first: a worker's automatic thread count sees it
    if competitor:
        time.sleep(0.5)
    workers = [
        subprocess.Popen(script, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env={**child_env(), **env})
        for _ in range(count)
    ]
    for w in workers:
        assert w.stdout.readline().strip() == "ready"
    try:
        for w in workers:
            w.stdin.write("go\n")
            w.stdin.flush()
        results = [json.loads(w.stdout.readline()) for w in workers]
        for w in workers:
            w.wait()
    finally:
        if competitor:
            stop(competitor)
    return results


def contention_genomes(count: int, seed: int) -> list[str]:
    from starlab.genome import preset, random_genome

    fixed = [preset("transformer++", PRESET_DEPTH), preset("striped-mamba", PRESET_DEPTH)]
    randoms = [random_genome(PRESET_DEPTH, seed + i) for i in range(max(0, count - len(fixed)))]
    return [g.canonical().text() for g in [*fixed, *randoms][:count]]


COMPETITORS = ("alone", "busy process", "twin worker")
SETTINGS = ("before", "after")
#: (c) also runs the fixed command with one torch thread (``OMP_NUM_THREADS=1``): no OpenMP team to wait at all
CLI_SETTINGS = ("before", "after", "after, 1 thread")


def in_turn(measure_one, spec, rounds: int, settings_list: tuple[str, ...] = SETTINGS) -> dict:
    """``measure_one(spec, settings)`` for each of ``settings_list`` in turn, ``rounds`` times in the order
    before-after, after-before, ... (drift in the machine's speed is shared), as one row: per setting the mean
    of every number over its runs (the runs kept too), and the most CPU other processes used in any run."""
    runs: dict[str, list[dict]] = {settings: [] for settings in settings_list}
    for i in range(rounds):
        for settings in settings_list if i % 2 == 0 else settings_list[::-1]:
            runs[settings].append(measure_one(spec, settings))
    row: dict = {"other_cores": max(r.pop("other_cores") for rs in runs.values() for r in rs)}
    for settings, results in runs.items():
        numbers = [k for k, v in results[0].items() if isinstance(v, (int, float)) and not isinstance(v, bool)]
        row[settings] = {**results[0], **{k: sum(r[k] for r in results) / len(results) for k in numbers}}
        row[settings]["runs"] = results
    return row


def part_contention(data: dict, args) -> int:
    genomes = contention_genomes(args.demo_genomes, args.seed)
    todo = [(f"demo/2t/{competitor}", (2, competitor)) for competitor in COMPETITORS]
    todo += [(f"demo/auto/{competitor}", ("auto", competitor)) for competitor in COMPETITORS[:2]]

    def measure_one(spec, settings: str) -> dict:
        threads, competitor = spec
        count = 2 if competitor == "twin worker" else 1
        with Measured() as m:
            results = run_workers(count, settings, threads, genomes, competitor == "busy process", args.budget)
        evaluations = sum(len(r["qualities"]) for r in results)
        return {"evaluations": evaluations,
                "evaluations_per_hour": sum(len(r["qualities"]) * 3600 / r["wall"] for r in results),
                "wall_s_per_evaluation": sum(r["wall"] for r in results) / evaluations,
                "cpu_s_per_evaluation": sum(r["cpu"] for r in results) / evaluations,
                "brief_spins": results[0]["brief_spins"], "threads": results[0]["threads"],
                "qualities": results[0]["qualities"],
                "other_cores": round(m.other_cores, 2)}  # fmt: skip

    def measure(spec) -> dict:
        threads, competitor = spec
        return {"threads": threads, "competitor": competitor, **in_turn(measure_one, spec, args.rounds)}

    return measure_rows(data, "contention", todo, args, measure)


def contention_tables(data: dict) -> None:
    from common import markdown_table, print_table

    table = []
    for r in data["rows"].get("contention", []):
        before, after = r["before"], r["after"]
        table.append([r["threads"], r["competitor"], round(before["evaluations_per_hour"]),
                      round(after["evaluations_per_hour"]),
                      round(after["evaluations_per_hour"] / before["evaluations_per_hour"], 2),
                      round(before["cpu_s_per_evaluation"], 1), round(after["cpu_s_per_evaluation"], 1),
                      round(before["wall_s_per_evaluation"], 1), round(after["wall_s_per_evaluation"], 1),
                      before["qualities"] == after["qualities"], before["threads"], after["threads"],
                      r["other_cores"]])  # fmt: skip
    header = ["threads", "beside", "evals / hour before", "after", "after / before", "CPU s / eval before",
              "after", "wall s / eval before", "after", "same qualities", "threads used before", "after",
              "other cores"]  # fmt: skip
    print_table("demo-protocol evaluations per worker process (twin: both workers together)", header, table)
    print(markdown_table(header, table))


# ------------------------------------------------------------------------- (s) libgomp's spin count


def part_spin(data: dict, args) -> int:
    """Demo evaluations of one 2-thread worker (torch imported first, the spin count from the environment)."""
    genomes = contention_genomes(args.demo_genomes, args.seed)
    todo = [(f"spin/{count}/{'busy process' if busy else 'alone'}", (count, busy))
            for busy in (False, True) for count in SPIN_COUNTS]  # fmt: skip

    def measure(spec) -> dict:
        count, busy = spec
        env = {} if count is None else {"GOMP_SPINCOUNT": str(count)}
        with Measured() as m:
            (result,) = run_workers(1, "before", 2, genomes, busy, args.budget, **env)
        return {"spin_count": count, "busy": busy, "wall_s": round(result["wall"], 1),
                "cpu_s": round(result["cpu"], 1), "evaluations": len(result["qualities"]),
                "other_cores": round(m.other_cores, 2)}  # fmt: skip

    return measure_rows(data, "spin", todo, args, measure)


def spin_tables(data: dict) -> None:
    from common import markdown_table, print_table

    rows = data["rows"].get("spin", [])
    alone = {r["spin_count"]: r["wall_s"] for r in rows if not r["busy"]}
    best = min(alone.values(), default=float("nan"))
    table = [[r["spin_count"] if r["spin_count"] is not None else "300000 (default)",
              "busy process" if r["busy"] else "alone", r["evaluations"], r["wall_s"], r["cpu_s"],
              round(r["wall_s"] / best, 2), r["other_cores"]] for r in rows]  # fmt: skip
    header = ["GOMP_SPINCOUNT", "beside", "evaluations", "wall s", "CPU s", "wall / best alone", "other cores"]
    print_table("demo evaluations, one worker with 2 torch threads, by libgomp spin count", header, table)
    print(markdown_table(header, table))


# ------------------------------------------------------------------------ (c) the command of the issue


def part_cli(data: dict, args) -> int:
    todo = [(f"cli/{'busy process' if busy else 'alone'}", busy) for busy in (False, True)]
    script = Path(sys.executable).parent / "starlab"

    def measure_one(busy: bool, settings: str) -> dict:
        if settings == "before":
            command = [
                sys.executable,
                "-c",
                "import sys, torch; from starlab import runtime, cli; "
                "runtime.configure(torch.get_num_threads()); sys.exit(cli.main())",
            ]  # torch's threads, long spin
        else:
            command = [str(script)] if script.is_file() else [sys.executable, "-m", "starlab.cli"]
        env = {**child_env(), **({"OMP_NUM_THREADS": "1"} if settings == "after, 1 thread" else {})}
        competitor = busy_process() if busy else None
        try:
            with Measured() as m, tempfile.TemporaryFile("w+") as out:
                process = subprocess.Popen([*command, *CLI_COMMAND], stdout=out, stderr=subprocess.DEVNULL,
                                           env=env)  # fmt: skip
                cpu = reap(process)
                competitor_cpu = stop(competitor) if competitor else 0.0  # its CPU counts as this row's own
                competitor = None
                out.seek(0)
                output = out.read()
        finally:
            if competitor:
                stop(competitor)
        ok = process.returncode == 0
        return {"returncode": process.returncode, "wall_s": round(m.wall, 1), "cpu_s": round(cpu, 1),
                "competitor_cpu_s": round(competitor_cpu, 1),
                "quality": json.loads(output)["mad_score"] if ok else None,
                "other_cores": round(m.other_cores, 2)}  # fmt: skip

    def measure(busy: bool) -> dict:
        return {"busy": busy, **in_turn(measure_one, busy, args.rounds, CLI_SETTINGS)}

    return measure_rows(data, "cli", todo, args, measure)


def cli_tables(data: dict) -> None:
    from common import markdown_table, print_table

    table = []
    for r in data["rows"].get("cli", []):
        for settings in CLI_SETTINGS:
            run = r[settings]
            table.append([("busy process" if r["busy"] else "alone"), settings, round(run["wall_s"], 1),
                          round(run["cpu_s"], 1), round(r["before"]["wall_s"] / run["wall_s"], 2), run["quality"],
                          r["other_cores"]])  # fmt: skip
    header = ["beside", "settings", "wall s", "CPU s (the command)", "speed vs before", "quality", "other cores"]
    print_table(f"starlab {' '.join(CLI_COMMAND)} (the whole command, {CLI_SETTINGS[0]} first)", header, table)
    print(markdown_table(header, table))


# ---------------------------------------------------------------------------------------------------- main


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        worker(sys.argv[2:])
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parts", nargs="+", choices=PARTS, default=list(PARTS))
    parser.add_argument("--protocol", default="quick", help="(a) the protocol compared in fp32 and bf16")
    parser.add_argument("--threads", type=int, default=1, help="(a) torch threads of this process")
    parser.add_argument("--random", type=int, default=10, help="(a) random genomes besides the presets")
    parser.add_argument("--demo-genomes", type=int, default=3, help="(b) evaluations per worker")
    parser.add_argument("--budget", type=float, default=240.0, help="(b) seconds after which a worker starts none")
    parser.add_argument("--rounds", type=int, default=2, help="(b, c) runs of each setting per row, in turn")
    parser.add_argument("--seed", type=int, default=0, help="seeds the random genomes")
    parser.add_argument("--quiet-below", type=float, help="cores others may use before a row (default: 0.25; for "
                        "(a), the cores its threads leave free, less 0.25)")  # fmt: skip
    parser.add_argument("--quiet-wait", type=float, default=300.0, help="seconds to wait for that, at most")
    parser.add_argument("--redo-noisy", type=float, help="measure again rows where others used more cores")
    parser.add_argument("--require-quiet", action="store_true",
                        help="store no row where others used --quiet-below cores or more, before or during it "
                        "(a later run measures it)")  # fmt: skip
    parser.add_argument("--out", type=Path, default=PATH, help="the results file (read first: rows in it are kept)")
    args = parser.parse_args()
    sys.path.insert(0, str(Path(__file__).parent))
    import starlab  # noqa: F401  (before torch: this process's OpenMP waits as the fixed entry points' do)

    data, missing = load(args.out), 0
    if "precision" in args.parts:
        missing += part_precision(data, args)
        precision_tables(data, args)
    if "spin" in args.parts:
        missing += part_spin(data, args)
        spin_tables(data)
    if "contention" in args.parts:
        missing += part_contention(data, args)
        contention_tables(data)
    if "cli" in args.parts:
        missing += part_cli(data, args)
        cli_tables(data)
    save(data)
    print(f"wrote {args.out}" + (f"; {missing} rows still missing" if missing else ""))
    sys.exit(1 if missing else 0)


if __name__ == "__main__":
    main()
