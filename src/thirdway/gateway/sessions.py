"""Session state: what the gateway recorded in each session, and the open escalations.

A session holds the observations recorded so far (the record every proposal is verified
against) and the agent's earlier passing proposals (the verifier's ``history``). An escalation
holds what an auditor's approval needs to re-decide and mint. Both are projections of the log:
:func:`rebuild` recomputes them from the entries, so a restarted gatekeeper carries on where it
stopped.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TypeVar

from pydantic import ValidationError

from thirdway.errors import LogError
from thirdway.policy.authorize import AuthorizationDecision, AuthorizationRequest
from thirdway.protocol.canonical import canonical_sha256
from thirdway.protocol.limits import MAX_OBSERVATIONS
from thirdway.protocol.models import LogEntry, Observation, Proposal, Verdict
from thirdway.protocol.parse import describe

T = TypeVar("T")

GATEKEEPER_DIALOGUE_EVENTS = frozenset({"escalation", "approval", "denial"})
"""The ``dialogue`` events the gatekeeper writes; the dialogue service writes others."""

MAX_SESSION_CHARS = 256 * 1024 * 1024
"""Total observation text one session may hold (32 observations at the 8 MiB maximum)."""


@dataclass
class Session:
    """One agent's session. Mutated only under :attr:`lock`, and only after the log append that
    records the change has returned (so memory never runs ahead of the log)."""

    id: str
    agent: str
    observations: list[Observation] = field(default_factory=list)
    history: list[Proposal] = field(default_factory=list)
    chars: int = 0
    lock: threading.RLock = field(default_factory=threading.RLock, repr=False)

    def add(self, observations: Iterable[Observation]) -> None:
        for observation in observations:
            self.observations.append(observation)
            self.chars += len(observation.content or "")


@dataclass
class Escalation:
    """An action waiting for auditor approval (opened by a ``needs_dialogue`` decision)."""

    handle: str
    session: str
    agent: str
    proposal: Proposal
    proposal_index: int
    verdict: Verdict
    verdict_index: int
    request: AuthorizationRequest
    """The request that was decided ``needs_dialogue``; approvals re-decide it."""
    approvers: list[str] = field(default_factory=list)

    @property
    def verdict_sha256(self) -> str:
        return canonical_sha256(self.verdict)


@dataclass
class State:
    """Everything :func:`rebuild` recovers from a log."""

    sessions: dict[str, Session] = field(default_factory=dict)
    escalations: dict[str, Escalation] = field(default_factory=dict)
    closed: set[str] = field(default_factory=set)
    """Sessions ended by a ``session_closed`` note: never reopened under the same id."""


def rebuild(entries: Iterable[tuple[int, LogEntry]]) -> State:
    """Sessions and open escalations from the gatekeeper's entries, in log order.

    Entries of other types (trust events, notes, checkpoints' neighbours) are skipped. A
    gatekeeper entry that contradicts the ones before it raises :class:`LogError` naming its
    index: a gatekeeper must not carry on from a record it cannot account for."""
    state = State()
    proposals: dict[int, tuple[Proposal, str]] = {}
    verdicts: dict[int, Verdict] = {}
    decisions: dict[int, AuthorizationDecision] = {}
    for index, log_entry in entries:
        try:
            _apply(state, index, log_entry, proposals, verdicts, decisions)
        except (ValidationError, KeyError, TypeError) as exc:
            detail = describe(exc, log_entry.type) if isinstance(exc, ValidationError) else exc
            raise LogError(f"log entry {index} ({log_entry.type}) is malformed: {detail}") from None
    return state


def _apply(
    state: State,
    index: int,
    log_entry: LogEntry,
    proposals: dict[int, tuple[Proposal, str]],
    verdicts: dict[int, Verdict],
    decisions: dict[int, AuthorizationDecision],
) -> None:
    payload = log_entry.payload
    if log_entry.type == "observation":
        _observe(state, index, log_entry)
    elif log_entry.type == "proposal":
        proposal = Proposal.model_validate(payload["proposal"])
        proposals[index] = (proposal, _agent(index, log_entry))
    elif log_entry.type == "verdict" and "verdict" in payload:
        verdict = Verdict.model_validate(payload["verdict"])
        verdicts[index] = verdict
        proposal, _ = _earlier(proposals, payload["proposal_index"], index, "proposal")
        if verdict.verdict == "pass":
            _session(state, index, proposal.session).history.append(proposal)
    elif log_entry.type == "decision" and "decision" in payload:
        decision = AuthorizationDecision.model_validate(payload["decision"])
        decisions[index] = decision
        handle = payload.get("handle")
        if isinstance(handle, str) and decision.outcome != "needs_dialogue":
            state.escalations.pop(handle, None)
    elif log_entry.type == "dialogue":
        _dialogue(state, index, payload, proposals, verdicts, decisions)
    elif log_entry.type == "note" and payload.get("event") == "session_closed":
        session = state.sessions.pop(str(log_entry.session), None)
        if session is not None:
            state.closed.add(session.id)


def _observe(state: State, index: int, log_entry: LogEntry) -> None:
    observation = Observation.model_validate(log_entry.payload)
    if observation.session in state.closed:
        raise LogError(f"log entry {index} records an observation in a closed session")
    session = state.sessions.get(observation.session)
    if session is None:
        session = Session(observation.session, _agent(index, log_entry))
        state.sessions[session.id] = session
    elif log_entry.agent != session.agent:
        raise LogError(f"log entry {index} names agent {log_entry.agent!r} in {session.id!r}")
    if observation.index != len(session.observations):
        raise LogError(
            f"log entry {index} records observation {observation.index} of session "
            f"{session.id!r}, which has {len(session.observations)} so far"
        )
    if len(session.observations) >= MAX_OBSERVATIONS:
        raise LogError(f"log entry {index}: session {session.id!r} is over its limit")
    session.add([observation])


def _dialogue(
    state: State,
    index: int,
    payload: Mapping[str, object],
    proposals: dict[int, tuple[Proposal, str]],
    verdicts: dict[int, Verdict],
    decisions: dict[int, AuthorizationDecision],
) -> None:
    event = payload.get("event")
    if event not in GATEKEEPER_DIALOGUE_EVENTS:
        return  # the dialogue service's own events (open, challenge, answer, …)
    handle = payload["handle"]
    if not isinstance(handle, str):
        raise LogError(f"log entry {index}: a dialogue handle is a string")
    if event == "escalation":
        proposal_index = _int(payload["proposal_index"])
        verdict_index = _int(payload["verdict_index"])
        proposal, agent = _earlier(proposals, proposal_index, index, "proposal")
        verdict = _earlier(verdicts, verdict_index, index, "verdict")
        decision = _earlier(decisions, _int(payload["decision_index"]), index, "decision")
        state.escalations[handle] = Escalation(
            handle=handle,
            session=proposal.session,
            agent=agent,
            proposal=proposal,
            proposal_index=proposal_index,
            verdict=verdict,
            verdict_index=verdict_index,
            request=decision.request,
        )
    elif event == "approval":
        escalation = state.escalations.get(handle)
        if escalation is not None:
            escalation.approvers.append(str(payload["auditor"]))
    elif event == "denial":
        state.escalations.pop(handle, None)


def _agent(index: int, log_entry: LogEntry) -> str:
    if log_entry.agent is None:
        raise LogError(f"log entry {index} ({log_entry.type}) names no agent")
    return log_entry.agent


def _session(state: State, index: int, session_id: str) -> Session:
    session = state.sessions.get(session_id)
    if session is None:
        raise LogError(f"log entry {index} refers to session {session_id!r}, never opened")
    return session


def _int(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"expected a log index, got {value!r}")
    return value


def _earlier(found: dict[int, T], wanted: object, index: int, what: str) -> T:
    position = _int(wanted)
    if position not in found:
        raise LogError(f"log entry {index} refers to {what} {position}, which is not before it")
    return found[position]
