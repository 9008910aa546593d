"""The dialogue's events (what is logged) and its state (what the fold of those events gives).

Every dialogue event is the payload of one ``dialogue`` log entry: ``{"event", "handle", "at",
"actor", …}``. ``handle`` is the dialogue's id: the gatekeeper's escalation handle for an
escalation, ``spot:<proposal log index>`` for a spot audit, ``appeal:<sanction id>`` for an
appeal (the id the trust rules record). The gatekeeper writes its own ``dialogue`` entries
(``escalation``, ``approval``, ``denial``); the event names here are different, so each side
reads its own.
"""

from __future__ import annotations

from typing import Annotated, Final, Literal, TypeAlias

from pydantic import AfterValidator, Field, model_validator

from thirdway.dialogue.answers import Answer
from thirdway.dialogue.challenges import Challenge
from thirdway.protocol.manifest import RiskClass
from thirdway.protocol.models import Claim, Finding, Id, Index, Model, Sha256Hex, Verdict

DialogueKind = Literal["escalation", "spot", "appeal"]
State = Literal["opened", "challenged", "answered", "approved", "denied", "expired"]
EventName = Literal["open", "challenge", "answer", "approve", "deny", "expire"]

STATES: Final[tuple[State, ...]] = (
    "opened",
    "challenged",
    "answered",
    "approved",
    "denied",
    "expired",
)
EVENTS: Final[tuple[EventName, ...]] = ("open", "challenge", "answer", "approve", "deny", "expire")
TERMINAL: Final[frozenset[str]] = frozenset({"approved", "denied", "expired"})
SYSTEM: Final = "system"
"""The actor of events nobody decided: opening a dialogue, its expiry."""

Timestamp = Annotated[int, Field(ge=0, le=2**53 - 1)]
Approvals = Annotated[int, Field(ge=1, le=1000)]


def _stated(reason: str) -> str:
    if not reason.strip():
        raise ValueError("a decision needs a reason")
    return reason


Reason = Annotated[Claim, AfterValidator(_stated)]
"""No auditor decision without a reason: blank text is refused."""


class _Event(Model):
    handle: Id
    at: Timestamp
    actor: Id


class OpenEvent(_Event):
    """A dialogue starts: an escalation, a spot audit selected by the epoch secret, an appeal."""

    event: Literal["open"] = "open"
    kind: DialogueKind
    agent: Id
    session: Id | None = None
    proposal_index: Index | None = None
    """Log index of the proposal under review (none for an appeal of a sanction alone)."""
    source_index: Index
    """Log index of what opened it: the gatekeeper's escalation entry, the decision a spot
    audit selected, or the appeal's trust event."""
    tool: Id | None = None
    risk: RiskClass | None = None
    required_approvals: Approvals = 1
    expires_at: Timestamp
    reason: Claim = ""
    epoch: Id | None = None
    """Spot audits: the epoch whose secret selected the proposal."""
    proposal_sha256: Sha256Hex | None = None
    sanction: Sha256Hex | None = None
    """Appeals: the sanction appealed."""

    @model_validator(mode="after")
    def _deadline_after_opening(self) -> OpenEvent:
        if self.expires_at <= self.at:
            raise ValueError("a dialogue's deadline (expires_at) must be after its opening (at)")
        return self


class ChallengeEvent(_Event):
    """An auditor asks the agent a question."""

    event: Literal["challenge"] = "challenge"
    challenge: Challenge


class AnswerEvent(_Event):
    """The agent answers the pending challenge; ``verdict`` and ``findings`` are what the answer
    checker found (recomputable by anyone from the log)."""

    event: Literal["answer"] = "answer"
    challenge: Annotated[int, Field(ge=1)]
    """Which challenge (numbered from 1) this answers."""
    answer: Answer
    verdict: Verdict
    findings: list[Finding] = Field(default_factory=list)


class ApproveEvent(_Event):
    """One auditor's approval vote, with the reason."""

    event: Literal["approve"] = "approve"
    reason: Reason


class DenyEvent(_Event):
    """An auditor's denial, with the reason. One denial closes the dialogue."""

    event: Literal["deny"] = "deny"
    reason: Reason


class ExpireEvent(_Event):
    """Nobody decided in time: the dialogue closes, and the action is not released."""

    event: Literal["expire"] = "expire"
    reason: Claim = ""


DialogueEvent: TypeAlias = Annotated[
    OpenEvent | ChallengeEvent | AnswerEvent | ApproveEvent | DenyEvent | ExpireEvent,
    Field(discriminator="event"),
]


class EventEnvelope(Model):
    """Parses one ``dialogue`` payload into its event type."""

    item: DialogueEvent


class Vote(Model):
    """An auditor's decision as recorded: who, why, when, and the log entry holding it."""

    auditor: Id
    reason: Claim
    at: Timestamp
    index: Index | None = None


class Turn(Model):
    """One challenge and, once given, its answer."""

    number: Annotated[int, Field(ge=1)]
    challenge: Challenge
    asked_by: Id
    asked_at: Timestamp
    challenge_index: Index | None = None
    answer: Answer | None = None
    answered_at: Timestamp | None = None
    answer_index: Index | None = None
    verdict: Verdict | None = None
    findings: tuple[Finding, ...] = ()


class Dialogue(Model):
    """One dialogue's state: a fold of its events (:func:`thirdway.dialogue.machine.apply`)."""

    id: Id
    kind: DialogueKind
    agent: Id
    session: Id | None = None
    proposal_index: Index | None = None
    source_index: Index
    tool: Id | None = None
    risk: RiskClass | None = None
    required_approvals: Approvals = 1
    opened_at: Timestamp
    expires_at: Timestamp
    reason: Claim = ""
    epoch: Id | None = None
    proposal_sha256: Sha256Hex | None = None
    sanction: Sha256Hex | None = None
    state: State = "opened"
    turns: tuple[Turn, ...] = ()
    approvals: tuple[Vote, ...] = ()
    denial: Vote | None = None
    closed_at: Timestamp | None = None
    last_at: Timestamp
    indices: tuple[Index, ...] = ()
    """Log indices of this dialogue's own entries, in order: its evidence trail."""

    @property
    def open(self) -> bool:
        return self.state not in TERMINAL

    @property
    def pending_turn(self) -> Turn | None:
        """The challenge waiting for the agent's answer, if any."""
        if self.state == "challenged" and self.turns:
            return self.turns[-1]
        return None

    @property
    def approvers(self) -> tuple[str, ...]:
        return tuple(vote.auditor for vote in self.approvals)
