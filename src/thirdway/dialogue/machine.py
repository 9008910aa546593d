"""The dialogue state machine: pure, total, and explicit about every refusal.

::

    open ─▶ opened ──challenge──▶ challenged ──answer──▶ answered ──challenge──▶ challenged …
              │                      │                      │
              ├─approve (m of n)─────┼──────────────────────┴─▶ approved
              ├─deny ────────────────┴─────────────────────────▶ denied
              └─expire (at or after the deadline, from any open state) ─▶ expired

:data:`TRANSITIONS` lists every legal (state, event) pair; every other pair is refused with a
reason from :func:`refusal`. Beyond the state, each event has actor rules: only the dialogue's
agent answers; challenges and decisions come from someone else (an agent can never approve or
deny its own action, nor question itself); a decision states a reason; each auditor's approval
counts once; ``required_approvals`` distinct approvals close the dialogue as approved (m of n),
and one denial closes it as denied. Events carry their time; none may run backwards, nothing
but the expiry happens at or after the deadline, and the expiry never before it.

The same :func:`apply` checks an event before it is logged and replays it afterwards, so a log
holding an illegal event is caught by anyone who folds it.
"""

from __future__ import annotations

from typing import Final

from thirdway.dialogue.errors import TransitionRefused
from thirdway.dialogue.model import (
    SYSTEM,
    TERMINAL,
    AnswerEvent,
    ApproveEvent,
    ChallengeEvent,
    DenyEvent,
    Dialogue,
    EventName,
    ExpireEvent,
    OpenEvent,
    State,
    Turn,
    Vote,
)
from thirdway.trust.text import iso

Event = OpenEvent | ChallengeEvent | AnswerEvent | ApproveEvent | DenyEvent | ExpireEvent

TRANSITIONS: Final[dict[tuple[State, EventName], tuple[State, ...]]] = {
    ("opened", "challenge"): ("challenged",),
    ("opened", "approve"): ("opened", "approved"),
    ("opened", "deny"): ("denied",),
    ("opened", "expire"): ("expired",),
    ("challenged", "answer"): ("answered",),
    ("challenged", "deny"): ("denied",),
    ("challenged", "expire"): ("expired",),
    ("answered", "challenge"): ("challenged",),
    ("answered", "approve"): ("answered", "approved"),
    ("answered", "deny"): ("denied",),
    ("answered", "expire"): ("expired",),
}
"""Legal pairs and the states they may lead to (an approval closes only the m-th time)."""


def refusal(dialogue: Dialogue | None, event: Event) -> str | None:
    """Why ``event`` cannot happen to ``dialogue`` now, or ``None`` if it can."""
    if dialogue is None:
        if isinstance(event, OpenEvent):
            return None
        return f"there is no dialogue {event.handle!r}"
    if isinstance(event, OpenEvent):
        return f"dialogue {dialogue.id!r} is already open (state {dialogue.state})"
    if event.handle != dialogue.id:
        return f"the event is for dialogue {event.handle!r}, not {dialogue.id!r}"
    return (
        _state_refusal(dialogue, event) or _time_refusal(dialogue, event) or _actor(dialogue, event)
    )


def _state_refusal(dialogue: Dialogue, event: Event) -> str | None:
    state = dialogue.state
    if state in TERMINAL:
        when = iso(dialogue.closed_at) if dialogue.closed_at is not None else "?"
        return f"the dialogue is closed ({state} at {when}); nothing more can happen in it"
    if (state, event.event) in TRANSITIONS:
        return None
    pending = dialogue.pending_turn
    if event.event == "answer":
        return "no challenge is waiting for an answer"
    if event.event == "challenge" and pending is not None:
        return f"challenge {pending.number} is not answered yet; wait for the agent's answer"
    if event.event == "approve" and pending is not None:
        return f"challenge {pending.number} is not answered yet; an approval waits for the answer"
    return f"{event.event} is not allowed in state {state}"  # pragma: no cover - table is total


def _time_refusal(dialogue: Dialogue, event: Event) -> str | None:
    if event.at < dialogue.last_at:
        return (
            f"the event's time {iso(event.at)} is before the dialogue's last event "
            f"({iso(dialogue.last_at)})"
        )
    if isinstance(event, ExpireEvent):
        if event.at < dialogue.expires_at:
            return f"the dialogue expires at {iso(dialogue.expires_at)}, not before"
        return None
    if event.at >= dialogue.expires_at:
        return (
            f"the dialogue expired at {iso(dialogue.expires_at)}; only its expiry can be recorded"
        )
    return None


def _actor(dialogue: Dialogue, event: Event) -> str | None:
    actor = event.actor
    if isinstance(event, AnswerEvent):
        if actor != dialogue.agent:
            return f"only the agent {dialogue.agent!r} answers its dialogue, not {actor!r}"
        pending = dialogue.pending_turn
        if pending is not None and event.challenge != pending.number:
            return f"the pending challenge is number {pending.number}, not {event.challenge}"
        return None
    if isinstance(event, ExpireEvent):
        return None if actor == SYSTEM else f"an expiry is recorded by {SYSTEM!r}, not {actor!r}"
    what = {"challenge": "challenge", "approve": "approve", "deny": "deny"}[event.event]
    if actor == dialogue.agent:
        return f"an agent can never {what} in its own dialogue ({actor!r} is the agent)"
    if actor == SYSTEM:
        return f"a named auditor must {what}, not {SYSTEM!r}"
    if isinstance(event, ApproveEvent | DenyEvent) and not event.reason.strip():
        return "a decision needs a reason"
    if isinstance(event, ApproveEvent) and actor in dialogue.approvers:
        return f"auditor {actor!r} has already approved; each auditor's approval counts once"
    return None


def apply(dialogue: Dialogue | None, event: Event, *, index: int | None = None) -> Dialogue:
    """The dialogue after ``event`` (logged at ``index``), or :class:`TransitionRefused`."""
    reason = refusal(dialogue, event)
    if reason is not None:
        state = "absent" if dialogue is None else dialogue.state
        raise TransitionRefused(state, event.event, reason)
    if isinstance(event, OpenEvent):
        return _opened(event, index)
    assert dialogue is not None
    changes: dict[str, object] = {
        "last_at": event.at,
        "indices": (*dialogue.indices, index) if index is not None else dialogue.indices,
    }
    if isinstance(event, ChallengeEvent):
        turn = Turn(
            number=len(dialogue.turns) + 1,
            challenge=event.challenge,
            asked_by=event.actor,
            asked_at=event.at,
            challenge_index=index,
        )
        changes.update(state="challenged", turns=(*dialogue.turns, turn))
    elif isinstance(event, AnswerEvent):
        answered = dialogue.turns[-1].model_copy(
            update={
                "answer": event.answer,
                "answered_at": event.at,
                "answer_index": index,
                "verdict": event.verdict,
                "findings": tuple(event.findings),
            }
        )
        changes.update(state="answered", turns=(*dialogue.turns[:-1], answered))
    elif isinstance(event, ApproveEvent):
        vote = Vote(auditor=event.actor, reason=event.reason, at=event.at, index=index)
        approvals = (*dialogue.approvals, vote)
        changes["approvals"] = approvals
        if len(approvals) >= dialogue.required_approvals:
            changes.update(state="approved", closed_at=event.at)
    elif isinstance(event, DenyEvent):
        vote = Vote(auditor=event.actor, reason=event.reason, at=event.at, index=index)
        changes.update(state="denied", denial=vote, closed_at=event.at)
    else:
        changes.update(state="expired", closed_at=event.at)
    return dialogue.model_copy(update=changes)


def _opened(event: OpenEvent, index: int | None) -> Dialogue:
    return Dialogue(
        id=event.handle,
        kind=event.kind,
        agent=event.agent,
        session=event.session,
        proposal_index=event.proposal_index,
        source_index=event.source_index,
        tool=event.tool,
        risk=event.risk,
        required_approvals=event.required_approvals,
        opened_at=event.at,
        expires_at=event.expires_at,
        reason=event.reason,
        epoch=event.epoch,
        proposal_sha256=event.proposal_sha256,
        sanction=event.sanction,
        last_at=event.at,
        indices=(index,) if index is not None else (),
    )
