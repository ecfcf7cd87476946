"""The algorithmic suite of "Algorithmic Capabilities of Random Transformers" (Zhong & Andreas, NeurIPS 2024).

Six tasks with the paper's exact token formats, so that embedding-only ("random transformer") results can be
compared with the paper's: modular addition, needle-in-a-haystack, decimal addition, parentheses balancing,
memorization (bits per trainable parameter) and circuit imitation (KL to a random amplified network).

Every size is a constructor parameter whose default is the paper's value; ``make_algorithmic_task`` adds
named size presets (``"paper"`` and a reduced ``"cpu"``) and a recommended :class:`TrainingBudget`. Fixed
data (splits, test sets, fact tables, the target network) come from generators seeded with ``seed``;
training batches come only from the generator the trainer passes in. Format details and every decision
where the paper and its code disagree are in ``docs/tasks.md`` ("Decisions where paper and code are ambiguous").
"""

from __future__ import annotations

import inspect
import math
import random
from abc import abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from starlab.tasks.base import IGNORE, ArrayTask, Model, Task, accuracy_metrics, batched

#: The paper's code seeds every data split and test set with 12345, whatever the model seed; ours mixes it
#: with ``seed`` so that a trainer's ``default_rng(seed)`` never replays the test set.
DATA_SEED = 12345


@dataclass(frozen=True)
class TrainingBudget:
    """A recommended recipe: AdamW, linear warm-up then cosine decay to 0, gradient-norm clipping.

    Attributes:
        batch_size, steps: optimizer steps of ``batch_size`` examples.
        lr, weight_decay, warmup_steps, grad_clip: AdamW peak learning rate, decoupled weight decay,
            linear warm-up from 0, and the global gradient-norm clip (the HF Trainer's 1.0).
        width, layers: the model the budget was chosen for: hidden width and transformer blocks (one block
            is an attention + MLP pair, i.e. two starlab slots).
    """

    batch_size: int
    steps: int
    lr: float
    weight_decay: float
    warmup_steps: int
    width: int
    layers: int = 2
    grad_clip: float = 1.0


@dataclass(frozen=True)
class SizePreset:
    """Constructor overrides for one named size, and the budget recommended for it."""

    params: dict[str, Any]
    budget: TrainingBudget


# ---- shared helpers --------------------------------------------------------------------------------------


def _integer(task: str, param: str, value: Any, low: int, high: int | None = None) -> int:
    """``value`` if it is an integer in ``low..high``; otherwise a one-line error naming the parameter."""
    ok = isinstance(value, (int, np.integer)) and not isinstance(value, bool)
    if not ok or value < low or (high is not None and value > high):
        bound = f"in {low}..{high}" if high is not None else f">= {low}"
        raise ValueError(f"{task}: {param} must be an integer {bound}, got {value!r}")
    return int(value)


def _flag(task: str, param: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"{task}: {param} must be True or False, got {value!r}")
    return value


def _data_rng(task: str, seed: Any) -> np.random.Generator:
    """The generator of a task's fixed data: independent of any trainer stream seeded with ``seed`` alone."""
    return np.random.default_rng([DATA_SEED, _integer(task, "seed", seed, 0)])


def _budget(task: str, budget: TrainingBudget | None) -> TrainingBudget:
    """The given budget, or the paper's for ``task`` (a task built without a preset has the paper's sizes)."""
    return budget if budget is not None else SIZES[task]["paper"].budget


def next_token_examples(sequences: np.ndarray, scored: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Inputs ``sequences[:, :-1]`` and their next tokens, ``-100`` except where ``scored`` (over inputs).

    This is the paper code's masking: logits at position t are compared with token t+1 only where the mask,
    computed on the *input* tokens, is set.
    """
    inputs = sequences[:, :-1]
    return inputs, np.where(scored, sequences[:, 1:], IGNORE)


def _device(task: str, device: Any) -> torch.device:
    try:
        return torch.device(device)
    except (RuntimeError, TypeError) as error:
        raise ValueError(f"{task}: target_device must name a torch device, got {device!r}") from error


def _trainable_parameters(model: nn.Module) -> int:
    """Parameters that receive gradients, shared tensors counted once."""
    unique = {id(p): p for p in model.parameters() if p.requires_grad}
    return sum(p.numel() for p in unique.values())


# ---- fixed tables ----------------------------------------------------------------------------------------


class ModularAddition(ArrayTask):
    """``[a, b, (a + b) mod p]`` over vocab ``p``; only the prediction at ``b`` (the answer) is scored.

    All ``p²`` pairs are shuffled once and split ``int(p² · train_fraction)`` / rest, as in the paper code.
    Score: test accuracy.
    """

    name = "modular-addition"

    def __init__(
        self, *, p: int = 199, train_fraction: float = 0.95, seed: int = 0, budget: TrainingBudget | None = None
    ) -> None:
        p = _integer(self.name, "p", p, 2)
        n_train = self._train_size(p, train_fraction)
        a, b = np.divmod(np.arange(p * p), p)
        table = np.stack([a, b, (a + b) % p], axis=1)[_data_rng(self.name, seed).permutation(p * p)]
        inputs, targets = next_token_examples(table, np.arange(2) == 1)
        train, test = (inputs[:n_train], targets[:n_train]), (inputs[n_train:], targets[n_train:])
        super().__init__(self.name, train, test, vocab_size=p, score="accuracy")
        self.p, self.budget = p, _budget(self.name, budget)

    def _train_size(self, p: int, train_fraction: float) -> int:
        ok = isinstance(train_fraction, (float, int)) and not isinstance(train_fraction, bool)
        n_train = int(p * p * train_fraction) if ok else 0  # the paper code's int(P*P*fracA)
        if not 0 < n_train < p * p:
            raise ValueError(
                f"{self.name}: train_fraction must leave both splits non-empty for p={p}, got {train_fraction!r}"
            )
        return n_train


class Memorization(ArrayTask):
    """Every ``(x, y)`` with a fixed random ``z``: ``[x, n + y, z]``, vocab ``2n``, scored at ``n + y``.

    There is nothing to generalise to, so evaluation is on the training table. Metrics: the memorized
    fraction (the score), bits memorized (``log2(n)`` per correct fact) and, for ``nn.Module`` models, bits
    per *trainable* parameter — the paper's capacity measure, which is what separates embedding-only from
    full training.
    """

    name = "memorization"

    def __init__(self, *, n: int = 512, seed: int = 0, budget: TrainingBudget | None = None) -> None:
        n = _integer(self.name, "n", n, 2)
        x, y = np.divmod(np.arange(n * n), n)
        z = _data_rng(self.name, seed).integers(0, n, n * n)
        facts = next_token_examples(np.stack([x, n + y, z], axis=1), np.arange(2) == 1)
        super().__init__(self.name, facts, facts, vocab_size=2 * n, score="accuracy")
        self.n, self.budget = n, _budget(self.name, budget)

    @torch.no_grad()
    def evaluate(self, model: Model, batch_size: int, device: torch.device) -> dict[str, float]:
        metrics = super().evaluate(model, batch_size, device)
        bits = round(metrics["accuracy"] * metrics["scored"]) * math.log2(self.n)
        metrics |= {"memorized_fraction": metrics["accuracy"], "bits_memorized": bits}
        if isinstance(model, nn.Module):
            trainable = _trainable_parameters(model)
            metrics["trainable_parameters"] = trainable
            metrics["bits_per_parameter"] = bits / trainable if trainable else 0.0
        return metrics


# ---- streamed tasks --------------------------------------------------------------------------------------


class StreamTask(Task):
    """Fresh random examples every batch, and a fixed test set.

    With ``exclude_test`` (the default), training skips any sampled sequence identical to a test sequence,
    as the paper's newer runner ``experiment_stream_new.py`` and ``imitation.py`` do, so test accuracy
    measures held-out sequences. Where the space of sequences is small this also skews the training
    distribution (frequent sequences are in the test set); ``exclude_test=False`` is the older runner.
    """

    def __init__(self, test_size: int, seed: int, exclude_test: bool) -> None:
        test_size = _integer(self.name, "test_size", test_size, 1)
        exclude_test = _flag(self.name, "exclude_test", exclude_test)
        self.test = self.sample(test_size, _data_rng(self.name, seed))
        self._test_rows = {row.tobytes() for row in self.test} if exclude_test else set()

    @abstractmethod
    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """``n`` random sequences ``(n, length)``, int64, drawn with ``rng``."""

    @abstractmethod
    def examples(self, sequences: np.ndarray) -> tuple[Tensor, Tensor]:
        """The ``(inputs, targets)`` batch of sampled sequences."""

    def fresh(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """``n`` sampled sequences, none of them in the test set when test sequences are excluded."""
        kept: list[np.ndarray] = []
        while sum(len(rows) for rows in kept) < n:
            rows = self.sample(n, rng)
            kept.append(rows[[row.tobytes() not in self._test_rows for row in rows]])
        return np.concatenate(kept)[:n]

    def train_batches(self, batch_size: int, rng: np.random.Generator) -> Iterator[tuple[Tensor, Tensor]]:
        while True:
            yield self.examples(self.fresh(batch_size, rng))


class TokenStreamTask(StreamTask):
    """A streamed task scored by next-token accuracy at positions chosen by their input token.

    Metrics: pooled token accuracy over scored positions (the paper code's metric, and the score), macro
    accuracy, ``sequence_accuracy`` (every scored position of a sequence right) and the task's baselines.
    """

    baselines: dict[str, float]

    @abstractmethod
    def scored(self, inputs: np.ndarray) -> np.ndarray:
        """Boolean mask over input positions whose next token is trained and scored."""

    def split(self, sequences: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return next_token_examples(sequences, self.scored(sequences[:, :-1]))

    def examples(self, sequences: np.ndarray) -> tuple[Tensor, Tensor]:
        inputs, targets = self.split(sequences)
        return torch.as_tensor(inputs, dtype=torch.long), torch.as_tensor(targets, dtype=torch.long)

    @torch.no_grad()
    def evaluate(self, model: Model, batch_size: int, device: torch.device) -> dict[str, float]:
        predictions, targets = [], []
        for inputs, target in batched(self.split(self.test), batch_size, device):
            predictions.append(model(inputs).argmax(dim=-1).cpu())
            targets.append(target.cpu())
        prediction, target = torch.cat(predictions), torch.cat(targets)
        scored = target != IGNORE
        metrics = accuracy_metrics(prediction[scored], target[scored], self.vocab_size)
        sequence_ok = ((prediction == target) | ~scored).all(dim=1)
        return {
            **metrics,
            "sequence_accuracy": sequence_ok.float().mean().item(),
            **self.baselines,
            "score": metrics["accuracy"],
        }


class Needle(TokenStreamTask):
    """Needle-in-a-haystack: ``k ~ U[1, k_max]`` marker/value pairs, then a query marker; predict its value.

    Tokens (vocab 256): values 1..127; marker ``key + 128`` for distinct keys in ``0..k_max-1``; query
    ``marker + k_max``; zero padding to ``2·k_max + 3``. The paper's ``a 1 b 2 c 3 d 4 b`` (k_max=30) is
    ``[128, 1, 129, 2, 130, 3, 131, 4, 159]`` -> 2. One scored position: the query. Baselines: chance
    ``1/127`` and ``in_context_baseline`` = mean of ``1/k`` over the test set, the plateau of a model that
    guesses a value present in the context.
    """

    name = "needle"
    vocab_size = 256
    MARKER = 128
    MAX_VALUE = 127

    def __init__(
        self,
        *,
        k_max: int = 30,
        test_size: int = 4000,
        exclude_test: bool = True,
        seed: int = 0,
        budget: TrainingBudget | None = None,
    ) -> None:
        self.k_max = _integer(self.name, "k_max", k_max, 1, (self.vocab_size - self.MARKER) // 2)
        self.seq_len = 2 * self.k_max + 2
        self.budget = _budget(self.name, budget)
        super().__init__(test_size, seed, exclude_test)
        pairs = ((self.test >= self.MARKER) & (self.test < self.MARKER + self.k_max)).sum(axis=1)
        self.baselines = {"chance": 1 / self.MAX_VALUE, "in_context_baseline": float(np.mean(1 / pairs))}

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        k_max, rows = self.k_max, np.arange(n)
        k = rng.integers(1, k_max + 1, size=n)
        keys = rng.permuted(np.tile(np.arange(k_max), (n, 1)), axis=1)
        values = rng.integers(1, self.MAX_VALUE + 1, size=(n, k_max))
        used = np.arange(k_max) < k[:, None]
        sequences = np.zeros((n, 2 * k_max + 3), dtype=np.int64)
        sequences[:, 0 : 2 * k_max : 2] = np.where(used, keys + self.MARKER, 0)
        sequences[:, 1 : 2 * k_max : 2] = np.where(used, values, 0)
        query = rng.integers(0, k)  # which of the k pairs is asked for
        sequences[rows, 2 * k] = keys[rows, query] + self.MARKER + k_max
        sequences[rows, 2 * k + 1] = values[rows, query]
        return sequences

    def scored(self, inputs: np.ndarray) -> np.ndarray:
        return inputs >= self.MARKER + self.k_max


class DecimalAddition(TokenStreamTask):
    """``a + b`` for ``digits``-digit operands, every number written least-significant digit first.

    Tokens (vocab 31): input digits 0..9, ``+`` = 10, ``=`` = 11, pad = 12; sum digits 20..29, stop = 30;
    padded to ``3·digits + 4``. Scored, as in the paper code: positions whose *input* token is >= 20 — the
    sum's digits 2..n, the stop token and a trivial pad after stop. The first sum digit (predicted at ``=``)
    is neither trained nor scored unless ``first_digit=True``, which adds it, so that ``sequence_accuracy``
    becomes exact whole-answer accuracy.
    """

    name = "decimal-addition"
    vocab_size = 31
    PLUS, EQUALS, PAD, SUM_DIGIT, STOP = 10, 11, 12, 20, 30
    MAX_DIGITS = 18  # two 18-digit operands still add up below 2**63

    def __init__(
        self,
        *,
        digits: int = 10,
        first_digit: bool = False,
        test_size: int = 4000,
        exclude_test: bool = True,
        seed: int = 0,
        budget: TrainingBudget | None = None,
    ) -> None:
        self.digits = _integer(self.name, "digits", digits, 1, self.MAX_DIGITS)
        self.first_digit = _flag(self.name, "first_digit", first_digit)
        self.seq_len = 3 * self.digits + 3
        self.budget = _budget(self.name, budget)
        self.baselines = {}
        super().__init__(test_size, seed, exclude_test)

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        low = 10 ** (self.digits - 1)
        return self.encode(*rng.integers(low, 10 * low, size=(2, n)))

    def encode(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """The sequences of ``a + b`` for arrays of ``digits``-digit operands: ``(n, 3·digits + 4)``."""
        a, b = np.asarray(a, dtype=np.int64), np.asarray(b, dtype=np.int64)
        d, n, total = self.digits, len(a), a + b
        length = d + (total >= 10**d)  # the sum has d or d + 1 digits
        digits = _reversed_digits(total, d + 1) + self.SUM_DIGIT
        answer = np.where(np.arange(d + 1) < length[:, None], digits, self.PAD)
        answer = np.concatenate([answer, np.full((n, 1), self.PAD)], axis=1)
        answer[np.arange(n), length] = self.STOP
        column = np.ones((n, 1), dtype=np.int64)
        parts = [_reversed_digits(a, d), self.PLUS * column, _reversed_digits(b, d), self.EQUALS * column, answer]
        return np.concatenate(parts, axis=1)

    def scored(self, inputs: np.ndarray) -> np.ndarray:
        return (inputs >= self.SUM_DIGIT) | (self.first_digit & (inputs == self.EQUALS))


def _reversed_digits(numbers: np.ndarray, count: int) -> np.ndarray:
    """The ``count`` lowest decimal digits of each number, least significant first: ``(n, count)``."""
    return numbers[:, None] // 10 ** np.arange(count) % 10


class Parentheses(TokenStreamTask):
    """Is a parenthesis string balanced? ``s ? a`` with ``(`` = 1, ``)`` = 2, ``?`` = 3, pad = 0, vocab 4.

    The answer reuses ``)`` (2) for balanced and ``(`` (1) for unbalanced. Strings come from the paper
    code's generator (random strings w.p. 1/3, else random balanced strings of up to ``max_pairs`` pairs,
    then random swaps and flips), which makes about 53% of them balanced. One scored position: ``?``.
    Baselines: ``balanced_fraction`` and ``majority_baseline`` of the test labels.
    """

    name = "parentheses"
    vocab_size = 4
    PAD, OPEN, CLOSE, QUERY = 0, 1, 2, 3

    def __init__(
        self,
        *,
        max_pairs: int = 30,
        test_size: int = 4000,
        exclude_test: bool = True,
        seed: int = 0,
        budget: TrainingBudget | None = None,
    ) -> None:
        self.max_pairs = _integer(self.name, "max_pairs", max_pairs, 1)
        self.seq_len = 2 * self.max_pairs + 2
        self.budget = _budget(self.name, budget)
        super().__init__(test_size, seed, exclude_test)
        _, targets = self.split(self.test)
        balanced = float(np.mean(targets[targets != IGNORE] == self.CLOSE))
        self.baselines = {"balanced_fraction": balanced, "majority_baseline": max(balanced, 1 - balanced)}

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        # A recursive, branchy generator: Python's random is ~4x faster per draw than numpy scalars here,
        # and seeding it from ``rng`` keeps every draw determined by the trainer's generator.
        draws = random.Random(int(rng.integers(2**63)))
        sequences = np.full((n, 2 * self.max_pairs + 3), self.PAD, dtype=np.int64)
        for row in sequences:
            string = parentheses_string(self.max_pairs, draws)
            answer = self.CLOSE if is_balanced(string) else self.OPEN
            row[: len(string) + 2] = [*string, self.QUERY, answer]
        return sequences

    def scored(self, inputs: np.ndarray) -> np.ndarray:
        return inputs == self.QUERY


def parentheses_string(max_pairs: int, draws: random.Random) -> list[int]:
    """One string of the paper code's generator (``task_dyckstream.py``), as tokens 1 = ``(``, 2 = ``)``.

    ``randint`` is inclusive at both ends, as in the original, so the draw-by-draw logic is the paper's.
    """
    mutate = draws.randint(0, 3)
    if draws.randint(0, 2) == 0:
        string = [draws.choice((1, 2)) for _ in range(draws.randint(1, 2 * max_pairs))]
    else:
        string = _balanced(draws.randint(1, max_pairs), draws)
        if draws.randint(0, 1):
            mutate = 0
    if mutate & 1:
        for _ in range(_geometric(draws)):
            p, q = draws.randint(0, len(string) - 1), draws.randint(0, len(string) - 1)
            if p < q:
                string[p], string[q] = string[q], string[p]
    if mutate & 2:
        flips = _geometric(draws)
        flips *= 2 if draws.randint(0, 2) else 1
        for _ in range(flips):
            p = draws.randint(0, len(string) - 1)
            string[p] = 3 - string[p]
    return string


def _balanced(pairs: int, draws: random.Random) -> list[int]:
    """A random balanced string of ``pairs`` pairs: nest w.p. 1/2, else concatenate two smaller ones."""
    if pairs == 1:
        return [1, 2]
    if draws.randint(0, 1):
        return [1, *_balanced(pairs - 1, draws), 2]
    left = draws.randint(1, pairs - 1)
    return _balanced(left, draws) + _balanced(pairs - left, draws)


def _geometric(draws: random.Random) -> int:
    """1 plus the number of successful fair coin flips before the first failure."""
    count = 1
    while draws.randint(0, 1):
        count += 1
    return count


def is_balanced(string: list[int]) -> bool:
    """Every prefix has at least as many ``(`` (1) as ``)`` (2), and the whole string has equally many."""
    depth = 0
    for token in string:
        depth += 1 if token == 1 else -1
        if depth < 0:
            return False
    return depth == 0


# ---- circuit imitation -----------------------------------------------------------------------------------


class TargetBlock(nn.Module):
    """A GPT-2 block: pre-LayerNorm causal attention and a tanh-GELU MLP, with HF GPT-2's layer names."""

    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.ln_1, self.ln_2 = nn.LayerNorm(width), nn.LayerNorm(width)
        self.c_attn, self.attn_proj = nn.Linear(width, 3 * width), nn.Linear(width, width)
        self.c_fc, self.mlp_proj = nn.Linear(width, 4 * width), nn.Linear(4 * width, width)

    def forward(self, x: Tensor) -> Tensor:
        batch, length, width = x.shape
        q, k, v = (
            t.view(batch, length, self.heads, -1).transpose(1, 2) for t in self.c_attn(self.ln_1(x)).split(width, -1)
        )
        attended = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        x = x + self.attn_proj(attended.transpose(1, 2).reshape(batch, length, width))
        return x + self.mlp_proj(F.gelu(self.c_fc(self.ln_2(x)), approximate="tanh"))


class CircuitTarget(nn.Module):
    """The random, amplified GPT-2 that circuit imitation copies (``imitation.py`` of the paper code).

    Initialised as HF GPT-2 (weights and embeddings N(0, 0.02), both ``c_proj`` projections
    N(0, 0.02/sqrt(2·layers)), biases 0, LayerNorm 1/0) from a seeded ``torch.Generator`` (every value is
    redrawn; the global RNG state that PyTorch's default inits consume is restored). Then amplified, so that
    its outputs depend strongly on the input and are far from uniform: MLP output projection ×20 (weight and
    bias), q/k/v ×10 and the unembedding ×100/sqrt(width).
    """

    MLP_GAIN, QKV_GAIN, HEAD_GAIN = 20.0, 10.0, 100.0

    def __init__(self, vocab_size: int, length: int, width: int, layers: int, heads: int, seed: int) -> None:
        super().__init__()
        with torch.random.fork_rng(devices=[]):  # default inits draw from the global RNG: restore it after
            self.wte, self.wpe = nn.Embedding(vocab_size, width), nn.Embedding(length, width)
            self.blocks = nn.ModuleList(TargetBlock(width, heads) for _ in range(layers))
            self.ln_f = nn.LayerNorm(width)
            self.lm_head = nn.Linear(width, vocab_size, bias=False)
        self._initialise(torch.Generator().manual_seed(seed), layers)
        self._amplify(width)

    @torch.no_grad()
    def _initialise(self, generator: torch.Generator, layers: int) -> None:
        projections = {m for block in self.blocks for m in (block.attn_proj, block.mlp_proj)}
        for module in self.modules():
            if isinstance(module, nn.LayerNorm):
                module.weight.fill_(1.0)
                module.bias.zero_()
            elif isinstance(module, (nn.Linear, nn.Embedding)):
                std = 0.02 / math.sqrt(2 * layers) if module in projections else 0.02
                module.weight.normal_(0.0, std, generator=generator)
                if getattr(module, "bias", None) is not None:
                    module.bias.zero_()

    @torch.no_grad()
    def _amplify(self, width: int) -> None:
        for block in self.blocks:
            block.mlp_proj.weight.mul_(self.MLP_GAIN)
            block.mlp_proj.bias.mul_(self.MLP_GAIN)
            block.c_attn.weight.mul_(self.QKV_GAIN)
        self.lm_head.weight.mul_(self.HEAD_GAIN / math.sqrt(width))

    def hidden(self, tokens: Tensor) -> Tensor:
        x = self.wte(tokens) + self.wpe.weight[: tokens.shape[1]]
        for block in self.blocks:
            x = block(x)
        return self.ln_f(x)

    def forward(self, tokens: Tensor) -> Tensor:
        """``(batch, length)`` tokens -> ``(batch, length, vocab)`` logits, like any model a task sees."""
        return self.lm_head(self.hidden(tokens))

    @torch.no_grad()
    def last_log_probs(self, tokens: Tensor, chunk: int = 1024) -> Tensor:
        """Log-probabilities at the last position ``(batch, vocab)``, in chunks to bound memory."""
        parts = [self.lm_head(self.hidden(part)[:, -1]).log_softmax(dim=-1) for part in tokens.split(chunk)]
        return torch.cat(parts)


class CircuitImitation(StreamTask):
    """Match a random amplified GPT-2's next-token distribution at the last position of random sequences.

    Inputs are uniform random ``length``-token sequences over ``vocab_size``; targets are the target network's
    last-position log-probabilities ``(batch, vocab)``, and the loss is KL(target ∥ student) there
    (``batchmean``). Metrics on the fixed test set: ``kl``; ``score = exp(-kl)`` (1 when the student
    matches, higher is better); ``target_entropy``; and ``baseline_kl``, the KL of the best input-independent
    predictor (the mean target distribution), which a student that ignores its input cannot beat.

    The target runs on ``target_device``: at the paper's sizes it costs about as much as the student, too
    much for a CPU (the 4,000 test targets alone take two minutes on two cores).
    """

    name = "circuit-imitation"

    def __init__(
        self,
        *,
        vocab_size: int = 512,
        length: int = 40,
        target_width: int = 512,
        target_layers: int = 3,
        target_heads: int = 2,
        target_device: str = "cpu",
        test_size: int = 4000,
        exclude_test: bool = True,
        seed: int = 0,
        budget: TrainingBudget | None = None,
    ) -> None:
        self.vocab_size = _integer(self.name, "vocab_size", vocab_size, 2)
        self.seq_len = _integer(self.name, "length", length, 1)
        heads = _integer(self.name, "target_heads", target_heads, 1)
        width = _integer(self.name, "target_width", target_width, heads)
        if width % heads:
            raise ValueError(f"{self.name}: target_width must be a multiple of target_heads={heads}, got {width}")
        layers = _integer(self.name, "target_layers", target_layers, 1)
        self.target_device = _device(self.name, target_device)
        self.budget = _budget(self.name, budget)
        super().__init__(test_size, seed, exclude_test)
        target = CircuitTarget(self.vocab_size, self.seq_len, width, layers, heads, seed)
        self.target = target.requires_grad_(False).to(self.target_device)
        self.test_log_probs = self.target_log_probs(self.test)
        self.baselines = self._baselines(self.test_log_probs)

    @staticmethod
    def _baselines(log_probs: Tensor) -> dict[str, float]:
        probs = log_probs.exp()
        marginal = probs.mean(dim=0).log()
        return {
            "target_entropy": -(probs * log_probs).sum(dim=-1).mean().item(),
            "baseline_kl": (probs * (log_probs - marginal)).sum(dim=-1).mean().item(),
        }

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        return rng.integers(0, self.vocab_size, size=(n, self.seq_len))

    def target_log_probs(self, sequences: np.ndarray) -> Tensor:
        """The target's last-position log-probabilities ``(n, vocab)``, computed on ``target_device``."""
        return self.target.last_log_probs(torch.as_tensor(sequences, dtype=torch.long, device=self.target_device))

    def examples(self, sequences: np.ndarray) -> tuple[Tensor, Tensor]:
        return torch.as_tensor(sequences, dtype=torch.long), self.target_log_probs(sequences).cpu()

    def loss(self, logits: Tensor, targets: Tensor) -> Tensor:
        """KL(target ∥ student) at the last position; ``targets`` are the target's log-probabilities."""
        student = logits[:, -1].float().log_softmax(dim=-1)
        return F.kl_div(student, targets.to(student), reduction="batchmean", log_target=True)

    def scored(self, targets: Tensor) -> Tensor:
        return torch.tensor(len(targets))  # "batchmean": one term per sequence

    @torch.no_grad()
    def evaluate(self, model: Model, batch_size: int, device: torch.device) -> dict[str, float]:
        total = 0.0
        for (inputs,), targets in zip(
            batched((self.test,), batch_size, device), self.test_log_probs.split(batch_size), strict=True
        ):
            total += self.loss(model(inputs), targets.to(device)).item() * len(inputs)
        kl = total / len(self.test)
        return {"kl": kl, **self.baselines, "score": math.exp(-kl)}


# ---- registry --------------------------------------------------------------------------------------------

# TrainingBudget(batch_size, steps, lr, weight_decay, warmup_steps, width[, layers])
_STREAM_PAPER = TrainingBudget(1000, 10_000, 1e-3, 1e-3, 500, width=1024)

#: task name -> class; every class is a factory ``cls(*, <size params>, seed=0, budget=None) -> Task``
ALGORITHMIC_TASKS: dict[str, type[Task]] = {
    "modular-addition": ModularAddition,
    "needle": Needle,
    "decimal-addition": DecimalAddition,
    "parentheses": Parentheses,
    "memorization": Memorization,
    "circuit-imitation": CircuitImitation,
}

#: task name -> size name -> preset. "paper" keeps the constructors' defaults (the paper's numbers);
#: "cpu" is the reduced setting of random_transformers.md §4.3 for a 2-core CPU (a few minutes per run).
SIZES: dict[str, dict[str, SizePreset]] = {
    "modular-addition": {
        "paper": SizePreset({}, TrainingBudget(4000, 50_000, 1e-3, 1e-3, 500, width=1024)),
        "cpu": SizePreset({"p": 97}, TrainingBudget(512, 3000, 1e-3, 1e-3, 100, width=256)),
    },
    "needle": {
        "paper": SizePreset({}, _STREAM_PAPER),
        "cpu": SizePreset({"k_max": 5}, TrainingBudget(128, 5000, 1e-3, 1e-3, 200, width=256)),
    },
    "decimal-addition": {
        "paper": SizePreset({}, _STREAM_PAPER),
        "cpu": SizePreset({"digits": 3}, TrainingBudget(128, 5000, 1e-3, 1e-3, 200, width=256)),
    },
    "parentheses": {
        "paper": SizePreset({}, _STREAM_PAPER),
        "cpu": SizePreset(
            {"max_pairs": 10, "exclude_test": False}, TrainingBudget(128, 2500, 1e-3, 1e-3, 100, width=128)
        ),
    },
    "memorization": {
        "paper": SizePreset({}, TrainingBudget(32_768, 168_000, 5e-3, 1e-4, 500, width=128)),
        "cpu": SizePreset({"n": 128}, TrainingBudget(4096, 3000, 5e-3, 1e-4, 100, width=32)),
    },
    "circuit-imitation": {
        "paper": SizePreset({}, TrainingBudget(1000, 10_000, 1e-3, 1e-3, 500, width=512, layers=3)),
        "cpu": SizePreset(
            {"vocab_size": 128, "length": 16, "target_width": 16},
            TrainingBudget(256, 2000, 1e-3, 1e-3, 100, width=128),
        ),
    },
}


def task_parameters(name: str) -> list[str]:
    """The size parameters ``make_algorithmic_task`` accepts as overrides for task ``name``."""
    signature = inspect.signature(ALGORITHMIC_TASKS[name])
    return [p for p in signature.parameters if p not in ("seed", "budget")]


def make_algorithmic_task(name: str, size: str = "cpu", seed: int = 0, **overrides: Any) -> Task:
    """Task ``name`` at the named ``size`` preset, with its budget; ``overrides`` replace size parameters.

    ``seed`` fixes the task's data (split, test set, fact table, target network); keep it fixed across
    model restarts to compare like the paper, which fixed all data with seed 12345.
    """
    if name not in ALGORITHMIC_TASKS:
        raise ValueError(f"unknown algorithmic task {name!r}; tasks: {', '.join(ALGORITHMIC_TASKS)}")
    if size not in SIZES[name]:
        raise ValueError(f"unknown size {size!r} for {name}; sizes: {', '.join(SIZES[name])}")
    valid = task_parameters(name)
    unknown = sorted(set(overrides) - set(valid))
    if unknown:
        raise ValueError(f"unknown parameter(s) {', '.join(unknown)} for {name}; parameters: {', '.join(valid)}")
    preset = SIZES[name][size]
    return ALGORITHMIC_TASKS[name](**{**preset.params, **overrides}, seed=seed, budget=preset.budget)
