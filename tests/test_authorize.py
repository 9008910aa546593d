"""The authorization decision (Cedar): tier × risk × verdict × dialogue, and operator policies."""

from __future__ import annotations

import hashlib
import itertools
from typing import Any

import pytest

from thirdway.errors import InputError
from thirdway.policy.authorize import (
    EVALUATION_ERROR,
    NO_MATCHING_PERMIT,
    AuthorizationDecision,
    AuthorizationRequest,
    Authorizer,
    authorize,
)
from thirdway.policy.cedar import CedarPolicySet, default_policy_text
from thirdway.protocol import canonical_json
from thirdway.protocol.manifest import ToolManifest

FINANCIAL_LIMIT = 1000  # the default tier-3 limit, as documented in DESIGN-shaped policies


def expected_outcome(
    *,
    tier: int,
    risk: str,
    reversible: bool,
    external: bool,
    verdict: str,
    dialogue: str,
    provenance_clean: bool,
    approvals: int,
    amount: float | None,
    required_approvals: int = 2,
) -> str:
    """DESIGN.md's tier table, written independently of the Cedar text.

    | tier | may do without a dialogue                                   |
    | 0    | read-only tools                                             |
    | 1    | + reversible writes                                         |
    | 2    | + external communication with clean provenance              |
    | 3    | + irreversible and financial actions under a limit          |
    | 4    | + critical resources, each with m-of-n auditor approval     |
    A deny verdict or a denied dialogue is final; everything else not allowed by the tier (or
    under an escalate verdict) needs an approved dialogue, and critical actions always need the
    quorum of approvals."""
    if verdict == "deny" or dialogue == "denied":
        return "deny"
    quorum = approvals >= required_approvals
    if risk == "read":
        needed_tier, needs_clean, extra = (2, True, True) if external else (0, False, True)
    elif risk == "write" and reversible:
        needed_tier, needs_clean, extra = (2, True, True) if external else (1, False, True)
    elif risk == "write":
        needed_tier, needs_clean, extra = 3, external, True
    elif risk == "external":
        needed_tier, needs_clean, extra = 2, True, True
    elif risk == "financial":
        under_limit = amount is not None and amount <= FINANCIAL_LIMIT
        needed_tier, needs_clean, extra = 3, True, under_limit
    else:  # critical
        needed_tier, needs_clean, extra = 4, True, quorum
    tier_allows = tier >= needed_tier and (provenance_clean or not needs_clean) and extra
    if verdict == "pass" and tier_allows:
        return "allow"
    if dialogue == "approved" and (risk != "critical" or quorum):
        return "allow"
    return "needs_dialogue"


def request(**overrides: Any) -> AuthorizationRequest:
    fields: dict[str, Any] = {
        "agent": "agent-1",
        "tier": 2,
        "tool": "send_money",
        "risk": "financial",
        "reversible": False,
        "external": True,
        "verdict": "pass",
        "provenance_clean": True,
    }
    fields.update(overrides)
    return AuthorizationRequest.build(**fields)


GRID = list(
    itertools.product(
        range(5),
        ["read", "write", "external", "financial", "critical"],
        [True, False],  # reversible
        [True, False],  # external
        ["pass", "escalate", "deny"],
        ["none", "approved", "denied"],
        [True, False],  # provenance clean
    )
)


@pytest.mark.parametrize(("approvals", "amount"), [(0, None), (0, 500.0), (2, 5000.0), (1, 1000.0)])
def test_the_whole_grid_matches_the_design_table(approvals: int, amount: float | None):
    authorizer = Authorizer()
    mismatches = []
    for tier, risk, reversible, external, verdict, dialogue, clean in GRID:
        fields = {
            "tier": tier,
            "risk": risk,
            "reversible": reversible,
            "external": external,
            "verdict": verdict,
            "dialogue": dialogue,
            "provenance_clean": clean,
            "approvals": approvals,
            "amount": amount,
        }
        decision = authorizer.authorize(request(tool=f"tool-{risk}", **fields))
        want = expected_outcome(**fields)
        if decision.outcome != want:
            mismatches.append((fields, decision.outcome, want, decision.reasons))
        assert decision.reasons, "every decision names why"
    assert not mismatches, mismatches[:5]


def test_outcomes_cover_all_three_and_name_their_policies():
    assert authorize(request(tier=0, risk="read", reversible=True, external=False)).reasons == [
        "tier0-read"
    ]
    needs = authorize(request(tier=1, amount=50))
    assert (needs.outcome, needs.reasons) == ("needs_dialogue", [NO_MATCHING_PERMIT])
    approved = authorize(request(tier=1, amount=50, dialogue="approved", approvals=1))
    assert (approved.outcome, approved.reasons) == ("allow", ["approved-by-dialogue"])
    denied = authorize(request(tier=4, verdict="deny", dialogue="approved", approvals=3))
    assert (denied.outcome, denied.reasons) == ("deny", ["verdict-deny-is-final"])
    refused = authorize(request(tier=4, dialogue="denied", amount=1))
    assert (refused.outcome, refused.reasons) == ("deny", ["dialogue-denial-is-final"])


def test_amounts_round_up_so_whole_unit_limits_are_exact():
    assert authorize(request(tier=3, amount=1000.0)).outcome == "allow"
    assert authorize(request(tier=3, amount=1000.0001)).outcome == "needs_dialogue"
    assert authorize(request(tier=3, amount=0.0)).outcome == "allow"
    assert authorize(request(tier=3)).outcome == "needs_dialogue"  # no amount, no direct payment


OPERATOR_FORBID = """
@id("big-transfers-need-two-auditors")
forbid (principal, action == Action::"act", resource)
when {
  resource.risk == "financial" &&
  context has amount && context.amount > 10000 &&
  context.approvals < 2
};
"""


def test_an_operator_forbid_overrides_a_default_permit():
    big = {"tier": 1, "amount": 25_000.0, "dialogue": "approved", "approvals": 1}
    assert authorize(request(**big)).outcome == "allow"  # the defaults let one auditor approve
    operator = Authorizer.with_operator_policies(OPERATOR_FORBID)
    blocked = operator.authorize(request(**big))
    assert blocked.outcome == "needs_dialogue"
    assert blocked.reasons == ["big-transfers-need-two-auditors"]
    assert operator.authorize(request(**{**big, "approvals": 2})).outcome == "allow"
    # small transfers are untouched by it
    assert operator.authorize(request(tier=3, amount=99.0)).reasons == [
        "tier3-financial-under-limit"
    ]


def test_an_operator_forbid_on_every_action_denies_outright():
    never = """
@id("no-payments-to-sanctioned-tool")
forbid (principal, action, resource == Tool::"wire_abroad");
"""
    operator = Authorizer.with_operator_policies(never)
    decision = operator.authorize(request(tool="wire_abroad", tier=4, amount=1.0))
    assert (decision.outcome, decision.reasons) == ("deny", ["no-payments-to-sanctioned-tool"])


def test_an_operator_permit_widens_the_defaults():
    widen = """
@id("tier2-small-payments")
permit (principal, action == Action::"act", resource)
when {
  context.verdict == "pass" && principal.tier >= 2 && resource.risk == "financial" &&
  context.provenance_clean && context has amount && context.amount <= 50
};
"""
    operator = Authorizer.with_operator_policies(widen)
    assert authorize(request(tier=2, amount=20.0)).outcome == "needs_dialogue"
    assert operator.authorize(request(tier=2, amount=20.0)).reasons == ["tier2-small-payments"]
    assert operator.authorize(request(tier=2, amount=20.0, verdict="deny")).outcome == "deny"


def test_decisions_are_loggable_and_name_their_policy_text():
    decision = authorize(request(tier=3, amount=98.7))
    wire = canonical_json(decision)
    assert AuthorizationDecision.model_validate_json(wire) == decision
    default_hash = hashlib.sha256(default_policy_text().encode()).hexdigest()
    assert decision.policy_set_sha256 == default_hash
    other = Authorizer.with_operator_policies(OPERATOR_FORBID).authorize(request(tier=3))
    assert other.policy_set_sha256 != default_hash


def test_evaluation_errors_fail_closed():
    overflowing = """
@id("overflowing-forbid")
forbid (principal, action, resource)
when { context has amount && context.amount * 9223372036854775807 > 0 };
"""
    operator = Authorizer.with_operator_policies(overflowing)
    decision = operator.authorize(request(tier=3, amount=5.0))
    assert decision.outcome == "deny"
    assert decision.reasons == [EVALUATION_ERROR]
    assert decision.errors and "overflow" in " ".join(decision.errors).lower()
    # without an amount the policy evaluates cleanly and the defaults apply
    assert operator.authorize(request(tier=0, risk="read", external=False)).outcome == "allow"


def test_an_error_in_a_policy_for_dialogues_only_matters_when_a_dialogue_is_the_question():
    """The open_dialogue request is evaluated only when the action is not allowed directly:
    an error in a dialogue-only policy leaves a direct allow alone, and still fails closed for
    an action that would need the dialogue."""
    overflowing = """
@id("overflowing-dialogue-forbid")
forbid (principal, action == Action::"open_dialogue", resource)
when { context has amount && context.amount * 9223372036854775807 > 0 };
"""
    operator = Authorizer.with_operator_policies(overflowing)
    allowed = operator.authorize(request(tier=3, amount=5.0))
    assert allowed.outcome == "allow" and allowed.errors == []
    escalating = operator.authorize(request(tier=2, amount=5.0))
    assert escalating.outcome == "deny"
    assert escalating.reasons == [EVALUATION_ERROR]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            '@id("x") permit (principal, action, resource) when { context.verdict == };',
            "on line 1)",
        ),
        ('@id("a") permit (principal, action, resource);\n\n@id("b") forbid (p', "line 3:"),
        ('@id("x") permit (principal, action, resource)', "missing ';'"),
        ("permit (principal, action, resource);", "no @id"),
        ('@id("x") permit (principal, action, resource);\n' * 2, "both use @id('x')"),
        (
            '@id("typo") forbid (principal, action, resource) when { resource.risks == "read" };',
            "policy 'typo'",
        ),
        ('@id("t") permit (principal == ?principal, action, resource);', "templates"),
        (
            '@id("bad-action") permit (principal, action == Action::"fly", resource);',
            "policy 'bad-action'",
        ),
    ],
    ids=[
        "syntax",
        "second-policy",
        "no-semicolon",
        "no-id",
        "dup-id",
        "typo",
        "template",
        "action",
    ],
)
def test_bad_operator_policies_are_clear_input_errors(text: str, message: str):
    with pytest.raises(InputError, match="Cedar") as info:
        Authorizer.with_operator_policies(text)
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_policy_text_size_and_type_are_checked():
    with pytest.raises(InputError, match="limit"):
        CedarPolicySet("//" + "x" * (1024 * 1024))
    with pytest.raises(InputError, match="string"):
        CedarPolicySet(b"permit (principal, action, resource);")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "overrides",
    [
        {"tier": 5},
        {"tier": -1},
        {"tier": "3"},
        {"risk": "nuclear"},
        {"verdict": "maybe"},
        {"dialogue": "pending"},
        {"approvals": -1},
        {"amount": -1.0},
        {"amount": float("nan")},
        {"amount": float("inf")},
        {"amount": 2.0**60},
        {"provenance_clean": "yes"},
        {"agent": ""},
        {"unknown": 1},
    ],
    ids=str,
)
def test_bad_requests_are_input_errors(overrides: dict[str, Any]):
    with pytest.raises(InputError, match="invalid authorization request"):
        request(**overrides)


def test_requests_from_a_manifest_and_odd_identifiers():
    manifest = ToolManifest(tool='send "money" ⚡', risk="financial", reversible=False)
    built = AuthorizationRequest.for_tool(
        manifest,
        agent='agent/ünïcode "quoted"',
        tier=3,
        verdict="pass",
        provenance_clean=True,
        amount=10.0,
    )
    assert (built.risk, built.reversible, built.external) == ("financial", False, False)
    assert authorize(built).outcome == "allow"


def test_remembered_answers_are_cedars_answers():
    """The authorizer remembers Cedar's answer per request: a second pass over the grid is
    answered from memory, identically to Cedar asked afresh, and no two requests share one."""
    authorizer = Authorizer.with_operator_policies(
        '@id("no-big-transfers")\n'
        'forbid (principal, action == Action::"act", resource) '
        "when { context has amount && context.amount > 50 };"
    )
    requests = [
        request(tool=f"tool-{risk}", tier=tier, risk=risk, verdict=verdict, dialogue=dialogue,
                amount=amount)
        for tier, risk, verdict, dialogue, amount in itertools.product(
            range(5), ["read", "financial", "critical"], ["pass", "escalate"],
            ["none", "approved"], [None, 50.0, 50.5, 51],
        )
    ]  # fmt: skip
    first = [authorizer.authorize(r) for r in requests]
    hits = authorizer._answers.cache_info().hits
    second = [authorizer.authorize(r) for r in requests]
    assert authorizer._answers.cache_info().hits == hits + len(requests)
    assert second == first
    fresh = [authorizer._answer(r) for r in requests]  # Cedar itself, nothing remembered
    assert [(d.outcome, tuple(d.reasons), tuple(d.errors)) for d in second] == fresh
    amounts = {
        r.amount: d.outcome
        for r, d in zip(requests, second, strict=True)
        if (r.tier, r.risk, r.verdict, r.dialogue) == (3, "financial", "pass", "none")
    }
    over = "needs_dialogue"
    assert amounts == {None: over, 50.0: "allow", 50.5: over, 51: over}
