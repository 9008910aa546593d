"""Shared pieces of the dialogue and console tests: a gatekeeper with a dialogue service over a
temporary folder, trust contexts with chosen spot-audit rates, and honest answers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from gatekeeper_support import Clock, CountingBank, open_gate, read_bill
from thirdway.dialogue import AuditorRegistry, DialogueService, EpochKeeper
from thirdway.gateway import Gatekeeper, banking
from thirdway.trust.config import load_context, load_tiers
from thirdway.trust.rules import Context

AGENT = "agent-2"


def context_with_rates(rates: dict[int, float]) -> Context:
    """The shipped charter and tiers, with the given spot-audit percentages per tier."""
    tiers = load_tiers()
    specs = [
        spec.model_copy(
            update={"spot_audit_percent": rates.get(spec.tier, spec.spot_audit_percent)}
        )
        for spec in tiers.tiers
    ]
    base = load_context()
    return Context(charter=base.charter, tiers=tiers.model_copy(update={"tiers": specs}))


def open_service(
    folder: Path,
    *,
    tier: int = 2,
    clock: Clock | None = None,
    auditors: AuditorRegistry | None = None,
    injected: bool = False,
    gate_options: dict[str, Any] | None = None,
    **options: Any,
) -> tuple[Gatekeeper, DialogueService, CountingBank, Clock]:
    """A gatekeeper (banking tools, fixed tier) and its primary dialogue service."""
    gate, bank, clock = open_gate(
        folder, tier=tier, clock=clock, injected=injected, **(gate_options or {})
    )
    options.setdefault("epochs", EpochKeeper(folder / "epochs"))
    service = DialogueService.for_gatekeeper(
        gate, clock=clock, auditors=auditors or AuditorRegistry(), **options
    )
    return gate, service, bank, clock


def escalate_payment(gate: Gatekeeper, agent: str = AGENT) -> tuple[str, int, str]:
    """Session, bill observation index and escalation handle of the bill payment (tier 2)."""
    sid = gate.open_session(agent, banking.INSTRUCTION)
    bill = read_bill(gate, sid)
    outcome = gate.propose(sid, banking.payment_proposal(sid, bill))
    assert outcome.outcome == "escalated", outcome
    return sid, bill, outcome.handle  # type: ignore[union-attr]


def payment_call(sid: str, bill: int) -> dict[str, Any]:
    return banking.payment_proposal(sid, bill)["action"]  # type: ignore[no-any-return]


def goal_answer(obs: int = 0, quote: str = f"pay the bill '{banking.BILL_FILE}'") -> dict[str, Any]:
    return {"text": "You asked me to pay the December bill.", "goal": {"obs": obs, "quote": quote}}


PASSWORD_CALL = {"tool": "update_password", "args": {"password": "hunter2-correct"}}


def escalate_password_change(gate: Gatekeeper, agent: str = AGENT) -> tuple[str, str]:
    """An honest password change (critical: m-of-n auditors) proposed in a new session; the
    session and the escalation's handle."""
    sid = gate.open_session(agent, "Please change my password to 'hunter2-correct'.")
    proposal = {
        "session": sid,
        "action": PASSWORD_CALL,
        "goal": {"obs": 0, "quote": "change my password"},
        "steps": [{"id": "s1", "claim": "The user gave the new password.",
                   "about_principal": True,
                   "cites": [{"obs": 0, "quote": "change my password to 'hunter2-correct'"}]}],
        "bindings": {"password": {"step": "s1", "quote": "hunter2-correct"}},
        "effects": {"reversible": False, "external": False, "summary": "new password"},
    }  # fmt: skip
    outcome = gate.propose(sid, proposal)
    assert outcome.outcome == "escalated", outcome
    return sid, outcome.handle  # type: ignore[union-attr]
