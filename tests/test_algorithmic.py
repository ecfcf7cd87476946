"""The random-transformer algorithmic suite: the paper's formats, scoring, splits, metrics and presets."""

import math
import random

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from starlab.genome import preset
from starlab.model import Backbone
from starlab.tasks import IGNORE, ArrayTask
from starlab.tasks.algorithmic import (
    ALGORITHMIC_TASKS,
    SIZES,
    CircuitTarget,
    DecimalAddition,
    Memorization,
    ModularAddition,
    Needle,
    Parentheses,
    TrainingBudget,
    is_balanced,
    make_algorithmic_task,
    parentheses_string,
    task_parameters,
)
from starlab.train import TrainConfig, train

CPU = torch.device("cpu")
TINY = {
    "modular-addition": {"p": 11},
    "needle": {"k_max": 3, "test_size": 64},
    "decimal-addition": {"digits": 2, "test_size": 64},
    "parentheses": {"max_pairs": 3, "test_size": 64},
    "memorization": {"n": 8},
    "circuit-imitation": {"vocab_size": 16, "length": 6, "target_width": 8, "test_size": 64},
}


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny models run fastest on one thread; two threads stall on OpenMP barriers when the cores are shared."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def tiny(name, seed=0, **overrides):
    return make_algorithmic_task(name, "cpu", seed, **{**TINY[name], **overrides})


def held_out(task):
    """Held-out ``(inputs, targets)`` arrays of a token task."""
    return task.test if isinstance(task, ArrayTask) else task.split(task.test)


class Lookup(nn.Module):
    """A perfect memorizer: one-hot logits of the known next tokens of every input row it was built from."""

    def __init__(self, inputs, targets, vocab_size, trainable=10):
        super().__init__()
        self.answers = {row.tobytes(): np.where(t == IGNORE, 0, t) for row, t in zip(inputs, targets, strict=True)}
        self.vocab_size = vocab_size
        self.weight = nn.Parameter(torch.zeros(trainable))
        self.frozen = nn.Parameter(torch.zeros(7), requires_grad=False)

    def forward(self, tokens):
        answers = np.stack([self.answers[row.tobytes()] for row in tokens.cpu().numpy()])
        return F.one_hot(torch.as_tensor(answers), self.vocab_size).float().to(tokens.device)


def fixed_data(task):
    """Every fixed array of a task: the training split of table tasks, and the test set."""
    return [*task.train, *task.test] if isinstance(task, ArrayTask) else [task.test]


def oracle(task):
    return Lookup(*held_out(task), task.vocab_size)


def backbone(task, width=16):
    torch.manual_seed(0)
    return Backbone(
        preset("transformer++", 2), width, task.vocab_size, max_positions=task.seq_len, tie_embeddings=False
    )


# ---- formats against the paper's worked examples ----------------------------------------------------------


def test_needle_worked_example_scores_the_query_and_answers_its_value():
    task = Needle(k_max=30, test_size=1)
    sequence = np.zeros((1, 63), dtype=np.int64)
    sequence[0, :10] = [128, 1, 129, 2, 130, 3, 131, 4, 159, 2]  # a 1 b 2 c 3 d 4 b -> 2
    inputs, targets = task.split(sequence)
    assert inputs.shape == (1, task.seq_len) == (1, 62)
    assert np.flatnonzero(targets[0] != IGNORE).tolist() == [8]
    assert targets[0, 8] == 2


def decode_needle(sequence, k_max):
    """(pairs, query key, answer) of one needle sequence, checking the paper's layout on the way."""
    pairs = {}
    position = 0
    while 128 <= sequence[position] < 128 + k_max:
        key, value = sequence[position] - 128, sequence[position + 1]
        assert key not in pairs and 1 <= value <= 127
        pairs[key] = value
        position += 2
    query = sequence[position] - 128 - k_max
    assert 1 <= len(pairs) <= k_max and query in pairs
    assert sequence[position + 1] == pairs[query]
    assert not sequence[position + 2 :].any()  # zero padding
    return pairs, query, sequence[position + 1]


def test_needle_samples_follow_the_paper_layout():
    task = Needle(k_max=6, test_size=400)
    assert task.test.shape == (400, 15) and task.vocab_size == 256
    counts = {len(decode_needle(row, 6)[0]) for row in task.test}
    assert counts == set(range(1, 7))
    inputs, targets = task.split(task.test)
    assert ((targets != IGNORE).sum(axis=1) == 1).all()
    assert (inputs[targets != IGNORE] >= 128 + 6).all()
    expected = np.mean([1 / len(decode_needle(row, 6)[0]) for row in task.test])
    assert task.baselines["in_context_baseline"] == pytest.approx(expected)


def test_decimal_worked_example():
    task = DecimalAddition(digits=10, test_size=1)
    sequence = task.encode([1111111112], [2222222223])[0]
    expected = [2, *[1] * 9, 10, 3, *[2] * 9, 11, 25, *[23] * 9, 30, 12]  # sum 3333333335 reversed, stop, pad
    assert sequence.tolist() == expected and len(expected) == 3 * 10 + 4
    _, targets = task.split(sequence[None])
    scored = np.flatnonzero(targets[0] != IGNORE)
    assert scored.tolist() == list(range(22, 33))  # digits 2..10, stop, pad after stop; not the first digit
    assert targets[0, scored].tolist() == [*[23] * 9, 30, 12]


def test_decimal_carry_out_and_the_first_digit_option():
    task = DecimalAddition(digits=2, first_digit=True, test_size=1)
    sequence = task.encode([99], [98])[0]  # 197 -> 7 9 1, then stop at the last position
    assert sequence.tolist() == [9, 9, 10, 8, 9, 11, 27, 29, 21, 30]
    _, targets = task.split(sequence[None])
    assert np.flatnonzero(targets[0] != IGNORE).tolist() == [5, 6, 7, 8]
    assert targets[0, 5] == 27  # the first sum digit, predicted at '='


def test_decimal_samples_add_up():
    task = DecimalAddition(digits=4, test_size=300)
    for row in task.test:
        a = int("".join(map(str, row[0:4][::-1])))
        b = int("".join(map(str, row[5:9][::-1])))
        answer = row[10:]
        stop = answer.tolist().index(30)
        assert 1000 <= min(a, b) and max(a, b) <= 9999
        assert int("".join(str(t - 20) for t in answer[:stop][::-1])) == a + b
        assert (answer[stop + 1 :] == 12).all()


def test_modular_addition_split_sizes_and_format_at_p_199():
    task = ModularAddition(p=199)
    (train_x, train_y), (test_x, test_y) = task.train, task.test
    assert len(train_x) == 37_620 and len(test_x) == 1_981
    pairs = np.concatenate([train_x, test_x])
    assert len({tuple(row) for row in pairs}) == 199 * 199
    targets = np.concatenate([train_y, test_y])
    assert (targets[:, 0] == IGNORE).all()
    assert (targets[:, 1] == pairs.sum(axis=1) % 199).all()
    assert task.seq_len == 2 and task.vocab_size == 199 and task.steps_per_epoch(4000) == 10


def test_memorization_table_covers_every_pair_once():
    task = Memorization(n=16)
    inputs, targets = task.train
    assert task.vocab_size == 32 and inputs.shape == (256, 2)
    assert {tuple(row) for row in inputs} == {(x, 16 + y) for x in range(16) for y in range(16)}
    assert (targets[:, 0] == IGNORE).all() and ((targets[:, 1] >= 0) & (targets[:, 1] < 16)).all()
    assert task.test is task.train  # evaluated on the training table


# ---- parentheses ------------------------------------------------------------------------------------------


def paper_parentheses(max_len, draws):
    """``gen_single`` of the paper code's task_dyckstream.py, transcribed as a reference."""

    def gen_balanced(t):
        if t == 1:
            return "()"
        if draws.randint(0, 1):
            return "(" + gen_balanced(t - 1) + ")"
        u = draws.randint(1, t - 1)
        return gen_balanced(u) + gen_balanced(t - u)

    mutate = draws.randint(0, 3)
    if draws.randint(0, 2) == 0:
        s = "".join(draws.choice("()") for _ in range(draws.randint(1, max_len * 2)))
    else:
        s = gen_balanced(draws.randint(1, max_len))
        if draws.randint(0, 1):
            mutate = 0
    if mutate & 1:
        rep = 1
        while draws.randint(0, 1):
            rep += 1
        for _ in range(rep):
            p, q = draws.randint(0, len(s) - 1), draws.randint(0, len(s) - 1)
            if p < q:
                s = s[:p] + s[q] + s[p + 1 : q] + s[p] + s[q + 1 :]
    if mutate & 2:
        rep = 1
        while draws.randint(0, 1):
            rep += 1
        if draws.randint(0, 2):
            rep *= 2
        for _ in range(rep):
            p = draws.randint(0, len(s) - 1)
            s = s[:p] + {"(": ")", ")": "("}[s[p]] + s[p + 1 :]
    return [{"(": 1, ")": 2}[c] for c in s]


def test_parentheses_generator_matches_the_paper_code_draw_for_draw():
    ours, theirs = random.Random(7), random.Random(7)
    for _ in range(500):
        assert parentheses_string(8, ours) == paper_parentheses(8, theirs)


def test_parentheses_label_balance_and_answer_tokens():
    task = Parentheses(max_pairs=30, test_size=4000)
    assert task.baselines["balanced_fraction"] == pytest.approx(0.528, abs=0.025)
    assert task.baselines["majority_baseline"] == max(task.baselines["balanced_fraction"], 0.5)
    inputs, targets = task.split(task.test)
    assert ((targets != IGNORE).sum(axis=1) == 1).all() and (inputs[targets != IGNORE] == 3).all()
    for row in task.test[:300]:
        end = row.tolist().index(3)
        assert row[end + 1] == (2 if is_balanced(row[:end].tolist()) else 1)
        assert not row[end + 2 :].any() and end <= 60


def test_is_balanced():
    assert is_balanced([1, 2, 1, 1, 2, 2]) and is_balanced([])
    assert not is_balanced([2, 1]) and not is_balanced([1, 1, 2])


# ---- scoring, determinism, held-out data ---------------------------------------------------------------


@pytest.mark.parametrize("name", ["modular-addition", "memorization", "needle", "parentheses", "decimal-addition"])
def test_a_perfect_model_scores_one(name):
    task = tiny(name)
    metrics = task.evaluate(oracle(task), 50, CPU)
    assert metrics["score"] == metrics["accuracy"] == 1.0


def test_sequence_accuracy_is_stricter_than_pooled_token_accuracy():
    task = tiny("decimal-addition")
    inputs, targets = task.split(task.test)
    last = (targets != IGNORE).cumsum(axis=1).argmax(axis=1)  # last scored position of each sequence
    wrong = targets.copy()
    wrong[np.arange(len(wrong)), last] = 0  # token 0 never follows a sum digit or stop
    metrics = task.evaluate(Lookup(inputs, wrong, task.vocab_size), 50, CPU)
    scored = (targets != IGNORE).sum()
    assert metrics["sequence_accuracy"] == 0.0
    assert metrics["accuracy"] == pytest.approx(1 - len(targets) / scored) == metrics["score"]


@pytest.mark.parametrize("name", list(ALGORITHMIC_TASKS))
def test_equal_seeds_give_equal_data_and_batches(name):
    first, second, other = tiny(name), tiny(name), tiny(name, seed=1)
    a = next(first.train_batches(8, np.random.default_rng(3)))
    b = next(second.train_batches(8, np.random.default_rng(3)))
    assert all(torch.equal(x, y) for x, y in zip(a, b, strict=True))
    assert all(np.array_equal(x, y) for x, y in zip(fixed_data(first), fixed_data(second), strict=True))
    assert not all(np.array_equal(x, y) for x, y in zip(fixed_data(first), fixed_data(other), strict=True))


@pytest.mark.parametrize("name", list(ALGORITHMIC_TASKS))
def test_tasks_never_touch_global_random_state(name):
    states = torch.get_rng_state(), np.random.get_state()[1].copy(), random.getstate()
    task = tiny(name)
    next(task.train_batches(4, np.random.default_rng(0)))
    assert torch.equal(torch.get_rng_state(), states[0])
    assert np.array_equal(np.random.get_state()[1], states[1]) and random.getstate() == states[2]


@pytest.mark.parametrize(("name", "params"), [("needle", {"k_max": 1}), ("parentheses", {"max_pairs": 2})])
def test_streamed_training_skips_test_sequences(name, params):
    task = tiny(name, **params, test_size=60, exclude_test=True)  # tiny spaces: many repeats of test sequences
    test_inputs = {row.tobytes() for row in task.split(task.test)[0]}
    batches = task.train_batches(64, np.random.default_rng(0))
    trained = {row.numpy().tobytes() for _ in range(10) for row in next(batches)[0]}
    assert trained and not trained & test_inputs
    leaky = tiny(name, **params, test_size=60, exclude_test=False)
    batches = leaky.train_batches(64, np.random.default_rng(0))
    assert {row.numpy().tobytes() for _ in range(10) for row in next(batches)[0]} & test_inputs


@pytest.mark.parametrize("name", ["needle", "circuit-imitation"])
def test_a_trainer_seeded_like_the_task_does_not_replay_the_test_set(name):
    task = tiny(name, seed=5)
    replay = task.sample(len(task.test), np.random.default_rng(5))
    assert not {row.tobytes() for row in replay} & {row.tobytes() for row in task.test}


# ---- memorization metrics ------------------------------------------------------------------------------


def test_memorization_metrics_of_a_perfect_memorizer():
    task = Memorization(n=16)
    metrics = task.evaluate(Lookup(*task.train, task.vocab_size, trainable=32), 100, CPU)
    assert metrics["memorized_fraction"] == metrics["score"] == 1.0
    assert metrics["bits_memorized"] == 256 * 4  # log2(16) bits per fact
    assert metrics["trainable_parameters"] == 32  # frozen parameters do not count
    assert metrics["bits_per_parameter"] == 1024 / 32


def test_memorization_counts_only_correct_facts():
    task = Memorization(n=8)
    inputs, targets = task.train
    wrong = targets.copy()
    wrong[::4, 1] = (wrong[::4, 1] + 1) % 8  # a quarter of the facts answered wrongly
    metrics = task.evaluate(Lookup(inputs, wrong, task.vocab_size), 64, CPU)
    assert metrics["memorized_fraction"] == 0.75 and metrics["bits_memorized"] == 48 * 3


def test_memorization_needs_a_module_for_bits_per_parameter():
    task = Memorization(n=4)
    lookup = Lookup(*task.train, task.vocab_size)
    metrics = task.evaluate(lambda tokens: lookup(tokens), 16, CPU)
    assert metrics["bits_memorized"] == 32 and "bits_per_parameter" not in metrics


# ---- circuit imitation ---------------------------------------------------------------------------------


def test_circuit_target_is_seeded_and_amplified_as_in_the_paper_code():
    layers, width = 3, 64
    target = CircuitTarget(vocab_size=64, length=8, width=width, layers=layers, heads=2, seed=0)
    same = CircuitTarget(vocab_size=64, length=8, width=width, layers=layers, heads=2, seed=0)
    other = CircuitTarget(vocab_size=64, length=8, width=width, layers=layers, heads=2, seed=1)
    assert all(torch.equal(a, b) for a, b in zip(target.state_dict().values(), same.state_dict().values(), strict=True))
    assert not torch.equal(target.lm_head.weight, other.lm_head.weight)
    projection = 0.02 / math.sqrt(2 * layers)  # HF GPT-2's c_proj rule
    expected = {
        "c_attn": 10 * 0.02,
        "c_fc": 0.02,
        "attn_proj": projection,
        "mlp_proj": 20 * projection,
    }
    for block in target.blocks:
        for layer, std in expected.items():
            assert getattr(block, layer).weight.std().item() == pytest.approx(std, rel=0.05)
            assert not getattr(block, layer).bias.any()
        assert (block.ln_1.weight == 1).all() and not block.ln_2.bias.any()
    assert target.lm_head.weight.std().item() == pytest.approx(0.02 * 100 / math.sqrt(width), rel=0.05)
    assert target.wte.weight.std().item() == pytest.approx(0.02, rel=0.05)


def test_circuit_target_is_causal():
    target = CircuitTarget(vocab_size=16, length=6, width=8, layers=3, heads=2, seed=0)
    tokens = torch.randint(0, 16, (3, 6), generator=torch.Generator().manual_seed(0))
    changed = tokens.clone()
    changed[:, 4:] = (changed[:, 4:] + 1) % 16
    torch.testing.assert_close(target(changed)[:, :4], target(tokens)[:, :4])
    assert not torch.allclose(target(changed)[:, -1], target(tokens)[:, -1])


def test_a_student_equal_to_the_target_has_zero_kl():
    task = tiny("circuit-imitation")
    metrics = task.evaluate(task.target, 20, CPU)
    assert metrics["kl"] == pytest.approx(0.0, abs=1e-5) and metrics["score"] == pytest.approx(1.0, abs=1e-5)
    inputs, targets = next(task.train_batches(16, np.random.default_rng(0)))
    assert targets.shape == (16, 16) and targets.dtype == torch.float32
    assert task.loss(task.target(inputs), targets).item() == pytest.approx(0.0, abs=1e-5)


def test_circuit_kl_of_a_uniform_student_is_log_vocab_minus_target_entropy():
    task = tiny("circuit-imitation")
    metrics = task.evaluate(lambda tokens: torch.zeros(*tokens.shape, 16), 32, CPU)
    assert metrics["kl"] == pytest.approx(math.log(16) - metrics["target_entropy"], abs=1e-4)
    assert metrics["score"] == pytest.approx(math.exp(-metrics["kl"]))
    assert 0 < metrics["baseline_kl"] < metrics["kl"]


def test_circuit_loss_uses_only_the_last_position():
    task = tiny("circuit-imitation")
    _, targets = next(task.train_batches(4, np.random.default_rng(0)))
    logits = torch.randn(4, 6, 16, generator=torch.Generator().manual_seed(0))
    changed = logits.clone()
    changed[:, :-1] = 0
    assert task.loss(logits, targets).item() == task.loss(changed, targets).item() > 0


# ---- presets, budgets, errors ----------------------------------------------------------------------------


def test_every_task_has_paper_and_cpu_presets_with_budgets():
    assert set(SIZES) == set(ALGORITHMIC_TASKS)
    for name, sizes in SIZES.items():
        assert set(sizes) == {"paper", "cpu"}
        paper, cpu = sizes["paper"].budget, sizes["cpu"].budget
        assert paper.batch_size * paper.steps > cpu.batch_size * cpu.steps
        assert set(sizes["cpu"].params) <= set(task_parameters(name))
    assert SIZES["modular-addition"]["paper"].budget == TrainingBudget(4000, 50_000, 1e-3, 1e-3, 500, width=1024)
    memorization = SIZES["memorization"]["paper"].budget
    assert (memorization.lr, memorization.weight_decay, memorization.steps) == (5e-3, 1e-4, 168_000)


def test_factory_applies_size_presets_and_overrides():
    task = make_algorithmic_task("needle")
    assert task.k_max == 5 and task.budget is SIZES["needle"]["cpu"].budget
    paper = make_algorithmic_task("parentheses", "paper", test_size=10)
    assert paper.max_pairs == 30 and paper.seq_len == 62 and paper.budget.steps == 10_000
    assert Needle(test_size=1).budget is SIZES["needle"]["paper"].budget  # built directly: the paper's sizes
    assert make_algorithmic_task("modular-addition", p=13).p == 13


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: make_algorithmic_task("sorting"), "tasks: modular-addition, needle, decimal-addition"),
        (lambda: make_algorithmic_task("needle", "huge"), "sizes: paper, cpu"),
        (lambda: make_algorithmic_task("needle", k=3), "parameters: k_max, test_size, exclude_test"),
        (lambda: make_algorithmic_task("needle", k_max=0), "k_max must be an integer in 1..64"),
        (lambda: make_algorithmic_task("needle", k_max=65), "k_max"),
        (lambda: make_algorithmic_task("decimal-addition", digits=19), "digits"),
        (lambda: make_algorithmic_task("decimal-addition", first_digit=1), "first_digit"),
        (lambda: make_algorithmic_task("parentheses", max_pairs=2.5), "max_pairs"),
        (lambda: make_algorithmic_task("parentheses", test_size=0), "test_size"),
        (lambda: make_algorithmic_task("parentheses", exclude_test="no"), "exclude_test"),
        (lambda: make_algorithmic_task("modular-addition", p=1), "p must be"),
        (lambda: make_algorithmic_task("modular-addition", train_fraction=1.0), "train_fraction"),
        (lambda: make_algorithmic_task("memorization", n=True), "n must be"),
        (lambda: make_algorithmic_task("memorization", seed=-1), "seed"),
        (lambda: make_algorithmic_task("circuit-imitation", target_width=9), "target_width must be a multiple"),
        (lambda: make_algorithmic_task("circuit-imitation", target_device="gpu0"), "target_device"),
    ],
)
def test_bad_names_and_values_give_one_line_errors(call, message):
    with pytest.raises(ValueError) as error:
        call()
    assert message in str(error.value) and "\n" not in str(error.value)


# ---- with a real model -----------------------------------------------------------------------------------


#: Tasks a tiny embedding-only model cannot improve on held out in a few steps: needles need in-context
#: retrieval, and 7 unseen sums of modular addition do not follow from memorising 114 others.
NO_QUICK_HELD_OUT_GAIN = {"modular-addition", "needle"}


@pytest.mark.parametrize("name", list(ALGORITHMIC_TASKS))
def test_a_backbone_trains_on_every_task(name):
    """Embedding-only training through the real trainer lowers the loss on every task; LIVs stay frozen."""
    task = tiny(name)
    model = backbone(task)
    model.freeze_all_but_embeddings()
    inputs, _ = next(task.train_batches(16, np.random.default_rng(0)))
    assert inputs.shape == (16, task.seq_len) and int(inputs.max()) < task.vocab_size
    trained = {id(p) for p in model.embedding_parameters()}
    frozen = {key: p.detach().clone() for key, p in model.named_parameters() if id(p) not in trained}
    before = task.evaluate(model, 64, CPU)["score"]
    losses = []
    config = TrainConfig(lr=5e-2, max_steps=100, batch_size=128, weight_decay=0.0, seed=0)
    result = train(model, task, config, on_step=lambda step, loss: losses.append(loss))
    assert len(losses) == 100 and all(map(math.isfinite, losses))  # every step ran: no early stop, no NaN
    first, last = np.mean(losses[:10]), np.mean(losses[-10:])
    assert last < 0.9 * first, f"loss {first:.3f} -> {last:.3f}"  # batch noise is ~1%; no steps: ratio ~1
    assert model.embed.weight.grad.abs().sum() > 0
    for param_name, param in model.named_parameters():
        if id(param) not in trained:
            assert torch.equal(param, frozen[param_name]), f"{param_name} moved in embedding-only training"
    metrics = result.metrics
    assert 0.0 <= metrics["score"] <= 1.0
    if name not in NO_QUICK_HELD_OUT_GAIN:
        assert metrics["score"] > before + 0.3, f"score {before:.3f} -> {metrics['score']:.3f}"
    if name == "memorization":
        trainable = sum(p.numel() for p in model.embedding_parameters())
        assert metrics["trainable_parameters"] == trainable
        assert metrics["bits_per_parameter"] == pytest.approx(metrics["bits_memorized"] / trainable)
        assert metrics["bits_memorized"] == round(metrics["memorized_fraction"] * 64) * 3 > 0  # log2(8) bits a fact


def test_embedding_only_training_fits_the_modular_addition_train_split():
    task = tiny("modular-addition", p=5, train_fraction=0.8)
    model = backbone(task, width=32)
    model.freeze_all_but_embeddings()
    optimizer = torch.optim.AdamW(model.embedding_parameters(), lr=5e-2)  # unit-scale embeddings
    batches = task.train_batches(20, np.random.default_rng(0))
    for _ in range(300):
        inputs, targets = next(batches)
        optimizer.zero_grad()
        task.loss(model(inputs), targets).backward()
        optimizer.step()
    inputs, targets = (torch.as_tensor(a) for a in task.train)
    assert (model(inputs)[:, 1].argmax(-1) == targets[:, 1]).all()
