"""Evaluation throughput on CPU: the protocols' precision setting reaches training (and bf16 really autocasts),
starlab processes start torch's OpenMP with a brief spin (libgomp's own report, read in fresh processes), and
the first training of a process takes the cores other processes leave idle."""

import os
import re
import subprocess
import sys

import pytest
import torch

from conftest import TORCH_THREADS, wait_for
from starlab import runtime
from starlab.assess import assess, get_protocol, lm, mad
from starlab.assess.protocol import PRECISIONS
from starlab.genome import preset

# ------------------------------------------------------------------------------------------------ precision


@pytest.mark.parametrize("name", ["tiny", "lm-tiny", "algo-parentheses", "synthetic"])
def test_every_protocol_has_a_checked_precision_setting_that_decides_autocast(name):
    """The setting is not only accepted: it decides whether training autocasts, on any device."""
    protocol = get_protocol(name)
    assert protocol.precision == "auto" and protocol.uses_bf16("cpu") is False  # auto is fp32 on a CPU
    for precision, bf16 in (("auto", False), ("fp32", False), ("bf16", True)):
        chosen = protocol.with_settings(precision=precision)
        assert chosen.precision == precision and chosen.uses_bf16("cpu") is bf16
        if precision != "auto":  # an explicit precision holds on a GPU too (no CUDA query is made)
            assert chosen.uses_bf16(torch.device("cuda")) is bf16
    assert set(PRECISIONS) == {"auto", "fp32", "bf16"}
    for bad in ("fp16", "BF16", "", 16, None, True):
        with pytest.raises(ValueError, match="setting precision must be"):
            protocol.with_settings(precision=bad)


def test_a_search_is_refused_a_bad_precision_before_its_run_directory_exists(tmp_path, capsys):
    from starlab.cli import main

    run = tmp_path / "run"
    assert main(["evolve", "--protocol", "tiny", "--protocol-setting", "precision=fp16", "--out", str(run)]) == 2
    assert "setting precision must be one of auto, fp32, bf16, got 'fp16'" in capsys.readouterr().err
    assert not run.exists()


def test_auto_precision_is_fp32_on_cpu_and_bf16_on_a_cuda_device_with_bf16(monkeypatch):
    protocol = get_protocol("tiny")
    assert not protocol.uses_bf16("cpu")
    assert protocol.with_settings(precision="bf16").uses_bf16("cpu")
    assert not protocol.with_settings(precision="fp32").uses_bf16(torch.device("cuda"))
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *args, **kwargs: True)
    assert protocol.uses_bf16(torch.device("cuda"))
    assert protocol.uses_bf16("cuda:0")
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *args, **kwargs: False)
    assert not protocol.uses_bf16("cuda")


@pytest.mark.parametrize("precision, bf16", [("auto", False), ("fp32", False), ("bf16", True)])
def test_precision_reaches_every_train_config(precision, bf16):
    quick = get_protocol("quick").with_settings(precision=precision)
    assert quick.train_config(quick.settings[0], 1e-3, 0.1, 0, "cpu").bf16 is bf16
    algorithmic = get_protocol("algo-parentheses").with_settings(precision=precision)
    assert algorithmic.train_config(0, "cpu").bf16 is bf16


SHORT_LM = {"steps": 2, "max_eval_tokens": 1024}  # lm-tiny would score on 65,536 tokens, most of its time


@pytest.mark.parametrize("module, name, short", [(lm, "lm-tiny", SHORT_LM), (mad, "tiny", {"epochs": 1})])
def test_assessments_train_with_the_protocols_precision(monkeypatch, module, name, short):
    seen = []
    real_train = module.train

    def spy(model, task, config, *args, **kwargs):
        seen.append(config.bf16)
        return real_train(model, task, config, *args, **kwargs)

    monkeypatch.setattr(module, "train", spy)
    protocol = get_protocol(name).with_settings(**short)
    assess(preset("transformer++", 2), protocol.with_settings(precision="bf16"))
    assess(preset("transformer++", 2), protocol)
    assert seen == [True, False]


def linear_output_dtypes(precision):
    """The dtypes every nn.Linear of the models a tiny MAD assessment trains returned, in training and evaluation."""
    dtypes = set()
    real_build = mad.build_model

    def build_and_watch(*args, **kwargs):
        model = real_build(*args, **kwargs)
        for module in model.modules():
            if isinstance(module, torch.nn.Linear):
                module.register_forward_hook(lambda m, inputs, output: dtypes.add(output.dtype))
        return model

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(mad, "build_model", build_and_watch)
        protocol = get_protocol("tiny").with_settings(epochs=1, precision=precision)
        evaluation = assess(preset("striped-mamba", 4), protocol)  # attention and a recurrence
    assert evaluation.status.value == "ok"
    return dtypes


def test_bf16_precision_runs_the_matmuls_in_bfloat16_and_fp32_does_not():
    assert linear_output_dtypes("bf16") == {torch.bfloat16}
    assert linear_output_dtypes("fp32") == {torch.float32}
    assert linear_output_dtypes("auto") == {torch.float32}  # the CPU default (docs/performance.md)


# ------------------------------------------------------------------------------------- OpenMP spin count


def fresh_python(code: str, **env: str) -> subprocess.CompletedProcess:
    """``code`` in a new interpreter whose environment has no OpenMP wait settings but ``env``, and asks
    libgomp to print the settings it started with (on stderr, when torch loads it)."""
    clean = {k: v for k, v in os.environ.items() if k not in runtime.WAIT_SETTINGS}
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env={**clean, "OMP_DISPLAY_ENV": "VERBOSE", **env}
    )
    assert done.returncode == 0, done.stderr
    return done


def spin_counts(stderr: str) -> list[int]:
    """Every libgomp start reported on ``stderr``: its spin count."""
    if "OPENMP DISPLAY ENVIRONMENT" not in stderr:
        pytest.skip("torch's OpenMP runtime here reports no settings (OMP_DISPLAY_ENV)")
    if "GOMP_SPINCOUNT" not in stderr:
        pytest.skip("torch's OpenMP runtime here is not libgomp")
    return [int(v) for v in re.findall(r"GOMP_SPINCOUNT = '(\d+)'", stderr)]


BRIEF = runtime.SPIN_COUNT
DEFAULT_SPINS = 300_000  # libgomp's own, what a process that loaded torch first gets


def test_import_starlab_before_torch_starts_openmp_spinning_briefly():
    done = fresh_python(
        "import sys, starlab; assert 'torch' not in sys.modules, 'import starlab must not load torch'\n"
        "import os, torch; from starlab import runtime\n"
        "print(os.environ['GOMP_SPINCOUNT'], runtime.BRIEF_SPINS)"
    )
    assert set(spin_counts(done.stderr)) == {BRIEF}  # torch's libgomp (and any other OpenMP runtime loaded later)
    assert done.stdout.split() == [str(BRIEF), "True"]


def test_torch_imported_first_keeps_the_long_spin_and_says_so():
    """What the fix is against: libgomp read its settings when torch loaded, before starlab could set them."""
    done = fresh_python("import torch, starlab; from starlab import runtime; print(runtime.BRIEF_SPINS)")
    assert spin_counts(done.stderr)[0] == DEFAULT_SPINS
    assert done.stdout.split() == ["False"]


@pytest.mark.parametrize("policy", [{"OMP_WAIT_POLICY": "ACTIVE"}, {"GOMP_SPINCOUNT": "1000"}])
def test_a_wait_policy_the_user_chose_is_kept(policy):
    done = fresh_python(
        "import os, starlab, torch; from starlab import runtime\n"
        "print(os.environ.get('OMP_WAIT_POLICY'), os.environ.get('GOMP_SPINCOUNT'), runtime.BRIEF_SPINS)",
        **policy,
    )
    assert done.stdout.split() == [policy.get("OMP_WAIT_POLICY", "None"), policy.get("GOMP_SPINCOUNT", "None"), "False"]
    assert BRIEF not in spin_counts(done.stderr)


def test_the_command_line_spins_briefly():
    done = fresh_python(
        "import sys; from starlab.cli import main; import torch; from starlab import runtime\n"
        "main(['protocols', '--kind', 'synthetic']); print(runtime.BRIEF_SPINS)"
    )
    assert set(spin_counts(done.stderr)) == {BRIEF}
    assert done.stdout.split()[-1] == "True"


WORKER_PROBE = (
    "(__import__('os').environ.get('GOMP_SPINCOUNT'), __import__('starlab.runtime').runtime.BRIEF_SPINS, "
    "__import__('torch').get_num_threads())"
)


def test_process_workers_spin_briefly_with_their_threads_even_when_the_parent_loaded_torch_first():
    done = fresh_python(
        "import sys, torch\n"  # the parent spins long (as a user's script that imported torch first would)...
        "from starlab.evolve.executors import ProcessExecutor\n"
        "print('workers:', file=sys.stderr, flush=True)\n"  # what libgomp reports after this, workers reported
        "executor = ProcessExecutor(workers=1, threads=1)\n"
        f"print(repr(executor.pool.submit(eval, {WORKER_PROBE!r}).result()))\n"
        "executor.close()"
    )
    parent, workers = done.stderr.split("workers:\n")
    assert spin_counts(parent)[0] == DEFAULT_SPINS
    assert set(spin_counts(workers)) == {BRIEF}  # ...its workers (from a fork server that loaded torch later) do not
    assert done.stdout.strip() == f"('{BRIEF}', True, 1)"


def test_spin_briefly_is_decided_once_per_process():
    """In this test process torch may have been imported before starlab; whichever it was, the flag says it."""
    assert runtime.BRIEF_SPINS is not None
    assert runtime.spin_briefly() is runtime.BRIEF_SPINS


# ------------------------------------------------------------------------------------------ thread count


@pytest.fixture
def unchosen(monkeypatch):
    """A process where starlab has chosen no thread count yet and torch has its own (the suite runs on one,
    conftest); the count in effect is put back afterwards."""
    threads = torch.get_num_threads()
    monkeypatch.setattr(runtime, "CHOSEN_THREADS", None)
    torch.set_num_threads(TORCH_THREADS)
    yield
    torch.set_num_threads(threads)


def test_the_first_unspecified_thread_count_is_the_idle_cores_and_later_ones_leave_it(unchosen, monkeypatch):
    cores, default = os.cpu_count() or 1, torch.get_num_threads()
    monkeypatch.setattr(runtime, "busy_cores_elsewhere", lambda: cores - 0.8)  # others hold all but one core
    assert runtime.configure() == torch.get_num_threads() == 1
    torch.set_num_threads(2)  # the user's own choice afterwards...
    assert runtime.configure() == 2  # ...is left alone
    assert runtime.configure(3) == torch.get_num_threads() == 3  # an explicit count always applies
    monkeypatch.setattr(runtime, "CHOSEN_THREADS", None)
    torch.set_num_threads(default)
    monkeypatch.setattr(runtime, "busy_cores_elsewhere", lambda: 0.1)  # an idle machine: torch's default
    assert runtime.configure() == min(default, cores)


def busy_process() -> subprocess.Popen:
    """A process spinning on one core, returned once it spins (it says so on stdout), not after a guessed sleep."""
    busy = subprocess.Popen(
        [sys.executable, "-c", "print('spinning', flush=True)\nwhile True: pass"], stdout=subprocess.PIPE, text=True
    )
    assert busy.stdout.readline().strip() == "spinning"
    return busy


def test_busy_cores_elsewhere_measures_the_cpu_time_others_used_over_its_window(monkeypatch):
    """What the machine's processes used over the window, per second of it: a counter read before and after
    (``/proc/stat`` here, faked so that no other load on the machine changes the answer)."""
    readings = iter([100.0, 100.9])  # 0.9 CPU-seconds used by others during a 0.5 s window
    monkeypatch.setattr(runtime, "machine_busy_s", lambda: next(readings))
    monkeypatch.setattr(runtime.time, "sleep", lambda seconds: None)
    assert runtime.busy_cores_elsewhere(0.5) == pytest.approx(1.8)
    readings = iter([100.0, 100.0])  # nobody else ran
    assert runtime.busy_cores_elsewhere(0.5) == 0.0


def test_busy_cores_elsewhere_sees_a_busy_process():
    """On the real counter a spinning process counts: polled until a window sees it, since on a loaded machine
    the spinning process may wait a while for a core."""
    busy = busy_process()
    try:
        wait_for(lambda: runtime.busy_cores_elsewhere(0.2) > 0.6, "a window that sees the spinning process")
    finally:
        busy.kill()
        busy.wait()


@pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="needs a second core for the busy process to leave idle")
def test_a_fresh_process_beside_a_busy_one_trains_with_the_cores_left_and_records_them():
    busy = busy_process()
    try:
        done = fresh_python(
            "from starlab.assess import assess, get_protocol; from starlab.genome import preset\n"
            f"e = assess(preset('transformer++', 2), get_protocol('lm-tiny').with_settings(**{SHORT_LM}))\n"
            "print(e.status.value, e.metrics['threads'])"
        )
    finally:
        busy.kill()
        busy.wait()
    assert done.stdout.split() == ["ok", str(min(TORCH_THREADS, (os.cpu_count() or 1) - 1))]
