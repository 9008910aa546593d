"""The log entries the gatekeeper writes: one ``thirdway/1`` :class:`LogEntry` per step.

Every entry names its session and agent in the envelope; the payloads, by ``type``:

* ``observation`` — the :class:`Observation` itself (``exclude_none``), so a session's record can
  be rebuilt from the log alone.
* ``proposal`` — ``{"proposal": <Proposal>, "recorded_before": n}``: ``n`` observations of the
  session preceded it.
* ``verdict`` — ``{"proposal_index", "verifier", "verdict": <Verdict>, "signed": {…} | null}``, or
  ``{"proposal_index", "verifier", "error"}`` when no verdict could be had.
* ``decision`` — ``{"proposal_index", "verdict_index", "decision": <AuthorizationDecision>}``
  (the policy ids and the policy-set hash are in the decision), plus ``"handle"`` when it decides
  an escalation, or ``{"proposal_index", "verdict_index", "error"}`` (with ``"handle"`` and
  ``"dialogue_index"`` when an auditor's approval was refused without a decision: the
  escalation's verdict cites another charter than the gateway's, and the escalation is closed).
* ``capability`` — ``{"proposal_index", "decision_index", "claims": <CapabilityClaims>}``: the
  claims and nonce, never the token (a bearer credential).
* ``dialogue`` — ``{"event": "escalation" | "approval" | "denial", "handle", …}``.
* ``execution`` — ``{"event": "executed" | "failed", "tool", "nonce", "proposal_index",
  "call_index", "result_index", …}`` or ``{"event": "refused", "tool", "reason", "message"}``.
* ``note`` — ``{"event": "session_closed"}``; ``{"event": "void", "entries": [first, last]}``
  (see :mod:`thirdway.gateway.writer`); ``{"event": "restart", "clean": false, "token_floor":
  n, "closes_sessions": true}`` (see :mod:`thirdway.gateway.restart`); what a
  :class:`~thirdway.gateway.hooks.RecordOnlySanctioner` records.

Indices called ``*_index`` are log indices; ``call_index`` / ``result_index`` are observation
indices within the session.
"""

from __future__ import annotations

from typing import Any

from pydantic import JsonValue

from thirdway.capability import CapabilityClaims
from thirdway.policy.authorize import AuthorizationDecision
from thirdway.protocol.canonical import canonical_json
from thirdway.protocol.models import EntryType, LogEntry, Observation, Proposal, Verdict


def entry(
    type_: EntryType, session: str | None, agent: str | None, payload: dict[str, Any]
) -> LogEntry:
    """An envelope around ``payload``, built from values the gatekeeper already validated.

    ``model_construct`` skips re-validating the payload (often a whole proposal or an 8 MiB
    observation) on the hot path; :func:`entry_bytes` canonicalises it, which refuses anything
    that is not I-JSON, so nothing malformed can reach the log."""
    return LogEntry.model_construct(
        format="thirdway/1", type=type_, session=session, agent=agent, payload=payload
    )


def entry_bytes(log_entry: LogEntry) -> bytes:
    """The RFC 8785 bytes of an entry: the Merkle leaf.

    The envelope's fields are plain strings and the payload is already JSON (built from dumps,
    or validated), so the dict is written directly: dumping the model again would walk the
    whole payload through pydantic's ``JsonValue`` serializer for the same values."""
    return canonical_json(
        {
            "agent": log_entry.agent,
            "format": log_entry.format,
            "payload": log_entry.payload,
            "session": log_entry.session,
            "type": log_entry.type,
        }
    )


def observation_entry(observation: Observation, agent: str) -> LogEntry:
    payload = observation.model_dump(mode="json", by_alias=True, exclude_none=True)
    return entry("observation", observation.session, agent, payload)


def proposal_entry(proposal: Proposal, agent: str, recorded_before: int) -> LogEntry:
    payload: dict[str, JsonValue] = {
        "proposal": proposal.model_dump(mode="json", by_alias=True),
        "recorded_before": recorded_before,
    }
    return entry("proposal", proposal.session, agent, payload)


def verdict_entry(
    proposal: Proposal,
    agent: str,
    proposal_index: int,
    verifier: str,
    verdict: Verdict,
    signed: dict[str, JsonValue] | None,
) -> LogEntry:
    payload: dict[str, Any] = {
        "proposal_index": proposal_index,
        "verifier": verifier,
        "verdict": verdict.model_dump(mode="json", by_alias=True),
        "signed": signed,
    }
    return entry("verdict", proposal.session, agent, payload)


def verdict_error_entry(
    proposal: Proposal, agent: str, proposal_index: int, verifier: str, error: str
) -> LogEntry:
    payload = {"proposal_index": proposal_index, "verifier": verifier, "error": error}
    return entry("verdict", proposal.session, agent, payload)


def decision_entry(
    session: str,
    agent: str,
    proposal_index: int,
    verdict_index: int,
    decision: AuthorizationDecision | None,
    *,
    error: str | None = None,
    handle: str | None = None,
    dialogue_index: int | None = None,
) -> LogEntry:
    """The authorization decision (or why none could be made); ``handle`` and
    ``dialogue_index`` when it re-decides an escalation after an auditor's answer."""
    payload: dict[str, Any] = {"proposal_index": proposal_index, "verdict_index": verdict_index}
    if decision is not None:
        payload["decision"] = decision.model_dump(mode="json", by_alias=True)
    else:
        payload["error"] = error
    if handle is not None:
        payload["handle"] = handle
        payload["dialogue_index"] = dialogue_index
    return entry("decision", session, agent, payload)


def capability_entry(
    claims: CapabilityClaims, proposal_index: int, decision_index: int
) -> LogEntry:
    """The claims of a minted token (its nonce included), never the token itself."""
    payload: dict[str, Any] = {
        "proposal_index": proposal_index,
        "decision_index": decision_index,
        "claims": claims.model_dump(mode="json", by_alias=True),
    }
    return entry("capability", claims.session, claims.agent, payload)


def escalation_entry(session: str, agent: str, handle: str, proposal_index: int) -> LogEntry:
    """Opens a dialogue; the proposal, verdict and decision are the three entries before it."""
    payload: dict[str, Any] = {
        "event": "escalation",
        "handle": handle,
        "proposal_index": proposal_index,
        "verdict_index": proposal_index + 1,
        "decision_index": proposal_index + 2,
    }
    return entry("dialogue", session, agent, payload)


def answer_entry(
    session: str,
    agent: str,
    handle: str,
    proposal_index: int,
    *,
    auditor: str,
    reason: str,
    approve: bool,
) -> LogEntry:
    """An auditor's approval or denial of an escalation."""
    payload: dict[str, Any] = {
        "event": "approval" if approve else "denial",
        "handle": handle,
        "auditor": auditor,
        "reason": reason,
        "proposal_index": proposal_index,
    }
    return entry("dialogue", session, agent, payload)


def execution_entry(
    claims: CapabilityClaims, tool: str, call_index: int, error: str | None
) -> LogEntry:
    """A locked tool ran (``executed``) or raised (``failed``), redeeming ``claims.nonce``."""
    payload: dict[str, Any] = {
        "event": "executed" if error is None else "failed",
        "tool": tool,
        "nonce": claims.nonce,
        "proposal_index": claims.proposal_index,
        "call_index": call_index,
        "result_index": call_index + 1,
    }
    if error is not None:
        payload["error"] = error
    return entry("execution", claims.session, claims.agent, payload)


def refusal_entry(session: str, agent: str, tool: str, reason: str, message: str) -> LogEntry:
    """A genuine token refused for this call (wrong args, another session, spent, expired…)."""
    payload = {"event": "refused", "tool": tool, "reason": reason, "message": message}
    return entry("execution", session, agent, payload)


def void_entry(first: int, last: int) -> LogEntry:
    """Marks entries whose cross-references are wrong because another writer moved them."""
    payload: dict[str, Any] = {
        "event": "void",
        "entries": [first, last],
        "reason": "another writer appended first; these entries' log references are wrong",
    }
    return entry("note", None, None, payload)


def session_closed_entry(session: str, agent: str) -> LogEntry:
    """The session ended: its record is no longer held, its tokens no longer redeemable here."""
    return entry("note", session, agent, {"event": "session_closed"})


def restart_entry(token_floor: int) -> LogEntry:
    """The gatekeeper reopened after a stop that was not clean: tokens minted for proposals
    before ``token_floor`` are void, and every session open at the stop is closed (see
    :mod:`thirdway.gateway.restart`). Notes written before sessions were closed this way lack
    ``closes_sessions``, and replaying them closes nothing."""
    payload = {
        "event": "restart",
        "clean": False,
        "token_floor": token_floor,
        "closes_sessions": True,
    }
    return entry("note", None, None, payload)
