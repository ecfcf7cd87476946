"""The command line: JSON shapes, tables, and one-line errors."""

import json
import subprocess
import sys

import pytest

from starlab.cli import main


def run_cli(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


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
    code, out, _ = run_cli(capsys, "liv", "list", "--width", "64")
    assert code == 0 and "GConv-2-Diff" in out and "cache_bytes" in out


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


@pytest.mark.parametrize("argv", [["liv"], ["liv", "list", "--width", "abc"], ["nonsense"]])
def test_argument_errors_exit_2(argv, capsys):
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2


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


def test_genome_show_table_and_sharing_columns(capsys):
    code, out, _ = run_cli(capsys, "genome", "show", "21211-31112-21221-32112", "--width", "64")
    assert code == 0 and "hash" in out and "features from" in out


def test_genome_show_reports_bad_genomes_in_one_line(capsys):
    code, _, err = run_cli(capsys, "genome", "show", "11211-51211")
    assert code == 2 and err.count("\n") == 1
    assert "slot 2, field 'featurizer_strategy'" in err
    code, out, _ = run_cli(capsys, "genome", "show", "11211-51211", "--repair", "--json")
    assert code == 0 and json.loads(out)["canonical"] == "11111-51111"


def test_genome_random_is_seeded(capsys):
    _, first, _ = run_cli(capsys, "genome", "random", "--depth", "6", "--seed", "5")
    _, second, _ = run_cli(capsys, "genome", "random", "--depth", "6", "--seed", "5")
    assert first == second and len(first.strip().split("-")) == 6


def test_genome_diagram_writes_a_png(tmp_path, capsys):
    target = tmp_path / "g.png"
    code, _, _ = run_cli(capsys, "genome", "diagram", "21211-31112-21221-32112", "-o", str(target))
    assert code == 0 and target.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_genome_from_json_file(tmp_path, capsys):
    path = tmp_path / "g.json"
    path.write_text(json.dumps({"format": "starlab-genome", "slots": [[5, 1, 1, 1, 1], [9, 1, 1, 1, 1]]}))
    code, out, _ = run_cli(capsys, "genome", "show", str(path), "--json", "--width", "32")
    assert code == 0 and json.loads(out)["canonical"] == "51111-91111"
