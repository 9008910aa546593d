"""Session state: what the gateway recorded in each session, and the open escalations.

A session holds the observations recorded so far (the record every proposal is verified
against) and the agent's earlier passing proposals (the verifier's ``history``). An escalation
holds what an auditor's approval needs to re-decide and mint. Both are projections of the log:
:func:`rebuild` recomputes them from the entries, so a restarted gatekeeper carries on where it
stopped.

With several gateway workers on one PostgreSQL log, this projection is the only copy of the
sessions there is: no sessions table exists to drift from the log. Each worker keeps a
:class:`Projection` open and applies the entries the other workers appended (the gatekeeper's
``catch_up``), so an agent whose requests land on different workers is verified against its
whole record everywhere.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TypeVar

from pydantic import ValidationError

from thirdway.errors import GateError, LogError
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


class StaleRecordError(GateError):
    """Another gateway worker wrote to the session after this one last caught up, so the step
    was decided on a record that is no longer whole: nothing of it was written. Retryable (the
    gatekeeper redoes it itself a few times first)."""


def touches_record(log_entry: LogEntry, record_only: bool = False) -> bool:
    """Whether ``log_entry`` changes what a step on its session is decided against: the
    observations, closing, and (unless ``record_only``) proposals, verdicts, decisions and the
    gatekeeper's escalation events."""
    kind = log_entry.type
    if kind == "observation":
        return True
    if kind == "note":
        return log_entry.payload.get("event") == "session_closed"
    if record_only:
        return False
    if kind == "dialogue":
        return log_entry.payload.get("event") in GATEKEEPER_DIALOGUE_EVENTS
    return kind in ("proposal", "verdict", "decision")


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
    pending: list[tuple[int, Observation | Proposal]] = field(default_factory=list, repr=False)
    """Other workers' additions, in log order, waiting for :meth:`settle` under :attr:`lock`
    (a following :class:`Projection` queues them here rather than race the session's owner)."""
    since: int | None = field(default=None, repr=False)
    """The log size this worker had caught up to when the holder of :attr:`lock` last looked:
    nothing another worker appended for this session before it is missing from the record."""

    def add(self, observations: Iterable[Observation]) -> None:
        for observation in observations:
            self.observations.append(observation)
            self.chars += len(observation.content or "")

    def settle(self, items: Iterable[tuple[int, Observation | Proposal]]) -> None:
        """Apply queued additions (observations in order, passing proposals to the history)."""
        for index, item in items:
            if isinstance(item, Proposal):
                self.history.append(item)
                continue
            if item.index != len(self.observations):
                raise LogError(
                    f"log entry {index} records observation {item.index} of session "
                    f"{self.id!r}, which has {len(self.observations)} so far"
                )
            if len(self.observations) >= MAX_OBSERVATIONS:
                raise LogError(f"log entry {index}: session {self.id!r} is over its limit")
            self.add([item])


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
    interrupted: set[str] = field(default_factory=set)
    """Sessions a ``restart`` note interrupted: closed (also in :attr:`closed`), or
    :attr:`frozen` while an escalation of theirs is open."""
    frozen: set[str] = field(default_factory=set)
    """Interrupted sessions still open for their open escalations' answers only (an approval
    is logged but mints nothing): nothing more is recorded or run in them, and their agent may
    close them once the escalations are answered."""
    by_agent: dict[str, set[str]] = field(default_factory=dict)
    """The ids of each agent's open sessions (what its per-agent limits count)."""

    def hold(self, session: Session) -> None:
        """Add an open session."""
        self.sessions[session.id] = session
        self.by_agent.setdefault(session.agent, set()).add(session.id)

    def release(self, session_id: str) -> Session | None:
        """Remove an open session (it was closed, or its opening failed); returns it."""
        session = self.sessions.pop(session_id, None)
        if session is not None:
            held = self.by_agent.get(session.agent)
            if held is not None:
                held.discard(session_id)
                if not held:
                    del self.by_agent[session.agent]
        return session

    def close(self, session_id: str) -> Session | None:
        """End an open session for good (a ``session_closed`` note, or an interruption): its
        id is never reopened. Returns it, or None when it was not open."""
        session = self.release(session_id)
        if session is not None:
            self.closed.add(session_id)
            self.frozen.discard(session_id)
        return session

    def open_sessions(self, agent: str) -> list[Session]:
        """The agent's open sessions."""
        return [self.sessions[sid] for sid in self.by_agent.get(agent, ())]

    charters: set[str] = field(default_factory=set)
    """Every charter hash a verdict or a trust event in the log cites: a gatekeeper may not
    open under a charter older than one of them (charters only move forward)."""


def rebuild(entries: Iterable[tuple[int, LogEntry]]) -> State:
    """Sessions and open escalations from the gatekeeper's entries, in log order.

    Entries of other types (notes, checkpoints' neighbours) are skipped; of a trust event only
    the charter it cites is kept (:attr:`State.charters`). A gatekeeper entry that contradicts
    the ones before it raises :class:`LogError` naming its index: a gatekeeper must not carry
    on from a record it cannot account for."""
    projection = Projection()
    for index, log_entry in entries:
        projection.apply(index, log_entry)
    return projection.state


class Projection:
    """The fold of :func:`rebuild`, kept open to apply entries as they come.

    ``deferred``: a worker following what other workers append. Observations and passing
    proposals are then queued on their session (:attr:`Session.pending`) for the thread that
    holds the session's lock to :meth:`Session.settle`, so they never interleave with what that
    thread is adding; new sessions, escalations and closings go straight into :attr:`state`
    (the caller holds the gatekeeper's table lock). :attr:`new_agents` collects the agents of
    sessions opened elsewhere."""

    def __init__(self, state: State | None = None, *, deferred: bool = False) -> None:
        self.state = state if state is not None else State()
        self.deferred = deferred
        self.new_agents: set[str] = set()
        self._proposals: dict[int, tuple[Proposal, str]] = {}
        self._verdicts: dict[int, Verdict] = {}
        self._decisions: dict[int, AuthorizationDecision] = {}

    def apply(self, index: int, log_entry: LogEntry) -> None:
        try:
            self._apply(index, log_entry)
        except (ValidationError, KeyError, TypeError) as exc:
            detail = describe(exc, log_entry.type) if isinstance(exc, ValidationError) else exc
            raise LogError(f"log entry {index} ({log_entry.type}) is malformed: {detail}") from None

    def forget(self) -> None:
        """Drop the proposals, verdicts and decisions kept for later references: an escalation
        refers only to entries of its own batch, so between whole batches none is needed."""
        self._proposals.clear()
        self._verdicts.clear()
        self._decisions.clear()

    def _apply(self, index: int, log_entry: LogEntry) -> None:
        state = self.state
        payload = log_entry.payload
        if log_entry.type == "observation":
            self._observe(index, log_entry)
        elif log_entry.type == "proposal":
            proposal = Proposal.model_validate(payload["proposal"])
            self._proposals[index] = (proposal, _agent(index, log_entry))
        elif log_entry.type == "verdict" and "verdict" in payload:
            verdict = Verdict.model_validate(payload["verdict"])
            self._verdicts[index] = verdict
            if verdict.charter_sha256 is not None:
                state.charters.add(verdict.charter_sha256)
            proposal, _ = _earlier(self._proposals, payload["proposal_index"], index, "proposal")
            if verdict.verdict == "pass":
                session = _session(state, index, proposal.session)
                if self.deferred:
                    session.pending.append((index, proposal))
                else:
                    session.history.append(proposal)
        elif log_entry.type == "decision" and "decision" in payload:
            decision = AuthorizationDecision.model_validate(payload["decision"])
            self._decisions[index] = decision
            handle = payload.get("handle")
            if isinstance(handle, str) and decision.outcome != "needs_dialogue":
                state.escalations.pop(handle, None)
        elif log_entry.type == "decision" and isinstance(refused := payload.get("handle"), str):
            # An answer refused without a decision (its verdict cites an earlier charter): final.
            state.escalations.pop(refused, None)
        elif log_entry.type == "dialogue":
            self._dialogue(index, payload)
        elif log_entry.type == "trust":
            self._cites(payload.get("charter_sha256"))
        elif log_entry.type == "note" and payload.get("event") == "session_closed":
            state.close(str(log_entry.session))
        elif log_entry.type == "note" and _closes_sessions(payload):
            self._interrupt()

    def _interrupt(self) -> None:
        """Apply a ``restart`` note: every open session is interrupted; those with an open
        escalation stay, frozen, until it is answered and they are closed."""
        state = self.state
        escalated = {escalation.session for escalation in state.escalations.values()}
        for session_id in list(state.sessions):
            state.interrupted.add(session_id)
            if session_id in escalated:
                state.frozen.add(session_id)
            else:
                state.close(session_id)

    def _cites(self, charter: object) -> None:
        """Note the charter a trust event cites (the trust ledger checks the rest of it)."""
        if charter is None:
            return
        if not isinstance(charter, str):
            raise TypeError(f"a trust event cites its charter by its hash, not {charter!r}")
        self.state.charters.add(charter)

    def _observe(self, index: int, log_entry: LogEntry) -> None:
        state = self.state
        observation = Observation.model_validate(log_entry.payload)
        if observation.session in state.closed:
            raise LogError(f"log entry {index} records an observation in a closed session")
        session = state.sessions.get(observation.session)
        if session is None:
            session = Session(observation.session, _agent(index, log_entry))
            state.hold(session)
            self.new_agents.add(session.agent)
        elif log_entry.agent != session.agent:
            raise LogError(f"log entry {index} names agent {log_entry.agent!r} in {session.id!r}")
        if self.deferred:
            session.pending.append((index, observation))
        else:
            session.settle([(index, observation)])

    def _dialogue(self, index: int, payload: Mapping[str, object]) -> None:
        state = self.state
        event = payload.get("event")
        if event not in GATEKEEPER_DIALOGUE_EVENTS:
            return  # the dialogue service's own events (open, challenge, answer, …)
        handle = payload["handle"]
        if not isinstance(handle, str):
            raise LogError(f"log entry {index}: a dialogue handle is a string")
        if event == "escalation":
            proposal_index = _int(payload["proposal_index"])
            verdict_index = _int(payload["verdict_index"])
            proposal, agent = _earlier(self._proposals, proposal_index, index, "proposal")
            verdict = _earlier(self._verdicts, verdict_index, index, "verdict")
            decision = _earlier(self._decisions, _int(payload["decision_index"]), index, "decision")
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


def _closes_sessions(payload: Mapping[str, object]) -> bool:
    """A ``restart`` note after a stop that was not clean, which may have lost observations
    answered before it (they are not synced on their own): no session open then goes on
    (one with an open escalation is only frozen). Notes from before this rule lack
    ``closes_sessions`` and close nothing."""
    return payload.get("event") == "restart" and payload.get("closes_sessions") is True


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
