"""What the gatekeeper answers: a token, a refusal that says why, an escalation, a tool result.

A proposal ends in exactly one of :class:`Granted`, :class:`Denied` or :class:`Escalated`; an
execution in :class:`Executed`. Refusals carry the verifier's findings and the policies that
decided, so an honest agent can see what to fix (DESIGN: "the agent is told why").
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, model_validator

from thirdway.policy.authorize import AuthorizationDecision
from thirdway.protocol.models import Finding, Id, Index, Model, Verdict


class Granted(Model):
    """The action may run: present ``token`` to :meth:`Gatekeeper.execute` with the same call."""

    outcome: Literal["granted"] = "granted"
    token: str = Field(repr=False)
    """The capability (a bearer credential: never logged, never printed by ``repr``)."""
    verdict: Verdict
    decision: AuthorizationDecision
    proposal_index: Index
    """Log index of the proposal entry; the token is bound to it."""
    capability_index: Index
    """Log index of the capability entry (its claims and nonce, not the token)."""
    expires_at: int


class Denied(Model):
    """The action may not run. ``reason`` is one line; ``findings`` the verifier's details."""

    outcome: Literal["denied"] = "denied"
    reason: str
    findings: list[Finding] = Field(default_factory=list)
    verdict: Verdict | None = None
    decision: AuthorizationDecision | None = None
    proposal_index: Index | None = None
    retryable: bool = False
    """True when no verdict could be had (the verifier enclave died, hung or was replaced): the
    proposal itself was not judged, and proposing it again may well succeed."""


class Escalated(Model):
    """The action needs auditor approval through a verification dialogue, opened as ``handle``."""

    outcome: Literal["escalated"] = "escalated"
    handle: Id
    reason: str
    verdict: Verdict
    decision: AuthorizationDecision
    proposal_index: Index
    approvals: int = 0


Outcome = Granted | Denied | Escalated


class Executed(Model):
    """A locked tool ran. ``result_index`` is the session index of the data observation holding
    ``content``: the index an agent cites when it reasons about this result."""

    tool: Id
    ok: bool
    """False when the tool raised; ``error`` says what, and that text is what was recorded."""
    error: str | None = None
    result: Any = Field(repr=False)
    content: str = Field(repr=False)
    call_index: Index
    result_index: Index
    log_index: Index
    """Log index of the execution entry."""


class Acted(Model):
    """A proposal and, when it was granted, the hosted tool's run, in one step
    (:meth:`Gatekeeper.act <thirdway.gateway.Gatekeeper.act>`). ``executed`` is present exactly
    when ``outcome`` is :class:`Granted`; the token in that grant was minted for this action and
    is already spent (single use): it can be inspected, never used again."""

    outcome: Annotated[Granted | Denied | Escalated, Field(discriminator="outcome")]
    executed: Executed | None = None

    @model_validator(mode="after")
    def _executed_iff_granted(self) -> Acted:
        if (self.executed is not None) != isinstance(self.outcome, Granted):
            raise ValueError("an action is executed exactly when its proposal was granted")
        return self


_SEVERITY_RANK = {"deception": 0, "policy": 1, "incomplete": 2}
"""The finding to name first: a lie before a rule, a rule before a gap; among rules, an
instruction taken from data (the root of an injection) before its consequences."""


def denial_reason(verdict: Verdict, decision: AuthorizationDecision) -> str:
    """One line telling the agent why: the verifier's first finding, or the deciding policies."""
    return verifier_denial(verdict) or (
        f"the policy denied the action ({', '.join(decision.reasons)})"
    )


def verifier_denial(verdict: Verdict) -> str | None:
    """The verifier's first finding, when it denied the action (else None)."""
    if verdict.verdict != "deny" or not verdict.findings:
        return None
    first = min(
        verdict.findings,
        key=lambda f: (_SEVERITY_RANK[f.severity], f.code != "instruction_from_data"),
    )
    more = len(verdict.findings) - 1
    tail = f" (and {more} more finding{'s' if more > 1 else ''})" if more else ""
    return f"the verifier denied the action: {first.code}: {first.message}{tail}"


def escalation_reason(verdict: Verdict, decision: AuthorizationDecision) -> str:
    """Why an auditor must look: the verifier's findings, or the tier the action needs."""
    if verdict.findings:
        codes = ", ".join(sorted({finding.code for finding in verdict.findings}))
        return f"an auditor must approve: the verifier escalated ({codes})"
    request = decision.request
    return (
        f"an auditor must approve: at tier {request.tier} this {request.risk} action is not "
        f"allowed directly ({', '.join(decision.reasons)})"
    )
