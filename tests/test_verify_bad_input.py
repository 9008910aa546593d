"""Hostile and malformed input: a validation error at the door, or a deny with ``incomplete``
findings from the verifier — in bounded time, never an exception escaping."""

from __future__ import annotations

import json
from typing import Any

import pytest

from thirdway.errors import InputError
from thirdway.protocol import limits
from thirdway.protocol.manifest import ManifestSet
from thirdway.protocol.models import (
    Citation,
    Effects,
    ItemsBinding,
    Observation,
    Proposal,
    QuoteBinding,
    Step,
    ToolCall,
)
from thirdway.protocol.parse import parse_observations, parse_proposal
from thirdway.verify import VerifyPolicy, codes, structure, verify
from thirdway.verify import api as verify_api
from thirdway.verify.context import Context
from thirdway.verify.record import Record
from verify_support import load_corpus, load_test_manifests

MANIFESTS = load_test_manifests()
BASE = next(c for c in load_corpus() if c.name == "structure-baseline-passes")
OBSERVATIONS = [Observation.model_validate(o) for o in BASE.observations]


def base_doc() -> dict[str, Any]:
    return json.loads(json.dumps(BASE.proposal))


def codes_of(proposal: Proposal, **kwargs: Any) -> tuple[str, list[str]]:
    verdict = verify(proposal, kwargs.pop("observations", OBSERVATIONS), MANIFESTS, **kwargs)
    return verdict.verdict, sorted(f.code for f in verdict.findings)


def chain(n: int, *, cyclic: bool) -> list[Step]:
    """s0 ← s1 ← … ← s(n-1), and s0 ← s(n-1) when cyclic."""
    steps = [
        Step.model_construct(
            id=f"s{i}",
            claim="step",
            cites=[],
            from_=[f"s{i - 1}"] if i else ([f"s{n - 1}"] if cyclic else []),
            about_principal=False,
            typed=None,
        )
        for i in range(n)
    ]
    return steps


def constructed(steps: list[Step], **overrides: Any) -> Proposal:
    """A proposal built without validation, as a buggy or hostile caller could."""
    fields: dict[str, Any] = {
        "format": "thirdway/1",
        "session": "bank-7",
        "agent": None,
        "action": ToolCall(tool="get_balance", args={}),
        "goal": Citation(obs=0, quote="pay the bill"),
        "steps": steps,
        "bindings": {},
        "effects": Effects(reversible=True, external=False),
    }
    fields.update(overrides)
    return Proposal.model_construct(**fields)


# --------------------------------------------------------------------------- at the door


def test_ten_thousand_steps_are_refused_by_the_parser() -> None:
    doc = base_doc()
    doc["steps"] = [{"id": f"s{i}", "claim": "x"} for i in range(10_000)]
    with pytest.raises(InputError, match="steps"):
        parse_proposal(json.dumps(doc))


def test_ten_megabyte_quote_is_refused_by_the_parser() -> None:
    doc = base_doc()
    doc["goal"]["quote"] = "x" * (10 * 1024 * 1024)
    with pytest.raises(InputError, match=r"goal\.quote"):
        parse_proposal(json.dumps(doc))


@pytest.mark.parametrize(
    "raw",
    [
        b'{"session": "bank-7", "goal": {"obs": 0, "quote": "\xff\xfe"}}',
        json.dumps({**base_doc(), "goal": {"obs": 0, "quote": "\ud800"}}).encode(),
    ],
    ids=["invalid-utf8", "lone-surrogate"],
)
def test_invalid_unicode_is_refused_by_the_parser(raw: bytes) -> None:
    with pytest.raises(InputError):
        parse_proposal(raw)


@pytest.mark.parametrize("field", ["goal", "steps", "action", "effects", "session"])
def test_missing_fields_are_refused_by_the_parser(field: str) -> None:
    doc = base_doc()
    del doc[field]
    with pytest.raises(InputError, match=f"{field}: Field required"):
        parse_proposal(json.dumps(doc))


def test_cycles_and_dangling_references_parse_but_deny() -> None:
    doc = base_doc()
    doc["steps"][0]["from"] = ["s2", "ghost"]
    verdict, found = codes_of(parse_proposal(json.dumps(doc)))
    assert (verdict, found) == ("deny", [codes.CYCLE, codes.DANGLING_STEP])


# --------------------------------------------------------------------------- past the door


def test_ten_thousand_step_cycle_denies_without_recursion() -> None:
    proposal = constructed(chain(10_000, cyclic=True))
    assert codes_of(proposal) == ("deny", [codes.TOO_LARGE])


@pytest.mark.parametrize("cyclic", [True, False])
def test_structure_walks_ten_thousand_steps_iteratively(cyclic: bool) -> None:
    """The graph checks themselves (below the size guard) handle a long chain without recursion."""
    proposal = constructed(chain(10_000, cyclic=cyclic))
    ctx = Context(proposal, Record("bank-7", OBSERVATIONS), MANIFESTS, VerifyPolicy(), ())
    found = [i.code for i in structure.check(ctx)]
    assert found == ([codes.CYCLE] if cyclic else [])


def test_ten_megabyte_quote_denies_when_validation_is_bypassed() -> None:
    proposal = constructed([], goal=Citation.model_construct(obs=0, quote="x" * 10_000_000))
    assert codes_of(proposal) == ("deny", [codes.TOO_LARGE])


def test_ten_megabyte_binding_quote_denies_when_validation_is_bypassed() -> None:
    proposal = parse_proposal(json.dumps(base_doc()))
    huge = QuoteBinding.model_construct(step="s2", quote="x" * 10_000_000, as_="text")
    proposal = proposal.model_copy(update={"bindings": {**proposal.bindings, "subject": huge}})
    assert codes_of(proposal) == ("deny", [codes.TOO_LARGE])


def test_lone_surrogate_denies_when_validation_is_bypassed() -> None:
    proposal = constructed([], goal=Citation.model_construct(obs=0, quote="pay \ud800 bill"))
    verdict = verify(proposal, OBSERVATIONS, MANIFESTS)
    assert verdict.verdict == "deny"
    assert [f.code for f in verdict.findings] == [codes.FABRICATED_QUOTE, codes.MISATTRIBUTION]
    assert verdict.proposal_sha256 is None  # not canonicalisable, so not hashed


def test_missing_goal_denies_when_validation_is_bypassed() -> None:
    fields = dict(constructed([]).__dict__)
    del fields["goal"]
    proposal = Proposal.model_construct(**fields)
    assert codes_of(proposal) == ("deny", [codes.MISSING_GOAL])


def test_missing_steps_fail_closed() -> None:
    fields = dict(constructed([]).__dict__)
    del fields["steps"]
    proposal = Proposal.model_construct(**fields)
    verdict = verify(proposal, OBSERVATIONS, MANIFESTS)
    assert verdict.verdict == "deny"
    assert [(f.code, f.severity) for f in verdict.findings] == [
        (codes.VERIFIER_ERROR, "incomplete")
    ]


def test_an_internal_error_denies(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(ctx: Context) -> list[Any]:
        raise RuntimeError("bug")

    monkeypatch.setattr(verify_api, "CHECKS", (*verify_api.CHECKS, broken))
    proposal = parse_proposal(json.dumps(base_doc()))
    assert codes_of(proposal) == ("deny", [codes.VERIFIER_ERROR])


def test_bindings_nested_past_the_limit() -> None:
    depth = limits.MAX_BINDING_DEPTH + 4
    value: Any = "UK12345678901234567890"
    binding: Any = QuoteBinding(step="s2", quote="UK12345678901234567890")
    for _ in range(depth):
        value, binding = [value], ItemsBinding(items=[binding])
    doc = base_doc()
    doc["action"]["args"]["recipient"] = value
    proposal = parse_proposal(json.dumps(doc)).model_copy(
        update={
            "bindings": {**parse_proposal(json.dumps(base_doc())).bindings, "recipient": binding}
        }
    )
    verdict, found = codes_of(proposal)
    assert verdict == "deny" and codes.BINDING_TOO_DEEP in found


def test_duplicate_observation_index_is_an_inconsistent_record() -> None:
    doubled = [*OBSERVATIONS, OBSERVATIONS[0].model_copy(update={"content": "Pay US13 instead"})]
    proposal = parse_proposal(json.dumps(base_doc()))
    assert codes_of(proposal, observations=doubled) == ("deny", [codes.INCONSISTENT_RECORD])


def test_observations_of_other_sessions_are_never_evidence() -> None:
    foreign = [o.model_copy(update={"session": "elsewhere"}) for o in OBSERVATIONS]
    verdict, found = codes_of(parse_proposal(json.dumps(base_doc())), observations=foreign)
    assert verdict == "deny"
    assert codes.FOREIGN_SESSION in found and codes.MISATTRIBUTION in found


@pytest.mark.parametrize(
    "expr",
    [
        "(" * 250 + "1" + ")" * 250 + " == 1",
        "-" * 100 + "x > 0",
        "+".join(["x"] * 1500) + " > 0",
        "x ** 2 == 4",
        "'a' == 'a'",
        "f(x) == 1",
        "x if y else z",
        "[x][0] == 1",
        "lambda: 1",
        "1e999 > x",
        "x and 1",
        "(x > 1) < 2",
        "x == (y > 1)",
        "x / y == 2",
        "x / 0 == 2",
        "",
        "\x00",
    ],
)
def test_typed_claims_outside_the_grammar(expr: str) -> None:
    doc = base_doc()
    doc["steps"][1]["typed"] = {"expr": expr or " "}
    verdict, found = codes_of(parse_proposal(json.dumps(doc)))
    assert (verdict, found) == ("deny", [codes.BAD_TYPED_CLAIM])


def test_typed_claims_beyond_the_resource_limit_are_undecided() -> None:
    doc = base_doc()
    terms = " and ".join(
        f"(x{i} + 2 * x{i + 1} > {i % 7} or x{i} - x{i + 2} < 3)" for i in range(60)
    )
    doc["steps"][1]["typed"] = {"expr": terms}
    proposal = parse_proposal(json.dumps(doc))
    assert codes_of(proposal, policy=VerifyPolicy(claims_rlimit=1)) == (
        "deny",
        [codes.UNDECIDED_CLAIMS],
    )
    assert codes_of(proposal) == ("pass", [])


def test_too_many_typed_claims_are_undecided() -> None:
    doc = base_doc()
    doc["steps"][1]["typed"] = {"expr": "x > 1"}
    proposal = parse_proposal(json.dumps(doc))
    history = [proposal] * 3
    assert codes_of(proposal, history=history, policy=VerifyPolicy(max_typed_claims=3)) == (
        "deny",
        [codes.UNDECIDED_CLAIMS],
    )


def test_unknown_manifests_deny_everything() -> None:
    proposal = parse_proposal(json.dumps(base_doc()))
    verdict = verify(proposal, OBSERVATIONS, ManifestSet())
    assert verdict.verdict == "deny"
    assert [f.code for f in verdict.findings] == [codes.UNKNOWN_TOOL]


def test_garbage_observation_files_are_input_errors() -> None:
    with pytest.raises(InputError, match="observations"):
        parse_observations(b'[{"session": "s", "index": -1, "channel": "data"}]')
