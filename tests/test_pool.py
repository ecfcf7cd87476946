"""The pool is data: a new class is one register() call and works like the built-in ones."""

import pytest
import torch

from starlab.liv import LIVClass, build_liv, class_ids, get_class, pool, register


@pytest.fixture
def scratch_pool(monkeypatch):
    monkeypatch.setattr(pool, "_POOL", dict(pool._POOL))


def test_register_a_new_attention_class(scratch_pool):
    spec = register(LIVClass(18, "SA-5", "attention", (18, 2, 1, 2, 3), {"kv_repeat": 8, "qkv_conv": 0}))
    assert class_ids()[-1] == 18 and get_class("sa-5") is spec
    layer = build_liv(18, 128)
    assert layer.cache_bytes(10) == build_liv(1, 128).cache_bytes(10) // 8
    y = layer(torch.randn(1, 6, 128))
    assert y.shape == (1, 6, 128)


def test_register_rejects_bad_entries(scratch_pool):
    with pytest.raises(ValueError, match="already registered"):
        register(LIVClass(1, "again", "attention", (1, 2, 1, 2, 3)))
    with pytest.raises(ValueError, match="kind 'mamba3' is not one of"):
        register(LIVClass(30, "x", "mamba3", (1, 2, 1, 2, 3)))
    with pytest.raises(ValueError, match="unknown LIV class 'SA-9'"):
        get_class("SA-9")


def test_feature_signatures_decide_what_can_share():
    sig = {i: get_class(i).feature_signature for i in class_ids()}
    assert sig[1] == sig[2]  # SA-1 and SA-2: same K/V shapes
    assert sig[1] != sig[3] != sig[4]  # GQA changes the K/V shape
    assert sig[5] != sig[6]  # state expansion 16 vs 2
    assert sig[7] != sig[8]  # a window vs a full history
    assert sig[9] is None  # nothing cached
    assert sig[10] != sig[1]  # a differential class holds two sets
