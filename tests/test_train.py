"""The trainer: learning happens, budgets and early stopping work, NaN ends a run as 'diverged'."""

import dataclasses
import json
import math
import shutil

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from starlab.genome import Genome, preset
from starlab.model import Backbone
from starlab.status import Status
from starlab.tasks import IGNORE, ArrayTask
from starlab.train import TrainConfig, learning_rate, train
from starlab.train.checkpoint import Checkpointing
from starlab.train.trainer import accumulate

VOCAB, LENGTH = 8, 12


def previous_token_task(n_train=512, n_test=128, seed=0) -> ArrayTask:
    """Targets are the previous input token: solvable only with token mixing."""
    rng = np.random.default_rng(seed)

    def split(n):
        x = rng.integers(0, VOCAB, (n, LENGTH))
        y = np.full_like(x, IGNORE)
        y[:, 1:] = x[:, :-1]
        return x, y

    return ArrayTask("previous-token", split(n_train), split(n_test), VOCAB, score="accuracy")


def model(genome, seed=0):
    torch.manual_seed(seed)
    return Backbone(genome, 32, VOCAB)


FAST = TrainConfig(lr=3e-3, max_steps=150, batch_size=32, warmup_steps=10, eval_every=50, seed=0)


def test_attention_learns_and_token_mixing_free_stack_does_not():
    task = previous_token_task()
    learner = train(model(preset("transformer++", 2)), task, FAST)
    blind = train(model(Genome.parse("91111-91111")), task, FAST)
    assert learner.status == Status.COMPLETED and learner.score > 0.9
    assert blind.score < 0.3  # chance is 1/8
    assert learner.history[-1]["train_loss"] < learner.history[0]["train_loss"]


def test_same_seed_same_run():
    task = previous_token_task()
    config = TrainConfig(max_steps=20, batch_size=16, seed=3)
    a, b = train(model(preset("mamba", 2)), task, config), train(model(preset("mamba", 2)), task, config)
    assert a.train_loss == b.train_loss and a.metrics == b.metrics


def test_early_stop_at_target_score():
    config = dataclasses.replace(FAST, max_steps=400, eval_every=10, target_score=0.95)
    result = train(model(preset("transformer++", 2)), previous_token_task(), config)
    assert result.status == Status.EARLY_STOPPED and result.steps < 400 and result.score >= 0.95


def test_time_budget():
    config = TrainConfig(max_steps=10_000, batch_size=8, time_budget_s=0.5)
    result = train(model(preset("mamba", 2)), previous_token_task(), config)
    assert result.status == Status.OUT_OF_TIME and result.steps < 10_000 and "score" in result.metrics


class NaNAfter(ArrayTask):
    """Injects a NaN into the loss from a given step on."""

    def __init__(self, step):
        task = previous_token_task()
        super().__init__(task.name, task.train, task.test, VOCAB)
        self.calls, self.step = 0, step

    def loss(self, logits, targets):
        self.calls += 1
        loss = super().loss(logits, targets)
        return loss * float("nan") if self.calls >= self.step else loss


def test_injected_nan_ends_the_run_as_diverged():
    result = train(model(preset("mamba", 2)), NaNAfter(5), TrainConfig(max_steps=50, batch_size=8, eval_every=2))
    assert result.status == Status.DIVERGED and result.steps == 5 and result.score == 0.0
    assert math.isnan(result.train_loss)


def test_losses_read_back_every_few_steps_still_end_a_run_at_the_step_that_diverged():
    config = TrainConfig(max_steps=50, batch_size=8, log_every=4)
    result = train(model(preset("mamba", 2)), NaNAfter(6), config)
    assert result.status == Status.DIVERGED and result.steps == 6 and math.isnan(result.train_loss)


class CountingTask(ArrayTask):
    """Counts the training batches drawn, so a callback can tell how far training ran before it was called."""

    def __init__(self):
        task = previous_token_task()
        super().__init__(task.name, task.train, task.test, VOCAB)
        self.drawn = 0

    def train_batches(self, batch_size, rng):
        for batch in super().train_batches(batch_size, rng):
            self.drawn += 1
            yield batch


def test_losses_reach_the_host_in_bursts_yet_every_step_is_reported_with_its_own_loss():
    """With ``log_every=5`` step 1's loss is read only once step 5 has run (the host never waited for the
    device in between); the reported losses equal those of a run that reads every step."""
    config = dataclasses.replace(FAST, max_steps=20, eval_every=None)
    seen, task = [], CountingTask()
    every_step = []
    train(model(preset("mamba", 2)), previous_token_task(), config, on_step=lambda s, loss: every_step.append(loss))
    bursty = dataclasses.replace(config, log_every=5)
    train(model(preset("mamba", 2)), task, bursty, on_step=lambda s, loss: seen.append((s, task.drawn, loss)))
    assert [s for s, _, _ in seen] == list(range(1, 21))
    assert [drawn for _, drawn, _ in seen] == [5] * 5 + [10] * 5 + [15] * 5 + [20] * 5
    assert [loss for _, _, loss in seen] == every_step


def test_a_compiled_run_trains_through_the_compiled_module_and_matches_the_eager_run(monkeypatch):
    """``compile=True`` trains via ``torch.compile(model)``; the eager backend (tracing only) keeps the test fast (the
    C++ backend compiles the same graph, in about 30 s)."""
    compiled, compile = [], torch.compile

    def compile_for_test(module):
        compiled.append(module)
        return compile(module, backend="eager")

    monkeypatch.setattr("starlab.train.trainer.torch.compile", compile_for_test)
    config = dataclasses.replace(FAST, max_steps=10, eval_every=None)
    eager = train(model(preset("mamba", 2)), previous_token_task(), config)
    trained = model(preset("mamba", 2))
    result = train(trained, previous_token_task(), dataclasses.replace(config, compile=True))
    assert compiled == [trained]
    assert result.train_loss == pytest.approx(eager.train_loss, rel=1e-5)
    assert result.metrics["score"] == pytest.approx(eager.metrics["score"], abs=1e-6)


class DeviceHolds(torch.nn.Module):
    """A model on a device that runs out of memory for more than ``most`` sequences at once."""

    def __init__(self, inner, most):
        super().__init__()
        self.inner, self.most, self.largest = inner, most, 0

    def forward(self, tokens):
        if len(tokens) > self.most:
            raise torch.cuda.OutOfMemoryError(f"CUDA out of memory: {len(tokens)} sequences")
        self.largest = max(self.largest, len(tokens))
        return self.inner(tokens)


def test_a_micro_batch_that_runs_out_of_memory_is_halved_until_one_fits():
    """Batch 16 on a device that holds 5 sequences: 16 and 8 fail, 4 fits, for training and evaluation alike;
    the run is the run with micro-batches of 4 from the start."""
    config = dataclasses.replace(FAST, batch_size=16, max_steps=12, eval_every=6, eval_batch_size=64)
    fitted = DeviceHolds(model(preset("mamba", 2)), most=5)
    result = train(fitted, previous_token_task(), dataclasses.replace(config, fit_micro_batch=True))
    planned = train(model(preset("mamba", 2)), previous_token_task(), dataclasses.replace(config, micro_batch=4))
    assert result.micro_batch == 4 and fitted.largest == 4
    assert result.history == planned.history and result.train_loss == planned.train_loss
    with pytest.raises(torch.cuda.OutOfMemoryError):
        train(DeviceHolds(model(preset("mamba", 2)), most=5), previous_token_task(), config)


def test_tokens_per_second_counts_training_time_only():
    config = TrainConfig(max_steps=10, batch_size=8, eval_every=1)  # ten evaluations: slower than the steps
    result = train(model(preset("mamba", 2)), previous_token_task(), config)
    assert result.tokens_per_s > 10 * 8 * LENGTH / result.seconds


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (bench/gpu.sh runs it)")
def test_on_cuda_a_bf16_run_with_fused_adamw_and_deferred_loss_reads_learns():
    config = dataclasses.replace(FAST, bf16=True, max_steps=100, eval_every=None)
    first = model(preset("striped-mamba", 4))
    result = train(first, previous_token_task(), config, device="cuda")
    assert (
        result.status == Status.COMPLETED and result.score > 0.5 and config.host_reads_every(torch.device("cuda")) > 1
    )


def test_nan_in_parameters_is_diverged_not_a_crash():
    m = model(preset("transformer++", 2))
    with torch.no_grad():
        m.livs[0].out_proj.weight[0, 0] = float("inf")
    result = train(m, previous_token_task(), TrainConfig(max_steps=5, batch_size=8))
    assert result.status == Status.DIVERGED


def test_embedding_only_training_leaves_frozen_tensors_bit_identical():
    torch.manual_seed(0)
    m = Backbone(preset("transformer++", 2), 32, VOCAB, tie_embeddings=False, max_positions=LENGTH)
    m.freeze_all_but_embeddings()
    before = {name: p.detach().clone() for name, p in m.named_parameters()}
    train(m, previous_token_task(), TrainConfig(max_steps=30, batch_size=16, weight_decay=0.1))
    for name, p in m.named_parameters():
        trainable = name.split(".")[0] in ("embed", "pos_embed", "head")
        assert torch.equal(p, before[name]) != trainable, name


def test_learning_rate_schedule():
    config = TrainConfig(lr=1.0, min_lr=0.1, warmup_steps=10, max_steps=110)
    assert learning_rate(0, config) == pytest.approx(0.1)
    assert learning_rate(9, config) == pytest.approx(1.0)
    assert learning_rate(60, config) == pytest.approx(0.55)
    assert learning_rate(110, config) == pytest.approx(0.1)


@pytest.mark.parametrize("field,value", [("lr", 0.0), ("max_steps", 0), ("warmup_steps", 5000), ("min_lr", 1.0)])
def test_bad_train_config_is_a_value_error(field, value):
    with pytest.raises(ValueError, match=f"TrainConfig.{field}"):
        TrainConfig(**{field: value})


def ragged_previous_token_task(seed=0) -> ArrayTask:
    """The previous-token task with a random share of each sequence's targets unscored, so that micro-batches
    score different numbers of positions (a plain mean of micro-batch means would weight them wrongly)."""
    task = previous_token_task(seed=seed)
    rng = np.random.default_rng(seed + 1)
    for _, targets in (task.train, task.test):
        keep = rng.random(targets.shape) < rng.uniform(0.1, 1.0, (len(targets), 1))
        targets[~keep] = IGNORE
    return task


def gradients_of(config, inputs, targets, task):
    net = model(preset("striped-mamba", 4))
    loss = accumulate(net, task, inputs, targets, config.micro_batch, config.bf16, torch.device("cpu"))
    return loss, {name: p.grad for name, p in net.named_parameters()}


@pytest.mark.parametrize("micro_batch", [1, 4, 8])
def test_micro_batches_accumulate_the_gradient_of_the_whole_batch(micro_batch):
    task = ragged_previous_token_task()
    inputs, targets = next(task.train_batches(16, np.random.default_rng(0)))
    whole_loss, whole = gradients_of(TrainConfig(batch_size=16), inputs, targets, task)
    loss, accumulated = gradients_of(TrainConfig(batch_size=16, micro_batch=micro_batch), inputs, targets, task)
    torch.testing.assert_close(loss, whole_loss, rtol=1e-5, atol=1e-6)
    for name, grad in whole.items():
        torch.testing.assert_close(accumulated[name], grad, rtol=1e-4, atol=1e-6, msg=name)


def test_a_run_with_micro_batches_trains_as_the_run_without():
    task, config = ragged_previous_token_task(), dataclasses.replace(FAST, max_steps=20, eval_every=10)
    whole = train(model(preset("striped-mamba", 4)), task, config)
    pieces = train(model(preset("striped-mamba", 4)), task, dataclasses.replace(config, micro_batch=8))
    assert [h["train_loss"] for h in pieces.history] == pytest.approx(
        [h["train_loss"] for h in whole.history], rel=1e-3
    )
    assert pieces.metrics["accuracy"] == pytest.approx(whole.metrics["accuracy"], abs=0.01)


def test_a_micro_batch_that_does_not_divide_the_batch_is_refused():
    with pytest.raises(ValueError, match=r"TrainConfig\.micro_batch must divide batch_size 16, got 5"):
        TrainConfig(batch_size=16, micro_batch=5)


class Killed(Exception):
    pass


def kill_at(step_to_die):
    def on_step(step, loss):
        if step == step_to_die:
            raise Killed

    return on_step


def test_a_run_killed_and_resumed_from_its_checkpoint_ends_bit_identical(tmp_path):
    """Checkpoints every 5 steps; killed at step 12 (after the step-10 checkpoint) and at step 17 of the
    resumed run; the third attempt finishes. Weights, history and loss equal an uninterrupted run exactly."""
    task, genome = ragged_previous_token_task(), preset("striped-mamba", 4)
    config = dataclasses.replace(FAST, max_steps=25, eval_every=10, micro_batch=16)
    whole = model(genome)
    expected = train(whole, task, config)
    config = dataclasses.replace(config, log_every=3)  # losses read in bursts: checkpoints must not lose them
    checkpoints = Checkpointing(tmp_path / "run", every_steps=5)
    for attempt, dies_at in enumerate((12, 17)):  # the first attempt starts from the same initial weights
        with pytest.raises(Killed):
            train(model(genome, seed=attempt * 7), task, config, on_step=kill_at(dies_at), checkpointing=checkpoints)
    assert json.loads((tmp_path / "run" / "latest.json").read_text()) == {"checkpoint": "step-15"}
    assert [p.name for p in (tmp_path / "run").iterdir() if p.is_dir()] == ["step-15"]  # older ones deleted
    resumed = model(genome, seed=99)  # its own initial weights are replaced by the checkpoint's
    result = train(resumed, task, config, checkpointing=checkpoints)
    assert result.steps == expected.steps and result.train_loss == expected.train_loss
    assert result.history == expected.history
    for (name, mine), theirs in zip(resumed.state_dict().items(), whole.state_dict().values(), strict=True):
        assert torch.equal(mine, theirs), name


def test_a_partly_written_checkpoint_is_not_used(tmp_path):
    task, genome = ragged_previous_token_task(), preset("striped-mamba", 4)
    config = dataclasses.replace(FAST, max_steps=6, warmup_steps=2, eval_every=None)
    checkpoints = Checkpointing(tmp_path / "run", every_steps=3)
    with pytest.raises(Killed):
        train(model(genome), task, config, on_step=kill_at(5), checkpointing=checkpoints)
    (tmp_path / "run" / "step-6.partial").mkdir()  # a crash while writing the next one
    (tmp_path / "run" / "step-6.partial" / "model.safetensors").write_bytes(b"torn")
    first, again = model(genome), model(genome)
    train(first, task, config)
    train(again, task, config, checkpointing=checkpoints)
    assert all(torch.equal(a, b) for a, b in zip(first.state_dict().values(), again.state_dict().values(), strict=True))


# ---- tampered or torn checkpoints ---------------------------------------------------------------------------
def _newest(directory):
    """The step folder ``latest.json`` names (``step-4`` in the fixtures)."""
    return directory / json.loads((directory / "latest.json").read_text())["checkpoint"]


def edit_state(change):
    def tamper(directory):
        path = _newest(directory) / "state.json"
        path.write_text(json.dumps(change(json.loads(path.read_text()))))

    return tamper


def set_state(**values):
    return edit_state(lambda meta: {**meta, **values})


def edit_tensors(file, change):
    def tamper(directory):
        path = _newest(directory) / file
        tensors = load_file(str(path))
        change(tensors)
        save_file(tensors, str(path))

    return tamper


def write_file(name, data):
    def tamper(directory):
        path = directory / name if name == "latest.json" else _newest(directory) / name
        path.write_bytes(data if isinstance(data, bytes) else data.encode())

    return tamper


def cut_file(name, keep):
    def tamper(directory):
        path = _newest(directory) / name
        path.write_bytes(path.read_bytes()[:keep])

    return tamper


def step_far_ahead(directory):
    """A consistent checkpoint (folder, pointer, state) at step 10**9: past any run's steps."""
    folder = _newest(directory)
    folder.rename(directory / "step-1000000000")
    (directory / "latest.json").write_text(json.dumps({"checkpoint": "step-1000000000"}))
    set_state(step=10**9)(directory)


def drop(key):
    return lambda tensors: tensors.pop(key)


def put(key, value):
    return lambda tensors: tensors.update({key: value})


#: (id, tampering of a checkpoint directory, text of the one-line error, found before any model is built)
CHECKPOINT_CASES = [
    ("step-1e9", set_state(step=10**9), "'step' must be 4 (its folder is step-4), got 1000000000", True),
    ("step-string", set_state(step="4"), "'step' must be 4 (its folder is step-4), got \"4\"", True),
    ("step-negative", set_state(step=-1), "'step' must be 4", True),
    ("step-float", set_state(step=4.0), "'step' must be 4", True),
    ("step-past-the-run", step_far_ahead, "the checkpoint is at step 1000000000, past the run's", True),
    ("loss-string", set_state(loss="low"), "'loss' must be a number", True),
    ("seconds-negative", set_state(seconds=-5), "'seconds' must be a finite number >= 0", True),
    ("history-string", set_state(history="x"), "'history' must be a list of evaluations", True),
    ("history-without-score", set_state(history=[{"step": 4}]), "'history' must be a list of evaluations", True),
    ("param-groups-missing", edit_state(lambda m: {k: v for k, v in m.items() if k != "param_groups"}),
     "'param_groups' is missing", True),
    ("state-a-list", write_file("state.json", "[]"), "state.json: must hold a JSON object, got []", True),
    ("state-torn", write_file("state.json", '{"step": 4, "lo'), "state.json: not JSON", True),
    ("state-missing", lambda d: (_newest(d) / "state.json").unlink(), "state.json: missing", True),
    ("model-torn", cut_file("model.safetensors", -100), "model.safetensors: not a readable safetensors file", True),
    ("model-empty", cut_file("model.safetensors", 0), "model.safetensors: not a readable safetensors file", True),
    ("optimizer-torn", cut_file("optimizer.safetensors", 1000), "optimizer.safetensors: not a readable", True),
    ("latest-a-list", write_file("latest.json", "[]"), 'must be {"checkpoint": "step-N"}', True),
    ("latest-leaves", write_file("latest.json", '{"checkpoint": "../../elsewhere/step-4"}'),
     'must be {"checkpoint": "step-N"}', True),
    ("latest-absolute", write_file("latest.json", '{"checkpoint": "/etc"}'), 'must be {"checkpoint": "step-N"}', True),
    ("latest-a-number", write_file("latest.json", '{"checkpoint": 4}'), 'must be {"checkpoint": "step-N"}', True),
    ("latest-no-folder", write_file("latest.json", '{"checkpoint": "step-99"}'),
     "names step-99, which is not a checkpoint folder", True),
    ("latest-not-utf8", write_file("latest.json", b"\xff\xfe"), "latest.json: not JSON", True),
    ("latest-a-folder", lambda d: ((d / "latest.json").unlink(), (d / "latest.json").mkdir()),
     "latest.json: missing or not a plain file", True),
    ("moment-shape", edit_tensors("optimizer.safetensors", put("state.0.exp_avg", torch.zeros(3, 3))),
     "'state.0.exp_avg' is a torch.float32 tensor of shape [3, 3]; this run's optimizer needs floats of shape", False),
    ("moment-missing", edit_tensors("optimizer.safetensors", drop("state.0.exp_avg")),
     "'state.0.exp_avg' is missing", False),
    ("moment-nan", edit_tensors("optimizer.safetensors", put("state.0.step", torch.tensor(float("nan")))),
     "'state.0.step' holds values that are not finite", False),
    ("moment-of-no-parameter", edit_tensors("optimizer.safetensors", put("state.999.exp_avg", torch.zeros(1))),
     "holds \"state.999.exp_avg\", not a tensor of this run's optimizer", False),
    ("rng-missing", edit_tensors("optimizer.safetensors", drop("rng.cpu")), "'rng.cpu' (the random state)", False),
    ("rng-floats", edit_tensors("optimizer.safetensors", put("rng.cpu", torch.zeros(3))),
     "'rng.cpu' is not a random state", False),
    ("param-groups-one", edit_state(lambda m: {**m, "param_groups": m["param_groups"][:1]}),
     "'param_groups' has 1 groups; this run's optimizer has 2", False),
    ("param-groups-lr-string", edit_state(lambda m: {**m, "param_groups": [{**g, "lr": "fast"} for g in
                                                                            m["param_groups"]]}),
     "'lr' must be like", False),
    ("param-groups-other-params", edit_state(lambda m: {**m, "param_groups": [{**g, "params": [0]} for g in
                                                                               m["param_groups"]]}),
     "group 0 must hold parameters", False),
    ("model-tensor-missing", edit_tensors("model.safetensors", drop("embed.weight")),
     "model.safetensors: does not fit this run's model", False),
    ("model-tensor-shape", edit_tensors("model.safetensors", put("embed.weight", torch.zeros(2, 2))),
     "model.safetensors: does not fit this run's model", False),
]  # fmt: skip

CHECKPOINTED = dataclasses.replace(FAST, max_steps=8, warmup_steps=2, eval_every=4)


@pytest.fixture(scope="module")
def checkpointed(tmp_path_factory):
    """A run of 8 steps killed at step 5, after its step-4 checkpoint."""
    directory = tmp_path_factory.mktemp("checkpointed") / "run"
    with pytest.raises(Killed):
        train(model(preset("mamba", 2)), previous_token_task(), CHECKPOINTED, on_step=kill_at(5),
              checkpointing=Checkpointing(directory, every_steps=4))  # fmt: skip
    assert _newest(directory).name == "step-4"
    return directory


@pytest.mark.parametrize(
    ("tamper", "expected"), [c[1:3] for c in CHECKPOINT_CASES], ids=[c[0] for c in CHECKPOINT_CASES]
)
def test_a_tampered_or_torn_checkpoint_is_refused_in_one_line_naming_the_file(checkpointed, tmp_path, tamper, expected):
    directory = tmp_path / "run"
    shutil.copytree(checkpointed, directory)
    tamper(directory)
    steps = []
    with pytest.raises(ValueError) as info:
        train(model(preset("mamba", 2)), previous_token_task(), CHECKPOINTED, on_step=lambda s, _: steps.append(s),
              checkpointing=Checkpointing(directory, every_steps=4))  # fmt: skip
    message = str(info.value)
    assert expected in message and "\n" not in message and len(message) < 400, message
    assert message.startswith(str(directory)), message  # names the file
    assert steps == []  # refused before a step was trained


def test_a_checkpoint_at_the_last_step_finishes_the_run_without_training_more(checkpointed, tmp_path):
    """A run killed after its last checkpoint and before its report: resumed, it reports what it trained."""
    config = dataclasses.replace(CHECKPOINTED, max_steps=4)
    whole = train(model(preset("mamba", 2)), previous_token_task(), config)
    shutil.copytree(checkpointed, tmp_path / "run")
    steps, checkpoints = [], Checkpointing(tmp_path / "run", every_steps=4)
    resumed = train(model(preset("mamba", 2), seed=5), previous_token_task(), config,
                    on_step=lambda s, _: steps.append(s), checkpointing=checkpoints)  # fmt: skip
    assert steps == [] and resumed.steps == 4 and resumed.resumed_from == 4
    assert resumed.history == whole.history and resumed.metrics == whole.metrics
