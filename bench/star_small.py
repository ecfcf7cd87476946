"""STAR at small scale: the paper's three searches on language modelling, their fronts retrained against the
baselines, and the cheap proxies measured against the language-modelling target.

    python bench/star_small.py                    # every stage in order, skipping what is stored
    python bench/star_small.py --stage proxies    # one stage (target, proxies, search, retrain, report)
    python bench/star_small.py --stage report     # tables and figures again, from the JSON alone

Stages:
  target   the baselines on the target (``lm-small``) with seeds 0, 1, 2: the target's seed noise.
  proxies  the proxy table: presets, seeded random genomes and the front of a short demo search, each on every
           proxy (demo, quick, lm-quick, lm-small@150) and on the target (seed 0).
  search   the paper's three searches (quality; quality + params; quality + cache) on the proxy that ranks
           genomes most like the target (``--proxy`` to choose), seeded with transformer++, striped-mamba and
           striped-hyena, each with the same budget.
  retrain  each search's picks (up to ``--picks``, by the rule in ``pick``) and the baselines on the target,
           seeds 0, 1, 2.
  report   seed noise, correlations with bootstrap intervals, per-baseline answers, figures.

Resumable: every evaluation is stored in ``bench/results/star_small.json`` the moment it finishes, and
nothing stored is run again. A search keeps its run store under ``bench/results/star_small-runs`` (not
committed); a fresh checkout replays a search from the JSON's evaluations (the search is deterministic given
its evaluations) and runs only what is missing. ``docs/results.md`` ("STAR at small scale") documents the
JSON's schema and the decisions.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import statistics
import sys
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import Future, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from rich.progress import Progress

sys.path.insert(0, str(Path(__file__).parent))
from common import RESULTS, machine, markdown_table, print_table, run_to_end
from starlab import runtime
from starlab.assess import get_protocol
from starlab.evolve import EvalJob, SearchConfig, make_executor
from starlab.genome import PRESETS, Genome, preset, random_genome
from starlab.report.summary import class_counts
from starlab.store import load_run
from starlab.study import protocol_identity
from starlab.study.analysis import bootstrap_interval, kendall, spearman, welch

SCHEMA = 1
PATH = RESULTS / "star_small.json"
DEPTH = 8
TARGET = "lm-small"
TARGET_SEEDS = (0, 1, 2)
#: proxy key -> (protocol, settings); ``lm-small@150`` is the target cut to its first 150 steps (a rung added here)
PROXIES: dict[str, tuple[str, dict[str, Any]]] = {
    "demo": ("demo", {}),
    "quick": ("quick", {}),
    "lm-quick": ("lm-quick", {}),
    "lm-small@150": (TARGET, {"steps": 150, "warmup_steps": 15}),
}
BASELINES = ("transformer++", "striped-mamba", "striped-hyena", "mamba", "hyena")
SEARCH_SEEDS = ("transformer++", "striped-mamba", "striped-hyena")
SEARCHES = {"quality": ("quality",), "quality+params": ("quality", "params"), "quality+cache": ("quality", "cache")}
RANDOM_GENOMES, EVOLVED_GENOMES = 12, 6
#: the short demo search whose front supplies the proxy table's evolved genomes
TABLE_SEARCH = {"protocol": "demo", "population": 8, "budget": 32}
STAGES = ("target", "proxies", "search", "retrain", "report")
SIGNIFICANCE = 0.05  # one-sided Welch t-test over the seeds
BOOTSTRAP = 2000


def settings(args: argparse.Namespace) -> dict[str, Any]:
    """What defines the study: results stored under other settings are not reused."""
    return {
        "depth": DEPTH, "target": target_identity(), "target_seeds": list(TARGET_SEEDS),
        "proxies": {key: {"protocol": p, "settings": s} for key, (p, s) in PROXIES.items()},
        "baselines": list(BASELINES), "search_seeds": list(SEARCH_SEEDS), "searches": SEARCHES,
        "budget": args.budget, "population": args.population, "picks": args.picks, "table_search": TABLE_SEARCH,
    }  # fmt: skip


def target_identity() -> dict[str, Any]:
    """The target as the study asks for it: its name and the settings it sets (``starlab.study.identity``), so a
    setting later added to the protocol with a default does not orphan the stored results, and a change to
    ``lm-small``'s own settings does."""
    return protocol_identity(get_protocol(TARGET))


# ---- the store --------------------------------------------------------------------------------------------
def key_of(protocol: str, job_settings: dict[str, Any]) -> str:
    """The study's name for a protocol variant (``lm-small`` is the target)."""
    if protocol == TARGET and not job_settings:
        return TARGET
    for key, (name, variant) in PROXIES.items():
        if (name, variant) == (protocol, job_settings):
            return key
    raise ValueError(f"protocol {protocol} with settings {job_settings} is not part of this study")


def job_for(genome: Genome, key: str, seed: int) -> EvalJob:
    protocol, job_settings = (TARGET, {}) if key == TARGET else PROXIES[key]
    return EvalJob(genome.canonical().text(), protocol, seed, None, settings=dict(job_settings))


class Study:
    """The results file: every evaluation keyed by (genome hash, protocol key, seed), written atomically after
    each new one (a crash loses at most the evaluations running at that moment)."""

    def __init__(self, path: Path, current: dict[str, Any]) -> None:
        self.path, self.lock = path, threading.Lock()
        current = json.loads(json.dumps(current))  # as it reads back (tuples become lists)
        self.data = json.loads(path.read_text()) if path.is_file() else {"schema": SCHEMA, "settings": current}
        if self.data.get("schema") != SCHEMA or self.data.get("settings") != current:
            raise SystemExit(f"{path} holds a study with other settings; move it away to start a new one")
        self.data.setdefault("evaluations", [])
        self.index = {(e["hash"], e["key"], e["seed"]): e for e in self.data["evaluations"]}

    def get(self, genome: Genome, key: str, seed: int = 0) -> dict[str, Any] | None:
        return self.index.get((genome.hash(), key, seed))

    def add(self, key: str, evaluation: dict[str, Any]) -> None:
        with self.lock:
            record = {"key": key, **evaluation}
            self.index[(record["hash"], key, record["seed"])] = record
            self.data["evaluations"].append(record)
            self.save()

    def beside(self, suffix: str) -> Path:
        """A path next to the results file: ``star_small-runs``, ``star_small-fronts.png``..."""
        return self.path.with_name(f"{self.path.stem}-{suffix}")

    def save(self) -> None:
        self.data["machine"] = machine()
        temporary = self.path.with_suffix(f".{os.getpid()}.tmp")
        temporary.write_text(json.dumps(self.data, indent=1))
        temporary.replace(self.path)


class StudyExecutor:
    """Serves what the study stored; runs the rest on ``inner`` and stores each result as it arrives. Failed
    evaluations are not stored, so a later invocation tries them again."""

    def __init__(self, study: Study, inner) -> None:
        self.study, self.inner = study, inner

    def stored(self, job: EvalJob, key: str | None = None) -> dict[str, Any] | None:
        key = key or key_of(job.protocol, job.settings)
        return self.study.get(Genome.parse(job.genome), key, job.seed)

    def submit(self, job: EvalJob) -> Future:
        key = key_of(job.protocol, job.settings)
        known = self.stored(job, key)
        if known is not None:
            future: Future = Future()
            future.set_result({k: v for k, v in known.items() if k != "key"})
            return future
        future = self.inner.submit(job)
        future.add_done_callback(lambda done: self._store(key, done))
        return future

    def _store(self, key: str, future: Future) -> None:
        if not future.cancelled() and future.exception() is None and future.result()["status"] != "failed":
            self.study.add(key, future.result())

    def close(self) -> None:
        self.inner.close()


def run_all(executor: StudyExecutor, jobs: list[EvalJob], title: str) -> None:
    """Run ``jobs`` (stored ones are served at once) with a progress bar; stop at the first failure."""
    stored = sum(executor.stored(job) is not None for job in jobs)
    futures = [executor.submit(job) for job in jobs]
    pending = [f for f in futures if not f.done()]
    with Progress() as progress:
        bar = progress.add_task(f"{title}: {len(jobs) - stored} to run, {stored} stored", total=len(jobs))
        progress.update(bar, completed=len(jobs) - len(pending))
        while pending:
            done, _ = wait(pending, return_when="FIRST_COMPLETED")
            for future in done:
                if future.exception() is not None:
                    raise RuntimeError(f"{title}: an evaluation failed: {future.exception()}")
            pending = [f for f in pending if f not in done]
            progress.update(bar, completed=len(jobs) - len(pending))


# ---- the genomes ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Named:
    name: str
    origin: str  # preset, random, evolved
    genome: Genome

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "origin": self.origin, "genome": self.genome.canonical().text(),
                "hash": self.genome.hash()}  # fmt: skip


def presets() -> list[Named]:
    return [Named(name, "preset", preset(name, DEPTH)) for name in PRESETS]


def random_genomes() -> list[Named]:
    """Seeded random genomes (seeds 1000, 1001, ...), skipping any already drawn or equal to a preset."""
    seen = {p.genome.hash() for p in presets()}
    found, seed = [], 1000
    while len(found) < RANDOM_GENOMES:
        genome = random_genome(DEPTH, seed)
        if genome.hash() not in seen:
            seen.add(genome.hash())
            found.append(Named(f"random-{seed}", "random", genome))
        seed += 1
    return found


def run_search(name: str, config: SearchConfig, executor: StudyExecutor) -> Path:
    """Run (or resume, or replay from the stored evaluations) one search; its directory."""
    directory = executor.study.beside("runs") / name
    run_to_end(directory, executor, config)
    return directory


def evolved_genomes(executor: StudyExecutor) -> list[Named]:
    """The front of a short demo search (the search ``make run`` does, at the study depth), spread by ``pick``."""
    config = SearchConfig(depth=DEPTH, seeds=SEARCH_SEEDS, generations=None, seed=0, **TABLE_SEARCH)
    run = load_run(run_search("table-demo", config, executor))
    front = [member["genome"] for member in run.front]
    rest = sorted(run.successful, key=lambda e: e.quality)
    chosen = pick(front, EVOLVED_GENOMES, by=lambda g: run.evaluation_of(Genome.parse(g).hash()).params)
    for e in rest:  # a front smaller than wanted: the next best by demo quality
        if len(chosen) < EVOLVED_GENOMES and e.genome not in chosen and not is_preset(e.genome):
            chosen.append(e.genome)
    return [Named(f"evolved-{i + 1}", "evolved", Genome.parse(g)) for i, g in enumerate(chosen)]


def is_preset(genome: str) -> bool:
    return Genome.parse(genome).hash() in preset_hashes(DEPTH)


@functools.cache
def preset_hashes(depth: int) -> frozenset[str]:
    """Built once per depth: ``is_preset`` is asked for every member of every front."""
    return frozenset(preset(name, depth).hash() for name in PRESETS)


def pick(front: list[str], n: int, by: Callable[[str], float]) -> list[str]:
    """Up to ``n`` evolved (non-preset) members of a front, best quality first as given: all of them when
    there are at most ``n``, else ``n`` spread evenly over the front sorted by ``by`` (a size), both ends
    included, so that the picks cover the trade-off rather than its best-quality corner only."""
    members = [g for g in front if not is_preset(g)]
    if len(members) <= n:
        return members
    by_size = sorted(members, key=by)
    chosen = {by_size[round(i * (len(by_size) - 1) / (n - 1))] for i in range(n)} if n > 1 else {members[0]}
    return [g for g in members if g in chosen]


def table_genomes(study: Study, executor: StudyExecutor) -> list[Named]:
    stored = study.data.get("table")
    if stored:
        return [Named(t["name"], t["origin"], Genome.parse(t["genome"])) for t in stored]
    table = presets() + random_genomes() + evolved_genomes(executor)
    study.data["table"] = [t.to_json() for t in table]
    study.save()
    return table


# ---- the stages -------------------------------------------------------------------------------------------
def stage_target(study: Study, executor: StudyExecutor, args: argparse.Namespace) -> None:
    jobs = [job_for(preset(name, DEPTH), TARGET, seed) for seed in TARGET_SEEDS for name in BASELINES]
    run_all(executor, jobs, "target: baselines x 3 seeds")


def stage_proxies(study: Study, executor: StudyExecutor, args: argparse.Namespace) -> None:
    table = table_genomes(study, executor)
    jobs = [job_for(t.genome, key, 0) for t in table for key in (*PROXIES, TARGET)]
    run_all(executor, jobs, f"proxies: {len(table)} genomes x {len(PROXIES)} proxies + target")


def search_config(objectives: tuple[str, ...], proxy: str, args: argparse.Namespace) -> SearchConfig:
    protocol, proxy_settings = PROXIES[proxy]
    return SearchConfig(protocol=protocol, protocol_settings=dict(proxy_settings), depth=DEPTH,
                        objectives=objectives, population=args.population, generations=None, budget=args.budget,
                        seed=0, seeds=SEARCH_SEEDS)  # fmt: skip


def chosen_proxy(study: Study, args: argparse.Namespace) -> str:
    """``--proxy``, else the proxy stored with the searches, else the one with the highest Spearman correlation."""
    stored = study.data.get("proxy")
    if args.proxy and stored and args.proxy != stored:
        raise SystemExit(f"the searches were run on {stored}; move {study.path} away to search on {args.proxy}")
    if args.proxy or stored:
        return args.proxy or stored
    correlations = proxy_correlations(study)
    if len(correlations) < len(PROXIES):
        raise SystemExit("the proxies stage is not finished: run --stage proxies first, or give --proxy")
    return max(correlations, key=lambda key: correlations[key]["spearman"])


def stage_search(study: Study, executor: StudyExecutor, args: argparse.Namespace) -> None:
    proxy = chosen_proxy(study, args)
    study.data["proxy"] = proxy
    searches = study.data.setdefault("searches", {})
    for name, objectives in SEARCHES.items():
        print(f"search {name} on {proxy}: {args.budget} evaluations")
        run = load_run(run_search(name, search_config(objectives, proxy, args), executor))
        searches[name] = search_record(run, objectives, proxy, args.picks)
        study.save()


def search_record(run, objectives: tuple[str, ...], proxy: str, picks: int) -> dict[str, Any]:
    """A finished search's front and picks: the best evolved genomes of a quality-only search (its front is one
    genome), a spread over the front's size for the others (``pick``)."""
    by_genome = {e.genome: e for e in run.successful}
    front = [member["genome"] for member in run.front]
    if len(objectives) == 1:
        chosen = [g for g in ranked(run) if not is_preset(g)][:picks]
    else:
        size = "cache_bytes" if "cache" in objectives else "params"
        chosen = pick(front, picks, by=lambda g: getattr(by_genome[g], size))
    return {"objectives": list(objectives), "evaluations": len(run.evaluations), "proxy": proxy,
            "front": [brief(by_genome[g]) for g in front], "picks": [brief(by_genome[g]) for g in chosen]}  # fmt: skip


def ranked(run) -> list[str]:
    """A search's genomes, best quality first (the paper's third-party reimplementation retrains the top 8)."""
    return [e.genome for e in sorted(run.successful, key=lambda e: (e.quality, e.params))]


def brief(evaluation) -> dict[str, Any]:
    return {"genome": evaluation.genome, "hash": evaluation.hash, "quality": evaluation.quality,
            "params": evaluation.params, "cache_bytes": evaluation.cache_bytes}  # fmt: skip


def retrained_genomes(study: Study) -> list[Named]:
    """The baselines and every search's picks (a genome picked by two searches is trained once)."""
    genomes = {preset(name, DEPTH).hash(): Named(name, "baseline", preset(name, DEPTH)) for name in BASELINES}
    for search, record in study.data.get("searches", {}).items():
        for i, member in enumerate(record["picks"]):
            genomes.setdefault(member["hash"], Named(f"{search}-{i + 1}", search, Genome.parse(member["genome"])))
    return list(genomes.values())


def stage_retrain(study: Study, executor: StudyExecutor, args: argparse.Namespace) -> None:
    if not study.data.get("searches"):
        raise SystemExit("no searches stored: run --stage search first")
    genomes = retrained_genomes(study)
    jobs = [job_for(g.genome, TARGET, seed) for seed in TARGET_SEEDS for g in genomes]
    run_all(executor, jobs, f"retrain: {len(genomes)} genomes x {len(TARGET_SEEDS)} seeds on {TARGET}")


# ---- the analysis -----------------------------------------------------------------------------------------
def target_runs(study: Study, genome: Genome) -> list[float]:
    runs = [study.get(genome, TARGET, seed) for seed in TARGET_SEEDS]
    return [r["quality"] for r in runs if r is not None and r["status"] == "ok"]


def seed_noise(study: Study) -> dict[str, Any]:
    rows = {}
    for name in BASELINES:
        runs = target_runs(study, preset(name, DEPTH))
        if len(runs) == len(TARGET_SEEDS):
            rows[name] = {"perplexities": runs, "mean": statistics.mean(runs), "std": statistics.stdev(runs)}
    if not rows:
        return {}
    pooled = float(np.sqrt(np.mean([row["std"] ** 2 for row in rows.values()])))
    relative = float(np.mean([row["std"] / row["mean"] for row in rows.values()]))
    return {"genomes": rows, "pooled_std": pooled, "mean_relative_std": relative}


def proxy_pairs(study: Study, key: str) -> tuple[list[str], np.ndarray, np.ndarray]:
    names, proxy, target = [], [], []
    for t in study.data.get("table", []):
        genome = Genome.parse(t["genome"])
        measured, truth = study.get(genome, key), study.get(genome, TARGET)
        if measured and truth and measured["status"] == truth["status"] == "ok":
            names.append(t["name"])
            proxy.append(measured["quality"])
            target.append(truth["quality"])
    return names, np.array(proxy), np.array(target)


def proxy_correlations(study: Study) -> dict[str, dict[str, Any]]:
    """Spearman and Kendall correlation of each proxy's quality with the target's perplexity (seed 0), with
    bootstrap intervals; only proxies measured on every genome of the table."""
    table = study.data.get("table", [])
    result = {}
    for key in PROXIES:
        names, proxy, target = proxy_pairs(study, key)
        if not table or len(names) < len(table):
            continue
        rng = np.random.default_rng(0)
        result[key] = {
            "genomes": len(names),
            "spearman": float(spearman(proxy, target)),
            "spearman_90": bootstrap_interval(proxy, target, spearman, rng, BOOTSTRAP),
            "kendall": float(kendall(proxy, target)),
            "kendall_90": bootstrap_interval(proxy, target, kendall, rng, BOOTSTRAP),
            "seconds_per_genome": statistics.mean(study.get(Genome.parse(t["genome"]), key)["seconds"] for t in table),
        }
    return result


def retrained(study: Study) -> list[dict[str, Any]]:
    rows = []
    for named in retrained_genomes(study):
        runs = target_runs(study, named.genome)
        if len(runs) < len(TARGET_SEEDS):
            continue
        first = study.get(named.genome, TARGET, 0)
        rows.append({**named.to_json(), "perplexities": runs, "mean": statistics.mean(runs),
                     "std": statistics.stdev(runs), "params": first["params"], "cache_bytes": first["cache_bytes"],
                     "makeup": makeup(named.genome)})  # fmt: skip
    return rows


def makeup(genome: Genome) -> str:
    """Classes and sharing in words: ``SA-1 x2, GMemless x4 ...; featurizers shared in 2 groups``."""
    text = ", ".join(f"{name} x{count}" for name, count in class_counts(genome))  # the report's count
    shared_featurizers = sum(lead not in (None, i) for i, lead in enumerate(genome.featurizer_leaders()))
    shared_features = sum(source not in (None, i) for i, source in enumerate(genome.feature_sources()))
    return f"{text}; {shared_featurizers} slot(s) share a featurizer, {shared_features} reuse another's features"


def answers(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per baseline and size (params, cache): the evolved genome at or below the baseline's size with the lowest
    mean perplexity, and whether it is lower beyond the seed noise (one-sided Welch t-test, p < 0.05)."""
    baselines = {row["name"]: row for row in rows if row["origin"] == "baseline"}
    evolved = [row for row in rows if row["origin"] != "baseline"]
    result: dict[str, dict[str, Any]] = {}
    for name, base in baselines.items():
        result[name] = {}
        for size in ("params", "cache_bytes"):
            eligible = [row for row in evolved if row[size] <= base[size]]
            if not eligible:
                result[name][size] = {"answer": "no", "why": f"no retrained evolved genome at or below its {size}"}
                continue
            best = min(eligible, key=lambda row: row["mean"])
            test = welch(best["perplexities"], base["perplexities"], alternative="less")
            better = best["mean"] < base["mean"] and test.p_value < SIGNIFICANCE
            result[name][size] = {
                "answer": "yes" if better else "no", "genome": best["name"], "perplexity": best["mean"],
                "baseline_perplexity": base["mean"], "p_value": test.p_value, size: best[size],
                f"baseline_{size}": base[size],
            }  # fmt: skip
    return result


def stage_report(study: Study, executor: StudyExecutor | None, args: argparse.Namespace) -> None:
    analysis = {"seed_noise": seed_noise(study), "correlations": proxy_correlations(study)}
    analysis["retrained"] = retrained(study)
    analysis["answers"] = answers(analysis["retrained"])
    study.data["analysis"] = analysis
    study.save()
    print_noise(analysis["seed_noise"])
    print_correlations(analysis["correlations"])
    print_retrained(analysis["retrained"], analysis["answers"])
    plot_proxies(study, analysis["correlations"], study.beside("proxies.png"))
    plot_fronts(analysis["retrained"], study.beside("fronts.png"))


def print_noise(noise: dict[str, Any]) -> None:
    if not noise:
        return
    rows = [[name, *[round(p, 3) for p in row["perplexities"]], round(row["mean"], 3), round(row["std"], 3)]
            for name, row in noise["genomes"].items()]  # fmt: skip
    header = ["genome", *(f"seed {s}" for s in TARGET_SEEDS), "mean", "std"]
    print_table(f"{TARGET} perplexity over seeds (pooled std {noise['pooled_std']:.3f})", header, rows)
    print(markdown_table(header, rows))


def print_correlations(correlations: dict[str, dict[str, Any]]) -> None:
    if not correlations:
        return
    header = ["proxy", "genomes", "Spearman", "90% CI", "Kendall", "90% CI", "s per genome"]
    rows = [
        [key, c["genomes"], round(c["spearman"], 3), interval(c["spearman_90"]), round(c["kendall"], 3),
         interval(c["kendall_90"]), round(c["seconds_per_genome"], 1)]
        for key, c in correlations.items()
    ]  # fmt: skip
    print_table(f"proxies against {TARGET} (seed 0)", header, rows)
    print(markdown_table(header, rows))


def interval(bounds: list[float]) -> str:
    return f"[{bounds[0]:.2f}, {bounds[1]:.2f}]"


def print_retrained(rows: list[dict[str, Any]], answers_: dict[str, dict[str, Any]]) -> None:
    if not rows:
        return
    header = ["genome", "from", "perplexity (3 seeds)", "params", "cache KiB", "makeup"]
    table = [[r["name"], r["origin"], f"{r['mean']:.3f} ± {r['std']:.3f}", r["params"], round(r["cache_bytes"] / 1024),
              r["makeup"]] for r in sorted(rows, key=lambda r: r["mean"])]  # fmt: skip
    print_table(f"retrained on {TARGET}", header, table)
    print(markdown_table(header, table))
    for name, sizes in answers_.items():
        for size, answer in sizes.items():
            detail = answer.get("why") or (
                f"{answer['genome']} {answer['perplexity']:.3f} vs {answer['baseline_perplexity']:.3f}, "
                f"p = {answer['p_value']:.3g}"
            )
            print(f"{name}, at <= its {size}: {answer['answer']} ({detail})")


def plot_proxies(study: Study, correlations: dict[str, dict[str, Any]], path: Path) -> None:
    if not correlations:
        return
    fig, axes = plt.subplots(1, len(correlations), figsize=(4.2 * len(correlations), 4), squeeze=False)
    colors = {"preset": "tab:red", "random": "tab:gray", "evolved": "tab:blue"}
    origins = {t["name"]: t["origin"] for t in study.data["table"]}
    for ax, (key, c) in zip(axes[0], correlations.items(), strict=True):
        names, proxy, target = proxy_pairs(study, key)
        for origin, color in colors.items():
            mine = [i for i, n in enumerate(names) if origins[n] == origin]
            ax.scatter(proxy[mine], target[mine], c=color, label=origin, s=22)
        for i, n in enumerate(names):
            if origins[n] == "preset":
                ax.annotate(n, (proxy[i], target[i]), fontsize=7, xytext=(3, 3), textcoords="offset points")
        ax.set(xlabel=f"{key} quality (lower is better)", ylabel=f"{TARGET} perplexity (seed 0)",
               title=f"{key}: Spearman {c['spearman']:.2f} {interval(c['spearman_90'])}")  # fmt: skip
        ax.title.set_fontsize(9)
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_fronts(rows: list[dict[str, Any]], path: Path) -> None:
    if not rows:
        return
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    ceiling = 1.15 * max(r["mean"] for r in rows if r["origin"] == "baseline")
    colors = {"baseline": "black", **dict(zip(SEARCHES, ("tab:blue", "tab:orange", "tab:green"), strict=True))}
    for ax, size, label in ((axes[0], "params", "parameters (non-embedding)"),
                            (axes[1], "cache_bytes", "inference cache at 4096 tokens (bytes)")):  # fmt: skip
        for origin, color in colors.items():
            mine = [r for r in rows if r["origin"] == origin]
            if mine:
                ax.errorbar([r[size] for r in mine], [r["mean"] for r in mine], yerr=[r["std"] for r in mine],
                            fmt="s" if origin == "baseline" else "o", color=color, capsize=3, label=origin)  # fmt: skip
        for r in rows:
            if r["origin"] == "baseline":
                ax.annotate(r["name"], (r[size], r["mean"]), fontsize=8, xytext=(4, 4), textcoords="offset points")
        mark_beyond(ax, rows, size, ceiling)
        ax.set(xlabel=label, ylabel=f"{TARGET} perplexity (mean ± std, 3 seeds)")
        ax.set_xscale("log" if size == "cache_bytes" and all(r[size] > 0 for r in rows) else "linear")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle("Retrained search picks against the baselines (lower is better)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def mark_beyond(ax, rows: list[dict[str, Any]], size: str, ceiling: float) -> None:
    """Cut the y axis 15% above the worst baseline, so the differences that matter stay visible; a genome
    above the cut is drawn as a triangle at the top edge with its perplexity written beside it."""
    top = ceiling * 0.99
    for r in rows:
        if r["mean"] > ceiling:
            ax.scatter([r[size]], [top], marker="^", color="tab:gray")
            ax.annotate(f"{r['name']}: {r['mean']:.1f}", (r[size], top), xytext=(6, -4), fontsize=7,
                        textcoords="offset points")  # fmt: skip
    ax.set_ylim(top=ceiling)


RUNNERS: dict[str, Callable] = {"target": stage_target, "proxies": stage_proxies, "search": stage_search,
                                "retrain": stage_retrain, "report": stage_report}  # fmt: skip


def main(argv: Iterable[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--stage", choices=(*STAGES, "all"), default="all")
    parser.add_argument("--proxy", choices=tuple(PROXIES), help="the search proxy (default: the most faithful)")
    parser.add_argument("--budget", type=int, default=96, help="evaluations per search")
    parser.add_argument("--population", type=int, default=16)
    parser.add_argument("--picks", type=int, default=4, help="genomes retrained per search (at most 8)")
    parser.add_argument("--workers", type=int, default=2, help="evaluation processes (1 torch thread each)")
    parser.add_argument("--out", type=Path, default=PATH, help="the results file (its runs and figures beside it)")
    args = parser.parse_args(argv)
    if not 1 <= args.picks <= 8:
        parser.error("--picks must be in 1..8")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    study = Study(args.out, settings(args))
    return run_stages(study, STAGES if args.stage == "all" else (args.stage,), RUNNERS, args)


def run_stages(study: Study, stages: tuple[str, ...], runners: dict[str, Callable], args: argparse.Namespace) -> int:
    """Run ``stages`` in order on ``args.workers`` processes (the report alone needs none); Ctrl-C or ``kill``
    stops with what is stored kept, and says so."""
    if stages == ("report",):
        runners["report"](study, None, args)
        return 0
    executor = StudyExecutor(study, make_executor("process", args.workers, 1))
    try:
        with runtime.sigterm_interrupts():  # `kill PID` stops a study run in the background the same way
            for stage in stages:
                runners[stage](study, executor, args)
    except KeyboardInterrupt:
        print(f"stopped; {len(study.data['evaluations'])} evaluations are stored in {study.path}: run the same command "
              "again to continue")  # fmt: skip
        return 130
    finally:
        executor.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
