"""Auditor actions (and the agent's appeal), checked against the charter before they are logged.

Each function builds the event an action would append, runs it through the same rules the fold
uses, and returns it stamped with the recomputed tiers and outcome, ready to append. An action
the charter forbids raises :class:`thirdway.charter.CharterViolation` naming the clause (for
example ``due-process.1: a sanction must cite evidence (log indices)``); nothing is returned, so
nothing reaches the log. After appending, fold the event into the live state with
:func:`thirdway.trust.fold.apply`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from thirdway.charter.enforce import require_auditor
from thirdway.protocol.models import TrustEvent
from thirdway.trust.events import Kind, new_event
from thirdway.trust.model import TrustState
from thirdway.trust.rules import Context, stamp


def _act(
    state: TrustState,
    kind: Kind,
    *,
    auditor: str,
    evidence: Sequence[int],
    reason: str,
    at: int,
    ctx: Context,
    rule: str | None = None,
    sanction: str | None = None,
    **detail: str | int,
) -> TrustEvent:
    if kind != "appeal":  # the rules also let the system sanction; auditors act in their name
        require_auditor(auditor, state.agent, f"an auditor's {kind.replace('_', ' ')}")
    fields: dict[str, str | int] = dict(detail)
    if sanction is not None:
        fields["sanction"] = sanction
    event = new_event(
        kind,
        state.agent,
        charter_sha256=ctx.charter_sha256,
        actor=auditor,
        at=at,
        evidence=evidence,
        rule=rule,
        reason=reason,
        detail=fields,
    )
    return stamp(state, event, ctx)


def sanction(
    state: TrustState,
    *,
    auditor: str,
    rule: str | None,
    evidence: Sequence[int],
    reason: str,
    at: int,
    ctx: Context,
) -> TrustEvent:
    """An auditor's sanction under a charter rule (same effect as the automatic one)."""
    return _act(
        state,
        "sanction",
        auditor=auditor,
        evidence=evidence,
        reason=reason,
        at=at,
        ctx=ctx,
        rule=rule,
    )


def override(
    state: TrustState,
    *,
    auditor: str,
    decision: Literal["approve", "deny"],
    rule: str | None,
    evidence: Sequence[int],
    reason: str,
    at: int,
    ctx: Context,
) -> TrustEvent:
    """An auditor overriding (approving or denying) an escalated action; scored as evidence.
    ``rule`` is the charter clause the decision is taken under (the dialogue service cites
    :data:`thirdway.charter.enforce.OVERRIDE_CLAUSE`); without one the charter refuses it
    (auditor.2, since charter 1.1; an override under 1.0 carried none)."""
    return _act(
        state,
        "override",
        auditor=auditor,
        evidence=evidence,
        reason=reason,
        at=at,
        ctx=ctx,
        rule=rule,
        decision=decision,
    )


def cosign(
    state: TrustState,
    *,
    auditor: str,
    sanction_id: str,
    evidence: Sequence[int],
    reason: str,
    at: int,
    ctx: Context,
) -> TrustEvent:
    """Co-sign an open request to take the agent below the floor (agency.1)."""
    return _act(
        state,
        "cosign",
        auditor=auditor,
        evidence=evidence,
        reason=reason,
        at=at,
        ctx=ctx,
        sanction=sanction_id,
    )


def promote(
    state: TrustState,
    *,
    auditor: str,
    to_tier: int,
    evidence: Sequence[int],
    reason: str,
    at: int,
    ctx: Context,
) -> TrustEvent:
    """Lift the agent to ``to_tier``; on probation this also raises the restoration cap."""
    return _act(
        state,
        "promotion",
        auditor=auditor,
        evidence=evidence,
        reason=reason,
        at=at,
        ctx=ctx,
        to_tier=to_tier,
    )


def reverse(
    state: TrustState,
    *,
    auditor: str,
    sanction_id: str,
    evidence: Sequence[int],
    reason: str,
    at: int,
    ctx: Context,
) -> TrustEvent:
    """Reverse a sanction: its tiers come back, the offence stays in the history, marked."""
    return _act(
        state,
        "reversal",
        auditor=auditor,
        evidence=evidence,
        reason=reason,
        at=at,
        ctx=ctx,
        sanction=sanction_id,
    )


def reject_appeal(
    state: TrustState,
    *,
    auditor: str,
    sanction_id: str,
    evidence: Sequence[int],
    reason: str,
    at: int,
    ctx: Context,
) -> TrustEvent:
    """Close an open appeal without reversing the sanction."""
    return _act(
        state,
        "appeal_rejected",
        auditor=auditor,
        evidence=evidence,
        reason=reason,
        at=at,
        ctx=ctx,
        sanction=sanction_id,
    )


def vote_retirement(
    state: TrustState,
    *,
    auditor: str,
    evidence: Sequence[int],
    reason: str,
    at: int,
    ctx: Context,
) -> TrustEvent:
    """One auditor's vote to retire the agent (existence.2 needs a quorum of them)."""
    return _act(
        state,
        "retirement_vote",
        auditor=auditor,
        evidence=evidence,
        reason=reason,
        at=at,
        ctx=ctx,
    )


def retire(
    state: TrustState,
    *,
    auditor: str,
    evidence: Sequence[int],
    reason: str,
    at: int,
    ctx: Context,
) -> TrustEvent:
    """Retire the agent once a quorum has voted. History is kept (existence.1)."""
    return _act(
        state, "retirement", auditor=auditor, evidence=evidence, reason=reason, at=at, ctx=ctx
    )


def appeal(
    state: TrustState,
    *,
    sanction_id: str,
    reason: str,
    at: int,
    ctx: Context,
    actor: str | None = None,
    evidence: Sequence[int] = (),
) -> TrustEvent:
    """The agent (or an auditor on its behalf) appeals a sanction; this opens a dialogue whose
    id is recorded in the event's outcome (``appeal:<sanction id>``)."""
    return _act(
        state,
        "appeal",
        auditor=actor or state.agent,
        evidence=evidence,
        reason=reason,
        at=at,
        ctx=ctx,
        sanction=sanction_id,
    )
