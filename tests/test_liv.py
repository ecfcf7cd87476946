"""Properties every LIV must have, at small widths so the suite stays fast: the 17 pool classes and every
valid operator genome outside the pool (operator genes, :mod:`starlab.liv.operator`)."""

import pytest
import torch

from starlab.liv import LIVConfig, build_liv, class_ids, class_key, get_class, state_nbytes, valid_operator_genomes

WIDTH = 32
#: small chunks and head sizes so that short test sequences cross chunk and head boundaries
CONFIG = LIVConfig(head_dim=16, recurrence_head_dim=8, scan_chunk=8)
POOL = class_ids()
#: the operator genomes that are not pool classes (45 of them)
COMPOSED = [genes for genes in valid_operator_genomes() if not isinstance(class_key(genes), int)]
ALL = POOL + COMPOSED


def make(class_id, dtype=torch.float32):
    torch.manual_seed(class_id if isinstance(class_id, int) else 100 + COMPOSED.index(class_id))
    return build_liv(class_id, WIDTH, CONFIG).to(dtype)


def decode(layer, x):
    state, ys = layer.init_state(x.shape[0]), [x[:, :0]]
    for t in range(x.shape[1]):
        y_t, state = layer.step(x[:, t], state)
        ys.append(y_t[:, None])
    return torch.cat(ys, dim=1), state


def test_pool_has_the_17_classes_of_the_paper():
    assert POOL == list(range(1, 18))
    assert [get_class(i).name for i in range(1, 10)] == [
        "SA-1", "SA-2", "SA-3", "SA-4", "Rec-1", "Rec-2", "GConv-1", "GConv-2", "GMemless",
    ]  # fmt: skip
    assert get_class("gconv-1").operator_genome_text == "73111"
    assert get_class(14).name == "Rec-1-Diff" and get_class(14).base == 5


@pytest.mark.parametrize("class_id", ALL)
def test_causal(class_id):
    layer = make(class_id)
    x = torch.randn(2, 21, WIDTH)
    y = layer(x)
    for t in (0, 9, 17):
        x2 = x.clone()
        x2[:, t + 1 :] = torch.randn_like(x2[:, t + 1 :]) * 3
        torch.testing.assert_close(layer(x2)[:, : t + 1], y[:, : t + 1], rtol=1e-5, atol=1e-5)
        assert not torch.allclose(layer(x2)[:, t + 1 :], y[:, t + 1 :])  # the future does matter later


@pytest.mark.parametrize("class_id", ALL)
def test_recurrent_form_equals_parallel_form(class_id):
    layer = make(class_id)
    x = torch.randn(2, 19, WIDTH)
    y_steps, _ = decode(layer, x)
    torch.testing.assert_close(y_steps, layer(x), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("class_id", ALL)
def test_gradients_reach_every_parameter(class_id):
    layer = make(class_id)
    x = torch.randn(2, 12, WIDTH, requires_grad=True)
    layer(x).square().mean().backward()
    for name, param in layer.named_parameters():
        assert param.grad is not None, f"{name} got no gradient"
        assert torch.isfinite(param.grad).all(), f"{name} has a non-finite gradient"
        assert param.grad.abs().sum() > 0, f"{name} has an all-zero gradient"
    assert torch.isfinite(x.grad).all()


@pytest.mark.parametrize("class_id", ALL)
def test_measured_state_equals_analytic_cache(class_id):
    layer = make(class_id)
    batch = 3
    for length in (0, 5, 13):
        _, state = decode(layer, torch.randn(batch, length, WIDTH))
        measured = state_nbytes(state) / batch
        assert measured == layer.cache_bytes(length, bytes_per_value=4)


@pytest.mark.parametrize("class_id", ALL)
def test_cache_growth_matches_the_family(class_id):
    spec, layer = get_class(class_id), make(class_id)
    small, large = layer.cache_bytes(100), layer.cache_bytes(1000)
    if spec.family == "memoryless":
        assert small == large == 0
    elif spec.kind in ("attention", "long_conv"):
        assert large > small > 0
    else:
        assert large == small > 0


@pytest.mark.parametrize("class_id", ALL)
def test_bad_input_is_a_clear_value_error(class_id):
    layer = make(class_id)
    with pytest.raises(ValueError, match=rf"\(batch, length, {WIDTH}\).*got \(2, 5, 16\)"):
        layer(torch.randn(2, 5, 16))
    with pytest.raises(ValueError, match=r"expects shape .*got \(5, 32\)"):
        layer(torch.randn(5, WIDTH))
    with pytest.raises(ValueError, match=r"floating-point.*torch.int64"):
        layer(torch.ones(2, 5, WIDTH, dtype=torch.long))
    with pytest.raises(ValueError, match=rf"\(batch, {WIDTH}\)"):
        layer.step(torch.randn(2, 1, WIDTH), layer.init_state(2))


def test_differential_classes_double_the_base_cache():
    for class_id in range(10, 18):
        diff, base = make(class_id), make(get_class(class_id).base)
        assert diff.cache_bytes(50) == 2 * base.cache_bytes(50)


def test_gqa_classes_shrink_the_kv_cache_by_their_repeat_factor():
    sa1, sa3, sa4 = (build_liv(i, 256).cache_bytes(4096) for i in (1, 3, 4))
    assert sa1 == 2 * 256 * 4096 * 2
    assert (sa3, sa4) == (sa1 // 4, sa1 // 2)


def test_width_validation():
    for width in (0, 12, -8, 7.5, "64"):
        with pytest.raises(ValueError, match="width must be a positive multiple of 8"):
            build_liv(1, width)
    with pytest.raises(ValueError, match=r"not in 1\.\.17"):
        build_liv(23, 64)
    with pytest.raises(ValueError, match="non-negative integer"):
        build_liv(1, 64).cache_bytes(-1)


def test_sizing_on_meta_computes_no_initial_values():
    """Models are sized on meta at any width; the few initial values made by elementwise math (Hyena's decay,
    Mamba's step sizes) were computed on the CPU first, gigabytes at a width of a billion before any refusal."""
    from starlab.liv.base import computed_on_cpu, meta_device

    def never():
        raise AssertionError("computed values that meta cannot hold")

    with meta_device():
        values = computed_on_cpu(never, (10**9,))
        layer = build_liv(8, 10**8)  # GConv-2, a Hyena class: its decay buffer has a channel per unit of width
    assert values.is_meta and values.shape == (10**9,) and values.dtype == torch.get_default_dtype()
    assert layer.featurizer.filter.decay.is_meta
    state = torch.random.get_rng_state()
    expected = torch.linspace(1.0, 2.0, 5)
    assert torch.equal(computed_on_cpu(lambda: torch.linspace(1.0, 2.0, 5), (5,)), expected)
    assert torch.equal(torch.random.get_rng_state(), state)


def test_liv_sizes_count_what_a_built_layer_holds_and_stores():
    """``liv_sizes``/``liv_size`` (what ``starlab liv list/build`` print) size on meta: the same parameters as a
    layer built with storage, and the cache its decoding state measures (16-bit values)."""
    from starlab.liv import liv_size, liv_sizes

    sizes = liv_sizes(WIDTH, 12)
    assert [size.id for size in sizes] == POOL
    for size in sizes:
        layer = build_liv(size.id, WIDTH)
        assert size.params == sum(p.numel() for p in layer.parameters()) > 0
        _, state = decode(layer, torch.randn(1, 12, WIDTH))
        assert size.cache_bytes == state_nbytes(state) // 2  # float32 state, counted in 16-bit values
        assert size.to_dict()["name"] == get_class(size.id).name
    composed = liv_sizes(WIDTH, 12, operators=True)
    assert len(composed) == len(ALL) and {s.id for s in composed} - set(POOL) == {None}
    repaired = liv_size("[1,2,1,3,3]", WIDTH, 12, repair=True)  # nonlinearity 3 does not fit featurizer 1
    assert repaired == liv_size("[1,2,1,2,3]", WIDTH, 12) and repaired.operator_genome == "12123"
    with pytest.raises(ValueError):
        liv_size("[1,2,1,3,3]", WIDTH, 12)
    with pytest.raises(ValueError, match="width must be a positive multiple of 8"):
        liv_sizes(12, 12)
