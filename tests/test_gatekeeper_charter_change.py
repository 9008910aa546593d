"""An escalation pending when the gateway's charter changes is not approved under the new one.

The verdict an escalation rests on was checked against the charter the gateway ran under when
the action was proposed. A gatekeeper restarted under another charter rebuilds the escalation
from the log; approving it must not mint a token on a verdict that cites the old charter (no
token is minted on a verdict given under a charter other than the one the gateway runs under):
the approval is logged with a decision that refuses it, naming both charters, and the
escalation is closed. Denying it stays possible."""

from __future__ import annotations

import re
from pathlib import Path

from typer.testing import CliRunner

from dialogue_support import escalate_password_change, escalate_payment, open_service
from gatekeeper_support import Clock, entries, open_gate, payment_call, read_bill
from thirdway.charter import default_charter_sha256, parse_charter
from thirdway.charter.load import default_charter_text
from thirdway.cli.main import app
from thirdway.gateway import Denied, Escalated, Gatekeeper, Granted, banking
from thirdway.gateway.gatekeeper import LOG_NAME

AGENT = "agent-2"
OLD = default_charter_sha256()
NEW = parse_charter(
    re.sub(r'(?m)^version: "[^"]+"$', 'version: "7.0-test"', default_charter_text().decode()),
    "test charter",
).sha256
NEW_VERSION = "7.0-test"
"""An unshipped charter's version reaches the gatekeeper with its hash (as open_gateway passes
the trust context's): without it the gatekeeper cannot order NEW after OLD and refuses to open."""
assert OLD != NEW


UNDER_NEW = {"charter_sha256": NEW, "charter_version": NEW_VERSION}


def _escalate_then_stop(folder: Path, clock: Clock) -> tuple[str, Escalated]:
    """A tier-2 payment escalated under the packaged charter; the gatekeeper then stops."""
    gate, _, _ = open_gate(folder, tier=2, clock=clock)
    with gate:
        sid = gate.open_session(AGENT, banking.INSTRUCTION)
        escalated = gate.propose(sid, banking.payment_proposal(sid, read_bill(gate, sid)))
        assert isinstance(escalated, Escalated), escalated
        assert escalated.verdict.charter_sha256 == OLD
    return sid, escalated


def _reopen(folder: Path, clock: Clock, charter_sha256: str) -> Gatekeeper:
    version = NEW_VERSION if charter_sha256 == NEW else None
    gate, _, _ = open_gate(
        folder, tier=2, clock=clock, charter_sha256=charter_sha256, charter_version=version
    )
    return gate


def test_approval_after_a_charter_change_mints_nothing_and_logs_the_refusal(
    tmp_path: Path,
) -> None:
    clock = Clock()
    _, escalated = _escalate_then_stop(tmp_path, clock)
    with _reopen(tmp_path, clock, NEW) as gate:
        assert gate.open_escalations() == [escalated.handle]  # rebuilt from the log
        start = gate.log.size()
        outcome = gate.approve_escalation(escalated.handle, "auditor-alice", "bill checked")
        assert isinstance(outcome, Denied), outcome
        assert OLD[:16] in outcome.reason and NEW[:16] in outcome.reason
        assert "propose" in outcome.reason and "current charter" in outcome.reason
        assert outcome.proposal_index == escalated.proposal_index
        logged = entries(gate, start)
        assert [e.type for e in logged] == ["dialogue", "decision"]
        approval, refusal = logged
        assert approval.payload["event"] == "approval"
        assert approval.payload["auditor"] == "auditor-alice"
        assert refusal.payload["handle"] == escalated.handle
        assert refusal.payload["dialogue_index"] == start
        assert "decision" not in refusal.payload
        error = str(refusal.payload["error"])
        assert OLD[:16] in error and NEW[:16] in error
        assert not any(e.type == "capability" for e in entries(gate, escalated.proposal_index))
        assert gate.open_escalations() == []
        assert gate.log.verify().ok
    with _reopen(tmp_path, clock, NEW) as gate:  # the refusal closed it for good
        assert gate.open_escalations() == []
        assert gate.log.verify().ok


def test_the_same_escalation_under_the_same_charter_still_mints(tmp_path: Path) -> None:
    """The control: the same restart without a charter change releases the action."""
    clock = Clock()
    sid, escalated = _escalate_then_stop(tmp_path, clock)
    with _reopen(tmp_path, clock, OLD) as gate:
        assert gate.open_escalations() == [escalated.handle]
        granted = gate.approve_escalation(escalated.handle, "auditor-alice", "bill checked")
        assert isinstance(granted, Granted), granted
        assert entries(gate)[granted.capability_index].type == "capability"
        assert gate.execute(sid, granted.token, payment_call()).ok
        assert gate.log.verify().ok


def test_denial_after_a_charter_change_still_works(tmp_path: Path) -> None:
    clock = Clock()
    _, escalated = _escalate_then_stop(tmp_path, clock)
    with _reopen(tmp_path, clock, NEW) as gate:
        denied = gate.deny_escalation(escalated.handle, "auditor-bob", "not this month")
        assert isinstance(denied, Denied)
        assert denied.reason == "auditor 'auditor-bob' denied the action: not this month"
        assert denied.decision is not None and denied.decision.outcome == "deny"
        assert gate.open_escalations() == []
        assert gate.log.verify().ok


def test_approvals_given_before_the_change_do_not_carry_a_critical_action_over(
    tmp_path: Path,
) -> None:
    """A critical action's first approval was given under the old charter; the second, under
    the new one, is refused like a first one: no number of approvals revives the verdict."""
    clock = Clock()
    gate, _, _ = open_gate(tmp_path, tier=4, clock=clock)
    with gate:
        _, handle = escalate_password_change(gate)
        first = gate.approve_escalation(handle, "auditor-alice", "user confirmed")
        assert isinstance(first, Escalated) and first.approvals == 1
    gate, bank, _ = open_gate(
        tmp_path, tier=4, clock=clock, charter_sha256=NEW, charter_version=NEW_VERSION
    )
    with gate:
        outcome = gate.approve_escalation(handle, "auditor-bob", "confirmed by phone")
        assert isinstance(outcome, Denied), outcome
        assert OLD[:16] in outcome.reason and NEW[:16] in outcome.reason
        assert gate.open_escalations() == []
        assert not any(e.type == "capability" for e in entries(gate))
        assert bank.password != "hunter2-correct"
        assert gate.log.verify().ok


def test_the_dialogue_service_approval_ends_denied_with_the_gatekeepers_reason(
    tmp_path: Path,
) -> None:
    """Auditors approve through the dialogue service after the change: the gatekeeper refuses
    the forwarded approval, the agent is told why (also by a service rebuilt from the log), and
    the whole log, trust events included, still verifies."""
    clock = Clock()
    gate, service, _, _ = open_service(tmp_path, clock=clock)
    with gate:
        _, _, handle = escalate_payment(gate)
        assert service.resolution(handle, "agent-2").status == "pending"
    gate, service, bank, _ = open_service(tmp_path, clock=clock, gate_options=UNDER_NEW)
    with gate:
        approved = service.approve(handle, "auditor-alice", "the user asked for this bill")
        assert approved.state == "approved"  # the auditors' decision, as they recorded it
        resolution = service.resolution(handle, "agent-2")
        assert resolution.status == "denied" and resolution.token is None
        assert OLD[:16] in resolution.reason and NEW[:16] in resolution.reason
        assert service.review(handle).forward_error is None
        assert gate.open_escalations() == []
        assert bank.calls["send_money"] == 0
        proposed = approved.proposal_index
        assert proposed is not None  # the bill's read before it had its own capability
        assert not any(e.type == "capability" for e in entries(gate, proposed))
        assert gate.log.verify().ok
    gate, service, _, _ = open_service(tmp_path, clock=clock, gate_options=UNDER_NEW)
    with gate:  # rebuilt from the log alone: nothing left to forward, the same answer
        resolution = service.resolution(handle, "agent-2")
        assert resolution.status == "denied"
        assert OLD[:16] in resolution.reason and NEW[:16] in resolution.reason
        assert gate.open_escalations() == []
        assert service.store.rejected == []
    result = CliRunner().invoke(
        app, ["trust", "verify", "agent-2", "--log", str(tmp_path / LOG_NAME)]
    )
    assert result.exit_code == 0, result.output
