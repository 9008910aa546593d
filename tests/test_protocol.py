"""Wire-format tests: shape validation, clear errors, canonical bytes."""

from __future__ import annotations

import json

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from thirdway.errors import InputError
from thirdway.protocol import (
    ComposedBinding,
    FieldsBinding,
    ItemsBinding,
    Observation,
    QuoteBinding,
    canonical_json,
    canonical_sha256,
    parse_observations,
    parse_proposal,
)

PROPOSAL = {
    "format": "thirdway/1",
    "session": "s-7f3c",
    "action": {"tool": "send_money", "args": {"recipient": "UK1234", "amount": 98.7}},
    "goal": {"obs": 0, "quote": "pay the bill"},
    "steps": [
        {"id": "s1", "claim": "asked", "cites": [{"obs": 0, "quote": "pay the bill"}]},
        {"id": "s2", "claim": "bill", "cites": [{"obs": 2, "quote": "UK1234"}]},
        {"id": "s3", "claim": "so", "from": ["s1", "s2"]},
    ],
    "bindings": {
        "recipient": {"step": "s2", "quote": "UK1234"},
        "amount": {"step": "s2", "quote": "98.70", "as": "number"},
    },
    "effects": {"reversible": False, "external": True, "summary": "pays"},
}


def test_proposal_round_trip_keeps_aliases() -> None:
    proposal = parse_proposal(json.dumps(PROPOSAL))
    dumped = json.loads(canonical_json(proposal))
    assert dumped["steps"][2]["from"] == ["s1", "s2"]
    assert dumped["bindings"]["amount"]["as"] == "number"
    assert parse_proposal(canonical_json(proposal)) == proposal


def test_binding_variants_are_told_apart() -> None:
    doc = dict(PROPOSAL)
    doc["bindings"] = {
        "a": {"composed": "s3"},
        "b": {"items": [{"step": "s2", "quote": "x"}, {"composed": "s3"}]},
        "c": {"fields": {"k": {"items": []}}},
    }
    proposal = parse_proposal(json.dumps(doc))
    assert isinstance(proposal.bindings["a"], ComposedBinding)
    items = proposal.bindings["b"]
    assert isinstance(items, ItemsBinding)
    assert isinstance(items.items[0], QuoteBinding)
    fields = proposal.bindings["c"]
    assert isinstance(fields, FieldsBinding)
    assert isinstance(fields.fields["k"], ItemsBinding)


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (lambda d: d.pop("goal"), "goal: Field required"),
        (lambda d: d["steps"][0]["cites"][0].update(obs=-1), "steps.0.cites.0.obs"),
        (lambda d: d.update(extra=1), "extra: Extra inputs are not permitted"),
        (lambda d: d["steps"].append({"id": "s4"}), "steps.3.claim: Field required"),
        (lambda d: d.update(format="thirdway/2"), "format"),
        (lambda d: d["bindings"].update(x={"step": "s1", "quote": "q", "as": "rot13"}), "bindings"),
        (lambda d: d["goal"].update(quote="x" * 70_000), "goal.quote"),
    ],
)
def test_invalid_proposal_names_field(mutate, expected) -> None:  # type: ignore[no-untyped-def]
    doc = json.loads(json.dumps(PROPOSAL))
    mutate(doc)
    with pytest.raises(InputError) as info:
        parse_proposal(json.dumps(doc))
    assert expected in str(info.value)
    assert str(info.value).startswith("invalid proposal: ")


@pytest.mark.parametrize(
    "raw",
    [b"", b"{", b"[]", b'{"session": "s\xff"}', b'"just a string"', b"\x00\x01"],
)
def test_garbage_is_an_input_error(raw: bytes) -> None:
    with pytest.raises(InputError):
        parse_proposal(raw)


def test_lone_surrogate_is_refused() -> None:
    with pytest.raises(InputError):
        parse_proposal(json.dumps({**PROPOSAL, "session": "s\ud800"}))


def test_observation_channel_rules() -> None:
    ok = parse_observations(
        json.dumps(
            [
                {"session": "s", "index": 0, "channel": "principal", "content": "hi"},
                {"session": "s", "index": 1, "channel": "call", "call": {"tool": "t"}},
                {"session": "s", "index": 2, "channel": "data", "produced_by": 1, "content": ""},
            ]
        )
    )
    assert [o.channel for o in ok] == ["principal", "call", "data"]
    bad = [
        {"session": "s", "index": 0, "channel": "data", "content": "x"},
        {"session": "s", "index": 3, "channel": "data", "produced_by": 3, "content": "x"},
        {"session": "s", "index": 0, "channel": "call"},
        {"session": "s", "index": 0, "channel": "principal"},
        {"session": "s", "index": 0, "channel": "principal", "content": "x", "produced_by": 0},
        {"session": "s", "index": 0, "channel": "oracle", "content": "x"},
    ]
    for item in bad:
        with pytest.raises(InputError):
            parse_observations(json.dumps([item]))


def test_canonical_bytes_ignore_key_order_and_number_spelling() -> None:
    a = Observation.model_validate_json(
        '{"session":"s","index":1,"channel":"call","call":{"tool":"t","args":{"b":1.0,"a":[1e2]}}}'
    )
    b = Observation.model_validate_json(
        '{"call":{"args":{"a":[100],"b":1},"tool":"t"},"channel":"call","index":1,"session":"s"}'
    )
    assert canonical_json(a) == canonical_json(b)
    assert canonical_sha256(a) == canonical_sha256(b)


SAFE_INTS = st.integers(min_value=-(2**53) + 1, max_value=2**53 - 1)


def test_unhashable_arguments_are_refused_at_parse_time() -> None:
    for value in ("9007199254740993", "NaN", "Infinity"):
        raw = '{"session":"s","index":0,"channel":"call","call":{"tool":"t","args":{"a":%s}}}'
        with pytest.raises(InputError, match=r"call\.args"):
            parse_observations("[" + raw % value + "]")


@given(st.dictionaries(st.text(min_size=1, max_size=8), SAFE_INTS | st.text(), max_size=5))
def test_canonical_json_is_stable_under_reordering(args: dict[str, object]) -> None:
    reordered = dict(reversed(list(args.items())))
    assert canonical_json(args) == canonical_json(reordered)


JSON_LEAVES = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**60), max_value=2**60)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text()
)
JSON_VALUES = st.recursive(
    JSON_LEAVES,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(), children, max_size=4)
    ),
    max_leaves=20,
)


@given(JSON_VALUES)
@example(9007199254740992.0)  # 2**53: integral but past the safe integers
@example(2.0**60)  # RFC 8785 writes 1152921504606847000, not the float's exact integer
@example([-9007199254740994.0, 9007199254740991.0])
def test_fast_canonical_path_matches_rfc8785_byte_for_byte(value: object) -> None:
    import rfc8785

    try:
        expected = rfc8785.dumps(value)
    except (rfc8785.CanonicalizationError, TypeError, ValueError):
        with pytest.raises(InputError):
            canonical_json(value)
        return
    assert canonical_json(value) == expected


@given(st.dictionaries(st.text(), JSON_VALUES, max_size=4))
@example({"amount": 98.0, "nested": [1.0, {"x": 2.0**53}]})
def test_model_canonical_path_matches_rfc8785_byte_for_byte(payload: dict[str, object]) -> None:
    """A model's dump is written by orjson where it can be (integral floats made integers in
    the fresh dump): the same bytes as the reference on the same dump, and the caller's payload
    is left as it was."""
    import copy

    import rfc8785

    from thirdway.protocol.models import LogEntry

    before = copy.deepcopy(payload)
    model = LogEntry.model_construct(
        format="thirdway/1", type="note", session=None, agent=None, payload=payload
    )
    try:
        expected = rfc8785.dumps(model.model_dump(mode="json", by_alias=True))
    except (rfc8785.CanonicalizationError, TypeError, ValueError):
        with pytest.raises(InputError):
            canonical_json(model)
    else:
        assert canonical_json(model) == expected
    assert repr(payload) == repr(before)  # NaN != NaN, so compare the reprs


def test_plain_values_with_integral_floats_are_not_changed_in_place() -> None:
    value = {"a": [1.0, 2.5], "b": 3.0}
    assert canonical_json(value) == b'{"a":[1,2.5],"b":3}'
    assert type(value["b"]) is float and type(value["a"][0]) is float  # type: ignore[index]


@pytest.mark.parametrize(
    "value",
    [
        {"\U0001f600": 1, "\ufb01": 2},  # UTF-16 order differs from code-point order
        [1e21, 1e-7, 5e-324, 1e16, 0.0001, 123456789012345.6, -0.0, 2.0**53],
        {"s": '\u2028\x7f\x00\x1f"\\'},
    ],
)
def test_fast_canonical_path_edge_cases(value: object) -> None:
    import rfc8785

    assert canonical_json(value) == rfc8785.dumps(value)


def test_a_value_nested_too_deeply_is_an_input_error_on_every_path() -> None:
    """Past the recursion limit every encoder gives up (orjson, the standard library and the
    rfc8785 reference): the caller gets one InputError saying so, never a RecursionError."""
    deep: object = "leaf"
    for _ in range(50_000):
        deep = [deep]
    with pytest.raises(InputError, match="nested too deeply"):
        canonical_json(deep)
