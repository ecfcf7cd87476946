"""MAD generators: layouts, scored positions against mad-lab's statistics, train/test differences, determinism,
the paper sweep and parameter errors. Recall sequences are checked against small reference decoders written
independently of the generators. Sizes stay small so the file runs in seconds."""

import random
from itertools import permutations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from starlab.tasks.base import IGNORE, ArrayTask
from starlab.tasks.mad import (
    MAD_TASKS,
    PAPER_NUM_TEST,
    MADSetting,
    fuzzy_in_context_recall,
    in_context_recall,
    mad_task,
    make_split,
    memorization_facts,
    paper_settings,
)

#: output length per task at its baseline (recall drops one token to the next-token shift)
BASELINE_LENGTH = {
    "in-context-recall": 127,
    "fuzzy-in-context-recall": 128,
    "noisy-in-context-recall": 127,
    "selective-copying": 256,
    "compression": 32,
    "memorization": 32,
}


def full_sequence(inputs, targets):
    """The unshifted recall sequence: inputs plus the last token, which is always the last target."""
    return np.append(inputs, targets[-1])


def recall_reference(tokens, vocab_size, multi_query=True, noise_vocab_size=0):
    """Expected test targets of an unshifted (in-context or noisy) recall sequence, checking its layout on the way."""
    plain = vocab_size - noise_vocab_size - (0 if multi_query else 1)
    num_keys = plain // 2
    body, query = tokens[:-2], tokens[-2:]
    if not multi_query:
        assert body[-1] == vocab_size - 1
        body = body[:-1]
    expected, table = [IGNORE] * len(tokens), {}
    for i in range(0, len(body), 2):
        key, value = body[i], body[i + 1]
        if key >= plain:
            assert plain <= min(key, value) and max(key, value) < plain + noise_vocab_size
            continue
        assert key < num_keys <= value < plain
        if key in table:
            assert table[key] == value
            expected[i + 1] = value if multi_query else IGNORE
        table[key] = value
    assert table[query[0]] == query[1], "the query asks a presented key"
    expected[-1] = query[1]
    return expected


def fuzzy_reference(tokens, vocab_size, multi_query=True):
    """Expected test targets of an unshifted fuzzy recall sequence and its key and value lengths.

    Key tokens are below the value tokens, so maximal runs of each class are exactly the keys and values.
    """
    plain = vocab_size - (1 if multi_query else 2)
    num_keys = plain // 2
    padding = int(np.argmax(tokens != plain))
    assert padding >= 1 and (tokens[:padding] == plain).all()
    kind = np.where(tokens < num_keys, 0, np.where(tokens < plain, 1, 2))
    kind[:padding] = 3
    boundaries = np.flatnonzero(np.diff(kind)) + 1
    runs = [(start, end) for start, end in zip(boundaries, [*boundaries[1:], len(tokens)], strict=True)]
    if not multi_query:
        prefix = runs.pop(-3)
        assert prefix[1] - prefix[0] == 1 and tokens[prefix[0]] == vocab_size - 1
    expected, table, key_lengths, value_lengths = [IGNORE] * len(tokens), {}, [], []
    for (k0, k1), (v0, v1) in zip(runs[::2], runs[1::2], strict=True):
        key, value = tuple(tokens[k0:k1]), tuple(tokens[v0:v1])
        assert kind[k0] == 0 and kind[v0] == 1
        assert len(set(key)) == len(key) and len(set(value)) == len(value), "tokens of a motif are distinct"
        key_lengths.append(len(key))
        value_lengths.append(len(value))
        last = v1 == len(tokens)
        if key in table:
            assert table[key] == value
            if multi_query or last:
                expected[v0:v1] = value
        else:
            assert not last, "the final probe asks a key presented before"
        table[key] = value
    return expected, key_lengths, value_lengths


def split(task, num_train=8, num_test=8, seed=0, **params):
    return make_split(task, num_train, num_test, seed, **params)


# ---------------------------------------------------------------------------------------------------------------
# Registry and shapes


def test_registry_matches_mad_lab():
    assert {name: spec.shorthand for name, spec in MAD_TASKS.items()} == {
        "in-context-recall": "CR",
        "fuzzy-in-context-recall": "FR",
        "noisy-in-context-recall": "NR",
        "selective-copying": "SC",
        "compression": "C",
        "memorization": "M",
    }
    assert [name for name, spec in MAD_TASKS.items() if spec.autoencoder] == ["compression"]
    assert dict(MAD_TASKS["noisy-in-context-recall"].defaults) == {
        "vocab_size": 32,
        "seq_len": 128,
        "noise_vocab_size": 16,
        "frac_noise": 0.2,
        "multi_query": True,
    }
    assert MAD_TASKS["memorization"].num_train == 256
    with pytest.raises(TypeError):
        MAD_TASKS["compression"].defaults["seq_len"] = 64  # the registry is read-only


@pytest.mark.parametrize("task", list(MAD_TASKS))
def test_shapes_dtypes_and_token_ranges(task):
    vocab_size = MAD_TASKS[task].defaults["vocab_size"]
    for inputs, targets in split(task):
        assert inputs.shape == targets.shape == (8, BASELINE_LENGTH[task])
        assert inputs.dtype == targets.dtype == np.int64
        assert 0 <= inputs.min() and inputs.max() < vocab_size
        scored = targets[targets != IGNORE]
        assert len(scored) and 0 <= scored.min() and scored.max() < vocab_size


# ---------------------------------------------------------------------------------------------------------------
# Scored positions: the statistics measured by running mad-lab (mad.md §1)


@pytest.mark.parametrize(
    ("task", "params", "num", "mean", "tolerance"),
    [
        ("in-context-recall", {}, 100, 56, 1.0),
        ("in-context-recall", {"vocab_size": 128}, 100, 24, 1.5),
        ("noisy-in-context-recall", {}, 100, 44, 1.5),
        ("noisy-in-context-recall", {"frac_noise": 0.8}, 100, 8, 1.5),
        ("fuzzy-in-context-recall", {}, 300, 4.3, 0.5),
        ("fuzzy-in-context-recall", {"vocab_size": 128}, 200, 2.0, 0.4),
    ],
)
def test_scored_test_positions_match_mad_lab(task, params, num, mean, tolerance):
    _, (_, targets) = split(task, num_train=1, num_test=num, **params)
    assert (targets != IGNORE).sum(axis=1).mean() == pytest.approx(mean, abs=tolerance)


# ---------------------------------------------------------------------------------------------------------------
# Recall tasks: train = plain next-token targets, test = recallable values only


@pytest.mark.parametrize("task", ["in-context-recall", "noisy-in-context-recall", "fuzzy-in-context-recall"])
def test_recall_training_targets_are_the_shifted_inputs(task):
    (inputs, targets), _ = split(task)
    assert (targets[:, :-1] == inputs[:, 1:]).all()
    assert (targets != IGNORE).all()


@pytest.mark.parametrize("task", ["in-context-recall", "noisy-in-context-recall"])
def test_recall_test_scores_exactly_the_recallable_values(task):
    defaults = MAD_TASKS[task].defaults
    _, (inputs, targets) = split(task, num_test=32)
    for x, y in zip(inputs, targets, strict=True):
        expected = recall_reference(
            full_sequence(x, y), defaults["vocab_size"], True, defaults.get("noise_vocab_size", 0)
        )
        assert expected[1:] == y.tolist()


def test_noisy_recall_noise_is_slots_of_noise_tokens_at_the_set_rate():
    _, (inputs, targets) = split("noisy-in-context-recall", num_test=64)
    slots = np.stack([full_sequence(x, y)[:-2].reshape(-1, 2) for x, y in zip(inputs, targets, strict=True)])
    noise = slots >= 16
    assert (noise[..., 0] == noise[..., 1]).all(), "noise fills whole key-value slots"
    assert noise[..., 0].mean() == pytest.approx(0.2, abs=0.03)
    assert not np.isin(targets, np.arange(16, 32)).any(), "noise is never scored at test time"


def test_fuzzy_test_keys_have_k_motif_size_and_training_keys_vary():
    (train_inputs, train_targets), (test_inputs, test_targets) = split("fuzzy-in-context-recall", 16, 16)
    train_keys, test_keys, values = set(), set(), set()
    for x, y in zip(train_inputs, train_targets, strict=True):
        _, key_lengths, value_lengths = fuzzy_reference(full_sequence(x, y), 16)
        train_keys.update(key_lengths)
        values.update(value_lengths)
    for x, y in zip(test_inputs, test_targets, strict=True):
        expected, key_lengths, _ = fuzzy_reference(full_sequence(x, y), 16)
        assert expected[1:] == y.tolist()
        test_keys.update(key_lengths)
    assert train_keys == values == {1, 2, 3}
    assert test_keys == {3}


def test_single_query_recall_scores_only_the_final_value():
    _, (inputs, targets) = split("in-context-recall", multi_query=False)
    assert inputs.shape == (8, 128) and ((targets != IGNORE).sum(axis=1) == 1).all()
    assert (inputs[:, -2] == 15).all(), "copy prefix before the query key"
    for x, y in zip(inputs, targets, strict=True):
        assert recall_reference(full_sequence(x, y), 16, multi_query=False)[1:] == y.tolist()
    _, (inputs, targets) = split("fuzzy-in-context-recall", multi_query=False)
    for x, y in zip(inputs, targets, strict=True):
        assert fuzzy_reference(full_sequence(x, y), 16, multi_query=False)[0][1:] == y.tolist()


@given(
    vocab_size=st.integers(2, 40),
    half_len=st.integers(2, 40),
    multi_query=st.booleans(),
    noise_vocab_size=st.integers(0, 6),
    frac_noise=st.sampled_from([0.0, 0.5, 0.9]),
    seed=st.integers(0, 2**16),
)
def test_recall_layout_holds_for_any_valid_parameters(
    vocab_size, half_len, multi_query, noise_vocab_size, frac_noise, seed
):
    vocab_size += noise_vocab_size + (0 if multi_query else 1)
    frac_noise = frac_noise if noise_vocab_size else 0.0
    for is_training in (True, False):
        x, y = in_context_recall(
            vocab_size=vocab_size,
            seq_len=2 * half_len,
            rng=np.random.default_rng(seed),
            is_training=is_training,
            multi_query=multi_query,
            noise_vocab_size=noise_vocab_size,
            frac_noise=frac_noise,
        )
        expected = recall_reference(full_sequence(x, y), vocab_size, multi_query, noise_vocab_size)
        assert len(x) == 2 * half_len - multi_query
        assert (y[:-1] == x[1:]).all() if is_training else y.tolist() == expected[1:]


@given(
    k_motif_size=st.integers(1, 3),
    v_motif_size=st.integers(1, 3),
    extra_vocab=st.integers(0, 8),
    extra_len=st.integers(0, 30),
    multi_query=st.booleans(),
    is_training=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_fuzzy_layout_holds_for_any_valid_parameters(
    k_motif_size, v_motif_size, extra_vocab, extra_len, multi_query, is_training, seed
):
    vocab_size = max(2 * k_motif_size, 2 * v_motif_size - 1) + (1 if multi_query else 2) + extra_vocab
    seq_len = 3 * (k_motif_size + v_motif_size) + extra_len
    x, y = fuzzy_in_context_recall(
        vocab_size=vocab_size,
        seq_len=seq_len,
        rng=np.random.default_rng(seed),
        is_training=is_training,
        k_motif_size=k_motif_size,
        v_motif_size=v_motif_size,
        multi_query=multi_query,
    )
    expected, key_lengths, value_lengths = fuzzy_reference(full_sequence(x, y), vocab_size, multi_query)
    assert len(x) == seq_len
    assert max(key_lengths) <= k_motif_size and max(value_lengths) <= v_motif_size
    if not is_training:
        assert y.tolist() == expected[1:] and set(key_lengths) == {k_motif_size}


# ---------------------------------------------------------------------------------------------------------------
# Selective copying, compression, memorization


def test_selective_copying_emits_the_data_tokens_in_order():
    train, test = split("selective-copying", num_train=16, num_test=16)
    for inputs, targets in (train, test):
        for x, y in zip(inputs, targets, strict=True):
            copy = len(x) - 17
            assert x[copy] == 15 and (x[copy + 1 :] == 14).all() and not np.isin(x[:copy], [15]).any()
            data = x[:copy][x[:copy] != 14]
            assert len(data) == 16 and (y[copy + 1 :] == data).all() and (y[: copy + 1] == IGNORE).all()
            assert x[copy - 1] != 14, "kept quirk: no blank after the last data token"


def test_selective_copying_uses_num_tokens_to_copy_and_blanks_spread_out():
    (inputs, targets), _ = split("selective-copying", num_train=64, seq_len=128, num_tokens_to_copy=32)
    assert ((targets != IGNORE).sum(axis=1) == 32).all()
    first_data = (inputs[:, :95] != 14).argmax(axis=1)
    assert 0 < first_data.mean() < 10, "about (L - 2n - 1) / n blanks before the first data token"


def test_compression_targets_are_the_inputs():
    for inputs, targets in split("compression", vocab_size=32, seq_len=64):
        assert (targets == inputs).all()
        assert (inputs[:, -1] == 31).all() and inputs[:, :-1].max() < 31


def test_memorization_asks_one_fixed_table_in_train_and_test():
    train, test = split("memorization", num_train=64, num_test=64, seed=7)
    facts = memorization_facts(256, 7)
    assert len(facts) == len(set(facts)) == 127 and 127 <= facts.min() and facts.max() < 255, "one value per key"
    for inputs, targets in (train, test):
        keys, inserts = inputs[:, ::2], inputs[:, 1::2]
        assert (inserts == 255).all() and keys.max() < 127
        assert (targets[:, ::2] == IGNORE).all() and (targets[:, 1::2] == facts[keys]).all()


def test_memorization_table_equals_mad_labs_generate_kv_map():
    # mad-lab: shuffle the 1-token permutation lists of keys, then of values, with one fresh generator; zip them
    table_rng = np.random.default_rng(12345)
    keys, values = list(permutations(range(127), 1)), list(permutations(range(127, 255), 1))
    table_rng.shuffle(keys)
    table_rng.shuffle(values)
    expected = {key[0]: value[0] for key, value in zip(keys, values, strict=False)}
    facts = memorization_facts(256, 12345)
    assert {key: int(facts[key]) for key in expected} == expected


# ---------------------------------------------------------------------------------------------------------------
# Determinism and the random stream


@pytest.mark.parametrize("task", list(MAD_TASKS))
def test_same_seed_same_arrays_other_seed_other_arrays(task):
    first, again, other = split(task, seed=3), split(task, seed=3), split(task, seed=4)
    for part in (0, 1):  # train, test
        assert all(np.array_equal(x, y) for x, y in zip(first[part], again[part], strict=True))
        assert not np.array_equal(first[part][0], other[part][0])
    assert not np.array_equal(first[0][0], first[1][0]), "test continues the stream instead of repeating train"


def test_train_and_test_come_from_one_stream():
    (short, _), short_test = split("in-context-recall", num_train=4)
    (long, _), long_test = split("in-context-recall", num_train=6)
    assert np.array_equal(short, long[:4])
    assert not np.array_equal(short_test[0], long_test[0])


def test_global_random_state_is_neither_used_nor_changed():
    results = []
    for global_seed in (0, 1):
        np.random.seed(global_seed)
        random.seed(global_seed)
        state = np.random.get_state()[1].copy()
        results.append([split(task) for task in MAD_TASKS])
        assert np.array_equal(np.random.get_state()[1], state)
    for a, b in zip(*results, strict=True):
        assert all(np.array_equal(x, y) for pa, pb in zip(a, b, strict=True) for x, y in zip(pa, pb, strict=True))


# ---------------------------------------------------------------------------------------------------------------
# ArrayTask wrapper and the paper sweep


def test_mad_task_wraps_the_split():
    task = mad_task("noisy-in-context-recall", 4, 2, seed=0, vocab_size=48)
    assert isinstance(task, ArrayTask)
    assert (task.name, task.vocab_size, task.seq_len, task.autoencoder) == ("noisy-in-context-recall", 48, 127, False)
    assert task.score == "macro_accuracy" and task.train[0].shape == (4, 127) and task.test[0].shape == (2, 127)
    assert mad_task("compression", 2, 2, seed=0).autoencoder


def test_paper_settings_are_the_66_one_factor_changes():
    settings = paper_settings()
    counts = {}
    for setting in settings:
        counts[MAD_TASKS[setting.task].shorthand] = counts.get(MAD_TASKS[setting.task].shorthand, 0) + 1
    assert counts == {"CR": 11, "FR": 11, "NR": 14, "SC": 13, "C": 11, "M": 6}
    assert all(s.num_test == PAPER_NUM_TEST == 1280 for s in settings)
    names = [s.name for s in settings]
    assert len(set(names)) == 66
    assert names[:2] == ["CR V16 L128 N12800", "CR V32 L128 N12800"]
    assert "NR V32 L128 N12800 f0.4" in names and "SC V16 L256 N800 n16" in names and "M V8192 L32 N256" in names
    for setting in settings:
        spec = MAD_TASKS[setting.task]
        changed = [k for k, v in setting.params.items() if v != spec.defaults[k]]
        if setting.num_train != spec.num_train:
            changed.append("num_train")
        assert len(changed) <= 1
        for name in changed:
            assert (setting.num_train if name == "num_train" else setting.params[name]) in spec.sweep[name]


def test_every_paper_setting_generates():
    for setting in paper_settings():
        (inputs, _), (_, targets) = make_split(setting.task, 1, 1, 0, **setting.params)
        assert inputs.shape[1] >= setting.params["seq_len"] - 1 and (targets != IGNORE).any()


def test_setting_builds_its_task_and_names_custom_parameters():
    setting = MADSetting("in-context-recall", {"vocab_size": 16, "seq_len": 16, "multi_query": False}, 4, 2)
    assert setting.name == "CR V16 L16 N4 mq0"
    task = setting.build(seed=1)
    assert task.train[0].shape == (4, 16) and task.test[0].shape == (2, 16)


# ---------------------------------------------------------------------------------------------------------------
# Errors: one line, naming what is wrong and what is allowed


def one_line_error(task, **params):
    with pytest.raises(ValueError) as error:
        split(task, **params)
    message = str(error.value)
    assert "\n" not in message
    return message


def test_unknown_task_lists_the_valid_tasks():
    message = one_line_error("in-context-recal")
    assert all(name in message for name in MAD_TASKS)


def test_unknown_parameter_names_the_task_and_its_parameters():
    message = one_line_error("compression", frac_noise=0.1)
    assert "compression" in message and "'frac_noise'" in message and "vocab_size, seq_len" in message


@pytest.mark.parametrize(
    ("task", "params", "named"),
    [
        ("in-context-recall", {"seq_len": 127}, "seq_len"),
        ("in-context-recall", {"vocab_size": 1}, "vocab_size"),
        ("in-context-recall", {"multi_query": 1}, "multi_query"),
        ("noisy-in-context-recall", {"frac_noise": 1.0}, "frac_noise"),
        ("noisy-in-context-recall", {"frac_noise": -0.1}, "frac_noise"),
        ("noisy-in-context-recall", {"vocab_size": 17}, "vocab_size"),
        ("noisy-in-context-recall", {"noise_vocab_size": 0}, "noise_vocab_size"),
        ("fuzzy-in-context-recall", {"vocab_size": 6}, "vocab_size"),
        ("fuzzy-in-context-recall", {"seq_len": 17}, "seq_len"),
        ("fuzzy-in-context-recall", {"k_motif_size": 0}, "k_motif_size"),
        ("selective-copying", {"num_tokens_to_copy": 0}, "num_tokens_to_copy"),
        ("selective-copying", {"num_tokens_to_copy": 128}, "num_tokens_to_copy"),
        ("selective-copying", {"vocab_size": 2}, "vocab_size"),
        ("compression", {"seq_len": 32.0}, "seq_len"),
        ("memorization", {"seq_len": 31}, "seq_len"),
        ("memorization", {"vocab_size": 2}, "vocab_size"),
    ],
)
def test_invalid_values_name_the_parameter_and_the_allowed_values(task, params, named):
    message = one_line_error(task, **params)
    assert message.startswith(f"{task}: {named} must be ")


def test_invalid_sizes_and_seed():
    for bad in ({"num_train": 0}, {"num_test": -1}, {"seed": -1}, {"num_train": 2.5}):
        with pytest.raises(ValueError, match=f"^{next(iter(bad))} must be"):
            split("compression", **bad)
