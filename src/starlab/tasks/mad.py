"""MAD synthetic tasks (Poli et al., 2024): one generator per task, a registry, and the paper's 66-setting sweep.

Each generator returns ONE instance as a pair of 1-D ``np.int64`` arrays ``(inputs, targets)``, with ``-100`` where
a position is not scored, in the spirit of mad-lab's ``mad/data/instances.py``: same token layouts, lengths, scored
positions and train/test differences. They are rewritten rather than ported. Every random draw comes from the
``numpy.random.Generator`` passed in, never from global state. Per-token Python loops become a few array operations
per instance, so a 12,800-example split takes seconds. mad-lab's known bugs are avoided. The data follow mad-lab's
distributions but are not bit-identical to its files; ``docs/tasks.md`` ("Differences from mad-lab") lists every
difference.

Vocabulary convention (mad-lab's): ``vocab_size`` counts every token; special tokens take the top ids, and noise
tokens sit directly above the plain key/value/data tokens.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from types import MappingProxyType
from typing import Any

import numpy as np

from starlab.tasks.base import IGNORE, ArrayTask

#: mad-lab's seed: the data stream of every setting and the memorization fact table.
PAPER_SEED = 12345
#: test examples in every paper setting
PAPER_NUM_TEST = 1_280

Instance = tuple[np.ndarray, np.ndarray]
Params = Mapping[str, Any]


# ---------------------------------------------------------------------------------------------------------------
# Shared pieces


def _first_occurrence(keys: np.ndarray) -> np.ndarray:
    """For each key (an int, or a row of tokens), the index where that key occurs first.

    ``first[i] < i`` means key ``i`` was presented earlier, so its value is recallable from the context.
    A dict over the rows is faster than ``np.unique(axis=0)`` at these sizes and cannot overflow like a packed code.
    """
    first: dict[tuple[int, ...], int] = {}
    rows = map(tuple, keys.reshape(len(keys), -1).tolist())
    return np.array([first.setdefault(row, i) for i, row in enumerate(rows)], dtype=np.int64)


def _interleave(first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """``first[0], second[0], first[1], second[1], ...``: key-value (or key-insert) pairs as one sequence."""
    return np.stack([first, second], axis=1).ravel()


def _next_token_pair(tokens: np.ndarray, targets: np.ndarray, is_training: bool) -> Instance:
    """Shift a recall sequence by one token for next-token prediction.

    mad-lab trains the recall tasks as plain language modelling: every next token is a training target, even
    unpredictable keys, noise and padding. Test scores only ``targets`` (the recallable values).
    """
    return tokens[:-1], (tokens if is_training else targets)[1:]


def _tokens(values: list[int]) -> np.ndarray:
    """A short literal token list as int64, so that concatenating it never turns a sequence into floats."""
    return np.array(values, dtype=np.int64)


# ---------------------------------------------------------------------------------------------------------------
# Generators


def in_context_recall(
    *,
    vocab_size: int,
    seq_len: int,
    rng: np.random.Generator,
    is_training: bool,
    multi_query: bool = True,
    noise_vocab_size: int = 0,
    frac_noise: float = 0.0,
) -> Instance:
    """One in-context recall sequence: ``seq_len/2 - 1`` key-value slots, then a final query pair.

    Plain tokens are the ``vocab_size - noise_vocab_size`` lowest ids (one fewer in single-query mode, where ``V-1``
    is a copy prefix before the query), the lower half keys and the upper half values: V16 has keys 0-7, values
    8-15. Keys repeat and a key keeps the value it got first; two keys may share a value. With probability
    ``frac_noise`` a slot holds two noise tokens instead (ids above the values); one random slot is always a real
    pair, so the query, a uniformly chosen key among those presented, always has an answer.

    Test scores a value only if its key was presented before: every such value in multi-query mode (the benchmark's
    mode), only the query's value in single-query mode. Length after the shift: ``seq_len - 1`` (multi-query) or
    ``seq_len`` (single-query).
    """
    plain = vocab_size - noise_vocab_size - (0 if multi_query else 1)
    num_keys, num_slots = plain // 2, seq_len // 2 - 1
    keys = rng.integers(0, num_keys, num_slots)
    values = rng.integers(num_keys, plain, num_slots)
    noise = rng.random(num_slots) < frac_noise
    noise[rng.integers(num_slots)] = False
    # noise slots get distinct negative keys, so they never count as a presentation of a real key
    first = _first_occurrence(np.where(noise, -1 - np.arange(num_slots), keys))
    values = values[first]
    recalled = first < np.arange(num_slots)
    query = rng.choice(np.flatnonzero(~noise & ~recalled))
    query_pair = _tokens([keys[query], values[query]])
    keys[noise], values[noise] = rng.integers(plain, plain + noise_vocab_size, (2, int(noise.sum())))

    prefix = _tokens([] if multi_query else [vocab_size - 1])
    tokens = np.concatenate([_interleave(keys, values), prefix, query_pair])
    slot_targets = _interleave(np.full(num_slots, IGNORE), np.where(recalled & multi_query, values, IGNORE))
    targets = np.concatenate([slot_targets, np.full(len(prefix) + 1, IGNORE), query_pair[1:]])
    return _next_token_pair(tokens, targets, is_training)


def noisy_in_context_recall(
    *,
    vocab_size: int,
    seq_len: int,
    rng: np.random.Generator,
    is_training: bool,
    noise_vocab_size: int,
    frac_noise: float,
    multi_query: bool = True,
) -> Instance:
    """In-context recall where a fraction of the key-value slots are two-token noise.

    ``vocab_size`` includes the noise tokens: the benchmark's V32 has keys 0-7, values 8-15 and noise 16-31. Noise
    is an (unpredictable) training target like every other token and is never scored at test time, so the task
    tests whether a model can keep its key-value memory clean of irrelevant tokens.
    """
    return in_context_recall(
        vocab_size=vocab_size,
        seq_len=seq_len,
        rng=rng,
        is_training=is_training,
        multi_query=multi_query,
        noise_vocab_size=noise_vocab_size,
        frac_noise=frac_noise,
    )


def _motifs(rng: np.random.Generator, lengths: np.ndarray, width: int, low: int, high: int) -> np.ndarray:
    """Rows of distinct tokens from ``[low, high)``, ``lengths[i]`` of them in row ``i`` and ``-1`` after.

    Each row starts a random permutation of the tokens: a uniform ordered tuple of distinct tokens, as mad-lab gets
    by drawing from its shuffled ``itertools.permutations`` lists, without building those (238,266 keys at V128).
    """
    rows = rng.random((len(lengths), high - low)).argsort(axis=1)[:, :width] + low
    rows[np.arange(width) >= lengths[:, None]] = -1
    return rows


def _fuzzy_pairs(
    rng: np.random.Generator, num: int, num_keys: int, plain: int, k_motif_size: int, v_motif_size: int, min_key: int
) -> np.ndarray:
    """``num`` random key-value pairs, one per row: key tokens in the first ``k_motif_size`` columns, value tokens in
    the last ``v_motif_size``, ``-1`` in the gaps of shorter motifs. Key lengths are uniform in
    ``min_key..k_motif_size``, value lengths in ``1..v_motif_size``."""
    key_lengths = rng.integers(min_key, k_motif_size + 1, num)
    value_lengths = rng.integers(1, v_motif_size + 1, num)
    keys = _motifs(rng, key_lengths, k_motif_size, 0, num_keys)
    values = _motifs(rng, value_lengths, v_motif_size, num_keys, plain)
    return np.concatenate([keys, values], axis=1)


def _flatten_pairs(pairs: np.ndarray, scored: np.ndarray, k_motif_size: int) -> Instance:
    """Tokens of padded pair rows in order, and their targets: a row's value tokens if ``scored``, else ``-100``."""
    is_value = np.arange(pairs.shape[1]) >= k_motif_size
    targets = np.where(scored[:, None] & is_value, pairs, IGNORE)
    present = pairs >= 0
    return pairs[present], targets[present]


def fuzzy_in_context_recall(
    *,
    vocab_size: int,
    seq_len: int,
    rng: np.random.Generator,
    is_training: bool,
    k_motif_size: int,
    v_motif_size: int,
    multi_query: bool = True,
) -> Instance:
    """In-context recall with keys and values of several tokens each, left-padded to ``seq_len``.

    Plain tokens are ``0 .. V-2`` (``V-1`` is the pad; single-query: ``V-2`` pad, ``V-1`` copy prefix), the lower
    half key tokens and the rest value tokens. A key has 1..``k_motif_size`` distinct tokens and a value
    1..``v_motif_size``; the model must find motif boundaries itself. A probe pair is placed at a random point of the
    context (unless its key already came up) and asked again at the end; pairs are added while fewer than
    ``seq_len - probe - (k_motif_size + v_motif_size)`` tokens are in place.

    Training draws key lengths 1..``k_motif_size``; test always uses ``k_motif_size``, so the two distributions
    differ, as in mad-lab. Test scores the values of keys seen before (the final probe always is one). Length after
    the shift: ``seq_len``.
    """
    plain = vocab_size - (1 if multi_query else 2)
    longest, min_key = k_motif_size + v_motif_size, 1 if is_training else k_motif_size
    most_pairs = -(-(seq_len - longest) // (min_key + 1))  # more than fit even if every pair is shortest
    rows = _fuzzy_pairs(rng, 1 + most_pairs, plain // 2, plain, k_motif_size, v_motif_size, min_key)
    probe, pairs = rows[:1], rows[1:]
    budget = seq_len - int((probe >= 0).sum()) - longest  # a context pair may start only before this many tokens

    pairs[:, k_motif_size:] = pairs[_first_occurrence(pairs[:, :k_motif_size]), k_motif_size:]
    is_probe = (pairs[:, :k_motif_size] == probe[:, :k_motif_size]).all(axis=1)
    pairs[is_probe, k_motif_size:] = probe[0, k_motif_size:]
    lengths = (pairs >= 0).sum(axis=1)
    # insert the probe at the first pair boundary after a random offset; the offset's bound keeps it in the context
    at = np.searchsorted(np.cumsum(lengths) - lengths, rng.integers(0, budget - longest + 1))
    if not is_probe[:at].any():
        pairs = np.concatenate([pairs[:at], probe, pairs[at:]])
    lengths = (pairs >= 0).sum(axis=1)
    pairs = pairs[np.cumsum(lengths) - lengths < budget]
    recalled = (_first_occurrence(pairs[:, :k_motif_size]) < np.arange(len(pairs))) & multi_query

    context_tokens, context_targets = _flatten_pairs(pairs, recalled, k_motif_size)
    probe_tokens, probe_targets = _flatten_pairs(probe, np.array([True]), k_motif_size)
    prefix = _tokens([] if multi_query else [vocab_size - 1])
    padding = seq_len + 1 - len(context_tokens) - len(prefix) - len(probe_tokens)
    tokens = np.concatenate([np.full(padding, plain), context_tokens, prefix, probe_tokens])
    targets = np.concatenate([np.full(padding, IGNORE), context_targets, np.full(len(prefix), IGNORE), probe_targets])
    return _next_token_pair(tokens, targets, is_training)


def selective_copying(
    *, vocab_size: int, seq_len: int, rng: np.random.Generator, is_training: bool, num_tokens_to_copy: int
) -> Instance:
    """``num_tokens_to_copy`` data tokens scattered among blanks, then a copy token and one blank per data token;
    the model must emit the data tokens in order at those final blanks.

    Data tokens are ``0 .. V-3``, ``V-2`` is the blank and ``V-1`` the copy token. Every blank goes before a
    uniformly chosen data token (mad-lab's ``np.insert`` at indices in ``[0, n)``), so no blank ever follows the
    last data token: it always sits right before the copy token. No shift; train and test are identical
    (``is_training`` is accepted for a uniform interface). Length: exactly ``seq_len``.
    """
    blank, copy = vocab_size - 2, vocab_size - 1
    num_blanks = seq_len - 2 * num_tokens_to_copy - 1
    data = rng.integers(0, blank, num_tokens_to_copy)
    blanks_before = np.cumsum(np.bincount(rng.integers(0, num_tokens_to_copy, num_blanks), minlength=len(data)))
    inputs = np.full(seq_len, blank, dtype=np.int64)
    inputs[np.arange(len(data)) + blanks_before] = data
    inputs[seq_len - num_tokens_to_copy - 1] = copy
    targets = np.full(seq_len, IGNORE, dtype=np.int64)
    targets[seq_len - num_tokens_to_copy :] = data
    return inputs, targets


def compression(*, vocab_size: int, seq_len: int, rng: np.random.Generator, is_training: bool) -> Instance:
    """``seq_len - 1`` random tokens from ``0 .. V-2`` and a final compression token ``V-1``; targets = inputs.

    Meant for an autoencoder: the model must reconstruct every position, the compression token included, from the
    state at the last position. Train and test are identical (``is_training`` is accepted for a uniform interface).
    """
    inputs = np.append(rng.integers(0, vocab_size - 1, seq_len - 1), vocab_size - 1)
    return inputs, inputs.copy()


def memorization_facts(vocab_size: int, seed: int) -> np.ndarray:
    """The fixed fact table: ``facts[key]`` is the value of each key ``0 .. (V-1)//2 - 1``.

    Keys are ``[0, (V-1)//2)``, values ``[(V-1)//2, V-1)``, ``V-1`` is the insert token. The table comes from its
    own generator, so train and test (and every run with this seed) ask the same facts; it equals mad-lab's
    ``generate_kv_map(V-1, seed=seed)``.
    """
    table_rng = np.random.default_rng(seed)
    num_keys = (vocab_size - 1) // 2
    keys = table_rng.permutation(num_keys)
    values = table_rng.permutation(np.arange(num_keys, vocab_size - 1))
    facts = np.empty(num_keys, dtype=np.int64)
    facts[keys] = values[:num_keys]
    return facts


def memorization(
    *, vocab_size: int, seq_len: int, rng: np.random.Generator, is_training: bool, facts: np.ndarray
) -> Instance:
    """``seq_len/2`` pairs ``key, insert`` (insert token ``V-1``); the target at each insert is the key's fact.

    Keys never appear next to their values in the input, so the facts can only come from the weights. Keys are
    drawn uniformly with replacement. Train and test are identical (``is_training`` is accepted for a uniform
    interface). Length: exactly ``seq_len``.
    """
    keys = rng.integers(0, len(facts), seq_len // 2)
    inputs = _interleave(keys, np.full_like(keys, vocab_size - 1))
    targets = _interleave(np.full_like(keys, IGNORE), facts[keys])
    return inputs, targets


# ---------------------------------------------------------------------------------------------------------------
# Parameter checks: one-line errors naming the parameter and what it may be


def _require(ok: bool, name: str, allowed: str, value: Any) -> None:
    if not ok:
        raise ValueError(f"{name} must be {allowed}, got {value!r}")


def _check_type(name: str, value: Any, default: Any) -> None:
    """Values must have their default's kind; bools are not accepted as integers."""
    is_bool = isinstance(value, (bool, np.bool_))
    if isinstance(default, bool):
        _require(is_bool, name, "True or False", value)
    elif isinstance(default, int):
        _require(isinstance(value, (int, np.integer)) and not is_bool, name, "an integer", value)
    else:
        _require(isinstance(value, (int, float, np.integer, np.floating)) and not is_bool, name, "a number", value)


def _check_recall(p: Params) -> None:
    noise, frac = p.get("noise_vocab_size", 0), p.get("frac_noise", 0.0)
    _require(p["seq_len"] >= 4 and p["seq_len"] % 2 == 0, "seq_len", "an even number >= 4", p["seq_len"])
    _require(noise >= 0, "noise_vocab_size", ">= 0", noise)
    _require(0 <= frac < 1, "frac_noise", "in [0, 1)", frac)
    _require(frac == 0 or noise > 0, "noise_vocab_size", ">= 1 when frac_noise > 0", noise)
    least = 2 + noise + (0 if p["multi_query"] else 1)
    room = "a key, a value" + (f", {noise} noise tokens" if noise else "") + ("" if p["multi_query"] else ", a prefix")
    _require(p["vocab_size"] >= least, "vocab_size", f">= {least} ({room})", p["vocab_size"])


def _check_fuzzy(p: Params) -> None:
    k, v = p["k_motif_size"], p["v_motif_size"]
    _require(k >= 1, "k_motif_size", ">= 1", k)
    _require(v >= 1, "v_motif_size", ">= 1", v)
    least = max(2 * k, 2 * v - 1) + (1 if p["multi_query"] else 2)
    room = f"keys of {k} and values of {v} distinct tokens"
    _require(p["vocab_size"] >= least, "vocab_size", f">= {least} (room for {room})", p["vocab_size"])
    shortest = 3 * (k + v)
    _require(p["seq_len"] >= shortest, "seq_len", f">= 3 * (k_motif_size + v_motif_size) = {shortest}", p["seq_len"])


def _check_copying(p: Params) -> None:
    n = p["num_tokens_to_copy"]
    _require(n >= 1, "num_tokens_to_copy", ">= 1", n)
    most = (p["seq_len"] - 2) // 2
    _require(n <= most, "num_tokens_to_copy", f"<= (seq_len - 2) // 2 = {most} (at least one blank)", n)
    _require(p["vocab_size"] >= 3, "vocab_size", ">= 3 (a data token, the blank and the copy token)", p["vocab_size"])


def _check_compression(p: Params) -> None:
    _require(p["seq_len"] >= 2, "seq_len", ">= 2", p["seq_len"])
    _require(p["vocab_size"] >= 2, "vocab_size", ">= 2 (a data token and the compression token)", p["vocab_size"])


def _check_memorization(p: Params) -> None:
    _require(p["seq_len"] >= 2 and p["seq_len"] % 2 == 0, "seq_len", "an even number >= 2", p["seq_len"])
    _require(p["vocab_size"] >= 3, "vocab_size", ">= 3 (a key, a value and the insert token)", p["vocab_size"])


# ---------------------------------------------------------------------------------------------------------------
# Registry


def _no_fixed_arguments(params: Params, seed: int) -> dict[str, Any]:
    return {}


def _fact_table(params: Params, seed: int) -> dict[str, Any]:
    """Memorization asks one table for the whole split, built from the split's seed as mad-lab does."""
    return {"facts": memorization_facts(params["vocab_size"], seed)}


@dataclass(frozen=True)
class MADTaskSpec:
    """A MAD task as mad-lab's registry knows it, plus what starlab needs to check and sweep it.

    Attributes:
        name: mad-lab's task name, e.g. ``"in-context-recall"``.
        shorthand: the paper's abbreviation (CR, FR, NR, SC, C, M).
        generator: makes one instance; called with ``rng``, ``is_training`` and the parameters.
        defaults: the paper sweep's baseline for every parameter a caller may set (and only those).
        check: raises a one-line ``ValueError`` for invalid parameter values.
        sweep: the paper's one-factor-at-a-time changes to the baseline; ``"num_train"`` varies the training set.
        num_train: training examples at the baseline.
        autoencoder: the task needs mad-lab's autoencoder backbone (compression only).
        fixed_arguments: generator arguments built once per split from the parameters and seed (the fact table).
    """

    name: str
    shorthand: str
    generator: Callable[..., Instance]
    defaults: Mapping[str, Any]
    check: Callable[[Params], None]
    sweep: Mapping[str, tuple[Any, ...]]
    num_train: int = 12_800
    autoencoder: bool = False
    fixed_arguments: Callable[[Params, int], dict[str, Any]] = _no_fixed_arguments


def _frozen(**items: Any) -> Mapping[str, Any]:
    return MappingProxyType(items)


_SMALLER_TRAIN_SETS = (6_400, 3_200, 1_600, 800)
_RECALL_SWEEP = {"vocab_size": (32, 64, 128), "seq_len": (256, 512, 1024), "num_train": _SMALLER_TRAIN_SETS}

MAD_TASKS: dict[str, MADTaskSpec] = {
    spec.name: spec
    for spec in (
        MADTaskSpec(
            "in-context-recall",
            "CR",
            in_context_recall,
            _frozen(vocab_size=16, seq_len=128, multi_query=True),
            _check_recall,
            _frozen(**_RECALL_SWEEP),
        ),
        MADTaskSpec(
            "fuzzy-in-context-recall",
            "FR",
            fuzzy_in_context_recall,
            _frozen(vocab_size=16, seq_len=128, k_motif_size=3, v_motif_size=3, multi_query=True),
            _check_fuzzy,
            _frozen(**_RECALL_SWEEP),
        ),
        MADTaskSpec(
            "noisy-in-context-recall",
            "NR",
            noisy_in_context_recall,
            _frozen(vocab_size=32, seq_len=128, noise_vocab_size=16, frac_noise=0.2, multi_query=True),
            _check_recall,
            _frozen(**{**_RECALL_SWEEP, "vocab_size": (48, 80, 144), "frac_noise": (0.4, 0.6, 0.8)}),
        ),
        MADTaskSpec(
            "selective-copying",
            "SC",
            selective_copying,
            _frozen(vocab_size=16, seq_len=256, num_tokens_to_copy=16),
            _check_copying,
            _frozen(
                vocab_size=(32, 64, 128),
                seq_len=(512, 1024),
                num_train=_SMALLER_TRAIN_SETS,
                num_tokens_to_copy=(32, 64, 96),
            ),
        ),
        MADTaskSpec(
            "compression",
            "C",
            compression,
            _frozen(vocab_size=16, seq_len=32),
            _check_compression,
            _frozen(vocab_size=(32, 64, 128), seq_len=(64, 128, 256), num_train=_SMALLER_TRAIN_SETS),
            autoencoder=True,
        ),
        MADTaskSpec(
            "memorization",
            "M",
            memorization,
            _frozen(vocab_size=256, seq_len=32),
            _check_memorization,
            _frozen(vocab_size=(512, 1024, 2048, 4096, 8192)),
            num_train=256,
            fixed_arguments=_fact_table,
        ),
    )
}


def _resolve(task: str, params: Params) -> tuple[MADTaskSpec, dict[str, Any]]:
    """The task's spec and its full, checked parameters (baseline defaults overridden by ``params``)."""
    if task not in MAD_TASKS:
        raise ValueError(f"unknown MAD task {task!r}; valid tasks: {', '.join(MAD_TASKS)}")
    spec = MAD_TASKS[task]
    unknown = [name for name in params if name not in spec.defaults]
    if unknown:
        names = ", ".join(map(repr, unknown))
        raise ValueError(f"{task} has no parameter {names}; valid parameters: {', '.join(spec.defaults)}")
    full = {**spec.defaults, **params}
    try:
        for name, value in full.items():
            _check_type(name, value, spec.defaults[name])
        spec.check(full)
    except ValueError as error:
        raise ValueError(f"{task}: {error}") from None
    return spec, full


def _stack(generator: Callable[..., Instance], num: int, rng: np.random.Generator, **arguments: Any) -> Instance:
    """``num`` instances as ``(num, length)`` input and target arrays."""
    inputs, targets = zip(*(generator(rng=rng, **arguments) for _ in range(num)), strict=True)
    return np.stack(inputs), np.stack(targets)


def make_split(
    task: str, num_train: int, num_test: int, seed: int, **params: Any
) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """Training and test arrays ``((inputs, targets), (inputs, targets))``, each ``(N, length)`` int64.

    As in mad-lab, one ``np.random.default_rng(seed)`` makes the training set and then, continuing the same stream,
    the test set, so equal arguments give equal arrays. ``params`` override the task's baseline (``MAD_TASKS[task]
    .defaults``); bad names or values raise a one-line ``ValueError`` before anything is generated.
    """
    spec, params = _resolve(task, params)
    for name, value in (("num_train", num_train), ("num_test", num_test), ("seed", seed)):
        _check_type(name, value, 0)
    _require(num_train >= 1, "num_train", ">= 1", num_train)
    _require(num_test >= 1, "num_test", ">= 1", num_test)
    _require(seed >= 0, "seed", ">= 0", seed)
    rng = np.random.default_rng(seed)
    arguments = {**params, **spec.fixed_arguments(params, seed)}
    train = _stack(spec.generator, num_train, rng, is_training=True, **arguments)
    test = _stack(spec.generator, num_test, rng, is_training=False, **arguments)
    return train, test


def mad_task(task: str, num_train: int, num_test: int, seed: int, **params: Any) -> ArrayTask:
    """A MAD task setting as an ``ArrayTask``, scored by macro accuracy like mad-lab.

    ``vocab_size`` is the task's whole vocabulary (special and noise tokens included); compression is marked as an
    autoencoder task.
    """
    train, test = make_split(task, num_train, num_test, seed, **params)
    spec = MAD_TASKS[task]
    vocab_size = params.get("vocab_size", spec.defaults["vocab_size"])
    return ArrayTask(task, train, test, vocab_size=vocab_size, score="macro_accuracy", autoencoder=spec.autoencoder)


# ---------------------------------------------------------------------------------------------------------------
# The paper sweep

#: short tags for setting names; vocab_size and seq_len are always shown
_TAGS = {
    "vocab_size": "V",
    "seq_len": "L",
    "noise_vocab_size": "nv",
    "frac_noise": "f",
    "k_motif_size": "k",
    "v_motif_size": "v",
    "multi_query": "mq",
    "num_tokens_to_copy": "n",
}


def _tag(name: str, value: Any) -> str:
    return f"{_TAGS[name]}{int(value) if isinstance(value, bool) else f'{value:g}'}"


@dataclass(frozen=True)
class MADSetting:
    """One task setting of a MAD sweep: the task, its full parameters and the data set sizes."""

    task: str
    params: Mapping[str, Any]
    num_train: int
    num_test: int = PAPER_NUM_TEST

    @property
    def name(self) -> str:
        """Compact name, e.g. ``"CR V32 L128 N12800"``: V, L and N, then any parameter the task's sweep varies or
        that differs from its baseline (``"NR V32 L128 N12800 f0.4"``)."""
        spec, p = MAD_TASKS[self.task], self.params
        extra = [k for k in p if k not in ("vocab_size", "seq_len") and (k in spec.sweep or p[k] != spec.defaults[k])]
        tags = [_tag("vocab_size", p["vocab_size"]), _tag("seq_len", p["seq_len"]), f"N{self.num_train}"]
        return " ".join([spec.shorthand, *tags, *(_tag(k, p[k]) for k in extra)])

    def build(self, seed: int = PAPER_SEED) -> ArrayTask:
        """Generate this setting's data as an ``ArrayTask``."""
        return mad_task(self.task, self.num_train, self.num_test, seed, **self.params)


def _vary(setting: MADSetting, name: str, value: Any) -> MADSetting:
    if name == "num_train":
        return replace(setting, num_train=value)
    return replace(setting, params=_frozen(**{**setting.params, name: value}))


def paper_settings() -> list[MADSetting]:
    """The paper's 66 settings: per task the baseline, then each sweep value changed alone (CR 11, FR 11, NR 14,
    SC 13, C 11, M 6), each with 1,280 test examples."""
    settings = []
    for spec in MAD_TASKS.values():
        baseline = MADSetting(spec.name, spec.defaults, spec.num_train)
        settings.append(baseline)
        settings += [_vary(baseline, name, value) for name, values in spec.sweep.items() for value in values]
    return settings
