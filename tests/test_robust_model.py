"""Hostile input to the model room: tampered exports refused in one line (files untouched), sizes that cannot
fit refused before anything is allocated, and what ``save`` writes always loads back."""

import dataclasses
import hashlib
import json
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

import starlab
from starlab.genome import Genome, preset, random_genome
from starlab.liv import LIVConfig, class_ids
from starlab.model import (
    TRAINING_FACTOR,
    Backbone,
    BackboneSpec,
    available_bytes,
    check_largest_model_fits,
    check_model_fits,
    check_spec_fits,
    estimate_model_bytes,
    estimate_spec_bytes,
    get_flavour,
    largest_model_bytes,
)
from starlab.model.digest import ARCHITECTURE_KEY, architecture_digest, architecture_metadata
from starlab.model.serialization import CONFIG_FILE, WEIGHTS_FILE, load, save
from starlab.model.validation import LIV_CONFIG_RULES

GENOME, WIDTH, VOCAB = Genome.parse("11111-91111"), 32, 64
ARCHITECTURE_CHANGED = "model.safetensors: saved for another architecture than config.json describes"
SMALL = LIVConfig(head_dim=8, recurrence_head_dim=8, scan_chunk=4)


def small_model(genome=GENOME, seed=0, **kwargs):
    torch.manual_seed(seed)
    return Backbone(genome, WIDTH, VOCAB, **kwargs)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """One real export: its directory, parsed config and raw bytes."""
    directory = save(small_model(), tmp_path_factory.mktemp("export") / "model", note="original")
    config_bytes, weights_bytes = (directory / CONFIG_FILE).read_bytes(), (directory / WEIGHTS_FILE).read_bytes()
    return directory, json.loads(config_bytes), config_bytes, weights_bytes


@pytest.fixture(scope="module", autouse=True)
def meta_warm():
    """The first meta-device op of a process imports torch's decompositions (about a second); do it here so
    the timings below measure the checks."""
    with torch.device("meta"):
        Backbone(preset("striped-mamba", 4), WIDTH, VOCAB)


def snapshot(directory: Path) -> dict:
    return {
        str(p.relative_to(directory)): (p.read_bytes() if p.is_file() else None) for p in sorted(directory.rglob("*"))
    }


# ---- the tampering table -------------------------------------------------------------------------------------
def set_key(key, value):
    return lambda config: {**config, key: value}


def drop_key(key):
    return lambda config: {k: v for k, v in config.items() if k != key}


def set_liv(key, value):
    return lambda config: {**config, "liv_config": {**config["liv_config"], key: value}}


def drop_liv(key):
    return lambda config: {**config, "liv_config": {k: v for k, v in config["liv_config"].items() if k != key}}


def raw(text):
    """Replace config.json's text."""
    return ("raw", text)


def raw_value(key, text):
    """A value written into the JSON text as is (NaN, Infinity, huge numbers)."""
    return ("raw_value", key, text)


def weights_from(make):
    return ("weights", make)


def other_weights(genome=None, width=WIDTH, vocab=VOCAB, **kwargs):
    def write(path):
        torch.manual_seed(1)
        model = Backbone(genome or GENOME, width, vocab, **kwargs)
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))

    return write


def nan_weights(path):
    model = small_model()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    state["livs.0.out_proj.weight"][0, 0] = float("nan")
    save_file(state, str(path))


def int_weights(path):
    state = {k: (v * 100).to(torch.int64) for k, v in small_model().state_dict().items()}
    save_file(state, str(path))


def extra_tensor(path):
    state = dict(small_model().state_dict())
    state["extra.weight"] = torch.zeros(3)
    save_file(state, str(path))


CONFIG_CASES = [
    # (case id, tampering, text the one-line message must hold)
    *[
        (f"missing-{key}", drop_key(key), f"'{key}' is missing")
        for key in (
            "format",
            "version",
            "genome",
            "width",
            "vocab_size",
            "tie_embeddings",
            "max_positions",
            "liv_config",
            "metadata",
        )
    ],
    ("format-other", set_key("format", "gguf"), "'format' must be"),
    ("format-number", set_key("format", 1), "'format' must be"),
    ("version-2", set_key("version", 2), "'version' must be 1"),
    ("version-string", set_key("version", "1"), "'version' must be 1"),
    ("version-bool", set_key("version", True), "'version' must be 1"),
    ("version-float", set_key("version", 1.0), "'version' must be 1"),
    ("unknown-key", set_key("extra", 1), "unknown key 'extra'"),
    ("unknown-unicode-key", set_key("\u202ewidth\x00", 1), "unknown key '\\u202ewidth\\x00'"),
    ("tie-no", set_key("tie_embeddings", "no"), "'tie_embeddings' must be true or false, got \"no\""),
    ("tie-int", set_key("tie_embeddings", 1), "'tie_embeddings' must be true or false"),
    ("tie-null", set_key("tie_embeddings", None), "'tie_embeddings' must be true or false"),
    ("width-string", set_key("width", "256"), "'width' must be a positive multiple of 8, got \"256\""),
    ("width-negative", set_key("width", -3), "'width' must be a positive multiple of 8, got -3"),
    ("width-zero", set_key("width", 0), "'width' must be"),
    ("width-odd", set_key("width", 33), "'width' must be"),
    ("width-float", set_key("width", 32.0), "'width' must be"),
    ("width-bool", set_key("width", True), "'width' must be"),
    ("width-list", set_key("width", [32]), "'width' must be"),
    ("width-nan", raw_value("width", "NaN"), "'width' must be a positive multiple of 8, got NaN"),
    ("width-infinity", raw_value("width", "-Infinity"), "'width' must be"),
    ("width-other", set_key("width", 64), "'embed.weight' has shape [64, 32], the model of config.json needs [64, 64]"),
    ("width-huge", set_key("width", 200_000), "would need"),
    ("width-astronomic", raw_value("width", "8" + "0" * 400), "would need more than"),
    ("vocab-float", set_key("vocab_size", 1e30), "'vocab_size' must be an integer >= 2, got 1e+30"),
    ("vocab-one", set_key("vocab_size", 1), "'vocab_size' must be"),
    ("vocab-string", set_key("vocab_size", "64"), "'vocab_size' must be"),
    ("vocab-bool", set_key("vocab_size", True), "'vocab_size' must be"),
    ("vocab-huge", set_key("vocab_size", 10**9), "would need"),
    ("vocab-other", set_key("vocab_size", 65), "'embed.weight' has shape [64, 32]"),
    ("genome-number", set_key("genome", 5), "'genome' must be a genome text"),
    ("genome-empty", set_key("genome", ""), "'genome' is not a valid genome"),
    ("genome-class", set_key("genome", "99999-91111"), "'genome' is not a valid genome"),
    ("genome-fullwidth-digits", set_key("genome", "\uff11\uff11\uff11\uff11\uff11-91111"), "'genome' is not a valid"),
    ("genome-sharing", set_key("genome", "11112-91112"), "'genome' is not a valid genome"),
    ("genome-long-garbage", set_key("genome", "x" * 100_000), "'genome' is not a valid genome"),
    ("genome-other", set_key("genome", "11111-91111-11111"), "'norms.2.weight' is missing"),
    ("liv-list", set_key("liv_config", []), "'liv_config' must be a JSON object"),
    ("liv-empty", set_key("liv_config", {}), "'liv_config.head_dim' is missing"),
    ("liv-missing-rope", drop_liv("rope_base"), "'liv_config.rope_base' is missing"),
    ("liv-unknown", set_liv("dropout", 0.1), "'liv_config' has unknown key 'dropout'"),
    ("liv-head-string", set_liv("head_dim", "8"), "'liv_config.head_dim' must be an integer in 2.."),
    ("liv-head-zero", set_liv("head_dim", 0), "'liv_config.head_dim' must be an integer in 2.."),
    ("liv-head-one", set_liv("head_dim", 1), "'liv_config.head_dim' must be"),
    ("liv-head-float", set_liv("head_dim", 1.5), "'liv_config.head_dim' must be"),
    ("liv-head-bool", set_liv("head_dim", True), "'liv_config.head_dim' must be"),
    ("liv-chunk-huge", set_liv("scan_chunk", 2**40), "'liv_config.scan_chunk' must be"),
    ("liv-rope-negative", set_liv("rope_base", -1), "'liv_config.rope_base' must be"),
    ("liv-rope-nan", ("raw_liv", "rope_base", "NaN"), "'liv_config.rope_base' must be a number in [1, 1e+30], got NaN"),
    ("liv-rope-string", set_liv("rope_base", "big"), "'liv_config.rope_base' must be"),
    ("liv-mlp-zero", set_liv("mlp_ratio", 0), "'liv_config.mlp_ratio' must be a number in (0, 1024]"),
    ("liv-mlp-huge", set_liv("mlp_ratio", 1e308), "'liv_config.mlp_ratio' must be"),
    ("liv-multiple-zero", set_liv("mlp_multiple", 0), "'liv_config.mlp_multiple' must be"),
    ("liv-bands-negative", set_liv("filter_bands", -1), "'liv_config.filter_bands' must be"),
    ("liv-lambda-string", set_liv("diff_lambda_init", "0.8"), "'liv_config.diff_lambda_init' must be"),
    ("liv-lambda-null", set_liv("diff_lambda_init", None), "'liv_config.diff_lambda_init' must be"),
    ("liv-mlp-other", set_liv("mlp_ratio", 4.0), "'livs.1.featurizer.gate_value.weight' has shape"),
    ("positions-string", set_key("max_positions", "x"), "'max_positions' must be null or a positive integer"),
    ("positions-zero", set_key("max_positions", 0), "'max_positions' must be"),
    ("positions-negative", set_key("max_positions", -1), "'max_positions' must be"),
    ("positions-without-weights", set_key("max_positions", 16), "'pos_embed.weight' is missing"),
    ("positions-huge", set_key("max_positions", 10**12), "would need"),
    ("untied-without-head", set_key("tie_embeddings", False), "'head.weight' is missing"),
    ("metadata-list", set_key("metadata", []), "'metadata' must be a JSON object"),
    ("config-list", lambda config: [config], "must hold a JSON object (a starlab model config), got an array"),
    ("config-null", raw("null"), "must hold a JSON object"),
    ("config-number", raw("5"), "must hold a JSON object"),
    ("config-empty", raw(""), "invalid JSON"),
    ("config-truncated", ("truncate", 40), "invalid JSON"),
    ("config-duplicate-key", ("duplicate", "width", "64"), "'width' appears twice"),
    ("config-not-utf8", raw(b"\xff\xfe{\x00}"), "is not UTF-8 text"),
    ("config-deep", raw_value("metadata", "[" * 100_000 + "]" * 100_000), "nested too deeply"),
    ("config-huge-int", raw_value("width", "8" * 5000), "invalid JSON"),
    # the same tensors, another architecture: found by the digest the weights were saved with (issue 30 item 9)
    ("genome-same-shapes", set_key("genome", "b112:11111-91111"), ARCHITECTURE_CHANGED),  # a parallel residual
    ("liv-rope-base-other", set_liv("rope_base", 500_000.0), ARCHITECTURE_CHANGED),
    ("liv-head-dim-other", set_liv("head_dim", 16), ARCHITECTURE_CHANGED),  # two heads of 16, not one of 32
    ("liv-heads-other", set_liv("heads", 2), ARCHITECTURE_CHANGED),
    ("liv-rope-off", set_liv("rope", False), ARCHITECTURE_CHANGED),
]


def other_digest(path):
    state = {k: v.contiguous() for k, v in small_model().state_dict().items() if k != "head.weight"}
    save_file(state, str(path), metadata={ARCHITECTURE_KEY: "sha256:" + "0" * 64})


def inf_weights(path):
    state = {k: v.clone() for k, v in small_model().state_dict().items()}
    state["embed.weight"][3] = float("-inf")
    save_file(state, str(path), metadata=architecture_metadata(small_model()))


WEIGHT_CASES = [
    ("weights-garbage", weights_from(lambda p: p.write_bytes(b"\x00garbage" * 100)), "not a readable safetensors"),
    ("weights-empty", weights_from(lambda p: p.write_bytes(b"")), "not a readable safetensors"),
    ("weights-truncated", ("truncate-weights",), "not a readable safetensors"),
    ("weights-json", weights_from(lambda p: p.write_text('{"a": 1}')), "not a readable safetensors"),
    ("weights-other-genome", weights_from(other_weights(Genome.parse("51111-91111"))), "weights of another genome"),
    ("weights-other-width", weights_from(other_weights(width=64)), "'embed.weight' has shape [64, 64]"),
    ("weights-untied", weights_from(other_weights(tie_embeddings=False)), "holds 'head.weight'"),
    ("weights-nan", weights_from(nan_weights), "'livs.0.out_proj.weight' holds 1 NaN or infinite values"),
    ("weights-int", weights_from(int_weights), "weights must be floating point"),
    ("weights-extra", weights_from(extra_tensor), "holds 'extra.weight'"),
    ("weights-other-digest", weights_from(other_digest), ARCHITECTURE_CHANGED),
]


def tamper(directory: Path, config: dict, case) -> None:
    config_path, weights_path = directory / CONFIG_FILE, directory / WEIGHTS_FILE
    if callable(case):
        config_path.write_text(json.dumps(case(config)))
    elif case[0] == "raw":
        text = case[1]
        config_path.write_bytes(text if isinstance(text, bytes) else text.encode())
    elif case[0] in ("raw_value", "raw_liv"):
        marker = "__VALUE__"
        changed = set_key(case[1], marker)(config) if case[0] == "raw_value" else set_liv(case[1], marker)(config)
        config_path.write_text(json.dumps(changed).replace(f'"{marker}"', case[2]))
    elif case[0] == "truncate":
        config_path.write_text(json.dumps(config)[: case[1]])
    elif case[0] == "duplicate":
        config_path.write_text(json.dumps(config)[:-1] + f', "{case[1]}": {case[2]}}}')
    elif case[0] == "truncate-weights":
        weights_path.write_bytes(weights_path.read_bytes()[:-100])
    elif case[0] == "weights":
        case[1](weights_path)


@pytest.mark.parametrize(("case", "expected"), [c[1:] for c in CONFIG_CASES + WEIGHT_CASES],
                         ids=[c[0] for c in CONFIG_CASES + WEIGHT_CASES])  # fmt: skip
def test_tampered_exports_are_refused_in_one_line_and_left_untouched(exported, tmp_path, case, expected):
    _, config, config_bytes, weights_bytes = exported
    directory = tmp_path / "model"
    directory.mkdir()
    (directory / CONFIG_FILE).write_bytes(config_bytes)
    (directory / WEIGHTS_FILE).write_bytes(weights_bytes)
    tamper(directory, config, case)
    before = snapshot(directory)
    start = time.perf_counter()
    with pytest.raises(ValueError) as info:
        load(directory)
    message = str(info.value)
    assert "\n" not in message and len(message) < 600, message
    assert expected in message, message
    assert message.startswith(str(directory)), message  # names the file (or the directory)
    assert snapshot(directory) == before  # nothing written, nothing removed
    assert time.perf_counter() - start < 2  # refused without allocating what the config asks for


def test_the_table_is_large_and_names_every_top_level_key():
    assert len(CONFIG_CASES) + len(WEIGHT_CASES) >= 40
    named = " ".join(expected for _, _, expected in CONFIG_CASES)
    for key in ("format", "version", "genome", "width", "vocab_size", "tie_embeddings", "max_positions"):
        assert f"'{key}' must be" in named or f"'{key}' is missing" in named


def test_bad_directories_and_unreadable_files(exported, tmp_path, monkeypatch):
    _, _, config_bytes, weights_bytes = exported
    with pytest.raises(ValueError, match="does not exist"):
        load(tmp_path / "nowhere")
    (tmp_path / "file").write_text("x")
    with pytest.raises(ValueError, match="is a file; an exported model is a directory"):
        load(tmp_path / "file")
    with pytest.raises(ValueError, match="directory must be a path, got int"):
        load(5)
    directory = tmp_path / "m"
    directory.mkdir()
    (directory / WEIGHTS_FILE).write_bytes(weights_bytes)
    with pytest.raises(ValueError, match=r"is not an exported starlab model \(missing config.json\)"):
        load(directory)
    (directory / CONFIG_FILE).mkdir()
    with pytest.raises(ValueError, match=r"config.json is not a file"):
        load(directory)
    (directory / CONFIG_FILE).rmdir()
    (directory / CONFIG_FILE).write_bytes(config_bytes)
    (directory / WEIGHTS_FILE).unlink()
    (directory / WEIGHTS_FILE).mkdir()
    with pytest.raises(ValueError, match=r"model.safetensors is not a file"):
        load(directory)
    (directory / WEIGHTS_FILE).rmdir()
    (directory / WEIGHTS_FILE).write_bytes(weights_bytes)

    def denied(self):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(Path, "read_bytes", denied)  # (as root, chmod 000 would not stop the read)
    with pytest.raises(ValueError, match=r"config.json: cannot be read \(Permission denied\)"):
        load(directory)
    monkeypatch.undo()
    monkeypatch.setattr("starlab.model.serialization.MAX_CONFIG_BYTES", 100)
    with pytest.raises(ValueError, match="bytes is too large for a model config"):
        load(directory)
    monkeypatch.undo()
    assert isinstance(load(directory), Backbone)


def test_bad_devices_are_refused(exported):
    directory = exported[0]
    with pytest.raises(ValueError, match="device must be a torch device such as 'cpu' or 'cuda', got 'gpu-please'"):
        load(directory, device="gpu-please")
    with pytest.raises(ValueError, match="got 'meta'"):
        load(directory, device="meta")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="device 'cuda' is not available"):
            load(directory, device="cuda")


def test_a_bom_and_old_nan_metadata_still_load(exported, tmp_path):
    """Lenient where nothing is at stake: a UTF-8 byte-order mark; NaN in metadata, which older saves wrote."""
    _, config, config_bytes, weights_bytes = exported
    directory = tmp_path / "m"
    directory.mkdir()
    (directory / WEIGHTS_FILE).write_bytes(weights_bytes)
    (directory / CONFIG_FILE).write_bytes(b"\xef\xbb\xbf" + config_bytes)
    assert isinstance(load(directory), Backbone)
    text = json.dumps({**config, "metadata": {"perplexity": "__NAN__"}}).replace('"__NAN__"', "NaN")
    (directory / CONFIG_FILE).write_text(text)
    assert isinstance(load(directory), Backbone)


def test_what_the_digest_leaves_alone_still_loads(exported, tmp_path):
    """An export without a digest (older starlab) loads with the shape checks; a speed-only setting
    (``scan_chunk``) or a number written another way (``10000`` for ``10000.0``) is the same architecture."""
    _, config, config_bytes, weights_bytes = exported
    directory = tmp_path / "m"
    directory.mkdir()
    (directory / CONFIG_FILE).write_bytes(config_bytes)
    save_file(dict(small_model().state_dict()), str(directory / WEIGHTS_FILE))  # no metadata
    assert logits_equal(load(directory), small_model())
    (directory / WEIGHTS_FILE).write_bytes(weights_bytes)
    for change in (set_liv("scan_chunk", 16), set_liv("rope_base", 10_000)):
        (directory / CONFIG_FILE).write_text(json.dumps(change(config)))
        assert logits_equal(load(directory), small_model())


# ---- round trips --------------------------------------------------------------------------------------------
def logits_equal(a: Backbone, b: Backbone) -> bool:
    tokens = torch.randint(0, a.vocab_size, (2, 7), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        return torch.equal(a(tokens), b(tokens))


def test_round_trip_of_every_class_in_one_genome(tmp_path):
    genome = Genome.parse("-".join(f"{c},1,1,1,1" for c in class_ids()))
    model = small_model(genome, config=SMALL)
    loaded = starlab.load(save(model, tmp_path / "m"))
    assert logits_equal(model, loaded) and loaded.config == SMALL


@pytest.mark.parametrize(
    ("genome", "kwargs"),
    [
        ("11111-91111", {}),
        ("21211-31112-21221-32112", {"tie_embeddings": False}),  # featurizer and K/V sharing
        ("51112-51112-71121-71121", {"max_positions": 12, "tie_embeddings": False}),
        ("10,1,2,1,1-10,1,2,1,1", {"config": LIVConfig(head_dim=8, rope_base=500, diff_lambda_init=1)}),  # ints
    ],
)
def test_round_trip_equal_logits(tmp_path, genome, kwargs):
    model = small_model(Genome.parse(genome), **kwargs)
    directory = save(model, tmp_path / "m", source="test", objectives={"quality": 0.5})
    loaded = load(directory)
    assert logits_equal(model, loaded)
    assert loaded.genome == model.genome and loaded.config == model.config
    assert json.loads((directory / CONFIG_FILE).read_text())["metadata"]["objectives"] == {"quality": 0.5}
    assert sorted(p.name for p in directory.iterdir()) == [CONFIG_FILE, WEIGHTS_FILE]  # no temporary files left


def test_half_precision_weights_load_into_float32(tmp_path):
    model = small_model().half()
    loaded = load(save(model, tmp_path / "m"))
    assert loaded.embed.weight.dtype == torch.float32
    assert torch.equal(loaded.embed.weight, model.embed.weight.float())


def test_save_refuses_what_load_would_refuse_and_writes_nothing(tmp_path):
    model = small_model()
    with pytest.raises(ValueError, match=r"metadata 'perplexity' must be JSON .*got nan"):
        save(model, tmp_path / "a", perplexity=float("nan"))
    with pytest.raises(ValueError, match="metadata 'source' must be JSON"):
        save(model, tmp_path / "b", source=Path("/x"))
    with torch.no_grad():
        model.livs[1].out_proj.weight[0, 0] = float("inf")
    with pytest.raises(ValueError, match=r"model: 'livs.1.out_proj.weight' holds 1 NaN or infinite values"):
        save(model, tmp_path / "c")
    (tmp_path / "file").write_text("x")
    with pytest.raises(ValueError, match="is a file; an exported model is a directory"):
        save(small_model(), tmp_path / "file")
    with pytest.raises(ValueError, match="save\\(\\) needs a Backbone"):
        save(torch.nn.Linear(2, 2), tmp_path / "d")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]


# ---- the backbone's own arguments ---------------------------------------------------------------------------
BAD_ARGUMENTS = pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"genome": "11111-91111"}, "genome must be a Genome"),
        ({"width": "32"}, "width must be a positive multiple of 8"),
        ({"vocab_size": 10**30 + 0.5}, "vocab_size must be an integer >= 2"),
        ({"config": {"head_dim": 8}}, "config must be a LIVConfig, got dict"),
        ({"config": LIVConfig(head_dim=0)}, "config.head_dim must be an integer in 2..2147483647, got 0"),
        ({"config": LIVConfig(mlp_ratio=float("nan"))}, "config.mlp_ratio must be a number in (0, 1024], got nan"),
        ({"tie_embeddings": "no"}, "tie_embeddings must be True or False, got 'no'"),
        ({"max_positions": -1}, "max_positions must be None or a positive integer, got -1"),
        ({"max_positions": 2.5}, "max_positions must be None or a positive integer"),
    ],
)


@BAD_ARGUMENTS
def test_backbone_arguments_are_checked(kwargs, message):
    args = {"genome": GENOME, "width": WIDTH, "vocab_size": VOCAB, **kwargs}
    with pytest.raises(ValueError) as info:
        Backbone(**args)
    assert message in str(info.value) and "\n" not in str(info.value)


@BAD_ARGUMENTS
def test_backbone_spec_checks_what_backbone_checks_in_the_same_words(kwargs, message):
    args = {"genome": GENOME, "width": WIDTH, "vocab_size": VOCAB, **kwargs}
    with pytest.raises(ValueError) as info:
        BackboneSpec(**args)
    assert message in str(info.value) and "\n" not in str(info.value)


def test_a_backbone_spec_is_one_checked_value_that_builds_the_same_model(tmp_path):
    spec = BackboneSpec(Genome.parse("12111-91111-12111"), WIDTH, VOCAB, LIVConfig(rope_base=500), False, 9)
    assert spec.genome == Genome.parse("12111-91111-12111").canonical() != Genome.parse("12111-91111-12111")
    assert type(spec.config.rope_base) is float  # normalised as Backbone normalises it
    assert BackboneSpec(GENOME, WIDTH, VOCAB, None).config == LIVConfig() == BackboneSpec(GENOME, WIDTH, VOCAB).config
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.width = 64  # type: ignore[misc]
    with pytest.raises(ValueError, match="spec must be a BackboneSpec, got dict"):
        Backbone.from_spec({"genome": GENOME})  # type: ignore[arg-type]
    torch.manual_seed(0)
    built = Backbone.from_spec(spec, init="gpt2")
    torch.manual_seed(0)
    loose = Backbone(spec.genome, WIDTH, VOCAB, LIVConfig(rope_base=500), False, 9, init="gpt2")
    assert built.spec == loose.spec == spec and built.head is not None and built.pos_embed.num_embeddings == 9
    assert all(torch.equal(a, b) for a, b in zip(built.state_dict().values(), loose.state_dict().values(), strict=True))
    assert estimate_spec_bytes(spec) == estimate_model_bytes(spec.genome, WIDTH, VOCAB, spec.config,
                                                             tie_embeddings=False, max_positions=9)  # fmt: skip
    check_spec_fits(spec, available=estimate_spec_bytes(spec))
    with pytest.raises(ValueError, match=r"would need .*width, vocab_size and max_positions set the size"):
        check_spec_fits(spec, available=estimate_spec_bytes(spec) - 1)
    assert load(save(built, tmp_path / "m")).spec == spec  # config.json holds exactly the spec


def test_the_spec_writes_config_json_and_the_digest_as_before(tmp_path):
    """Digests and config bytes recorded before the six settings became a BackboneSpec: exports stay identical."""
    spec = BackboneSpec(GENOME, WIDTH, VOCAB, SMALL, tie_embeddings=False, max_positions=9)
    model = Backbone.from_spec(spec)
    assert architecture_digest(model) == "sha256:b0947bfb2fedf4b8b3fe4d28b590a08083fd8acdb4f0f814886218d390edcb60"
    config = (save(model, tmp_path / "m", source="spec") / CONFIG_FILE).read_bytes()
    assert hashlib.sha256(config).hexdigest() == "b0e3d74af598c521e001c6636137c7c72b320e204a6267d5bb83578264c55c93"
    assert json.loads(config) == {
        "format": "starlab-model",
        "version": 1,
        **spec.to_json(),
        "metadata": {"source": "spec"},
    }


def test_a_flavour_applies_to_a_spec():
    spec = BackboneSpec(Genome.parse("11111-91111"), WIDTH, VOCAB, SMALL, max_positions=16)
    gpt2 = get_flavour("gpt2").apply(spec)
    assert gpt2.genome.backbone.text() == "b211" and not gpt2.tie_embeddings and gpt2.max_positions == 16
    assert (gpt2.config.heads, gpt2.config.mlp, gpt2.config.head_dim) == (4, "gelu", 8)
    assert get_flavour("star").apply(spec) == spec
    assert get_flavour("gpt2").build(spec).spec == gpt2
    with pytest.raises(ValueError, match="the gpt2 backbone builds with backbone genes b211"):
        get_flavour("gpt2").apply(dataclasses.replace(spec, genome=Genome.parse("b112:11111-91111")))


def test_every_liv_config_field_has_a_range_and_its_bounds_build_working_models():
    assert set(LIV_CONFIG_RULES) == {f.name for f in dataclasses.fields(LIVConfig)}
    # one class of each family, plain and differential: SA-1, SA-3 (GQA), Rec-1, GConv-2, GMemless, *-Diff
    genome = Genome.parse("11111-31111-51111-81111-91111-12,1,1,1,1-14,1,1,1,1-17,1,1,1,1")
    tokens = torch.randint(0, VOCAB, (1, 3))
    for name, rule in LIV_CONFIG_RULES.items():
        value = rule.low if not rule.open_low else 1e-6
        if rule.kind is int:
            value = int(value)
        model = small_model(genome, config=dataclasses.replace(SMALL, **{name: value}))
        with torch.no_grad():
            assert torch.isfinite(model(tokens)).all(), (name, value)


# ---- memory ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("width", "vocab"), [(200_000, VOCAB), (WIDTH, 10**9), (WIDTH, 10**30), (8 * 10**15, VOCAB)])
def test_sizes_that_cannot_fit_are_refused_before_anything_is_allocated(monkeypatch, width, vocab):
    def never(*args, **kwargs):
        raise AssertionError("the model was being built")

    monkeypatch.setattr("starlab.model.backbone.build_slots", never)
    start = time.perf_counter()
    with pytest.raises(ValueError, match=r"would need .* float32 parameters; this machine has .* available") as info:
        Backbone(GENOME, width, vocab)
    assert time.perf_counter() - start < 0.5
    assert "\n" not in str(info.value) and "width and vocab_size set the size" in str(info.value)


def test_the_message_names_the_size(monkeypatch):
    with pytest.raises(ValueError) as info:
        check_model_fits(GENOME, 200_000, VOCAB, available=120 * 10**9)
    assert str(info.value) == (
        "a width-200000 model of 11111-91111 (vocab 64) would need 1.9 TB for its 4.8e11 float32 parameters; "
        "this machine has 120 GB available (width and vocab_size set the size; its slots are most of it, they grow "
        "with width squared)"
    )
    with pytest.raises(ValueError, match=r"cuda:1 has 1\.0 GB free \(.*embeddings are most of it\)$"):
        check_model_fits(GENOME, WIDTH, 10**9, device="cuda:1", available=10**9)


def test_small_models_still_build_and_meta_builds_are_never_checked():
    model = small_model()
    assert model.num_params() == estimate_model_bytes(GENOME, WIDTH, VOCAB) // 4
    with torch.device("meta"):
        huge = Backbone(GENOME, 200_000, 10**9)  # shapes only: nothing to check
    assert huge.num_params() * 4 == estimate_model_bytes(GENOME, 200_000, 10**9)


@pytest.mark.parametrize("name", ["transformer++", "striped-mamba", "hyena", "striped-hyena"])
@pytest.mark.parametrize("kwargs", [{}, {"tie_embeddings": False, "max_positions": 9}])
def test_estimates_are_exact_and_the_bounds_hold(name, kwargs):
    for genome in (preset(name, 6), Genome.parse("21211-31112-21221-32112"), random_genome(6, 3)):
        with torch.device("meta"):
            model = Backbone(genome, 64, 100, SMALL, **kwargs)
        params = {id(p): p for p in model.parameters()}.values()
        exact = sum(p.numel() * p.element_size() for p in params) + sum(b.nbytes for b in model.buffers())
        assert estimate_model_bytes(genome, 64, 100, SMALL, **kwargs) == exact
        assert largest_model_bytes(len(genome), 64, 100, SMALL, **kwargs) >= exact
        trained = estimate_model_bytes(genome, 64, 100, SMALL, training=True, **kwargs)
        assert trained == exact + (TRAINING_FACTOR - 1) * model.num_params() * 4
        check_model_fits(genome, 64, 100, config=SMALL, available=exact, **kwargs)  # exactly enough
        with pytest.raises(ValueError, match="would need"):
            check_model_fits(genome, 64, 100, config=SMALL, available=exact - 1, **kwargs)


def test_training_counts_gradients_and_two_moments():
    need = estimate_model_bytes(GENOME, WIDTH, VOCAB)
    check_model_fits(GENOME, WIDTH, VOCAB, available=need)
    with pytest.raises(ValueError, match=r"to train its [0-9,]+ float32 parameters \(weights, gradients and two"):
        check_model_fits(GENOME, WIDTH, VOCAB, available=need, training=True)


def test_the_largest_model_of_a_search_is_bounded_and_checked():
    bound = largest_model_bytes(4, WIDTH, VOCAB)
    for class_id in class_ids():
        assert estimate_model_bytes(Genome.parse("-".join([f"{class_id},1,1,1,1"] * 4)), WIDTH, VOCAB) <= bound
    check_largest_model_fits(4, WIDTH, VOCAB, available=bound)
    with pytest.raises(ValueError, match="the largest depth-4 genome at width 32 \\(vocab 64\\) could need up to"):
        check_largest_model_fits(4, WIDTH, VOCAB, available=bound - 1)
    with pytest.raises(ValueError, match="the largest depth-48 genome at width 200000"):
        check_largest_model_fits(48, 200_000, 50257)
    with pytest.raises(ValueError, match="depth must be a positive integer"):
        largest_model_bytes(0, WIDTH, VOCAB)


def test_checks_leave_the_random_stream_alone():
    torch.manual_seed(0)
    state = torch.get_rng_state()
    with pytest.raises(ValueError):
        check_model_fits(preset("striped-mamba", 4), WIDTH, VOCAB, available=1)  # the exact, meta-built path
    largest_model_bytes(4, 48, VOCAB)
    assert torch.equal(state, torch.get_rng_state())


def test_available_bytes():
    assert available_bytes() > 0 and available_bytes("cpu") == pytest.approx(available_bytes(), rel=0.5)
    with pytest.raises(ValueError, match="cannot tell how much memory device meta has"):
        available_bytes("meta")
    with pytest.raises(ValueError, match="device must be a torch device"):
        available_bytes("not-a-device")
