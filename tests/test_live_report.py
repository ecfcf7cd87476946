"""A report you can watch: ``report.html`` rewritten (atomically) while a search runs, reloading itself until the
run ends, then saying how it ended; TensorBoard scalars per generation, never written twice on resume."""

import itertools
import os
import re
import subprocess
import sys
from dataclasses import dataclass

import pytest

from starlab.assess import SyntheticProtocol, register_protocol, unregister_protocol
from starlab.cli import main
from starlab.evolve import Search, SearchConfig, make_executor
from starlab.files import replace_atomically
from starlab.report import report as report_module
from starlab.report.live import LiveReport
from starlab.report.report import FIGURES, write_report
from starlab.report.tensorboard import INSTALL_HINT, TensorBoardScalars, scalars
from starlab.store import Generation, RunStore

REFRESH = re.compile(r'<meta http-equiv="refresh" content="(\d+)">')
SMALL = {"protocol": "synthetic", "depth": 4, "population": 4, "generations": 2}
SMALL_ARGV = ["--protocol", "synthetic", "--depth", "4", "--population", "4", "--generations", "2"]


def state_line(page: str) -> str:
    return re.search(r'<p class="state (\w+)">([^<]*)</p>', page).group(0)


@dataclass(frozen=True)
class Stopping(SyntheticProtocol):
    """The synthetic protocol until its ``after``-th assessment of this test, which raises ``error`` (once,
    or from then on with ``always``)."""

    after: int = 0
    error: type[BaseException] = KeyboardInterrupt
    always: bool = False

    def run(self, genome, *args):
        call = next(CALLS)
        if call == self.after or (self.always and call > self.after):
            raise self.error("stopped by the test")
        return super().run(genome, *args)


CALLS = itertools.count(1)


@pytest.fixture
def stopping():
    """``stopping(after, error, always)``: a registered :class:`Stopping` protocol's name (removed afterwards)."""
    global CALLS
    CALLS = itertools.count(1)
    names = []

    def register(after, error=KeyboardInterrupt, always=False):
        name = f"synthetic-stopping-{len(names)}"
        names.append(register_protocol(Stopping(name=name, after=after, error=error, always=always)).name)
        return name

    yield register
    for name in names:
        unregister_protocol(name)


# ---- live, then final ------------------------------------------------------------------------------------


@pytest.mark.parametrize("asynchronous", [False, True], ids=["generational", "steady-state"])
def test_the_page_is_rewritten_after_every_generation_and_reloads_until_the_run_finishes(tmp_path, asynchronous):
    directory, seen = tmp_path / "run", []
    live = LiveReport(directory, every=0)

    def watch(generation: Generation) -> None:  # between generations: the next one has not started yet
        live(generation)
        seen.append((generation.generation, (directory / "report.html").read_text()))

    config = SearchConfig(**{**SMALL, "generations": 1}, asynchronous=asynchronous)  # a page is 1-2 s to write
    search = Search(directory, make_executor("local"), config, on_generation=watch)
    try:
        search.run()
    finally:
        search.close()
    assert [g for g, _ in seen] == [0, 1]
    for generation, page in seen:
        assert f"Live: generation {generation} of 1 recorded, {4 * (generation + 1)} evaluations; updated " in page
        assert REFRESH.search(page).group(1) == "5" and state_line(page).startswith('<p class="state live">')
    final = live.finished().read_text()
    assert REFRESH.search(final) is None and "Finished: generation 1 of 1 recorded, 8 evaluations." in final
    assert "reloads" not in state_line(final)
    assert write_report(directory).read_text() == final  # `starlab report` on the finished run: the same page


def test_a_page_is_rewritten_at_most_every_interval_and_a_short_search_writes_none(monkeypatch, tmp_path):
    now, written = [0.0], []
    monkeypatch.setattr(report_module, "write_report", lambda directory, phase, *rest: written.append((now[0], phase)))
    live = LiveReport(tmp_path, every=30, clock=lambda: now[0])
    for moment in (10, 29, 31, 45, 60, 61.5, 100):
        now[0] = moment
        live(Generation(0, [], [], None))
    assert written == [(31, "live"), (61.5, "live"), (100, "live")]  # 30 s after the previous write, not before
    assert live.refresh == 30 and LiveReport(tmp_path, every=0).refresh == 5


def test_the_command_line_writes_the_final_report_of_every_search(tmp_path, capsys):
    assert main(["evolve", "--out", str(tmp_path / "run"), *SMALL_ARGV]) == 0
    out = capsys.readouterr().out
    page = (tmp_path / "run" / "report.html").read_text()
    assert out.strip().splitlines()[-1] == f"report: {tmp_path / 'run' / 'report.html'}"
    assert REFRESH.search(page) is None and "Finished: generation 2 of 2 recorded" in page


# ---- how a run that did not finish ends ------------------------------------------------------------------


def test_an_interrupted_search_leaves_a_still_page_that_says_how_to_resume(tmp_path, capsys, stopping):
    run = tmp_path / "run"
    protocol = stopping(after=6)  # Ctrl-C in generation 1, after generation 0's four evaluations are recorded
    assert main(["evolve", "--out", str(run), *SMALL_ARGV, "--protocol", protocol]) == 130
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        f"starlab: interrupted; resume with `starlab evolve --resume {run}`"
    )
    page = (run / "report.html").read_text()
    assert REFRESH.search(page) is None
    assert state_line(page) == (
        '<p class="state interrupted">Interrupted: generation 0 of 2 recorded, 5 evaluations; resume with '
        f"`starlab evolve --resume {run}`.</p>"
    )
    assert "Not finished: generation 0 of 2 recorded" in write_report(run).read_text()  # `starlab report`


def test_an_interrupt_before_the_first_generation_leaves_no_page(tmp_path, stopping):
    assert main(["evolve", "--out", str(tmp_path / "run"), *SMALL_ARGV, "--protocol", stopping(after=2)]) == 130
    assert not (tmp_path / "run" / "report.html").exists()


@pytest.mark.parametrize("every", ["0", "30"])
def test_a_page_made_live_stops_reloading_when_an_error_stops_the_search(tmp_path, capsys, stopping, every):
    """Every evaluation of generation 1 fails, which stops the search; a page this process made live says so
    and reloads no more, and a search that had written none leaves its directory without one."""
    run = tmp_path / "run"
    protocol = stopping(after=5, error=RuntimeError, always=True)
    assert main(["evolve", "--out", str(run), *SMALL_ARGV, "--protocol", protocol, "--report-every", every]) == 2
    assert "starlab: error: every evaluation of generation 1 failed" in capsys.readouterr().err
    if every == "30":
        assert not (run / "report.html").exists()
        return
    page = (run / "report.html").read_text()
    assert REFRESH.search(page) is None
    assert "Stopped by an error: generation 1 of 2 recorded, 8 evaluations; the error: every evaluation of " in page
    assert f"Once it is fixed, resume with `starlab evolve --resume {run} --retry-failed` (which runs" in page


# ---- atomic writes ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    directory = tmp_path_factory.mktemp("finished")
    search = Search(directory, make_executor("local"), SearchConfig(**SMALL))
    try:
        search.run()
    finally:
        search.close()
    return directory


def test_every_file_of_the_report_is_written_beside_it_and_renamed_into_place(finished, monkeypatch):
    replaced, rename = [], os.replace

    def spy(source, target):
        replaced.append((source, target))
        rename(source, target)

    monkeypatch.setattr(os, "replace", spy)
    write_report(finished)
    targets = [finished / f"{spec.name}.png" for spec in FIGURES] + [finished / "report.html"]
    assert [target for _, target in replaced] == targets  # the page last: it inlines the figures
    for source, target in replaced:
        assert source.parent == target.parent and source.name.startswith(f".{target.name}.")
    assert not [p for p in finished.iterdir() if p.name.startswith(".")]  # no temporary file left behind


#: Reads the page and a figure as fast as it can until told to stop, then prints how many reads there were and
#: how many found a file cut short. In a process of its own, as a browser is: a thread here would hold the GIL
#: against the writer and triple the time a rewrite takes.
READER = """import sys
from pathlib import Path
page, figure, stop = map(Path, sys.argv[1:])
reads = partial = 0
print("reading", flush=True)
while not stop.exists():
    text, data = page.read_bytes(), figure.read_bytes()
    whole = text.endswith(b"</html>\\n") and b'<meta http-equiv="refresh" content="' in text
    partial += not (whole and data.startswith(b"\\x89PNG") and data.endswith(b"IEND\\xaeB`\\x82"))
    reads += 1
print(reads, partial)
"""


def test_a_reader_never_sees_a_partial_page_or_figure_while_it_is_rewritten(finished, tmp_path):
    write_report(finished, "live")
    stop = tmp_path / "stop"
    argv = [sys.executable, "-c", READER, str(finished / "report.html"), str(finished / "front_genomes.png"), str(stop)]
    reader = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True)
    try:
        assert reader.stdout.readline() == "reading\n"
        write_report(finished, "live")  # replaces seven files, the page and this figure among them
    finally:
        stop.touch()
        output, _ = reader.communicate(timeout=60)
    reads, partial = map(int, output.split())
    assert reads > 10 and partial == 0, (reads, partial)


def test_a_write_that_fails_leaves_the_old_file_and_no_temporary_one(tmp_path):
    target = tmp_path / "report.html"
    target.write_text("old")

    def fail(temporary):
        temporary.write_text("half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        replace_atomically(target, fail)
    assert target.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["report.html"]


# ---- TensorBoard -----------------------------------------------------------------------------------------


def read_scalars(logdir) -> dict[str, list[tuple[int, float]]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(logdir))
    events.Reload()
    return {tag: [(e.step, e.value) for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]}


def test_tensorboard_gets_each_generation_once_across_an_interrupt_and_a_resume(tmp_path, stopping):
    pytest.importorskip("tensorboard")
    run, logdir = tmp_path / "run", tmp_path / "tb"
    protocol = stopping(after=6)
    assert main(["evolve", "--out", str(run), *SMALL_ARGV, "--protocol", protocol, "--tensorboard", str(logdir)]) == 130
    assert [step for step, _ in read_scalars(logdir)["search/hypervolume"]] == [0]
    assert main(["evolve", "--resume", str(run), "--tensorboard", str(logdir)]) == 0  # replays generation 0
    with RunStore(run) as store:
        generations = store.generations()
    written = read_scalars(logdir)
    assert written["search/hypervolume"] == [(g.generation, pytest.approx(g.hypervolume)) for g in generations]
    assert written["search/front_size"] == [(g.generation, len(g.front)) for g in generations]
    assert written["search/evaluations"] == [(0, 4), (1, 8), (2, 12)]
    best = [min(m["quality"] for m in g.population) for g in generations]
    assert [value for _, value in written["search/best_quality"]] == pytest.approx(best)


def test_tensorboard_gets_the_ladder_rank_agreement_per_generation(tmp_path):
    pytest.importorskip("tensorboard")
    low, high = SyntheticProtocol(name="tb-low", noise=0.02), SyntheticProtocol(name="tb-high", noise=0.005)
    for protocol in (low, high):
        register_protocol(protocol)
    hook = TensorBoardScalars(tmp_path / "tb")
    hook.open()
    config = SearchConfig(**{**SMALL, "protocol": "tb-low", "population": 8}, ladder=("tb-low", "tb-high"), eta=2)
    search = Search(tmp_path / "run", make_executor("local"), config, on_generation=hook)
    try:
        search.run()
        generations = search.store.generations()
    finally:
        search.close()
        hook.close()
        for protocol in (low, high):
            unregister_protocol(protocol.name)
    written = read_scalars(tmp_path / "tb")
    spearman = [g.stats["correlations"][0]["spearman"] for g in generations]
    measured = [(g.generation, pytest.approx(s)) for g, s in zip(generations, spearman, strict=True) if s is not None]
    assert measured and written["ladder/tb-low-to-tb-high/spearman"] == measured
    assert written["evaluations/tb-high"] == [(g.generation, g.stats["evaluations"]["tb-high"]) for g in generations]


def test_scalars_leave_out_what_a_generation_did_not_measure():
    unmeasured = {"low": "a", "high": "b", "n": 2, "spearman": None, "kendall": None}  # fewer than 3 on both
    stats = {"evaluations": {"a": 8, "b": 2}, "correlations": [unmeasured],
             "surrogate": {"n": 4, "spearman": 0.5, "kendall": 0.25}}  # fmt: skip
    record = Generation(3, [{"quality": 0.5}, {"quality": 0.25}], [1], None, stats)
    assert scalars(record) == {
        "search/best_quality": 0.25, "search/front_size": 1.0, "search/evaluations": 8.0, "evaluations/a": 8.0,
        "evaluations/b": 2.0, "surrogate/spearman": 0.5, "surrogate/kendall": 0.25,
    }  # fmt: skip


def test_tensorboard_without_the_package_is_a_one_line_error_before_any_work(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # importing it now raises ImportError
    argv = ["evolve", "--out", str(tmp_path / "run"), *SMALL_ARGV, "--tensorboard", str(tmp_path / "tb")]
    assert main(argv) == 2
    assert capsys.readouterr().err == f"starlab: error: {INSTALL_HINT}\n"
    assert INSTALL_HINT == "--tensorboard needs tensorboard: pip install 'starlab[tensorboard]'"
    assert not (tmp_path / "run").exists() and not (tmp_path / "tb").exists()
