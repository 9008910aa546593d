"""Bad input at every public entry point of the Gatekeeper: a clear error, the log byte for byte
unchanged (or grown by exactly the expected refusal entry), the session's record unchanged, and
the gatekeeper still serving afterwards."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from gatekeeper_support import entries, open_gate, payment_call, read_bill, snapshot
from thirdway.capability import CapabilityIssuer
from thirdway.errors import CapabilityError, GateError, InputError
from thirdway.gateway import Escalated, Gatekeeper, Granted, banking


@pytest.fixture
def world(tmp_path: Path) -> Iterator[tuple[Gatekeeper, Any, Any, str, Granted]]:
    """A session that read the bill and holds an unused token for the honest payment."""
    gate, bank, clock = open_gate(tmp_path)
    sid = gate.open_session("agent-7", banking.INSTRUCTION)
    granted = gate.propose(sid, banking.payment_proposal(sid, read_bill(gate, sid)))
    assert isinstance(granted, Granted)
    yield gate, bank, clock, sid, granted
    gate.close()


def _unchanged(
    gate: Gatekeeper, sid: str, call: Callable[[], object], error: type[Exception], match: str
) -> Exception:
    """``call`` raises ``error`` matching ``match``, and neither the log nor the record moved."""
    log_before, record_before = snapshot(gate), gate.observations(sid)
    with pytest.raises(error, match=match) as raised:
        call()
    assert snapshot(gate) == log_before
    assert gate.observations(sid) == record_before
    assert "\n" not in str(raised.value)
    return raised.value


def _still_serving(gate: Gatekeeper, sid: str) -> None:
    assert gate.propose(sid, banking.read_proposal(sid)).outcome == "granted"
    assert gate.log.verify().ok


# --------------------------------------------------------------------------- open_session

BAD_AGENTS = [
    ("", "at least 1 character"),
    ("a" * 257, "at most 256"),
    ("agent\n7", "should match pattern"),
    (7, "valid string"),
    (None, "valid string"),
    ("\ud800", "unicode string"),
]


@pytest.mark.parametrize(("agent", "match"), BAD_AGENTS)
def test_open_session_refuses_bad_agent_ids(world: Any, agent: object, match: str) -> None:
    gate, _, _, sid, _ = world
    _unchanged(gate, sid, lambda: gate.open_session(agent, "hello"), InputError, match)  # type: ignore[arg-type]
    _still_serving(gate, sid)


@pytest.mark.parametrize(
    ("instruction", "match"),
    [
        ("x" * (8 * 1024 * 1024 + 1), "at most 8388608"),
        (None, "a 'principal' observation needs 'content'"),
        (b"bytes", "valid string"),
        ("bad \udc80 text", "unicode string"),
    ],
)
def test_open_session_refuses_bad_instructions(world: Any, instruction: object, match: str) -> None:
    gate, _, _, sid, _ = world
    _unchanged(gate, sid, lambda: gate.open_session("agent-8", instruction), InputError, match)  # type: ignore[arg-type]


def test_open_session_refuses_a_taken_or_bad_session_id(world: Any) -> None:
    gate, _, _, sid, _ = world
    taken = lambda: gate.open_session("agent-8", "hi", session_id=sid)  # noqa: E731
    _unchanged(gate, sid, taken, GateError, "already exists")
    bad = lambda: gate.open_session("agent-8", "hi", session_id="")  # noqa: E731
    _unchanged(gate, sid, bad, InputError, "invalid id")
    assert gate.session_agent(sid) == "agent-7"


# --------------------------------------------------------------------------- unknown sessions


@pytest.mark.parametrize("session", ["s-nope", "", 42, None, "x" * 10_000])
def test_every_entry_point_refuses_unknown_sessions(world: Any, session: object) -> None:
    gate, _, _, sid, granted = world
    calls: list[Callable[[], object]] = [
        lambda: gate.record_observation(session, channel="principal", content="hi"),  # type: ignore[arg-type]
        lambda: gate.record_tool_result(session, payment_call(), "ok"),  # type: ignore[arg-type]
        lambda: gate.propose(session, banking.read_proposal(sid)),  # type: ignore[arg-type]
        lambda: gate.execute(session, granted.token, payment_call()),  # type: ignore[arg-type]
        lambda: gate.observations(session),  # type: ignore[arg-type]
    ]
    for call in calls:
        error = _unchanged(gate, sid, call, GateError, "unknown session|session id is a string")
        assert len(str(error)) < 200
    assert gate.execute(sid, granted.token, payment_call()).ok  # the token was not touched


def test_every_entry_point_refuses_the_wrong_agent(world: Any) -> None:
    gate, _, _, sid, granted = world
    calls: list[Callable[[], object]] = [
        lambda: gate.record_observation(sid, channel="principal", content="hi", agent="eve"),
        lambda: gate.record_tool_result(sid, payment_call(), "ok", agent="eve"),
        lambda: gate.propose(sid, banking.read_proposal(sid), agent="eve"),
        lambda: gate.execute(sid, granted.token, payment_call(), agent="eve"),
    ]
    for call in calls:
        _unchanged(gate, sid, call, GateError, "belongs to another agent")
    claimed = {**banking.read_proposal(sid), "agent": "eve"}
    _unchanged(gate, sid, lambda: gate.propose(sid, claimed), GateError, "names agent 'eve'")
    assert gate.execute(sid, granted.token, payment_call(), agent="agent-7").ok


# --------------------------------------------------------------------------- observations


@pytest.mark.parametrize(
    ("fields", "error", "match"),
    [
        ({"channel": "gossip", "content": "x"}, InputError, "channel"),
        ({"channel": "data", "content": "x"}, InputError, "needs 'produced_by'"),
        ({"channel": "data", "content": "x", "produced_by": 0}, GateError, "names a principal"),
        ({"channel": "data", "content": "x", "produced_by": 2}, GateError, "names a data"),
        ({"channel": "data", "content": "x", "produced_by": 99}, InputError, "earlier"),
        ({"channel": "data", "content": "x", "produced_by": "1"}, InputError, "valid integer"),
        ({"channel": "principal", "content": b"x"}, InputError, "valid string"),
        ({"channel": "call"}, InputError, "needs 'call'"),
        ({"channel": "call", "call": {"tool": "t", "args": []}}, InputError, "call.args"),
        ({"channel": "call", "call": {"tool": "t", "args": {"n": 2**60}}}, InputError, "RFC 8785"),
        ({"channel": "principal", "content": "x" * (8 * 2**20 + 1)}, InputError, "at most"),
        ({"channel": "principal", "content": "x", "produced_by": 1}, InputError, "cannot carry"),
    ],
)
def test_record_observation_refuses_malformed_observations(
    world: Any, fields: dict[str, Any], error: type[Exception], match: str
) -> None:
    gate, _, _, sid, _ = world
    _unchanged(gate, sid, lambda: gate.record_observation(sid, **fields), error, match)
    _still_serving(gate, sid)


def test_record_tool_result_refuses_malformed_pairs(world: Any) -> None:
    gate, _, _, sid, _ = world
    bad_call = lambda: gate.record_tool_result(sid, {"tool": ""}, "ok")  # noqa: E731
    _unchanged(gate, sid, bad_call, InputError, "call.tool")
    huge = lambda: gate.record_tool_result(sid, payment_call(), "x" * (8 * 2**20 + 1))  # noqa: E731
    _unchanged(gate, sid, huge, InputError, "content")


def test_a_session_cannot_grow_without_bound(world: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    gate, _, _, sid, _ = world
    monkeypatch.setattr("thirdway.gateway.gatekeeper.MAX_SESSION_CHARS", 1000)
    big = lambda: gate.record_observation(sid, channel="principal", content="x" * 1000)  # noqa: E731
    _unchanged(gate, sid, big, GateError, "start a new session")


# --------------------------------------------------------------------------- proposals


def _proposal_variants(sid: str) -> list[tuple[object, type[Exception], str]]:
    honest = banking.read_proposal(sid)
    no_goal = {k: v for k, v in honest.items() if k != "goal"}
    return [
        ("{not json", InputError, "invalid proposal"),
        (b"\xff\xfe", InputError, "invalid proposal"),
        ("[]", InputError, "invalid proposal"),
        ([honest], InputError, "a proposal is a JSON object"),
        (42, InputError, "a proposal is a JSON object"),
        (no_goal, InputError, "goal: Field required"),
        ({**honest, "extra": 1}, InputError, "extra: Extra inputs are not permitted"),
        ({**honest, "format": "thirdway/2"}, InputError, "format"),
        ({**honest, "steps": "s1"}, InputError, "steps"),
        (json.dumps({**honest, "steps": [honest["steps"][0]] * 1001}), InputError, "steps"),
        ({**honest, "session": "s-other"}, GateError, "names session 's-other'"),
        ({**honest, "action": {"tool": "wire_everything", "args": {}}}, GateError, "no manifest"),
        (
            {**honest, "goal": {"obs": 0, "quote": "q" * (64 * 1024 + 1)}},
            InputError,
            "goal.quote",
        ),
    ]


def test_propose_refuses_malformed_proposals(world: Any) -> None:
    gate, _, _, sid, _ = world
    for proposal, error, match in _proposal_variants(sid):
        _unchanged(gate, sid, lambda p=proposal: gate.propose(sid, p), error, match)  # type: ignore[misc]
    _still_serving(gate, sid)


def test_propose_refuses_a_huge_document(world: Any) -> None:
    gate, _, _, sid, _ = world
    huge = b'{"pad": "' + b"x" * (64 * 1024 * 1024) + b'"}'
    _unchanged(gate, sid, lambda: gate.propose(sid, huge), InputError, "the limit is")


def test_each_proposal_is_logged_once(world: Any) -> None:
    gate, _, _, sid, _ = world
    before = gate.log.size()
    outcome = gate.propose(sid, json.dumps(banking.read_proposal(sid)))
    assert outcome.outcome == "granted"
    assert gate.log.size() == before + 4
    proposals = [e for e in entries(gate) if e.type == "proposal"]
    assert len(proposals) == 3  # read, pay, this one


# --------------------------------------------------------------------------- execute


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        ("{oops", InputError, "invalid tool call"),
        ({"tool": "send_money", "args": "all"}, InputError, "args"),
        ({"args": {}}, InputError, "tool: Field required"),
        ([], InputError, "a tool call is a JSON object"),
        ({"tool": "wire_everything", "args": {}}, GateError, "not hosted here"),
        ({"tool": "send_money", "args": {"amount": float("nan")}}, InputError, "RFC 8785"),
    ],
)
def test_execute_refuses_malformed_calls(
    world: Any, call: object, error: type[Exception], match: str
) -> None:
    gate, bank, _, sid, granted = world
    _unchanged(gate, sid, lambda: gate.execute(sid, granted.token, call), error, match)  # type: ignore[arg-type]
    assert bank.calls["send_money"] == 0
    assert gate.execute(sid, granted.token, payment_call()).ok  # not spent by the bad calls


@pytest.mark.parametrize(
    ("token", "reason"),
    [
        ("", "malformed"),
        (None, "malformed"),
        (12, "malformed"),
        ("not-a-biscuit", "malformed"),
        ("A" * 9000, "malformed"),
    ],
)
def test_garbage_tokens_are_refused_without_a_trace(world: Any, token: object, reason: str) -> None:
    gate, bank, _, sid, _ = world
    refused = _unchanged(
        gate,
        sid,
        lambda: gate.execute(sid, token, payment_call()),
        CapabilityError,
        reason,  # type: ignore[arg-type]
    )
    assert isinstance(refused, CapabilityError) and refused.reason == reason
    assert bank.calls["send_money"] == 0


def test_execute_before_propose_has_no_token_to_use(world: Any) -> None:
    gate, bank, clock, sid, _ = world
    stranger = CapabilityIssuer()  # a token minted by someone else
    from thirdway.capability import CapabilityClaims

    forged = stranger.mint(
        CapabilityClaims.for_call(
            agent="agent-7", session=sid, tool="send_money", args=payment_call()["args"],
            proposal_index=0, verdict_sha256="0" * 64, now=clock.now,
        )
    )  # fmt: skip
    refused = _unchanged(
        gate, sid, lambda: gate.execute(sid, forged, payment_call()), CapabilityError, "unknown_key"
    )
    assert isinstance(refused, CapabilityError) and refused.reason == "unknown_key"
    assert bank.calls["send_money"] == 0


def _refused_once(
    gate: Gatekeeper, sid: str, call: Callable[[], object], reason: str
) -> dict[str, Any]:
    """``call`` is refused with ``reason`` and exactly one refusal entry is appended."""
    before = snapshot(gate)
    record = gate.observations(sid)
    with pytest.raises(CapabilityError) as refused:
        call()
    assert refused.value.reason == reason
    after = snapshot(gate)
    assert after[: len(before)] == before and len(after) == len(before) + 1
    assert gate.observations(sid) == record
    (entry,) = entries(gate, len(before))
    assert entry.type == "execution" and entry.payload["event"] == "refused"
    assert entry.payload["reason"] == reason
    return entry.payload


def test_a_replayed_token_is_refused_and_logged(world: Any) -> None:
    gate, bank, _, sid, granted = world
    assert gate.execute(sid, granted.token, payment_call()).ok
    _refused_once(gate, sid, lambda: gate.execute(sid, granted.token, payment_call()), "spent")
    assert bank.calls["send_money"] == 1


def test_a_token_for_another_session_is_refused_and_logged(world: Any) -> None:
    gate, bank, _, sid, granted = world
    other = gate.open_session("agent-7", banking.INSTRUCTION)
    payload = _refused_once(
        gate, other, lambda: gate.execute(other, granted.token, payment_call()), "wrong_session"
    )
    assert payload["tool"] == "send_money"
    assert bank.calls["send_money"] == 0
    assert gate.execute(sid, granted.token, payment_call()).ok  # still good where it belongs


def test_a_token_for_another_agent_is_refused_and_logged(world: Any) -> None:
    gate, bank, _, _, granted = world
    other = gate.open_session("agent-8", banking.INSTRUCTION)
    _refused_once(
        gate, other, lambda: gate.execute(other, granted.token, payment_call()), "wrong_agent"
    )
    assert bank.calls["send_money"] == 0


def test_a_token_for_another_tool_is_refused_and_logged(world: Any) -> None:
    gate, bank, _, sid, granted = world
    call = {"tool": "get_balance", "args": {}}
    _refused_once(gate, sid, lambda: gate.execute(sid, granted.token, call), "wrong_tool")
    assert bank.calls["get_balance"] == 0


def test_arguments_the_tool_does_not_take_do_not_spend_the_token(tmp_path: Path) -> None:
    gate, bank, _ = open_gate(tmp_path)
    with gate:
        sid = gate.open_session("agent-7", "Please tell me my balance in euros.")
        proposal = {
            "session": sid,
            "action": {"tool": "get_balance", "args": {"currency": "euros"}},
            "goal": {"obs": 0, "quote": "tell me my balance"},
            "steps": [{"id": "s1", "claim": "The user wants the balance in euros.",
                       "about_principal": True, "cites": [{"obs": 0, "quote": "in euros"}]}],
            "bindings": {"currency": {"step": "s1", "quote": "euros"}},
            "effects": {"reversible": True, "external": False, "summary": "reads the balance"},
        }  # fmt: skip
        granted = gate.propose(sid, proposal)
        assert isinstance(granted, Granted)
        call = proposal["action"]
        _unchanged(gate, sid, lambda: gate.execute(sid, granted.token, call), InputError, "accept")
        assert bank.calls["get_balance"] == 0
        assert not gate.spent_set.is_spent(
            gate.issuer.verifier()
            .verify(granted.token, tool="get_balance", args={"currency": "euros"}, now=1.7e9)
            .nonce
        )


# --------------------------------------------------------------------------- escalations


@pytest.fixture
def escalated(tmp_path: Path) -> Iterator[tuple[Gatekeeper, str, Escalated]]:
    gate, _, _ = open_gate(tmp_path, tier=2)
    sid = gate.open_session("agent-2", banking.INSTRUCTION)
    outcome = gate.propose(sid, banking.payment_proposal(sid, read_bill(gate, sid)))
    assert isinstance(outcome, Escalated)
    yield gate, sid, outcome
    gate.close()


@pytest.mark.parametrize(
    ("handle", "auditor", "reason", "error", "match"),
    [
        ("esc-nope", "auditor-a", "ok", GateError, "no open escalation"),
        (None, "auditor-a", "ok", GateError, "no open escalation"),
        ("HANDLE", "", "ok", InputError, "invalid auditor id"),
        ("HANDLE", "auditor\x00", "ok", InputError, "invalid auditor id"),
        ("HANDLE", "agent-2", "ok", GateError, "an agent can never approve"),
        ("HANDLE", "auditor-a", "", InputError, "needs a reason"),
        ("HANDLE", "auditor-a", "   ", InputError, "needs a reason"),
        ("HANDLE", "auditor-a", None, InputError, "needs a reason"),
        ("HANDLE", "auditor-a", "r" * 20_000, InputError, "the limit is"),
    ],
)
def test_escalation_answers_refuse_bad_input(
    escalated: Any, handle: Any, auditor: Any, reason: Any, error: type[Exception], match: str
) -> None:
    gate, sid, outcome = escalated
    handle = outcome.handle if handle == "HANDLE" else handle
    for answer in (gate.approve_escalation, gate.deny_escalation):
        _unchanged(gate, sid, lambda a=answer: a(handle, auditor, reason), error, match)  # type: ignore[misc]
    assert gate.open_escalations() == [outcome.handle]
    assert isinstance(gate.approve_escalation(outcome.handle, "auditor-a", "ok"), Granted)
