"""The command line: JSON shapes, tables, and one-line errors."""

import argparse
import json
import os
import re
import subprocess
import sys

import pytest
from PIL import Image

from starlab.cli import main


def run_cli(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def table(out):
    """``(title, rows)`` of the rich table in ``out``: rows are dicts from column name to stripped cell text.

    Rich draws the header between ``┃`` and body rows between ``│``; the title is the line above the top rule.
    """
    lines = out.splitlines()
    top = next(i for i, line in enumerate(lines) if line.startswith("┏"))
    header = cells(next(line for line in lines if line.startswith("┃")), "┃")
    rows = [dict(zip(header, cells(line, "│"), strict=True)) for line in lines if line.startswith("│")]
    return lines[top - 1].strip(), rows


def cells(line, bar):
    return [cell.strip() for cell in line.strip().strip(bar).split(bar)]


def number(cell):
    """An integer as printed, with or without thousands separators: ``"1,049,344"`` -> 1049344."""
    assert re.fullmatch(r"\d{1,3}(,\d{3})*|\d+", cell), cell
    return int(cell.replace(",", ""))


def test_liv_list_json_lists_all_classes(capsys):
    code, out, _ = run_cli(capsys, "liv", "list", "--width", "64", "--seq-len", "128", "--json")
    rows = json.loads(out)
    assert code == 0 and len(rows) == 17
    assert {"id", "name", "operator_genome", "family", "params", "cache_bytes"} <= set(rows[0])
    sa1 = rows[0]
    assert (sa1["name"], sa1["operator_genome"], sa1["family"]) == ("SA-1", "12123", "attention")
    assert sa1["cache_bytes"] == 2 * 64 * 128 * 2 and sa1["params"] == 4 * 64 * 64
    assert rows[8]["cache_bytes"] == 0  # GMemless


def test_liv_list_table(capsys):
    """The table shows the same 17 classes and numbers as ``--json`` at the same width."""
    code, out, _ = run_cli(capsys, "liv", "list", "--width", "64")
    _, json_out, _ = run_cli(capsys, "liv", "list", "--width", "64", "--json")
    title, rows = table(out)
    expected = json.loads(json_out)
    assert code == 0 and title == "LIV classes at width 64, cache at 4096 tokens (16-bit values)"
    assert list(rows[0]) == ["id", "name", "operator_genome", "family", "params", "cache_bytes"]
    assert len(rows) == len(expected) == 17 and rows[-1]["name"] == "GConv-2-Diff"
    for row, want in zip(rows, expected, strict=True):
        parsed = {**row, **{key: number(row[key]) for key in ("id", "params", "cache_bytes")}}
        assert parsed == {key: want[key] for key in parsed}


def test_bad_width_is_one_line_error(capsys):
    code, out, err = run_cli(capsys, "liv", "list", "--width", "12")
    assert code == 2 and out == ""
    assert err.strip() == "starlab: error: width must be a positive multiple of 8, got 12"


def test_console_script_entry_point():
    result = subprocess.run(
        [sys.executable, "-m", "starlab.cli", "liv", "list", "--width", "16", "--json"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert len(json.loads(result.stdout)) == 17


def test_a_reader_that_leaves_early_gets_no_traceback():
    """``starlab ... --json | head``: the pipe closes before starlab writes."""
    read, write = os.pipe()
    child = subprocess.Popen([sys.executable, "-m", "starlab.cli", "liv", "list", "--width", "16", "--json"],
                             stdout=write, stderr=subprocess.PIPE, text=True)  # fmt: skip
    os.close(write)
    os.close(read)  # long before the child has imported torch
    _, err = child.communicate(timeout=120)
    assert child.returncode == 141 and "Traceback" not in err, err


HEAVY_AT_START = ("torch._dynamo", "sympy", "sklearn", "scipy.stats")  # each adds ~0.5-2 s to a process start


def test_a_search_process_starts_without_the_heavy_imports(tmp_path):
    """Every command, search and worker process sizes models on the meta device; done naively that imports
    torch._dynamo and sympy, and the surrogate and ladder modules pulled in scikit-learn and scipy.stats: seconds
    at each start, which the durability tests and users pay many times over."""
    search = ["evolve", "--out", str(tmp_path / "run"), "--protocol", "synthetic", "--depth", "8", "--population",
              "4", "--generations", "1", "--seed", "5"]  # fmt: skip
    script = (f"import sys; from starlab.cli import main; main({search!r}); "
              f"print([m for m in {HEAVY_AT_START!r} if m in sys.modules])")  # fmt: skip
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert result.stdout.strip().splitlines()[-1] == "[]"


@pytest.mark.parametrize(
    ("argv", "command", "message"),
    [
        (["liv"], "starlab liv", "the following arguments are required: command"),
        (["liv", "list", "--width", "abc"], "starlab liv list", "argument --width: expected a positive integer"),
        (["nonsense"], "starlab", "argument group: invalid choice: 'nonsense'"),
        (["evolve", "--preset", "demo"], "starlab evolve", "one of the arguments --out --resume is required"),
    ],
)
def test_argument_errors_are_one_line_naming_the_command(argv, command, message, capsys):
    with pytest.raises(SystemExit) as info:
        main(argv)
    err = capsys.readouterr().err
    assert info.value.code == 2 and err.count("\n") == 1 and "usage:" not in err
    assert err.startswith(f"starlab: error: {message}") and err.endswith(f"(see {command} --help)\n")


def test_every_option_of_every_command_says_what_it_does():
    def commands(parser, path=("starlab",)):
        yield path, parser
        for action in parser._actions:  # argparse keeps sub-commands here and nowhere public
            for name, sub in getattr(action, "choices", None).items() if isinstance(action.choices, dict) else ():
                yield from commands(sub, (*path, name))

    from starlab.cli import build_parser

    silent = [
        f"{' '.join(path)} {action.option_strings or action.dest}"
        for path, parser in commands(build_parser())
        for action in parser._actions
        if not action.help and not isinstance(action, argparse._SubParsersAction)
    ]
    assert silent == []


def test_runtime_keeps_freed_memory_on_linux():
    import sys

    from starlab import runtime

    assert runtime.keep_freed_memory() is sys.platform.startswith("linux")


def test_genome_show_json(capsys):
    code, out, _ = run_cli(capsys, "genome", "show", "transformer++", "--depth", "4", "--width", "64", "--json")
    report = json.loads(out)
    assert code == 0
    assert {"canonical", "hash", "params", "params_non_embedding", "cache_bytes", "slots"} <= set(report)
    assert report["canonical"] == "11111-91111-11111-91111"
    assert report["cache_bytes"] == 2 * (2 * 64 * 4096 * 2)
    assert len(report["slots"]) == 4 and report["slots"][0]["name"] == "SA-1"


TOTALS = re.compile(
    r"width (\d+), vocab (\d+): params ([\d,]+) \(non-embedding ([\d,]+)\); cache at (\d+) tokens ([\d,]+) B"
)


def test_genome_show_table_and_sharing_columns(capsys):
    """Per-slot rows with who shares from whom, and a totals line, all equal to ``--json``."""
    argv = ["genome", "show", "21211-31112-21221-32112", "--width", "64"]
    code, out, _ = run_cli(capsys, *argv)
    report = json.loads(run_cli(capsys, *argv, "--json")[1])
    title, rows = table(out)
    assert code == 0 and title == f"{report['canonical']}  (hash {report['hash']})"
    assert list(rows[0]) == ["slot", "class", "family", "featurizer from", "features from", "params", "cache_bytes"]
    # slot 3 reuses slot 1's featurizer weights; slot 4 reads slot 2's cached features
    assert [row["featurizer from"] for row in rows] == ["", "", "1", ""]
    assert [row["features from"] for row in rows] == ["", "", "", "2"]
    assert len(rows) == len(report["slots"]) == 4
    for row, slot in zip(rows, report["slots"], strict=True):
        assert (number(row["slot"]), row["class"], row["family"]) == (slot["slot"], slot["name"], slot["family"])
        assert row["featurizer from"] == str(slot["featurizer_leader"] or "")
        assert row["features from"] == str(slot["feature_source"] or "")
        assert (number(row["params"]), number(row["cache_bytes"])) == (slot["params"], slot["cache_bytes"])
    totals = TOTALS.search(out)
    assert totals and out.rstrip().endswith(totals.group(0))
    keys = ["width", "vocab_size", "params", "params_non_embedding", "seq_len", "cache_bytes"]
    assert [number(value) for value in totals.groups()] == [report[key] for key in keys]


def test_genome_show_reports_bad_genomes_in_one_line(capsys):
    code, out, err = run_cli(capsys, "genome", "show", "11211-51211")
    assert code == 2 and out == "" and err.count("\n") == 1
    where = re.match(r"starlab: error: slot (\d+), field '(\w+)': Rec-1 cannot share featurizer weights", err)
    assert where and where.groups() == ("2", "featurizer_strategy")
    code, out, _ = run_cli(capsys, "genome", "show", "11211-51211", "--repair", "--json")
    assert code == 0 and json.loads(out)["canonical"] == "11111-51111"


def test_genome_random_is_seeded(capsys):
    _, first, _ = run_cli(capsys, "genome", "random", "--depth", "6", "--seed", "5")
    _, second, _ = run_cli(capsys, "genome", "random", "--depth", "6", "--seed", "5")
    _, other, _ = run_cli(capsys, "genome", "random", "--depth", "6", "--seed", "6")
    document = json.loads(run_cli(capsys, "genome", "random", "--depth", "6", "--seed", "5", "--json")[1])
    assert first == second != other and first.strip() == document["text"]
    assert len(document["slots"]) == 6 and all(len(slot) == 5 for slot in document["slots"])


def test_genome_diagram_writes_a_png(tmp_path, capsys):
    target = tmp_path / "g.png"
    code, out, _ = run_cli(capsys, "genome", "diagram", "21211-31112-21221-32112", "-o", str(target))
    assert code == 0 and out.strip() == str(target) and target.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with Image.open(target) as image:
        assert image.format == "PNG" and min(image.size) > 0


def test_genome_from_json_file(tmp_path, capsys):
    path = tmp_path / "g.json"
    path.write_text(json.dumps({"format": "starlab-genome", "slots": [[5, 1, 1, 1, 1], [9, 1, 1, 1, 1]]}))
    code, out, _ = run_cli(capsys, "genome", "show", str(path), "--json", "--width", "32")
    assert code == 0 and json.loads(out)["canonical"] == "51111-91111"


def test_an_absurd_width_is_refused_without_filling_memory():
    """``mad --width 1000000000`` is refused by its size, worked out on the meta device; sizing once computed a
    billion-channel decay buffer on the CPU first (5.3 GB and 20-32 s before the refusal)."""
    argv = ["mad", "transformer++", "--protocol", "tiny", "--width", str(10**9)]
    script = (f"import resource, sys; from starlab.cli import main; code = main({argv!r}); "
              "print(code, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)")  # fmt: skip
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    code, peak_kb = result.stdout.split()
    assert code == "2" and "would need more than" in result.stderr, result.stderr
    assert int(peak_kb) < 1_500_000, f"peak {int(peak_kb) / 1e6:.1f} GB"  # importing torch is ~0.3 GB
