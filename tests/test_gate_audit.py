"""Issue #4 audit: the gaps a strict review found in the gate, each with the test that shows it
closed, plus the binding cases the review asked to see spelled out (number spellings, Unicode
normalisation, bad types at the resource-side check)."""

from __future__ import annotations

import copy
import json
import unicodedata
from pathlib import Path
from typing import Any

import pytest

from gatekeeper_support import entries, open_gate, payment_call, read_bill, snapshot
from thirdway.capability import (
    CapabilityClaims,
    CapabilityIssuer,
    LockedTool,
    MemorySpentSet,
    args_sha256,
    verify_capability,
)
from thirdway.errors import CapabilityError, InputError
from thirdway.gateway import Denied, Escalated, Granted, banking
from thirdway.gateway.inputs import amount_of
from thirdway.gateway.verifiers import InProcessVerifier, VerifierResult
from thirdway.policy.authorize import Authorizer
from thirdway.protocol.manifest import ToolManifest
from thirdway.protocol.models import Verdict

NOW = 1_700_000_000.0

OPERATOR_LIMIT = """
@id("big-transfers-need-two-auditors")
forbid (principal, action == Action::"act", resource)
when {
  resource.risk == "financial" &&
  context has amount && context.amount > 50 &&
  context.approvals < 2
};
"""


class PassEverything(InProcessVerifier):
    """A verifier that passes every proposal, so only the authorization step decides."""

    name = "pass-everything"

    def __call__(self, proposal: Any, *args: Any) -> VerifierResult:
        return VerifierResult(
            Verdict(session=proposal.session, verdict="pass", charter_sha256=self.charter_sha256)
        )


# --------------------------------------------------------------------------- amounts and Cedar


def _payment_with_amount(gate: Any, sid: str, amount: object) -> dict[str, Any]:
    proposal = banking.payment_proposal(sid, 2)
    proposal["action"]["args"]["amount"] = amount
    return proposal


def test_a_non_numeric_amount_cannot_slip_past_an_operator_limit(tmp_path: Path) -> None:
    """The schema makes every amount rule read ``context has amount && ...``; an amount written
    as text used to reach Cedar as no amount at all, so the operator's limit never applied and
    one auditor released a 25,000 transfer the operator wanted two for."""
    gate, bank, _ = open_gate(
        tmp_path,
        verifier=PassEverything(banking.manifests()),
        authorizer=Authorizer.with_operator_policies(OPERATOR_LIMIT),
        auditors=["auditor-a", "auditor-b"],
    )
    with gate:
        sid = gate.open_session("agent-7", banking.INSTRUCTION)
        # A number: the operator's policy decides, is named in the log, and one approval is
        # not enough.
        numeric = gate.propose(sid, _payment_with_amount(gate, sid, 25_000))
        assert isinstance(numeric, Escalated)
        decision = entries(gate)[numeric.proposal_index + 2]
        assert decision.type == "decision"
        assert decision.payload["decision"]["reasons"] == ["big-transfers-need-two-auditors"]
        assert isinstance(gate.approve_escalation(numeric.handle, "auditor-a", "ok"), Escalated)

        for amount in ("25000", True, [25_000], {"value": 25_000}):
            before = gate.log.size()
            refused = gate.propose(sid, _payment_with_amount(gate, sid, amount))
            assert isinstance(refused, Denied), (amount, refused)
            assert "'amount'" in refused.reason and "not a number" in refused.reason
            logged = entries(gate, before)
            assert [e.type for e in logged] == ["proposal", "verdict", "decision"]
            assert "decision" not in logged[2].payload  # no decision, only why none
            assert "not a number" in logged[2].payload["error"]
        assert "capability" not in {e.type for e in entries(gate)}
        assert bank.calls["send_money"] == 0


def test_amount_of_reads_numbers_and_refuses_other_amounts() -> None:
    pay = ToolManifest(tool="pay", risk="financial", reversible=False)
    assert amount_of(pay, {"amount": 5}) == 5.0
    assert amount_of(pay, {"amount": 98.7}) == 98.7
    assert amount_of(pay, {"amount": -1}) == -1.0  # passed on: the request refuses it
    assert amount_of(pay, {}) is None
    assert amount_of(pay, {"amount": None}) is None  # "no change" in an update call
    for bad in ("5", True, [5], {"n": 5}):
        with pytest.raises(InputError, match="not a number"):
            amount_of(pay, {"amount": bad})
    note = ToolManifest(tool="note", risk="write", reversible=True)
    assert amount_of(note, {"amount": "five"}) is None  # not money: Cedar gets no amount


def test_operator_policies_are_named_when_refused_at_load() -> None:
    broken = '@id("my-limit")\nforbid (principal, action, resource)\nwhen { context.amount > };'
    with pytest.raises(InputError, match=r"@id\('my-limit'\) starting on line 1"):
        Authorizer.with_operator_policies(broken)
    unknown = '@id("typo") forbid (principal, action, resource) when { principal.tierr > 1 };'
    with pytest.raises(InputError, match=r"policy 'typo'.*tierr"):
        Authorizer.with_operator_policies(unknown)
    clash = '@id("tier0-read") forbid (principal, action, resource);'
    with pytest.raises(InputError, match=r"@id\('tier0-read'\) is already a default policy's"):
        Authorizer.with_operator_policies(clash)


# --------------------------------------------------------------------------- number spellings


@pytest.fixture
def issuer() -> CapabilityIssuer:
    return CapabilityIssuer()


def _token(issuer: CapabilityIssuer, args: dict[str, Any], tool: str = "t") -> str:
    claims = CapabilityClaims.for_call(
        agent="agent-1", session="s-1", tool=tool, args=args, proposal_index=1,
        verdict_sha256="0" * 64, now=NOW,
    )  # fmt: skip
    return issuer.mint(claims)


def _reason(issuer: CapabilityIssuer, token: str, args: Any) -> str:
    with pytest.raises(CapabilityError) as refused:
        issuer.verifier().verify(token, tool="t", args=args, now=NOW)
    return refused.value.reason


@pytest.mark.parametrize(
    ("minted", "presented"),
    [
        (1, 1.0),
        (1, json.loads("1e0")),
        (1, json.loads("0.1e1")),
        (0, -0.0),
        (98.7, json.loads("9.870e1")),
        (2**53 - 1, float(2**53 - 1)),
        (1e21, json.loads("1E+21")),
    ],
)
def test_one_number_in_any_spelling_is_one_call(
    issuer: CapabilityIssuer, minted: Any, presented: Any
) -> None:
    token = _token(issuer, {"n": minted, "deep": [{"n": minted}]})
    same = {"deep": [{"n": presented}], "n": presented}
    assert issuer.verifier().verify(token, tool="t", args=same, now=NOW).tool == "t"


@pytest.mark.parametrize(
    ("minted", "presented"),
    [(1, 2), (1, True), (0, False), (0, None), (1, "1"), (98.7, 98.70000000000002), (1, [1])],
)
def test_different_values_are_different_calls(
    issuer: CapabilityIssuer, minted: Any, presented: Any
) -> None:
    token = _token(issuer, {"n": minted, "deep": [{"n": 0}]})
    assert _reason(issuer, token, {"n": presented, "deep": [{"n": 0}]}) == "wrong_args"
    assert _reason(issuer, token, {"n": minted, "deep": [{"n": presented}]}) == "wrong_args"


@pytest.mark.parametrize("big", [2**53, -(2**53), 2**64, 10**400])
def test_integers_beyond_i_json_are_refused_at_mint_and_at_check(
    issuer: CapabilityIssuer, big: int
) -> None:
    with pytest.raises(InputError, match="canonicalised"):
        _token(issuer, {"n": big})
    token = _token(issuer, {"n": 1})
    assert _reason(issuer, token, {"n": big}) == "wrong_args"
    assert _reason(issuer, token, {"n": 1, "deep": {"x": [big]}}) == "wrong_args"


def test_the_gatekeeper_runs_a_call_spelt_differently_as_the_approved_one(tmp_path: Path) -> None:
    """A call sent as JSON text with the amount written ``9.870e1`` and the keys in another order
    is the approved call; the tool and the log get the canonical value."""
    gate, bank, _ = open_gate(tmp_path)
    with gate:
        sid = gate.open_session("agent-7", banking.INSTRUCTION)
        granted = gate.propose(sid, banking.payment_proposal(sid, read_bill(gate, sid)))
        assert isinstance(granted, Granted)
        args = payment_call()["args"]
        placeholder = "__AMOUNT__"
        reordered = {"args": {**args, "amount": placeholder}, "tool": "send_money"}
        reordered["args"] = dict(reversed(list(reordered["args"].items())))
        text = json.dumps(reordered).replace(f'"{placeholder}"', "9.870e1")
        assert "9.870e1" in text and next(iter(json.loads(text)["args"])) != "recipient"
        executed = gate.execute(sid, granted.token, text.encode())
        assert executed.ok and bank.calls["send_money"] == 1
        call = gate.observations(sid)[executed.call_index].call
        assert call is not None and call.args["amount"] == 98.7
        assert bank.transactions[-1].amount == 98.7


# --------------------------------------------------------------------------- Unicode


def test_precomposed_and_decomposed_text_are_different_arguments(issuer: CapabilityIssuer) -> None:
    """RFC 8785 does not normalise, so neither does the binding: the approved bytes, and only
    they, run. (The verifier compares quotes under NFC; that decides provenance, never which
    call a token is good for.)"""
    composed = "Caf\u00e9"
    decomposed = unicodedata.normalize("NFD", composed)
    assert composed != decomposed and unicodedata.normalize("NFC", decomposed) == composed
    assert args_sha256({"to": composed}) != args_sha256({"to": decomposed})
    assert args_sha256({composed: 1}) != args_sha256({decomposed: 1})
    for minted, presented in ((composed, decomposed), (decomposed, composed)):
        token = _token(issuer, {"to": minted, minted: [minted]})
        assert _reason(issuer, token, {"to": presented, minted: [minted]}) == "wrong_args"
        assert _reason(issuer, token, {"to": minted, presented: [minted]}) == "wrong_args"
        assert _reason(issuer, token, {"to": minted, minted: [presented]}) == "wrong_args"
        same = {minted: [minted], "to": minted}
        assert issuer.verifier().verify(token, tool="t", args=same, now=NOW).tool == "t"


def test_the_gatekeeper_refuses_the_other_normal_form_and_logs_it(tmp_path: Path) -> None:
    gate, bank, _ = open_gate(tmp_path)
    with gate:
        sid = gate.open_session("agent-7", banking.INSTRUCTION)
        proposal = banking.payment_proposal(sid, read_bill(gate, sid))
        proposal["action"]["args"]["subject"] = "Car Rental December 2023 caf\u00e9"
        granted = gate.propose(sid, proposal)
        assert isinstance(granted, Granted), granted
        other = copy.deepcopy(proposal["action"])
        other["args"]["subject"] = unicodedata.normalize("NFD", other["args"]["subject"])
        before = gate.log.size()
        with pytest.raises(CapabilityError) as refused:
            gate.execute(sid, granted.token, other)
        assert refused.value.reason == "wrong_args"
        assert [e.payload["reason"] for e in entries(gate, before)] == ["wrong_args"]
        assert bank.calls["send_money"] == 0
        assert gate.execute(sid, granted.token, proposal["action"]).ok  # still unspent


# --------------------------------------------------------------------------- bad types


def _resource_check(issuer: CapabilityIssuer, **overrides: Any) -> Any:
    call: dict[str, Any] = {
        "token": _token(issuer, {"a": 1}),
        "tool": "t",
        "args": {"a": 1},
        "public_key": issuer.public_key_text,
        "spent_set": MemorySpentSet(),
        "now": NOW,
    }
    call.update(overrides)
    return verify_capability(call.pop("token"), call.pop("tool"), call.pop("args"), **call)


@pytest.mark.parametrize(
    ("overrides", "match"),
    [
        ({"tool": None}, "tool to check a token for is a name, not NoneType"),
        ({"tool": b"t"}, "tool to check a token for is a name, not bytes"),
        ({"agent": 7}, "agent to check a token for is a name or None, not int"),
        ({"session": b"s-1"}, "session to check a token for is a name or None, not bytes"),
        ({"spent_set": None}, "spent_set must be a SpentSet, not NoneType"),
    ],
)
def test_the_resource_side_check_names_a_wrongly_typed_argument(
    issuer: CapabilityIssuer, overrides: dict[str, Any], match: str
) -> None:
    with pytest.raises(InputError, match=match):
        _resource_check(issuer, **overrides)


def test_a_token_given_as_bytes_is_named_as_such(issuer: CapabilityIssuer) -> None:
    token = _token(issuer, {"a": 1})
    with pytest.raises(CapabilityError, match="a token is a base64 string, not bytes") as refused:
        _resource_check(issuer, token=token.encode())
    assert refused.value.reason == "malformed"


def test_arguments_nested_past_the_recursion_limit_are_refused_cleanly(
    issuer: CapabilityIssuer,
) -> None:
    deep: Any = 1
    for _ in range(50_000):
        deep = [deep]
    assert _reason(issuer, _token(issuer, {"a": 1}), {"a": deep}) == "wrong_args"
    spent = MemorySpentSet()
    ran: list[Any] = []
    tool = LockedTool(lambda a: ran.append(a), "t", verifier=issuer.verifier(), spent_set=spent,
                      clock=lambda: NOW)  # fmt: skip
    token = _token(issuer, {"a": 1})
    with pytest.raises(CapabilityError, match="nested too deeply") as refused:
        tool.invoke(token, {"a": deep})
    assert refused.value.reason == "wrong_args" and not ran and len(spent) == 0
    tool.invoke(token, {"a": 1})
    assert ran == [1]


def test_a_wrongly_typed_token_at_the_gatekeeper_leaves_no_trace(tmp_path: Path) -> None:
    gate, bank, _ = open_gate(tmp_path)
    with gate:
        sid = gate.open_session("agent-7", banking.INSTRUCTION)
        granted = gate.propose(sid, banking.payment_proposal(sid, read_bill(gate, sid)))
        assert isinstance(granted, Granted)
        before = snapshot(gate)
        with pytest.raises(CapabilityError, match="not bytes"):
            gate.execute(sid, granted.token.encode(), payment_call())  # type: ignore[arg-type]
        assert snapshot(gate) == before and bank.calls["send_money"] == 0
        assert gate.execute(sid, granted.token, payment_call()).ok


def test_a_denied_verdict_keeps_its_reason_when_the_amount_is_not_a_number(
    tmp_path: Path,
) -> None:
    """Refusing a text amount before Cedar must not hide the verifier's own denial."""
    gate, bank, _ = open_gate(tmp_path)
    with gate:
        sid = gate.open_session("agent-7", banking.INSTRUCTION)
        proposal = banking.payment_proposal(sid, read_bill(gate, sid))
        proposal["action"]["args"]["amount"] = "98.70"
        denied = gate.propose(sid, proposal)
        assert isinstance(denied, Denied)
        assert denied.reason.startswith("the verifier denied the action: ")
        assert "the action cannot be authorized: argument 'amount'" in denied.reason
        assert denied.findings and bank.calls["send_money"] == 0
