"""The dialogue state machine: every state × event pair, expiry, m of n, actors, time."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from thirdway.dialogue import EVENTS, STATES, TRANSITIONS, TransitionRefused, apply
from thirdway.dialogue.answers import Answer
from thirdway.dialogue.challenges import Challenge
from thirdway.dialogue.machine import Event
from thirdway.dialogue.model import (
    TERMINAL,
    AnswerEvent,
    ApproveEvent,
    ChallengeEvent,
    DenyEvent,
    Dialogue,
    ExpireEvent,
    OpenEvent,
)
from thirdway.protocol.models import Verdict

T0 = 1_700_000_000
TTL = 3600
AGENT = "agent-7"
H = "esc-1"


def opening(required: int = 1) -> OpenEvent:
    return OpenEvent(
        handle=H,
        at=T0,
        actor="system",
        kind="escalation",
        agent=AGENT,
        session="s-1",
        proposal_index=3,
        source_index=6,
        risk="critical" if required > 1 else "financial",
        required_approvals=required,
        expires_at=T0 + TTL,
    )


def challenge(at: int, actor: str = "alice") -> ChallengeEvent:
    return ChallengeEvent(handle=H, at=at, actor=actor, challenge=Challenge(kind="restate_goal"))


def answer(at: int, number: int = 1, actor: str = AGENT) -> AnswerEvent:
    return AnswerEvent(
        handle=H,
        at=at,
        actor=actor,
        challenge=number,
        answer=Answer(text="I pay the bill the user named."),
        verdict=Verdict(session="s-1", verdict="pass"),
    )


def approve(at: int, actor: str = "alice", reason: str = "checked") -> ApproveEvent:
    return ApproveEvent(handle=H, at=at, actor=actor, reason=reason)


def deny(at: int, actor: str = "alice", reason: str = "not this") -> DenyEvent:
    return DenyEvent(handle=H, at=at, actor=actor, reason=reason)


def expire(at: int = T0 + TTL, actor: str = "system") -> ExpireEvent:
    return ExpireEvent(handle=H, at=at, actor=actor)


def run(*events: Event) -> Dialogue:
    dialogue = None
    for index, event in enumerate(events):
        dialogue = apply(dialogue, event, index=index)
    assert dialogue is not None
    return dialogue


SETUPS: dict[str, list[Event]] = {
    "opened": [opening()],
    "challenged": [opening(), challenge(T0 + 1)],
    "answered": [opening(), challenge(T0 + 1), answer(T0 + 2)],
    "approved": [opening(), approve(T0 + 1)],
    "denied": [opening(), deny(T0 + 1)],
    "expired": [opening(), expire()],
}


def next_event(name: str, dialogue: Dialogue) -> Event:
    """An event of kind ``name`` that is right in every way except, perhaps, the state."""
    at = dialogue.last_at + 1
    pending = dialogue.pending_turn
    if name == "open":
        return opening()
    if name == "challenge":
        return challenge(at)
    if name == "answer":
        return answer(at, pending.number if pending else 1)
    if name == "approve":
        return approve(at, "auditor-z")
    if name == "deny":
        return deny(at, "auditor-z")
    return expire(max(at, dialogue.expires_at))


EXPECTED_REFUSAL = {
    "open": "is already open",
    ("opened", "answer"): "no challenge is waiting for an answer",
    ("answered", "answer"): "no challenge is waiting for an answer",
    ("challenged", "challenge"): "challenge 1 is not answered yet; wait for the agent's answer",
    ("challenged", "approve"): "an approval waits for the answer",
    "terminal": "the dialogue is closed",
}


def test_the_table_is_over_known_states_and_events() -> None:
    assert set(SETUPS) == set(STATES)
    for state, event in TRANSITIONS:
        assert state in STATES and event in EVENTS and state not in TERMINAL


@pytest.mark.parametrize("state", STATES)
@pytest.mark.parametrize("name", EVENTS)
def test_every_state_and_event(state: str, name: str) -> None:
    dialogue = run(*SETUPS[state])
    assert dialogue.state == state
    event = next_event(name, dialogue)
    if (state, name) in TRANSITIONS:
        after = apply(dialogue, event, index=99)
        assert after.state in TRANSITIONS[(state, name)]
        assert after.indices[-1] == 99
        return
    with pytest.raises(TransitionRefused) as refused:
        apply(dialogue, event)
    if name == "open":
        expected = EXPECTED_REFUSAL["open"]
    elif state in TERMINAL:
        expected = EXPECTED_REFUSAL["terminal"]
    else:
        expected = EXPECTED_REFUSAL[(state, name)]
    assert expected in refused.value.reason
    assert refused.value.event == name
    assert str(refused.value).startswith(f"cannot {name} in state")


def test_only_open_starts_a_dialogue() -> None:
    for name in EVENTS:
        if name == "open":
            continue
        with pytest.raises(TransitionRefused, match="there is no dialogue"):
            apply(None, next_event(name, run(opening())))


def test_expiry() -> None:
    dialogue = run(opening(), challenge(T0 + 10))
    deadline = dialogue.expires_at
    with pytest.raises(TransitionRefused, match=r"expires at .* not before"):
        apply(dialogue, expire(deadline - 1))
    with pytest.raises(TransitionRefused, match="recorded by 'system'"):
        apply(dialogue, expire(deadline, actor="alice"))
    for late in (answer(deadline), deny(deadline), answer(deadline + 500)):
        with pytest.raises(TransitionRefused, match="expired at"):
            apply(dialogue, late)
    expired = apply(dialogue, expire(deadline + 5))
    assert expired.state == "expired" and expired.closed_at == deadline + 5
    assert not expired.open
    with pytest.raises(TransitionRefused, match="closed"):
        apply(expired, expire(deadline + 6))


def test_a_deadline_must_follow_the_opening() -> None:
    with pytest.raises(ValueError, match="deadline"):
        OpenEvent(**{**opening().model_dump(), "expires_at": T0})


def test_m_of_n_counts_distinct_auditors_and_never_the_agent() -> None:
    dialogue = run(opening(required=2), approve(T0 + 1, "alice"))
    assert dialogue.state == "opened" and dialogue.approvers == ("alice",)
    with pytest.raises(TransitionRefused, match="already approved; each auditor's approval"):
        apply(dialogue, approve(T0 + 2, "alice", "again, louder"))
    with pytest.raises(TransitionRefused, match="an agent can never approve"):
        apply(dialogue, approve(T0 + 2, AGENT))
    with pytest.raises(TransitionRefused, match="a named auditor must approve"):
        apply(dialogue, approve(T0 + 2, "system"))
    challenged = apply(dialogue, challenge(T0 + 2, "bob"))
    with pytest.raises(TransitionRefused, match="approval waits for the answer"):
        apply(challenged, approve(T0 + 3, "bob"))
    answered = apply(challenged, answer(T0 + 3))
    done = apply(answered, approve(T0 + 4, "bob"))
    assert done.state == "approved" and done.approvers == ("alice", "bob")
    assert done.closed_at == T0 + 4


def test_one_denial_closes_even_after_approvals() -> None:
    dialogue = run(opening(required=3), approve(T0 + 1, "alice"), approve(T0 + 2, "bob"))
    denied = apply(dialogue, deny(T0 + 3, "carol", "the bill is a forgery"))
    assert denied.state == "denied"
    assert denied.denial is not None and denied.denial.auditor == "carol"
    assert denied.denial.reason == "the bill is a forgery"


def test_no_decision_without_a_reason() -> None:
    for blank in ("", "   ", "\n\t"):
        with pytest.raises(ValueError, match="a decision needs a reason"):
            ApproveEvent(handle=H, at=T0 + 1, actor="alice", reason=blank)
        with pytest.raises(ValueError, match="a decision needs a reason"):
            DenyEvent(handle=H, at=T0 + 1, actor="alice", reason=blank)
    # An event built without validation (a forged log entry) is refused by the machine too.
    dialogue = run(opening())
    for kind in (ApproveEvent, DenyEvent):
        forged = kind.model_construct(handle=H, at=T0 + 1, actor="alice", reason=" ")
        with pytest.raises(TransitionRefused, match="a decision needs a reason"):
            apply(dialogue, forged)


def test_the_agent_neither_challenges_nor_denies_and_only_the_agent_answers() -> None:
    dialogue = run(opening())
    with pytest.raises(TransitionRefused, match="an agent can never challenge"):
        apply(dialogue, challenge(T0 + 1, actor=AGENT))
    with pytest.raises(TransitionRefused, match="an agent can never deny"):
        apply(dialogue, deny(T0 + 1, actor=AGENT))
    challenged = apply(dialogue, challenge(T0 + 1))
    with pytest.raises(TransitionRefused, match="only the agent 'agent-7' answers"):
        apply(challenged, answer(T0 + 2, actor="alice"))
    with pytest.raises(TransitionRefused, match="pending challenge is number 1, not 2"):
        apply(challenged, answer(T0 + 2, number=2))


def test_time_never_runs_backwards() -> None:
    dialogue = run(opening(), challenge(T0 + 100))
    with pytest.raises(TransitionRefused, match="before the dialogue's last event"):
        apply(dialogue, answer(T0 + 99))


def test_events_for_another_dialogue_are_refused() -> None:
    dialogue = run(opening())
    other = ChallengeEvent(
        handle="esc-2", at=T0 + 1, actor="alice", challenge=Challenge(kind="restate_goal")
    )
    with pytest.raises(TransitionRefused, match="for dialogue 'esc-2'"):
        apply(dialogue, other)


ACTORS = st.sampled_from(["alice", "bob", "carol", AGENT, "system"])
STEPS = st.lists(
    st.tuples(st.sampled_from(EVENTS), ACTORS, st.integers(min_value=0, max_value=TTL // 4)),
    max_size=25,
)


@settings(max_examples=200, deadline=None)
@given(required=st.integers(min_value=1, max_value=3), steps=STEPS)
def test_invariants_hold_whatever_is_attempted(
    required: int, steps: list[tuple[str, str, int]]
) -> None:
    """Refused events change nothing; accepted ones keep the invariants."""
    dialogue = apply(None, opening(required))
    for name, actor, delay in steps:
        at = dialogue.last_at + delay
        event: Event
        if name == "open":
            event = opening(required)
        elif name == "challenge":
            event = challenge(at, actor)
        elif name == "answer":
            pending = dialogue.pending_turn
            event = answer(at, pending.number if pending else 1, actor)
        elif name == "approve":
            event = approve(at, actor)
        elif name == "deny":
            event = deny(at, actor)
        else:
            event = expire(at, actor)
        before = dialogue
        try:
            dialogue = apply(dialogue, event)
        except TransitionRefused:
            assert dialogue is before
            continue
        assert before.state not in TERMINAL, "a closed dialogue changed"
        approvers = dialogue.approvers
        assert len(set(approvers)) == len(approvers)
        assert AGENT not in approvers and "system" not in approvers
        assert (dialogue.state == "approved") == (len(approvers) >= required)
        if dialogue.state == "expired":
            assert dialogue.last_at >= dialogue.expires_at
        else:
            assert dialogue.last_at < dialogue.expires_at
        for turn in dialogue.turns:
            assert turn.asked_by not in (AGENT, "system")
