"""The report states the result: one front (over all evaluations) for table, plots, headline and export; the
headline in words against the baselines; titled figures; the settings as used; an escaped, self-contained page."""

import re

import matplotlib.pyplot as plt
import numpy as np
import pytest
from matplotlib.ticker import MaxNLocator

from starlab.assess import Evaluation, SyntheticProtocol, genome_sizes, register_protocol, unregister_protocol
from starlab.evolve import Search, SearchConfig, make_executor
from starlab.genome import Genome, preset
from starlab.liv import get_class
from starlab.report.report import FIGURES, render_html, write_report
from starlab.report.summary import describe_classes, front_table, headlines, settings_used
from starlab.status import Status
from starlab.store import Generation, RunData, load_run

HOSTILE = "<script>alert('x')</script> & \"more\""


def search(directory, **settings):
    config = SearchConfig(**{"protocol": "synthetic", "depth": 4, "population": 8, "generations": 4,
                             "seeds": ("transformer++", "striped-mamba"), **settings})  # fmt: skip
    run = Search(directory, make_executor("local"), config)
    try:
        run.run()
    finally:
        run.close()
    return load_run(directory)


@pytest.fixture(scope="module")
def full(tmp_path_factory):
    """A three-objective run with both seed baselines, and its written report."""
    directory = tmp_path_factory.mktemp("full")
    run = search(directory)
    return run, write_report(directory).read_text()


def dominates(a, b):
    return all(x <= y for x, y in zip(a, b, strict=True)) and any(x < y for x, y in zip(a, b, strict=True))


def expected_percent(value, reference):
    """The documented rule, written again: |b − v| / b as a whole percentage from 10 % up, one decimal below."""
    share = abs(reference - value) / reference * 100
    return f"{share:.0f} %" if share >= 10 else f"{share:.1f} %"


# ---- one front -------------------------------------------------------------------------------------------


def test_the_front_is_the_non_dominated_set_of_all_evaluations_and_outlives_the_last_population(full):
    run, _ = full
    reference = genome_sizes(Genome.from_slots([(1, 1, 1, 1, 1)] * 4), 64, run.protocol.config)
    points = {e.hash: (e.quality, e.params / reference.params, e.cache_bytes / reference.cache_bytes)
              for e in run.evaluations}  # fmt: skip
    expected = {h for h, p in points.items() if not any(dominates(q, p) for q in points.values())}
    assert {m["hash"] for m in run.front} == expected
    qualities = [points[m["hash"]][0] for m in run.front]
    assert qualities == sorted(qualities)  # rank 1 = best quality
    for generation in run.generations:  # the same normalised values as the search stored
        for member in generation.population:
            mine = next((m for m in run.front if m["hash"] == member["hash"]), None)
            assert mine is None or mine == pytest.approx(member)
    last = {m["hash"] for m in run.generations[-1].population}
    assert expected - last, "this run's last population lost a front genome found earlier"
    assert len(run.front) > len(run.last_population_front)


def test_the_plots_and_the_table_show_the_same_front(full):
    run, page = full
    table = page.split("<h2>Pareto front over all evaluations</h2>")[1].split("<h2>Baselines</h2>")[0]
    in_table = re.findall(r"<tr><td>\d+</td><td><code>([^<]+)</code>", table)
    assert in_table == [m["genome"] for m in run.front] == [r["genome"] for r in front_table(run)]
    lost = [m for m in run.front if m["hash"] not in {p["hash"] for p in run.generations[-1].population}]
    assert lost and all(m["genome"] in in_table for m in lost)
    by_point = {}
    for e in run.evaluations:
        by_point.setdefault((e.params, e.quality), set()).add(e.genome)
        by_point.setdefault((e.cache_bytes, e.quality), set()).add(e.genome)
    for spec in FIGURES[:2]:  # quality vs parameters, quality vs cache
        fig = spec.draw(run)
        drawn = [tuple(p) for c in fig.axes[0].collections if c.get_gid() == "front" for p in c.get_offsets()]
        plt.close(fig)
        plotted = set().union(*(by_point[(x, y)] for x, y in drawn))
        assert len(drawn) == len(run.front) and plotted == set(in_table)


def test_failed_evaluations_are_counted_and_never_on_the_front(tmp_path):
    class Hostile(SyntheticProtocol):
        def run(self, genome, *args):  # fails for the memoryless-heavy genomes, the smallest caches
            if sum(get_class(s.cls).family == "memoryless" for s in genome.slots) >= 3:
                raise RuntimeError(HOSTILE)
            return super().run(genome, *args)

    register_protocol(Hostile(name="synthetic-hostile", description=HOSTILE))
    try:
        run = search(tmp_path, protocol="synthetic-hostile", seeds=("striped-mamba", "91111-91111-91111-91111"))
        failed = [e for e in run.evaluations if e.status == Status.FAILED]
        values = run.objectives.values(run.evaluations)
        unfiltered = {run.evaluations[i].hash for i in range(len(values))
                      if not any(dominates(values[j], values[i]) for j in range(len(values)))}  # fmt: skip
        assert {e.hash for e in failed} & unfiltered, "a failed genome would be on an unfiltered front"
        assert not {e.hash for e in failed} & {m["hash"] for m in run.front}
        used = settings_used(run)
        assert used["evaluations"]["by status"] == {"ok": len(run.evaluations) - len(failed), "failed": len(failed)}
        assert used["evaluations"]["first error"] == f"RuntimeError: {HOSTILE}"
        verb = "is" if len(failed) == 1 else "are"
        context = headlines(run)[0]
        assert f"{len(failed)} failed {verb} left out of the front (the first error: RuntimeError: " in context
        page = render_html(run, [])  # the page without its figures (the full run writes them)
    finally:
        unregister_protocol("synthetic-hostile")
    assert "<script>" not in page and "alert(" in page
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt; &amp; &quot;more&quot;" in page
    assert f"Evaluations by status: {len(run.evaluations) - len(failed)} ok, {len(failed)} failed" in page


# ---- the headline ----------------------------------------------------------------------------------------


def test_the_headline_names_the_best_genome_its_classes_and_each_baseline_in_relative_terms(full):
    run, page = full
    lines = headlines(run)
    best = min((e for e in run.evaluations if e.status == Status.OK), key=lambda e: e.quality)
    classes = ", ".join(get_class(slot.cls).name for slot in Genome.parse(best.genome).slots)
    pair = next(line for line in lines if line.startswith("Quality vs parameters:"))
    assert f"the best genome found, {best.genome} ({classes}), reaches quality {best.quality:.3f}" in pair
    baselines = {name: run.evaluation_of(preset(name, 4).hash()) for name in ("transformer++", "striped-mamba")}
    unbeaten = []
    for name, baseline in baselines.items():
        quality = expected_percent(best.quality, baseline.quality)
        params = expected_percent(best.params, baseline.params)
        fewer = "fewer" if best.params < baseline.params else "more"
        assert f"{quality} better quality than {name} ({baseline.quality:.3f}) at {params} {fewer} parameters" in pair
        said = any(line.startswith(f"It does not beat {name} on both quality and parameters") for line in lines)
        beaten = dominates((best.quality, best.params), (baseline.quality, baseline.params))
        assert said == (not beaten)
        unbeaten += [name] * (not beaten)
    assert unbeaten, "the run should have a baseline its best genome does not beat (honesty is tested)"
    cache = next(line for line in lines if line.startswith("Quality vs cache:"))
    assert "the same genome" in cache and "transformer++" in cache
    assert lines[0].startswith("This nsga2 search assessed") and "Quality means: analytic stand-in" in lines[0]
    first_screen = page.split("<h2>Pareto front")[0]
    assert all(line.replace("'", "&#x27;") in first_screen for line in lines)


def evaluation(genome, quality, params, cache=1000):
    genome = Genome.parse(genome) if isinstance(genome, str) else genome
    return Evaluation(genome=genome.canonical().text(), hash=genome.hash(), protocol="synthetic", seed=0, width=64,
                      status=Status.OK, quality=quality, scores={"synthetic": 1 - quality}, params=params,
                      cache_bytes=cache, seconds=0.1, worker="test", metrics={})  # fmt: skip


def made_run(evaluations, objectives=("quality", "params")):
    config = {"protocol": "synthetic", "depth": 4, "width": None, "objectives": list(objectives), "algorithm": "nsga2"}
    return RunData(config, evaluations, [Generation(0, [], [], None)])


def test_relative_numbers_and_the_genome_that_beats_an_unbeaten_baseline():
    transformer, mamba = preset("transformer++", 4), preset("striped-mamba", 4)
    run = made_run([
        evaluation(transformer, 0.40, 100_000), evaluation(mamba, 0.30, 81_000),
        evaluation("21111-91111-61111-91111", 0.25, 90_000),  # the best: beats transformer++, not striped-mamba
        evaluation("51111-91111-61111-91111", 0.28, 70_000),  # beats striped-mamba
        evaluation("91111-91111-71111-91111", 0.35, 50_000),
    ])  # fmt: skip
    lines = headlines(run)
    assert lines[1] == (
        "Quality vs parameters: the best genome found, 21111-91111-61111-91111 (SA-2, GMemless, Rec-2, GMemless), "
        "reaches quality 0.250 with 90 k parameters: 38 % better quality than transformer++ (0.400) at 10 % fewer "
        "parameters (100 k); 17 % better quality than striped-mamba (0.300) at 11 % more parameters (81 k)."
    )  # (0.40-0.25)/0.40 = 37.5 % -> 38 %; (0.30-0.25)/0.30 = 16.7 %; (90-81)/81 = 11.1 %
    assert lines[2] == (
        "It does not beat striped-mamba on both quality and parameters: striped-mamba has fewer parameters (81 k); "
        "the best genome that does is 51111-91111-61111-91111 (Rec-1, GMemless, Rec-2, GMemless), quality 0.280 "
        "(6.7 % better quality) with 70 k parameters (14 % fewer parameters)."
    )  # (0.30-0.28)/0.30 = 6.67 %; (81-70)/81 = 13.6 %
    assert len(lines) == 3


def test_a_baseline_that_is_the_best_is_named_as_such_and_an_unbeatable_one_is_admitted():
    transformer, mamba = preset("transformer++", 4), preset("striped-mamba", 4)
    run = made_run([evaluation(transformer, 0.20, 100_000), evaluation(mamba, 0.30, 40_000),
                    evaluation("21111-91111-61111-91111", 0.25, 90_000)])  # fmt: skip
    lines = headlines(run)
    assert lines[1].startswith(
        "Quality vs parameters: the best genome found is the baseline transformer++ itself, "
        "11111-91111-11111-91111 (SA-1, GMemless, SA-1, GMemless), with quality 0.200"
    )
    assert lines[2].endswith("striped-mamba has fewer parameters (40 k); no genome found beats striped-mamba on both.")


def test_a_quality_only_run_states_just_the_best_against_the_baselines(tmp_path):
    run = search(tmp_path, objectives="quality", generations=2)
    lines = headlines(run)
    best = min(run.evaluations, key=lambda e: (e.quality, e.params, e.cache_bytes))  # ties: the smaller
    assert len(lines) == 2 and not any("Quality vs" in line for line in lines)
    assert f"reaches quality {best.quality:.3f}" in lines[1] and describe_classes(best.genome) in lines[1]
    mamba = run.baselines()["striped-mamba"]
    assert f"{expected_percent(best.quality, mamba.quality)} better quality than striped-mamba" in lines[1]
    assert run.front[0]["hash"] == best.hash and all(m["quality"] == best.quality for m in run.front)
    for spec in FIGURES:  # every figure draws a quality-only run
        assert spec.draw(run).get_suptitle()
        plt.close("all")
    assert lines[1] in render_html(run, []).replace("&#x27;", "'")


def test_a_run_without_baselines_says_there_is_nothing_to_compare(tmp_path):
    run = search(tmp_path / "even", seeds=(), objectives="cache", generations=1)
    lines = headlines(run)
    assert run.baselines() == {} and lines[-1].startswith("No baseline preset (transformer++, striped-mamba, ...)")
    assert "was evaluated at depth 4, so there is nothing to compare" in lines[-1]
    assert lines[1].startswith("The best genome found, ") and " than " not in lines[1]
    odd = headlines(search(tmp_path / "odd", seeds=(), depth=3, generations=0))
    assert odd[-1].startswith("No baseline preset was evaluated: presets exist at even depths only")


# ---- figures and settings --------------------------------------------------------------------------------


def test_every_figure_has_a_title_and_a_caption_in_words(full):
    run, page = full
    for spec in FIGURES:
        fig = spec.draw(run)
        assert len(fig.get_suptitle()) > 20, spec.name
        if spec.name in ("hypervolume", "class_frequencies", "sharing"):  # generations are integers
            for ax in fig.axes:
                assert isinstance(ax.xaxis.get_major_locator(), MaxNLocator)
                ticks = [t for t in ax.get_xticks() if 0 <= t <= len(run.generations)]
                assert ticks and all(float(t).is_integer() for t in ticks)
        plt.close(fig)
    captions = re.findall(r"<figcaption>([^<]+)</figcaption>", page)
    assert len(captions) == len(FIGURES) and all(len(c.split()) > 10 and "_" not in c for c in captions)
    assert page.count('src="data:image/png;base64,') == len(FIGURES) and 'src="http' not in page


def test_the_front_genome_figure_is_legible_at_the_page_width(full):
    run, _ = full
    fig = FIGURES[-1].draw(run)
    width_px = fig.get_figwidth() * 130
    labels = [t for ax in fig.axes for t in ax.texts]
    assert sum(bool(ax.get_title()) for ax in fig.axes) == min(len(run.front), 8)
    scale = min(1.0, 1100 / width_px)  # the page shows it at most 1100 px wide
    assert all(t.get_fontsize() * 130 / 72 * scale >= 12 for t in labels)  # >= 12 px on screen
    assert all(t.get_color() not in ("white", "#ffffff", "w") for t in labels)
    rows = len({round(ax.get_position().y0, 3) for ax in fig.axes if ax.get_title()})
    assert rows == int(np.ceil(min(len(run.front), 8) / 4)) >= 2
    plt.close(fig)


def test_the_settings_are_those_actually_used(full):
    run, page = full
    used = settings_used(run)
    assert run.config["width"] is None and used["search"]["width"] == 64 == run.width
    assert used["protocol"]["training"] == run.protocol.training() and used["protocol"]["name"] == "synthetic"
    assert used["evaluations"]["by status"] == {"ok": len(run.evaluations)}
    settings = page.split("<h2>Settings as actually used</h2>")[1]
    assert "&quot;width&quot;: 64" in settings and "nothing (a formula of the genome)" in settings
