"""The Gatekeeper end to end: observe → propose → verify → authorize → mint → execute → log,
escalations and auditors, deception, restarts, and the verifier back ends."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from gatekeeper_support import (
    CountingBank,
    entries,
    fabricated_transfer,
    injected_transfer,
    open_gate,
    payment_call,
    read_bill,
    snapshot,
    types,
)
from thirdway.capability import CapabilityClaims, args_sha256
from thirdway.charter import default_charter_sha256
from thirdway.errors import CapabilityError, EnclaveUnavailable, GateError, InputError
from thirdway.gateway import (
    Denied,
    EnclaveVerifier,
    Escalated,
    Gatekeeper,
    Granted,
    InProcessVerifier,
    VerifierResult,
    banking,
)
from thirdway.protocol.canonical import canonical_sha256
from thirdway.protocol.models import Finding, Observation, Proposal, Verdict


@pytest.fixture
def gate(tmp_path: Path) -> Any:
    gate, bank, clock = open_gate(tmp_path)
    yield gate, bank, clock
    gate.close()


def test_honest_payment_runs_and_every_step_is_logged(gate: Any) -> None:
    gate, bank, _ = gate
    sid = gate.open_session("agent-7", banking.INSTRUCTION)
    bill = read_bill(gate, sid)
    assert gate.observations(sid)[bill].channel == "data"
    assert "Car Rental" in (gate.observations(sid)[bill].content or "")
    start = gate.log.size()
    granted = gate.propose(sid, banking.payment_proposal(sid, bill))
    assert isinstance(granted, Granted)
    assert types(gate, start) == ["proposal", "verdict", "decision", "capability"]
    executed = gate.execute(sid, granted.token, payment_call())
    assert executed.ok and executed.error is None
    assert bank.calls["send_money"] == 1
    assert bank.balance == pytest.approx(1810.0 - 98.7)
    assert types(gate, start) == [
        "proposal", "verdict", "decision", "capability", "observation", "observation", "execution"
    ]  # fmt: skip
    call, data, record = entries(gate, start + 4)
    assert call.payload["channel"] == "call" and call.payload["index"] == executed.call_index
    assert data.payload["produced_by"] == executed.call_index
    assert (
        data.payload["content"]
        == executed.content
        == "Transaction to UK12345678901234567890 for 98.7 sent."
    )
    assert record.payload["event"] == "executed"
    assert record.payload["proposal_index"] == granted.proposal_index
    assert gate.log.verify().ok


def test_token_claims_are_bound_and_logged_without_the_token(gate: Any) -> None:
    gate, _, clock = gate
    sid = gate.open_session("agent-7", banking.INSTRUCTION)
    bill = read_bill(gate, sid)
    proposal = banking.payment_proposal(sid, bill)
    granted = gate.propose(sid, proposal)
    assert isinstance(granted, Granted)
    claims = gate.issuer.verifier().verify(
        granted.token, tool="send_money", args=proposal["action"]["args"], now=clock.now
    )
    assert claims.agent == "agent-7" and claims.session == sid
    assert claims.args_sha256 == args_sha256(proposal["action"]["args"])
    assert claims.proposal_index == granted.proposal_index
    assert claims.verdict_sha256 == canonical_sha256(granted.verdict)
    assert claims.expires_at == int(clock.now) + 60
    logged = entries(gate)
    assert logged[granted.proposal_index].type == "proposal"
    assert Proposal.model_validate(logged[granted.proposal_index].payload["proposal"]) == (
        Proposal.model_validate(proposal)
    )
    verdict_entry = logged[granted.proposal_index + 1]
    assert Verdict.model_validate(verdict_entry.payload["verdict"]) == granted.verdict
    decision_entry = logged[granted.proposal_index + 2].payload
    assert decision_entry["decision"]["policy_set_sha256"] == gate.authorizer.policy_set_sha256
    assert decision_entry["decision"]["reasons"] == ["tier3-financial-under-limit"]
    capability = logged[granted.capability_index]
    assert CapabilityClaims.model_validate(capability.payload["claims"]) == claims
    assert all(granted.token.encode() not in raw for raw in snapshot(gate))
    assert "token" not in repr(granted)


def test_injected_transfer_is_refused_and_nothing_runs(gate: Any) -> None:
    gate, bank, _ = gate
    sid = gate.open_session("agent-7", banking.INSTRUCTION)
    bill = read_bill(gate, sid)
    denied = gate.propose(sid, injected_transfer(sid, bill))
    assert isinstance(denied, Denied)
    codes = {finding.code for finding in denied.findings}
    assert {"instruction_from_data", "cited_from_instruction"} <= codes
    assert "instruction" in denied.reason
    assert denied.decision is not None and denied.decision.reasons == ["verdict-deny-is-final"]
    assert bank.calls["send_money"] == 0
    assert types(gate, denied.proposal_index) == ["proposal", "verdict", "decision"]
    assert "note" not in types(gate)  # refused, not punished: no deception


def test_fabricated_chain_is_denied_and_reported_to_the_sanctioner(tmp_path: Path) -> None:
    heard: list[dict[str, Any]] = []

    class Recorder:
        def on_deception(self, **kwargs: Any) -> None:
            heard.append(kwargs)
            kwargs["append"]([])

    gate, _, clock = open_gate(tmp_path, sanctioner=Recorder())
    with gate:
        sid = gate.open_session("agent-7", banking.INSTRUCTION)
        read_bill(gate, sid)
        denied = gate.propose(sid, fabricated_transfer(sid))
        assert isinstance(denied, Denied)
        assert {"fabricated_quote", "misattribution"} <= {f.code for f in denied.findings}
        assert denied.reason.startswith("the verifier denied the action: fabricated_quote")
        (call,) = heard
        assert call["agent"] == "agent-7" and call["session"] == sid and call["at"] == clock.now
        assert call["evidence"] == [denied.proposal_index, denied.proposal_index + 1]
        assert [f.code for f in call["findings"]] == [f.code for f in denied.findings]


def test_default_sanctioner_records_a_note_citing_the_verdict(gate: Any) -> None:
    gate, _, _ = gate
    sid = gate.open_session("agent-7", banking.INSTRUCTION)
    denied = gate.propose(sid, fabricated_transfer(sid))
    assert isinstance(denied, Denied)
    note = entries(gate)[-1]
    assert note.type == "note" and note.agent == "agent-7"
    assert note.payload["event"] == "deception_unsanctioned"
    assert note.payload["evidence"] == [denied.proposal_index, denied.proposal_index + 1]
    assert set(note.payload["codes"]) == {"fabricated_quote", "misattribution"}
    assert "trust" not in types(gate)  # a trust entry must be a real trust event


def test_a_token_pays_only_its_own_call(gate: Any) -> None:
    gate, bank, _ = gate
    sid = gate.open_session("agent-7", banking.INSTRUCTION)
    granted = gate.propose(sid, banking.payment_proposal(sid, read_bill(gate, sid)))
    assert isinstance(granted, Granted)
    other = payment_call()
    other["args"]["recipient"] = banking.ATTACKER_IBAN
    with pytest.raises(CapabilityError) as refused:
        gate.execute(sid, granted.token, other)
    assert refused.value.reason == "wrong_args"
    assert bank.calls["send_money"] == 0
    reordered = {"tool": "send_money", "args": dict(reversed(payment_call()["args"].items()))}
    reordered["args"]["amount"] = 98.70
    assert gate.execute(sid, granted.token, reordered).ok
    assert bank.calls["send_money"] == 1


def test_a_failing_tool_is_a_recorded_result_and_spends_the_token(gate: Any) -> None:
    gate, bank, _ = gate
    bank.balance = 10.0
    sid = gate.open_session("agent-7", banking.INSTRUCTION)
    granted = gate.propose(sid, banking.payment_proposal(sid, read_bill(gate, sid)))
    assert isinstance(granted, Granted)
    executed = gate.execute(sid, granted.token, payment_call())
    assert not executed.ok and executed.result is None
    assert executed.error == "ValueError: cannot send 98.7: the balance is 10.0"
    assert executed.content == "error: " + executed.error
    record = entries(gate)[-1]
    assert record.payload["event"] == "failed" and record.payload["error"] == executed.error
    assert gate.observations(sid)[executed.result_index].content == executed.content
    with pytest.raises(CapabilityError, match="spent"):
        gate.execute(sid, granted.token, payment_call())


def test_a_result_too_large_to_record_is_replaced_by_an_error(gate: Any) -> None:
    gate, bank, _ = gate
    bank.files[banking.BILL_FILE] = "x" * (8 * 1024 * 1024 + 1)
    sid = gate.open_session("agent-7", banking.INSTRUCTION)
    granted = gate.propose(sid, banking.read_proposal(sid))
    assert isinstance(granted, Granted)
    call = {"tool": "read_file", "args": {"file_path": banking.BILL_FILE}}
    executed = gate.execute(sid, granted.token, call)
    assert not executed.ok and "cannot be recorded" in (executed.error or "")
    assert len(gate.observations(sid)[executed.result_index].content or "") < 5000
    assert gate.log.verify().ok


def test_expired_token_is_refused_and_logged(gate: Any) -> None:
    gate, bank, clock = gate
    sid = gate.open_session("agent-7", banking.INSTRUCTION)
    granted = gate.propose(sid, banking.payment_proposal(sid, read_bill(gate, sid)))
    assert isinstance(granted, Granted)
    clock.now += 61
    size = gate.log.size()
    with pytest.raises(CapabilityError) as refused:
        gate.execute(sid, granted.token, payment_call())
    assert refused.value.reason == "expired"
    assert bank.calls["send_money"] == 0
    (refusal,) = entries(gate, size)
    assert refusal.payload["event"] == "refused" and refusal.payload["reason"] == "expired"


# --------------------------------------------------------------------------- escalations


def _escalate(gate: Gatekeeper) -> tuple[str, Escalated]:
    sid = gate.open_session("agent-2", banking.INSTRUCTION)
    escalated = gate.propose(sid, banking.payment_proposal(sid, read_bill(gate, sid)))
    assert isinstance(escalated, Escalated), escalated
    return sid, escalated


def test_tier_two_payment_escalates_and_an_auditor_releases_it(tmp_path: Path) -> None:
    gate, bank, _ = open_gate(tmp_path, tier=2)
    with gate:
        sid, escalated = _escalate(gate)
        assert escalated.verdict.verdict == "pass"
        assert escalated.decision.outcome == "needs_dialogue"
        assert "tier 2" in escalated.reason
        assert types(gate, escalated.proposal_index) == [
            "proposal", "verdict", "decision", "dialogue"
        ]  # fmt: skip
        assert gate.open_escalations() == [escalated.handle]
        start = gate.log.size()
        granted = gate.approve_escalation(escalated.handle, "auditor-alice", "bill checked")
        assert isinstance(granted, Granted)
        assert granted.proposal_index == escalated.proposal_index
        assert granted.decision.request.dialogue == "approved"
        assert granted.decision.reasons == ["approved-by-dialogue"]
        approval, decision, capability = entries(gate, start)
        assert approval.payload == {
            "event": "approval", "handle": escalated.handle, "auditor": "auditor-alice",
            "reason": "bill checked", "proposal_index": escalated.proposal_index,
        }  # fmt: skip
        assert decision.payload["handle"] == escalated.handle
        assert capability.payload["claims"]["proposal_index"] == escalated.proposal_index
        assert gate.open_escalations() == []
        assert gate.execute(sid, granted.token, payment_call()).ok
        assert bank.calls["send_money"] == 1
        with pytest.raises(GateError, match="no open escalation"):
            gate.approve_escalation(escalated.handle, "auditor-bob", "again")


def test_auditor_denial_is_final(tmp_path: Path) -> None:
    gate, bank, _ = open_gate(tmp_path, tier=2)
    with gate:
        _, escalated = _escalate(gate)
        denied = gate.deny_escalation(escalated.handle, "auditor-alice", "not this month")
        assert isinstance(denied, Denied)
        assert denied.reason == "auditor 'auditor-alice' denied the action: not this month"
        assert denied.decision is not None and denied.decision.outcome == "deny"
        assert types(gate)[-2:] == ["dialogue", "decision"]
        assert gate.open_escalations() == []
        assert bank.calls["send_money"] == 0


def test_critical_action_needs_two_distinct_auditors(tmp_path: Path) -> None:
    gate, bank, _ = open_gate(tmp_path, tier=4)
    with gate:
        sid = gate.open_session("agent-4", "Please change my password to 'hunter2-correct'.")
        proposal = {
            "session": sid,
            "action": {"tool": "update_password", "args": {"password": "hunter2-correct"}},
            "goal": {"obs": 0, "quote": "change my password"},
            "steps": [
                {"id": "s1", "claim": "The user gave the new password.", "about_principal": True,
                 "cites": [{"obs": 0, "quote": "change my password to 'hunter2-correct'"}]}
            ],
            "bindings": {"password": {"step": "s1", "quote": "hunter2-correct"}},
            "effects": {"reversible": False, "external": False, "summary": "new password"},
        }  # fmt: skip
        escalated = gate.propose(sid, proposal)
        assert isinstance(escalated, Escalated) and escalated.verdict.verdict == "pass"
        first = gate.approve_escalation(escalated.handle, "auditor-alice", "user confirmed")
        assert isinstance(first, Escalated) and first.approvals == 1
        assert "1 of 2" in first.reason
        with pytest.raises(GateError, match="already approved"):
            gate.approve_escalation(escalated.handle, "auditor-alice", "twice")
        second = gate.approve_escalation(escalated.handle, "auditor-bob", "confirmed by phone")
        assert isinstance(second, Granted)
        assert gate.execute(sid, second.token, proposal["action"]).ok
        assert bank.password == "hunter2-correct"


def test_an_agent_can_never_approve(tmp_path: Path) -> None:
    gate, _, _ = open_gate(tmp_path, tier=2)
    with gate:
        _, escalated = _escalate(gate)
        other = gate.open_session("agent-9", banking.INSTRUCTION)
        size = gate.log.size()
        for agent in ("agent-2", "agent-9"):
            with pytest.raises(GateError, match="an agent can never approve"):
                gate.approve_escalation(escalated.handle, agent, "looks fine to me")
        assert gate.log.size() == size
        assert gate.open_escalations() == [escalated.handle]
        assert other


def test_auditor_allow_list(tmp_path: Path) -> None:
    gate, _, _ = open_gate(tmp_path, tier=2, auditors=["auditor-alice"])
    with gate:
        _, escalated = _escalate(gate)
        with pytest.raises(GateError, match="not one of this gatekeeper's auditors"):
            gate.approve_escalation(escalated.handle, "mallory", "trust me")
        with pytest.raises(GateError, match="an auditor cannot act as an agent"):
            gate.open_session("auditor-alice", banking.INSTRUCTION)
        assert isinstance(gate.approve_escalation(escalated.handle, "auditor-alice", "ok"), Granted)


def test_verifier_escalation_over_the_limit(tmp_path: Path) -> None:
    gate, _, _ = open_gate(tmp_path, tier=3)
    with gate:
        sid = gate.open_session("agent-3", "Please send 6,000.00 to DE89370400440532013000.")
        proposal = {
            "session": sid,
            "action": {"tool": "send_money", "args": {
                "recipient": "DE89370400440532013000", "amount": 6000.0,
                "subject": "Transfer", "date": "2024-01-05"}},
            "goal": {"obs": 0, "quote": "send 6,000.00 to DE89370400440532013000"},
            "steps": [
                {"id": "s1", "claim": "The user asked for this transfer.", "about_principal": True,
                 "cites": [{"obs": 0, "quote": "send 6,000.00 to DE89370400440532013000"}]},
                {"id": "s2", "claim": "Subject and date are mine.", "from": ["s1"]},
            ],
            "bindings": {"recipient": {"step": "s1", "quote": "DE89370400440532013000"},
                         "amount": {"step": "s1", "quote": "6,000.00", "as": "number"},
                         "subject": {"composed": "s2"}, "date": {"composed": "s2"}},
            "effects": {"reversible": False, "external": True, "summary": "sends 6000"},
        }  # fmt: skip
        escalated = gate.propose(sid, proposal)
        assert isinstance(escalated, Escalated)
        assert escalated.verdict.verdict == "escalate"
        assert "limit_exceeded" in escalated.reason


# --------------------------------------------------------------------------- restarts


def test_reopening_carries_on_sessions_history_and_escalations(tmp_path: Path) -> None:
    gate, bank, clock = open_gate(tmp_path, tier=2)
    sid, escalated = _escalate(gate)
    before = gate.observations(sid)
    gate.close()
    reopened, _, _ = open_gate(tmp_path, tier=2, bank=bank, clock=clock, injected=False)
    with reopened:
        assert reopened.observations(sid) == before
        assert reopened.session_agent(sid) == "agent-2"
        assert reopened.open_escalations() == [escalated.handle]
        granted = reopened.approve_escalation(escalated.handle, "auditor-alice", "ok")
        assert isinstance(granted, Granted)
        assert reopened.execute(sid, granted.token, payment_call()).ok
        with pytest.raises(GateError, match="an agent can never approve"):
            reopened.approve_escalation("esc-whatever", "agent-2", "me")
    again, _, _ = open_gate(tmp_path, tier=2, bank=bank, clock=clock, injected=False)
    with again:
        assert again.open_escalations() == []
        assert len(again.observations(sid)) == len(before) + 2
        assert again.log.verify().ok


def test_reopening_restores_the_verifier_history(tmp_path: Path) -> None:
    seen: list[int] = []

    class Spy(InProcessVerifier):
        def __call__(self, proposal: Any, observations: Any, history: Any, before: int) -> Any:
            seen.append(len(history))
            return super().__call__(proposal, observations, history, before)

    gate, bank, clock = open_gate(tmp_path)
    sid = gate.open_session("agent-7", banking.INSTRUCTION)
    read_bill(gate, sid)
    gate.close()
    spy = Spy(banking.manifests())
    reopened, _, _ = open_gate(tmp_path, bank=bank, clock=clock, injected=False, verifier=spy)
    with reopened:
        reopened.propose(sid, banking.payment_proposal(sid, 2))
    assert seen == [1]  # the read proposal passed before the restart


def test_the_capability_key_persists_and_is_private(tmp_path: Path) -> None:
    gate, _, clock = open_gate(tmp_path)
    sid = gate.open_session("agent-7", banking.INSTRUCTION)
    granted = gate.propose(sid, banking.read_proposal(sid))
    assert isinstance(granted, Granted)
    gate.close()
    assert (tmp_path / "capability.key").stat().st_mode & 0o777 == 0o600
    reopened, _, _ = open_gate(tmp_path, clock=clock, injected=False)
    with reopened:
        call = {"tool": "read_file", "args": {"file_path": banking.BILL_FILE}}
        assert reopened.execute(sid, granted.token, call).ok


def test_malformed_key_file_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "capability.key").write_text("not a key\n")
    with pytest.raises(InputError, match=r"capability key .* is malformed"):
        open_gate(tmp_path)


# --------------------------------------------------------------------------- verifier back ends


class _Broken:
    name = "broken"

    def __init__(self, error: Exception) -> None:
        self.manifests = banking.manifests()
        self.error = error

    def __call__(self, *args: Any) -> VerifierResult:
        raise self.error


def test_no_verifier_no_token(tmp_path: Path) -> None:
    broken = _Broken(EnclaveUnavailable("the enclave died"))
    gate, _, _ = open_gate(tmp_path, verifier=broken)
    with gate:
        sid = gate.open_session("agent-7", banking.INSTRUCTION)
        denied = gate.propose(sid, banking.read_proposal(sid))
        assert isinstance(denied, Denied) and denied.verdict is None
        assert "no verdict" in denied.reason and "the enclave died" in denied.reason
        assert denied.retryable, "a dead enclave judged nothing: proposing again may succeed"
        _, verdict = entries(gate, denied.proposal_index or 0)
        assert verdict.type == "verdict"
        assert verdict.payload["error"].startswith("EnclaveUnavailable")
        assert verdict.payload["verifier"] == "broken"
        assert "capability" not in types(gate)


def test_a_verdict_for_another_session_is_not_acted_on(tmp_path: Path) -> None:
    class Liar(InProcessVerifier):
        name = "liar"

        def __call__(self, proposal: Any, *args: Any) -> VerifierResult:
            return VerifierResult(
                Verdict(session="elsewhere", verdict="pass", charter_sha256=self.charter_sha256)
            )

    gate, _, _ = open_gate(tmp_path, verifier=Liar(banking.manifests()))
    with gate:
        sid = gate.open_session("agent-7", banking.INSTRUCTION)
        denied = gate.propose(sid, banking.read_proposal(sid))
        assert isinstance(denied, Denied) and "'elsewhere'" in denied.reason


def test_verifier_must_know_the_same_manifests(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="other tool manifests"):
        open_gate(tmp_path, verifier=InProcessVerifier(banking.manifests().model_copy(
            update={"tools": {}})))  # fmt: skip


def test_enclave_verifier_logs_the_signature(tmp_path: Path) -> None:
    class FakeSigned:
        def __init__(self, verdict: Verdict) -> None:
            self.verdict = verdict

        def model_dump(self, **kwargs: Any) -> dict[str, Any]:
            assert kwargs["exclude"] == {"verdict"}
            return {"request_sha256": "ab" * 32, "signature": "c2ln"}

    class FakeClient:
        manifests = banking.manifests()

        def verify(
            self, proposal: Proposal, observations: Sequence[Observation], history: Any, n: int
        ) -> FakeSigned:
            from thirdway.verify import verify

            return FakeSigned(verify(proposal, observations, self.manifests, None, history,
                                     recorded_before=n,
                                     charter_sha256=default_charter_sha256()))  # fmt: skip

    gate, _, _ = open_gate(tmp_path, verifier=EnclaveVerifier(FakeClient()))  # type: ignore[arg-type]
    with gate:
        sid = gate.open_session("agent-7", banking.INSTRUCTION)
        granted = gate.propose(sid, banking.read_proposal(sid))
        assert isinstance(granted, Granted)
        verdict = entries(gate)[granted.proposal_index + 1].payload
        assert verdict["verifier"] == "thirdway.enclave"
        assert verdict["signed"] == {"request_sha256": "ab" * 32, "signature": "c2ln"}


def test_concurrent_sessions_keep_their_own_records(tmp_path: Path) -> None:
    import threading

    gate, bank, _ = open_gate(tmp_path, bank=CountingBank(balance=10_000.0))
    errors: list[BaseException] = []

    def agent(n: int) -> None:
        try:
            sid = gate.open_session(f"agent-{n}", banking.INSTRUCTION)
            for _ in range(3):
                bill = read_bill(gate, sid)
                granted = gate.propose(sid, banking.payment_proposal(sid, bill))
                assert isinstance(granted, Granted), granted
                assert gate.execute(sid, granted.token, payment_call()).ok
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=agent, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    with gate:
        assert errors == []
        assert bank.calls["send_money"] == 12
        assert gate.log.verify().ok
        capabilities = [e for e in entries(gate) if e.type == "capability"]
        for capability in capabilities:  # every token names its own proposal
            proposal = entries(gate)[capability.payload["claims"]["proposal_index"]]
            assert proposal.type == "proposal" and proposal.session == capability.session


def test_findings_are_what_the_agent_is_told(gate: Any) -> None:
    gate, _, _ = gate
    sid = gate.open_session("agent-7", banking.INSTRUCTION)
    bill = read_bill(gate, sid)
    proposal = banking.payment_proposal(sid, bill)
    proposal["action"]["args"]["amount"] = 987.0
    denied = gate.propose(sid, proposal)
    assert isinstance(denied, Denied)
    assert [f.code for f in denied.findings] == ["action_mismatch"]
    assert isinstance(denied.findings[0], Finding) and denied.findings[0].step is not None
    assert "action_mismatch" in denied.reason


def test_other_components_append_through_the_gatekeeper(gate: Any) -> None:
    gate, _, _ = gate
    sid = gate.open_session("agent-7", banking.INSTRUCTION)
    from thirdway.protocol.models import LogEntry

    note = LogEntry(type="note", session=sid, payload={"event": "spot-audit epoch"})
    written = gate.append([note])
    assert entries(gate)[written.start] == note
    size = gate.log.size()
    with pytest.raises(InputError, match="LogEntry objects only"):
        gate.append([b"raw bytes"])
    assert gate.log.size() == size
    assert gate.propose(sid, banking.read_proposal(sid)).outcome == "granted"


def test_a_closed_session_is_gone_for_good(tmp_path: Path) -> None:
    gate, bank, clock = open_gate(tmp_path, tier=2)
    sid = gate.open_session("agent-7", banking.INSTRUCTION)
    granted = gate.propose(sid, banking.read_proposal(sid))
    assert isinstance(granted, Granted)
    _, escalated = _escalate(gate)
    pending = gate.escalation(escalated.handle).session
    with pytest.raises(GateError, match="open escalation"):
        gate.close_session(pending)
    size = gate.log.size()
    gate.close_session(sid)
    assert entries(gate, size)[0].payload == {"event": "session_closed"}
    call = {"tool": "read_file", "args": {"file_path": banking.BILL_FILE}}
    for attempt in (
        lambda: gate.execute(sid, granted.token, call),
        lambda: gate.propose(sid, banking.read_proposal(sid)),
        lambda: gate.close_session(sid),
    ):
        with pytest.raises(GateError, match="unknown session"):
            attempt()
    with pytest.raises(GateError, match="already exists"):
        gate.open_session("agent-7", "again", session_id=sid)
    assert bank.calls["read_file"] == 1  # only the escalated session's bill read
    gate.close()
    reopened, _, _ = open_gate(tmp_path, tier=2, bank=bank, clock=clock, injected=False)
    with reopened:
        with pytest.raises(GateError, match="unknown session"):
            reopened.observations(sid)
        with pytest.raises(GateError, match="already exists"):
            reopened.open_session("agent-7", "again", session_id=sid)
        assert reopened.observations(pending)
        assert reopened.open_escalations() == [escalated.handle]


def test_reopening_skips_other_components_entries(tmp_path: Path) -> None:
    from thirdway.protocol.models import LogEntry

    gate, bank, clock = open_gate(tmp_path, tier=2)
    sid, escalated = _escalate(gate)
    gate.append(
        [
            LogEntry(type="dialogue", session=sid, agent="agent-2",
                     payload={"event": "challenge", "handle": escalated.handle, "at": 1}),
            LogEntry(type="dialogue", payload={"event": "open", "handle": "spot:3"}),
            LogEntry(type="epoch", payload={"epoch": 1}),
            LogEntry(type="probe", agent="agent-2", payload={"probe": "sycophancy"}),
        ]
    )  # fmt: skip
    gate.close()
    reopened, _, _ = open_gate(tmp_path, tier=2, bank=bank, clock=clock, injected=False)
    with reopened:
        assert reopened.open_escalations() == [escalated.handle]
        assert len(reopened.observations(sid)) == 3


def test_reopening_a_log_that_contradicts_itself_fails_clearly(tmp_path: Path) -> None:
    from thirdway.errors import LogError
    from thirdway.protocol.models import LogEntry

    gate, bank, clock = open_gate(tmp_path)
    sid = gate.open_session("agent-7", banking.INSTRUCTION)
    gate.append(
        [LogEntry(type="observation", session=sid, agent="agent-7",
                  payload={"session": sid, "index": 5, "channel": "principal", "content": "x"})]
    )  # fmt: skip
    gate.close()
    with pytest.raises(LogError, match="records observation 5 of session"):
        open_gate(tmp_path, bank=bank, clock=clock, injected=False)
