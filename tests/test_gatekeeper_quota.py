"""Per-agent limits: no agent can make the gateway hold more than its share of open sessions or
of observation text, whatever it sends; a refusal names the limit, logs nothing, and closing
sessions makes room again. The count of each agent's open sessions is a projection of the log
like the sessions themselves."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gatekeeper_support import open_gate, payment_call, snapshot
from service_support import error_of, headers, open_service
from thirdway.errors import InputError, QuotaExceeded
from thirdway.gateway import Gatekeeper, Granted, banking
from thirdway.gateway.sessions import State, rebuild
from thirdway.protocol.models import LogEntry


def _refused(gate: Gatekeeper, call: Any, match: str) -> QuotaExceeded:
    before = snapshot(gate)
    with pytest.raises(QuotaExceeded, match=match) as raised:
        call()
    assert snapshot(gate) == before
    assert "\n" not in str(raised.value)
    return raised.value


def test_an_agent_holds_at_most_its_open_sessions(tmp_path: Path) -> None:
    gate, _bank, _ = open_gate(tmp_path, sessions_per_agent=3)
    try:
        held = [gate.open_session("agent-7", banking.INSTRUCTION) for _ in range(3)]
        _refused(
            gate,
            lambda: gate.open_session("agent-7", banking.INSTRUCTION),
            "already has 3 open sessions, the most one agent may hold; close one",
        )
        other = gate.open_session("agent-8", banking.INSTRUCTION)  # another agent's share
        gate.close_session(held[0])
        again = gate.open_session("agent-7", banking.INSTRUCTION)
        assert gate.observations(again)[0].content == banking.INSTRUCTION
        gate.close_session(other)
    finally:
        gate.close()
    # Reopened: the rebuilt sessions count, and nothing else.
    gate, _bank, _ = open_gate(tmp_path, sessions_per_agent=3)
    try:
        _refused(gate, lambda: gate.open_session("agent-7", banking.INSTRUCTION), "3 open")
        gate.open_session("agent-8", banking.INSTRUCTION)
    finally:
        gate.close()


def test_an_agents_open_sessions_hold_at_most_its_share_of_text(tmp_path: Path) -> None:
    share = len(banking.INSTRUCTION) * 2 + 1000
    gate, bank, _ = open_gate(tmp_path, chars_per_agent=share)
    try:
        first = gate.open_session("agent-7", banking.INSTRUCTION)
        second = gate.open_session("agent-7", banking.INSTRUCTION)
        gate.record_observation(second, channel="principal", content="x" * 1000)  # exactly full
        for call in (
            lambda: gate.record_observation(first, channel="principal", content="y"),
            lambda: gate.record_tool_result(first, payment_call(), "z"),
            lambda: gate.open_session("agent-7", "pay"),
        ):
            _refused(gate, call, f"more than {share} characters of observations")
        other = gate.open_session("agent-8", banking.INSTRUCTION)
        gate.record_observation(other, channel="principal", content="x" * 1000)

        # A tool result over the share is recorded as why it could not be (the tool ran).
        gate.close_session(second)
        granted = gate.propose(first, banking.read_proposal(first))
        assert isinstance(granted, Granted)
        bank.files[banking.BILL_FILE] = "w" * (share + 1)
        call = banking.read_proposal(first)["action"]
        executed = gate.execute(first, granted.token, call)
        assert bank.calls["read_file"] == 1 and not executed.ok
        result = gate.observations(first)[executed.result_index].content
        assert result == executed.error
        assert result.startswith("error: the tool's result cannot be recorded")
        assert "characters of observations" in result
    finally:
        gate.close()


def test_the_limits_are_positive_integers(tmp_path: Path) -> None:
    for bad in (0, -1, True, 2.5, "10"):
        with pytest.raises(InputError, match="sessions_per_agent must be a positive integer"):
            open_gate(tmp_path / "a", sessions_per_agent=bad)
        with pytest.raises(InputError, match="chars_per_agent must be a positive integer"):
            open_gate(tmp_path / "b", chars_per_agent=bad)


def _index_of(state: State) -> dict[str, set[str]]:
    grouped: dict[str, set[str]] = {}
    for session in state.sessions.values():
        grouped.setdefault(session.agent, set()).add(session.id)
    return grouped


@settings(
    max_examples=15,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    steps=st.lists(
        st.tuples(st.sampled_from(["open", "close", "observe"]), st.integers(0, 2)),
        min_size=1,
        max_size=25,
    )
)
def test_the_per_agent_index_is_what_the_log_says(tmp_path_factory: Any, steps: Any) -> None:
    """Whatever opens, closes and refusals happen, each agent's open sessions as the gatekeeper
    counts them are exactly its open sessions, in memory and as rebuilt from the log."""
    folder = tmp_path_factory.mktemp("quota")
    gate, _bank, _ = open_gate(folder, sessions_per_agent=2, chars_per_agent=400)
    sessions: dict[str, list[str]] = {}
    try:
        for action, number in steps:
            agent = f"agent-{number}"
            mine = sessions.setdefault(agent, [])
            try:
                if action == "open" or not mine:
                    mine.append(gate.open_session(agent, "read the bill"))
                elif action == "close":
                    gate.close_session(mine.pop(0))
                else:
                    gate.record_observation(mine[-1], channel="principal", content="x" * 150)
            except QuotaExceeded:
                pass
            assert gate._state.by_agent == _index_of(gate._state)
            assert all(len(ids) <= 2 for ids in gate._state.by_agent.values())
            assert all(
                sum(s.chars for s in gate._state.open_sessions(a)) <= 400
                for a in gate._state.by_agent
            )
        size = gate.log.size()
        rebuilt = rebuild((i, LogEntry.model_validate_json(gate.log.entry(i))) for i in range(size))
        assert rebuilt.by_agent == gate._state.by_agent == _index_of(rebuilt)
        assert {a: set(ids) for a, ids in sessions.items() if ids} == gate._state.by_agent
    finally:
        gate.close()


def test_the_service_answers_429_quota_exceeded(tmp_path: Path) -> None:
    client, keys, services = open_service(tmp_path, sessions_per_agent=1)
    try:
        body = {"instruction": banking.INSTRUCTION}
        first = client.post("/v1/sessions", json=body, headers=headers(keys.agent))
        assert first.status_code == 201, first.text
        size = services.gate.log.size()
        refused = client.post("/v1/sessions", json=body, headers=headers(keys.agent))
        error = error_of(refused, 429)
        assert error["code"] == "quota_exceeded"
        assert "already has 1 open sessions" in error["message"]
        assert services.gate.log.size() == size
        other = client.post("/v1/sessions", json=body, headers=headers(keys.other))
        assert other.status_code == 201, other.text
        sid = first.json()["session"]
        assert client.delete(f"/v1/sessions/{sid}", headers=headers(keys.agent)).status_code in (
            200,
            204,
        )
        again = client.post("/v1/sessions", json=body, headers=headers(keys.agent))
        assert again.status_code == 201, again.text
    finally:
        services.close()
