"""Genome forms, validation, repair and canonical form, including property-based and fuzz tests."""

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import in_range_slots, relabel
from starlab.genome import Genome, preset, random_genome, resolve


@given(in_range_slots(max_group=2))
def test_repair_always_yields_a_valid_genome(slots):
    repaired = Genome.from_slots(slots, repair=True)
    assert repaired.validate() is repaired
    assert repaired.repair() == repaired  # idempotent
    assert [s.cls for s in repaired.slots] == [s[0] for s in slots]  # repair only touches strategies


@given(in_range_slots(max_group=3))
def test_canonical_is_idempotent_and_keeps_the_architecture(slots):
    genome = Genome.from_slots(slots, repair=True)
    canonical = genome.canonical()
    assert canonical.canonical() == canonical
    assert canonical.hash() == genome.hash()
    # the sharing structure (who leads whom) is unchanged
    assert canonical.featurizer_leaders() == [
        lead if lead is not None and genome.featurizer_leaders().count(lead) > 1 else None
        for lead in genome.featurizer_leaders()
    ]


@given(in_range_slots(max_group=3), st.integers(0, 2**16))
def test_relabelled_genomes_share_the_hash(slots, seed):
    genome = Genome.from_slots(slots, repair=True)
    assert relabel(genome, seed).hash() == genome.hash()


@given(in_range_slots(max_depth=12))
def test_text_and_json_round_trip(slots):
    genome = Genome.from_slots(slots, repair=True)
    assert Genome.parse(genome.text()) == genome
    assert Genome.from_json(json.dumps(genome.to_json())) == genome
    assert Genome.from_json(genome.to_json()["slots"]) == genome


def test_text_form_compact_and_comma_slots():
    genome = Genome.parse("12,1,1,1,1-91111")
    assert genome.slots[0].cls == 12 and genome.text() == "12,1,1,1,1-91111"
    assert Genome.parse(" 1,1,1,1,1 - 9,1,1,1,1 ").text() == "11111-91111"


def test_the_papers_example_decodes_as_described():
    genome = Genome.parse("21211-31112-21221-32112")
    assert genome.featurizer_leaders() == [0, None, 0, None]  # LIV1 and LIV3 share featurizer weights
    assert genome.feature_sources() == [None, 1, None, 1]  # LIV2 and LIV4 share feature groups


@pytest.mark.parametrize(
    "text,message",
    [
        ("23,1,1,1,1-91111", "slot 1, field 'class': 23 is not in 1..17"),
        ("11111-93111", "slot 2, field 'featurizer_group': 3 is not in 1..2"),
        ("11311", "slot 1, field 'featurizer_strategy': 3 is not in 1..2"),
        (
            "11111-9111",
            "slot 2: expected 5 digits, 5 comma-separated integers or [f,t,s,n,c] and 4 integers, got '9111'",
        ),
        ("", "genome text is empty"),
        ("11211-51211", "slot 2, field 'featurizer_strategy': Rec-1 cannot share featurizer weights with slot 1"),
        ("91112", "slot 1, field 'feature_strategy': GMemless caches nothing"),
        ("11112-31112", "slot 2, field 'feature_strategy': SA-3 cannot share features with slot 1 (SA-1)"),
    ],
)
def test_errors_name_slot_field_and_allowed_values(text, message):
    with pytest.raises(ValueError) as info:
        Genome.parse(text)
    assert message in str(info.value)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    "document,message",
    [
        ('{"slots": [[1, 1, 1, 1]]}', "slot 1: expected 5 integers"),
        ('{"slots": [[1, 1, 1, 1, true]]}', "slot 1, field 'feature_strategy': expected an integer"),
        ('{"slots": [[1.0, 1, 1, 1, 1]]}', "slot 1, field 'class': expected an integer"),
        ('{"format": "other", "slots": []}', "'format' must be 'starlab-genome'"),
        ('{"genes": []}', "needs a 'slots' list"),
        ("[]", r"a genome has 1\.\.256 slots, got 0"),
        ("[" + ",".join(["[9,1,1,1,1]"] * 257) + "]", r"a genome has 1\.\.256 slots, got 257"),
        ("{", "not valid JSON"),
        ("42", "must be an object with 'slots' or a list"),
    ],
)
def test_json_errors(document, message):
    with pytest.raises(ValueError, match=message):
        Genome.from_json(document)


VALID_TEXT = st.sampled_from(["11111-91111", "21211-31112-21221-32112", "12,1,1,1,1-91111", "51112-51112"])


@st.composite
def garbled_text(draw):
    """Valid genome texts with random edits, or arbitrary text."""
    if draw(st.booleans()):
        return draw(st.text(max_size=40))
    chars = list(draw(VALID_TEXT))
    for _ in range(draw(st.integers(1, 4))):
        position = draw(st.integers(0, len(chars)))
        chars.insert(position, draw(st.sampled_from(list("0123456789-, x\n"))))
        if chars and draw(st.booleans()):
            del chars[draw(st.integers(0, len(chars) - 1))]
    return "".join(chars)


@settings(max_examples=1000)
@given(garbled_text())
def test_garbled_text_gives_a_valid_genome_or_a_value_error(text):
    assert_valid_or_one_line_error(Genome.parse, text)


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-3, 30) | st.floats(allow_nan=False) | st.text(max_size=5),
    lambda children: (
        st.lists(children, max_size=6) | st.dictionaries(st.sampled_from(["slots", "format", "x"]), children)
    ),
    max_leaves=30,
)


@settings(max_examples=1000)
@given(JSON_VALUES)
def test_arbitrary_json_documents_give_a_valid_genome_or_a_value_error(document):
    for form in (document, json.dumps(document)):
        assert_valid_or_one_line_error(Genome.from_json, form)


def assert_valid_or_one_line_error(parse, value):
    """Any input gives either a valid genome or a one-line ValueError, never another exception."""
    try:
        genome = parse(value)
    except ValueError as error:
        assert str(error) and "\n" not in str(error)
    else:
        assert genome.validate() is genome


def test_random_genomes_are_valid_and_seeded():
    assert random_genome(10, 3) == random_genome(10, 3)
    assert random_genome(10, 3) != random_genome(10, 4)
    for seed in range(50):
        assert random_genome(7, seed).validate()
    for depth in (0, 257):
        with pytest.raises(ValueError, match=r"depth must be an integer in 1\.\.256"):
            random_genome(depth)
    assert len(random_genome(256, 0)) == 256


def test_presets():
    assert preset("transformer++", 4).text() == "11111-91111-11111-91111"
    assert preset("striped-mamba", 4).text() == "51111-91111-11111-91111"  # MAD's striped layout
    mixers = [s.cls for s in preset("striped-hyena", 24).slots[::2]]
    assert mixers.count(1) == 3 and mixers.count(8) == 9  # 25% attention
    assert [s.cls for s in preset("gconv", 6).slots] == [7, 9] * 3
    assert resolve("Mamba", depth=4).text() == "51111-91111-51111-91111"
    with pytest.raises(ValueError, match="unknown preset 'llama'"):
        preset("llama")
    with pytest.raises(ValueError, match="even integer"):
        preset("mamba", 5)
    with pytest.raises(ValueError, match="depth applies to presets only"):
        resolve("11111", depth=4)
    with pytest.raises(ValueError, match=r"'llama' is neither a genome preset \(transformer\+\+, .*\) nor a genome"):
        resolve("llama")
    with pytest.raises(ValueError, match=r"^slot 2: expected 5 digits"):  # digits only: a genome, mistyped
        resolve("11111-9111")


def test_resolve_builds_a_preset_at_the_default_depth_its_caller_gives():
    """An assessment builds a preset given no depth at its protocol's depth (``Protocol.preset_depth``); a depth
    given wins, and a genome's text ignores the default (its text fixes the depth)."""
    assert len(resolve("mamba").slots) == 24
    assert resolve("mamba", default_depth=6).text() == "51111-91111-51111-91111-51111-91111"
    assert len(resolve("mamba", 2, default_depth=6).slots) == 2
    assert resolve("11111", default_depth=6).text() == "11111"
    with pytest.raises(ValueError, match="even integer"):
        resolve("mamba", default_depth=5)
