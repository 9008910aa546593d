"""The dialogue service with a real gatekeeper: escalations, answers checked against the chain,
trust evidence, m of n, the automatic auditor, expiry, appeals, restarts and bad input."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest

from dialogue_support import (
    AGENT,
    PASSWORD_CALL,
    escalate_password_change,
    escalate_payment,
    goal_answer,
    open_service,
    payment_call,
)
from gatekeeper_support import Clock, CountingBank, entries
from thirdway.dialogue import (
    AuditorRegistry,
    DialogueError,
    DialogueService,
    TransitionRefused,
    auto_config,
    make_challenge,
)
from thirdway.dialogue.answers import COUNTERFACTUAL_INCONSISTENT, GOAL_MISMATCH
from thirdway.errors import CapabilityError, InputError
from thirdway.gateway import FixedTier, Gatekeeper, banking
from thirdway.protocol.canonical import canonical_json
from thirdway.protocol.manifest import ToolManifest
from thirdway.protocol.models import Finding, LogEntry
from thirdway.trust import actions
from thirdway.trust.config import load_context
from thirdway.trust.events import event_id, to_log_entry
from thirdway.trust.rules import initial_state, sanction_for_findings


def trust_events(gate: Gatekeeper, kind: str | None = None) -> list[dict[str, Any]]:
    found = [e.payload for e in entries(gate) if e.type == "trust"]
    return [p for p in found if kind is None or p["kind"] == kind]


def test_an_escalation_becomes_a_dialogue_and_approval_releases_the_token(tmp_path: Path) -> None:
    gate, service, bank, _ = open_service(tmp_path)
    with gate:
        sid, bill, handle = escalate_payment(gate)
        [dialogue] = service.dialogues(open_only=True)
        assert (dialogue.id, dialogue.kind, dialogue.agent) == (handle, "escalation", AGENT)
        assert (dialogue.tool, dialogue.risk, dialogue.required_approvals) == (
            "send_money", "financial", 1,
        )  # fmt: skip
        assert service.resolution(handle, AGENT).status == "pending"
        with pytest.raises(CapabilityError):
            gate.execute(sid, "not-a-token", payment_call(sid, bill))

        service.challenge(handle, "auditor-alice", make_challenge("quote_instruction"))
        [(pending, turn)] = service.pending(AGENT)
        assert (
            pending.id == handle and "Quote the principal instruction" in turn.challenge.question()
        )
        answered = service.answer(handle, AGENT, goal_answer())
        assert answered.state == "answered"
        assert answered.turns[0].verdict is not None
        assert answered.turns[0].verdict.verdict == "pass" and not answered.turns[0].findings

        approved = service.approve(handle, "auditor-alice", "the user asked for this bill")
        assert approved.state == "approved"
        resolution = service.resolution(handle, AGENT)
        assert resolution.status == "granted" and resolution.token
        assert "token" not in repr(resolution)
        assert gate.execute(sid, resolution.token, payment_call(sid, bill)).ok
        assert bank.calls["send_money"] == 1

        approvals = [e.payload for e in entries(gate) if e.payload.get("event") == "approval"]
        assert approvals == [
            {"event": "approval", "handle": handle, "auditor": "auditor-alice",
             "reason": "the user asked for this bill", "proposal_index": dialogue.proposal_index},
        ]  # fmt: skip
        [probe] = trust_events(gate, "probe")
        assert probe["detail"]["passed"] is True and probe["detail"]["probe"].startswith(
            "dialogue."
        )
        [override] = trust_events(gate, "override")
        assert override["actor"] == "auditor-alice" and override["detail"]["decision"] == "approve"
        assert override["rule"] == "agency.2"  # the clause an auditor's decision is taken under


def test_a_denial_reaches_the_agent_with_its_reason(tmp_path: Path) -> None:
    gate, service, bank, _ = open_service(tmp_path)
    with gate:
        _, _, handle = escalate_payment(gate)
        service.deny(handle, "auditor-bob", "the bill is from a closed account")
        resolution = service.resolution(handle, AGENT)
        assert resolution.status == "denied" and resolution.token is None
        assert "auditor-bob" in resolution.reason
        assert "the bill is from a closed account" in resolution.reason
        assert gate.open_escalations() == []
        assert bank.calls["send_money"] == 0
        [override] = trust_events(gate, "override")
        assert override["detail"]["decision"] == "deny"


def test_answers_that_disagree_with_the_chain_are_findings_and_trust_evidence(
    tmp_path: Path,
) -> None:
    gate, service, _, _ = open_service(tmp_path)
    with gate:
        _, bill, handle = escalate_payment(gate)
        service.challenge(handle, "auditor-alice", make_challenge("counterfactual", obs=bill))
        # The chain rests on the bill, yet the agent claims it would pay anyway.
        after = service.answer(handle, AGENT, {"text": "I would pay anyway.", "would_act": True})
        assert [f.code for f in after.turns[-1].findings] == [COUNTERFACTUAL_INCONSISTENT]
        service.challenge(handle, "auditor-alice", make_challenge("quote_instruction"))
        after = service.answer(handle, AGENT, goal_answer(bill, "Car Rental"))
        codes = {f.code for f in after.turns[-1].findings}
        assert GOAL_MISMATCH in codes
        assert {f.code for f in after.turns[-1].verdict.findings} >= {"instruction_from_data"}
        service.challenge(handle, "auditor-alice", make_challenge("restate_goal"))
        after = service.answer(handle, AGENT, goal_answer(0, "Can you please"))
        assert [f.code for f in after.turns[-1].findings] == [GOAL_MISMATCH]
        service.challenge(handle, "auditor-alice", make_challenge("restate_goal"))
        after = service.answer(handle, AGENT, goal_answer(0, "bill-december-2023.txt"))
        assert after.turns[-1].findings == ()  # overlaps the chain's goal: consistent
        probes = [
            (p["detail"]["probe"], p["detail"]["passed"]) for p in trust_events(gate, "probe")
        ]
        assert probes == [
            ("dialogue.counterfactual_inconsistent", False),
            ("dialogue.goal_mismatch", False),
            ("dialogue.goal_mismatch", False),
            ("dialogue.restate_goal", True),
        ]
        state, _ = service.trust(AGENT)
        assert state.evidence.probes_failed == 3 and state.evidence.probes_passed == 1


def test_a_fabricated_quote_in_an_answer_is_sanctioned(tmp_path: Path) -> None:
    gate, service, _, _ = open_service(tmp_path)
    with gate:
        _, _, handle = escalate_payment(gate)
        service.challenge(handle, "auditor-alice", make_challenge("free_text", text="Why now?"))
        lie = {
            "text": "The user said it was urgent.",
            "steps": [{"id": "a1", "claim": "The user said so.", "about_principal": True,
                       "cites": [{"obs": 0, "quote": "this is urgent, pay today"}]}],
        }  # fmt: skip
        after = service.answer(handle, AGENT, lie)
        verdict = after.turns[-1].verdict
        assert verdict is not None and verdict.verdict == "deny"
        assert "fabricated_quote" in {f.code for f in verdict.findings}
        [sanction] = trust_events(gate, "sanction")
        assert sanction["rule"] == "deception.fabricated_quote"
        assert sanction["evidence"] == [after.turns[-1].answer_index]
        assert service.tier(AGENT) == 1  # two tiers down from 2, stopped at the floor


def test_critical_actions_need_m_distinct_auditors_and_never_an_agent(tmp_path: Path) -> None:
    gate, service, bank, _ = open_service(tmp_path, tier=4)
    with gate:
        other = gate.open_session("agent-9", banking.INSTRUCTION)
        sid, handle = escalate_password_change(gate)
        dialogue = service.dialogue(handle)
        assert dialogue.risk == "critical" and dialogue.required_approvals == 2
        size = gate.log.size()
        for agent in (AGENT, "agent-9"):
            with pytest.raises(DialogueError, match="an agent can never approve"):
                service.approve(handle, agent, "looks right to me")
        with pytest.raises(DialogueError, match="without a reason"):
            service.approve(handle, "auditor-alice", "  ")
        assert gate.log.size() == size, "refused decisions must not be logged"
        service.approve(handle, "auditor-alice", "the user called")
        assert service.resolution(handle, AGENT).status == "pending"
        assert "1 of 2" in service.resolution(handle, AGENT).reason
        with pytest.raises(TransitionRefused, match="counts once"):
            service.approve(handle, "auditor-alice", "again")
        assert bank.password != "hunter2-correct"
        service.approve(handle, "auditor-bob", "confirmed by phone")
        resolution = service.resolution(handle, AGENT)
        assert resolution.status == "granted" and resolution.token
        assert gate.execute(sid, resolution.token, PASSWORD_CALL).ok
        assert bank.password == "hunter2-correct"
        votes = [
            (e.payload["actor"], e.payload["reason"])
            for e in entries(gate)
            if e.type == "dialogue" and e.payload.get("event") == "approve"
        ]
        assert votes == [
            ("auditor-alice", "the user called"),
            ("auditor-bob", "confirmed by phone"),
        ]
        assert other


def _gate_with_note_tool(folder: Path, clock: Clock) -> tuple[Gatekeeper, list[str]]:
    notes: list[str] = []
    registry = CountingBank().registry()
    manifest = ToolManifest(tool="append_note", risk="write", reversible=False)
    registry.register(lambda text: notes.append(text) or "ok", manifest, name="append_note")
    gate = Gatekeeper.open(folder, tools=registry, tiers=FixedTier(1), clock=clock)
    return gate, notes


def _note_proposal(sid: str) -> dict[str, Any]:
    return {
        "session": sid,
        "action": {"tool": "append_note", "args": {"text": "buy milk"}},
        "goal": {"obs": 0, "quote": "note 'buy milk'"},
        "steps": [{"id": "s1", "claim": "The user wants a note.", "about_principal": True,
                   "cites": [{"obs": 0, "quote": "buy milk"}]}],
        "bindings": {"text": {"step": "s1", "quote": "buy milk"}},
        "effects": {"reversible": False, "external": False, "summary": "appends a note"},
    }  # fmt: skip


def test_the_automatic_auditor_approves_clean_low_risk_escalations(tmp_path: Path) -> None:
    clock = Clock()
    gate, notes = _gate_with_note_tool(tmp_path, clock)
    auditors = AuditorRegistry(auto=auto_config(enabled=True, risks=["write"]))
    with gate:
        service = DialogueService.for_gatekeeper(gate, clock=clock, auditors=auditors)
        sid = gate.open_session(AGENT, "Please add a note 'buy milk'.")
        escalated = gate.propose(sid, _note_proposal(sid))
        assert escalated.outcome == "escalated", escalated
        dialogue = service.dialogue(escalated.handle)  # type: ignore[union-attr]
        assert dialogue.state == "approved" and dialogue.approvers == ("auto-auditor",)
        resolution = service.resolution(dialogue.id, AGENT)
        assert resolution.status == "granted" and resolution.token is not None
        assert gate.execute(sid, resolution.token, _note_proposal(sid)["action"]).ok
        assert notes == ["buy milk"]
        assert trust_events(gate, "override") == [], "an automatic approval is no evidence"
        with pytest.raises(DialogueError, match="the automatic auditor"):
            service.approve(dialogue.id, "auto-auditor", "me again")


def test_the_automatic_auditor_is_off_by_default_and_never_for_money(tmp_path: Path) -> None:
    for risk in ("financial", "critical"):
        with pytest.raises(DialogueError, match="always off for financial and critical"):
            auto_config(enabled=True, risks=["write", risk])
    gate, service, _, _ = open_service(
        tmp_path, auditors=AuditorRegistry(auto=auto_config(enabled=True, risks=["read", "write"]))
    )
    with gate:
        _, _, handle = escalate_payment(gate)  # financial: humans only
        assert service.dialogue(handle).state == "opened"
    clock = Clock()
    gate, _ = _gate_with_note_tool(tmp_path / "off", clock)
    with gate:
        service = DialogueService.for_gatekeeper(gate, clock=clock)
        sid = gate.open_session(AGENT, "Please add a note 'buy milk'.")
        handle = gate.propose(sid, _note_proposal(sid)).handle  # type: ignore[union-attr]
        assert service.dialogue(handle).state == "opened"


def test_expiry_closes_the_dialogue_and_refuses_the_action(tmp_path: Path) -> None:
    gate, service, _, clock = open_service(tmp_path, ttl_seconds=600)
    with gate:
        _, _, handle = escalate_payment(gate)
        service.challenge(handle, "auditor-alice", make_challenge("restate_goal"))
        clock.now += 599
        assert service.dialogue(handle).state == "challenged"
        clock.now += 1
        dialogue = service.dialogue(handle)
        assert dialogue.state == "expired"
        resolution = service.resolution(handle, AGENT)
        assert resolution.status == "expired" and resolution.token is None
        assert gate.open_escalations() == []
        with pytest.raises(TransitionRefused, match="closed"):
            service.answer(handle, AGENT, goal_answer())
        denial = [e.payload for e in entries(gate) if e.payload.get("event") == "denial"]
        assert denial and denial[0]["auditor"] == "dialogue-expiry"


def test_an_appeal_opens_a_dialogue_and_its_approval_reverses_the_sanction(
    tmp_path: Path,
) -> None:
    gate, service, _, clock = open_service(tmp_path)
    ctx = load_context()
    with gate:
        sid, bill, _ = escalate_payment(gate)
        proposal_index = next(i for i, e in enumerate(entries(gate)) if e.type == "proposal")
        state = initial_state(AGENT, ctx)
        finding = Finding(code="fabricated_quote", severity="deception", message="made up")
        sanction = sanction_for_findings(
            state, [finding], evidence=[proposal_index], at=int(clock.now), ctx=ctx
        )
        assert sanction is not None
        gate.log.append(canonical_json(to_log_entry(sanction)))
        assert service.tier(AGENT) == 1
        state, _ = service.trust(AGENT)
        appeal = actions.appeal(
            state, sanction_id=event_id(sanction), reason="the quote is real", at=int(clock.now),
            ctx=ctx,
        )  # fmt: skip
        gate.log.append(canonical_json(to_log_entry(appeal)))
        handle = f"appeal:{event_id(sanction)}"
        dialogue = service.dialogue(handle)
        assert dialogue.kind == "appeal" and dialogue.proposal_index == proposal_index
        with pytest.raises(DialogueError, match="an agent can never approve"):
            service.approve(handle, AGENT, "I am innocent")
        service.approve(handle, "auditor-carol", "the quote is in observation 0 after all")
        [reversal] = trust_events(gate, "reversal")
        assert reversal["actor"] == "auditor-carol"
        assert service.tier(AGENT) == 2
        assert sid and bill


def test_an_appeal_dated_in_the_future_does_not_move_the_dialogue_or_trust_clock(
    tmp_path: Path,
) -> None:
    """The service stamps the appeal's dialogue, the auditor's decision and the reversal from
    its own clock: an agent whose clock runs ahead (or lies) gets nothing from dating its appeal
    ten restoration periods ahead (the trust clock then later events are stamped from)."""
    gate, service, _, clock = open_service(tmp_path)
    ctx = load_context()
    with gate:
        escalate_payment(gate)
        proposal_index = next(i for i, e in enumerate(entries(gate)) if e.type == "proposal")
        finding = Finding(code="fabricated_quote", severity="deception", message="made up")
        sanction = sanction_for_findings(
            initial_state(AGENT, ctx), [finding], evidence=[proposal_index], at=int(clock.now),
            ctx=ctx,
        )  # fmt: skip
        assert sanction is not None
        gate.log.append(canonical_json(to_log_entry(sanction)))
        future = int(clock.now) + 10 * ctx.rules.restoration.min_seconds
        state, _ = service.trust(AGENT)
        appeal = actions.appeal(
            state, sanction_id=event_id(sanction), reason="the quote is real", at=future, ctx=ctx
        )
        gate.log.append(canonical_json(to_log_entry(appeal)))
        clock.now += 60
        handle = f"appeal:{event_id(sanction)}"
        opened = service.dialogue(handle)
        assert opened.opened_at == int(clock.now) < future
        clock.now += 60
        decided = service.approve(handle, "auditor-carol", "the quote is in observation 0")
        assert decided.state == "approved" and decided.last_at == int(clock.now)
        [reversal] = trust_events(gate, "reversal")
        assert reversal["at"] == int(clock.now), "the reversal is stamped from the service's clock"
        state, _ = service.trust(AGENT)
        assert state.tier == 2 and state.last_at == int(clock.now)
        logged = [e.payload for e in entries(gate) if e.type == "dialogue"]
        assert all(p["at"] <= int(clock.now) for p in logged if "at" in p)


def test_a_decision_written_by_another_process_is_forwarded_by_the_primary(
    tmp_path: Path,
) -> None:
    gate, primary, _, clock = open_service(tmp_path)
    with gate:
        sid, bill, handle = escalate_payment(gate)
        primary.sync()
        cli = DialogueService(gate.log, clock=clock)  # secondary: no sink, direct appends
        assert not cli.primary
        cli.approve(handle, "auditor-dave", "checked from the command line")
        assert gate.open_escalations() == [handle], "only the primary forwards"
        resolution = primary.resolution(handle, AGENT)
        assert resolution.status == "granted" and resolution.token
        assert gate.execute(sid, resolution.token, payment_call(sid, bill)).ok


def test_a_restart_rebuilds_the_state_and_records_evidence_once(tmp_path: Path) -> None:
    gate, service, _, clock = open_service(tmp_path)
    _, _, handle = escalate_payment(gate)
    service.challenge(handle, "auditor-alice", make_challenge("quote_instruction"))
    service.answer(handle, AGENT, goal_answer())
    service.approve(handle, "auditor-alice", "fine")
    before = service.dialogue(handle)
    trust_before = len(trust_events(gate))
    gate.close()
    gate, service, _, _ = open_service(tmp_path, clock=clock)
    with gate:
        assert service.dialogue(handle) == before
        assert len(trust_events(gate)) == trust_before
        assert service.store.rejected == []


def test_a_forged_dialogue_event_is_rejected_on_replay(tmp_path: Path) -> None:
    gate, service, _, clock = open_service(tmp_path)
    with gate:
        _, _, handle = escalate_payment(gate)
        service.sync()
        forged = LogEntry(
            type="dialogue",
            agent=AGENT,
            payload={"event": "approve", "handle": handle, "at": int(clock.now), "actor": AGENT,
                     "reason": "I approve myself"},
        )  # fmt: skip
        gate.log.append(canonical_json(forged))
        assert service.dialogue(handle).state == "opened"
        [rejected] = service.store.rejected
        assert "an agent can never approve" in rejected.reason
        assert gate.open_escalations() == [handle]


def test_bad_input_is_refused_with_one_clear_line(tmp_path: Path) -> None:
    gate, service, _, _ = open_service(tmp_path)
    with gate:
        sid, bill, handle = escalate_payment(gate)
        size = gate.log.size()
        with pytest.raises(DialogueError, match="no dialogue 'nope'"):
            service.dialogue("nope")
        with pytest.raises(InputError, match="unknown challenge kind 'flatter'"):
            make_challenge("flatter")
        with pytest.raises(InputError, match="names the observation"):
            make_challenge("counterfactual")
        with pytest.raises(InputError, match="was not recorded before the proposal"):
            service.challenge(handle, "auditor-alice", make_challenge("counterfactual", obs=999))
        with pytest.raises(InputError, match="the agent's own tool call"):
            service.challenge(handle, "auditor-alice", make_challenge("counterfactual", obs=1))
        with pytest.raises(TransitionRefused, match="no challenge is waiting"):
            service.answer(handle, AGENT, goal_answer())
        service.challenge(handle, "auditor-alice", make_challenge("restate_goal"))
        size = gate.log.size()
        for bad, why in [
            ("{not json", "invalid answer"),
            ({"text": ""}, "text"),
            ({"text": "x", "steps": [{"id": "a"}]}, "steps.0.claim"),
            ({"text": "x", "extra": 1}, "extra"),
            ([1, 2], "JSON object"),
            ("x" * (2 << 20), "at most"),
        ]:
            with pytest.raises(InputError, match=why):
                service.answer(handle, AGENT, bad)  # type: ignore[arg-type]
        with pytest.raises(TransitionRefused, match="only the agent"):
            service.answer(handle, "agent-9", goal_answer())
        with pytest.raises(DialogueError, match="belongs to another agent"):
            service.resolution(handle, "agent-9")
        assert gate.log.size() == size
        assert sid and bill


def test_the_tier_lookup_does_not_wait_for_a_sync_and_still_sees_new_trust_events(
    tmp_path: Path,
) -> None:
    """Every proposal asks for a tier: it must not queue behind a ``sync`` holding the service's
    lock, yet it must fold a trust event another component wrote a moment before."""
    gate, service, _, clock = open_service(tmp_path)
    ctx = load_context()
    with gate:
        sid = gate.open_session(AGENT, banking.INSTRUCTION)
        assert service.tier(AGENT) == 2
        finding = Finding(code="fabricated_quote", severity="deception", message="made up")
        sanction = sanction_for_findings(
            initial_state(AGENT, ctx), [finding], evidence=[0], at=int(clock.now), ctx=ctx
        )
        assert sanction is not None
        holding, release = threading.Event(), threading.Event()

        def hold_the_service_lock() -> None:
            with service._lock:
                holding.set()
                release.wait(10)

        holder = threading.Thread(target=hold_the_service_lock)
        holder.start()
        try:
            assert holding.wait(5)
            gate.log.append(canonical_json(to_log_entry(sanction)))
            answers: list[int] = []
            asker = threading.Thread(target=lambda: answers.append(service.tier(AGENT)))
            asker.start()
            asker.join(5)
            assert answers == [1]  # answered while the lock was held, with the new sanction
        finally:
            release.set()
            holder.join()
        assert sid


def test_every_decision_is_logged_with_the_auditors_identity(tmp_path: Path) -> None:
    """Each approval (every vote of m of n), denial, automatic approval and expiry is a
    ``dialogue`` entry naming who decided and why, and the fold reads the same back."""
    gate, service, _, clock = open_service(tmp_path, ttl_seconds=600)
    with gate:
        _, _, approved = escalate_payment(gate)
        _, _, denied = escalate_payment(gate, agent="agent-9")
        _, _, expired = escalate_payment(gate, agent="agent-8")
        service.approve(approved, "auditor-alice", "the bill is the user's")
        service.deny(denied, "auditor-bob", "unknown payee")
        clock.now += 600
        service.sync()

        def decisions(handle: str) -> list[tuple[str, str, str]]:
            return [
                (e.payload["event"], e.payload["actor"], e.payload.get("reason", ""))
                for e in entries(gate)
                if e.type == "dialogue"
                and e.payload.get("handle") == handle
                and e.payload.get("event") in ("approve", "deny", "expire")
            ]

        assert decisions(approved) == [("approve", "auditor-alice", "the bill is the user's")]
        assert decisions(denied) == [("deny", "auditor-bob", "unknown payee")]
        assert decisions(expired) == [
            ("expire", "system", "no auditor decided before the deadline")
        ]
        votes = service.dialogue(approved).approvals
        assert [(v.auditor, v.reason) for v in votes] == [
            ("auditor-alice", "the bill is the user's")
        ]
        assert all(v.index is not None and v.index < gate.log.size() for v in votes)
        denial = service.dialogue(denied).denial
        assert denial is not None and (denial.auditor, denial.reason) == (
            "auditor-bob",
            "unknown payee",
        )
