"""``Gatekeeper.act``: propose and, when granted, execute at once, with the same log as the two
calls made one after another."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from gatekeeper_support import (
    Clock,
    entries,
    injected_transfer,
    open_gate,
    payment_call,
    snapshot,
    types,
)
from thirdway.errors import CapabilityError, GateError, InputError
from thirdway.gateway import Acted, Denied, Escalated, Executed, Gatekeeper, Granted, banking

SID = "s-act"
AGENT = "agent-7"
RANDOM_KEYS = {"nonce", "handle"}
"""Fields that are random per run (a capability's nonce, a dialogue's handle)."""


def _masked(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: "*" if k in RANDOM_KEYS else _masked(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_masked(v) for v in value]
    return value


def masked_log(gate: Gatekeeper) -> list[Any]:
    return [_masked(entry.model_dump(mode="json")) for entry in entries(gate)]


Step = Callable[[Gatekeeper, dict[str, Any]], Any]


def two_calls(gate: Gatekeeper, proposal: dict[str, Any]) -> Any:
    outcome = gate.propose(SID, proposal)
    if isinstance(outcome, Granted):
        return outcome, gate.execute(SID, outcome.token, proposal["action"])
    return outcome, None


def one_call(gate: Gatekeeper, proposal: dict[str, Any]) -> Any:
    acted = gate.act(SID, proposal)
    assert isinstance(acted, Acted)
    return acted.outcome, acted.executed


def scenario(folder: Path, step: Step, *, tier: int) -> tuple[Gatekeeper, Any, list[Any]]:
    """The bill read, the honest payment, the injected transfer: each through ``step``."""
    gate, bank, _ = open_gate(folder, tier=tier, clock=Clock())
    gate.open_session(AGENT, banking.INSTRUCTION, session_id=SID)
    results = [step(gate, banking.read_proposal(SID))]
    bill = results[0][1].result_index
    results.append(step(gate, banking.payment_proposal(SID, bill)))
    results.append(step(gate, injected_transfer(SID, bill)))
    return gate, bank, results


@pytest.mark.parametrize("tier", [3, 2])
def test_the_log_is_the_two_call_flow_entry_for_entry(tmp_path: Path, tier: int) -> None:
    """Granted (read, and the payment at tier 3), escalated (the payment at tier 2), denied (the
    injected transfer): the same entries, in the same order, with the same contents (up to the
    random nonce and handle), and the same answers."""
    gate_a, bank_a, two = scenario(tmp_path / "two", two_calls, tier=tier)
    gate_b, bank_b, one = scenario(tmp_path / "one", one_call, tier=tier)
    with gate_a, gate_b:
        assert masked_log(gate_b) == masked_log(gate_a)
        assert types(gate_b) == types(gate_a)
        assert bank_b.calls == bank_a.calls
        assert bank_b.calls["read_file"] == 1
        assert bank_b.calls["send_money"] == (1 if tier == 3 else 0)
        kinds = [type(outcome) for outcome, _ in one]
        assert kinds == [Granted, Granted if tier == 3 else Escalated, Denied]
        for (outcome_a, executed_a), (outcome_b, executed_b) in zip(two, one, strict=True):
            assert _masked(outcome_b.model_dump(exclude={"token"})) == _masked(
                outcome_a.model_dump(exclude={"token"})
            )
            assert (executed_b is None) == (executed_a is None)
            if executed_b is not None:
                assert executed_b == executed_a
        assert gate_b.observations(SID) == gate_a.observations(SID)
        assert gate_b.log.verify().ok


def test_the_token_in_the_answer_is_spent(tmp_path: Path) -> None:
    gate, bank, _ = open_gate(tmp_path)
    with gate:
        gate.open_session(AGENT, banking.INSTRUCTION, session_id=SID)
        acted = gate.act(SID, banking.read_proposal(SID))
        assert isinstance(acted.outcome, Granted) and isinstance(acted.executed, Executed)
        assert acted.executed.ok and "Car Rental" in acted.executed.content
        assert acted.executed.log_index == gate.log.size() - 1
        with pytest.raises(CapabilityError) as caught:
            gate.execute(SID, acted.outcome.token, banking.read_proposal(SID)["action"])
        assert caught.value.reason == "spent"
        assert bank.calls["read_file"] == 1


def test_an_escalation_from_act_is_released_through_the_existing_path(tmp_path: Path) -> None:
    gate, bank, _ = open_gate(tmp_path, tier=2)
    with gate:
        gate.open_session(AGENT, banking.INSTRUCTION, session_id=SID)
        bill = gate.act(SID, banking.read_proposal(SID)).executed
        assert bill is not None
        acted = gate.act(SID, banking.payment_proposal(SID, bill.result_index))
        assert isinstance(acted.outcome, Escalated) and acted.executed is None
        assert bank.calls["send_money"] == 0
        granted = gate.approve_escalation(acted.outcome.handle, "auditor-alice", "bill checked")
        assert isinstance(granted, Granted)
        assert gate.execute(SID, granted.token, payment_call()).ok
        assert bank.calls["send_money"] == 1


def test_a_tool_not_hosted_here_is_refused_before_anything_is_logged(tmp_path: Path) -> None:
    gate, _, _ = open_gate(tmp_path)
    with gate:
        gate.open_session(AGENT, banking.INSTRUCTION, session_id=SID)
        before = snapshot(gate)
        proposal = banking.read_proposal(SID)
        proposal["action"]["tool"] = "delete_everything"
        with pytest.raises(GateError, match="'delete_everything' is not hosted here"):
            gate.act(SID, proposal)
        assert snapshot(gate) == before


def test_wrong_agent_unknown_session_and_bad_input_fail_without_entries(tmp_path: Path) -> None:
    gate, bank, _ = open_gate(tmp_path)
    with gate:
        gate.open_session(AGENT, banking.INSTRUCTION, session_id=SID)
        before = snapshot(gate)
        with pytest.raises(GateError, match="belongs to another agent"):
            gate.act(SID, banking.read_proposal(SID), agent="agent-8")
        with pytest.raises(GateError, match="unknown session"):
            gate.act("s-nope", banking.read_proposal("s-nope"))
        with pytest.raises(InputError, match="invalid proposal"):
            gate.act(SID, {"action": "read everything"})
        with pytest.raises(GateError, match="names session"):
            gate.act(SID, banking.read_proposal("s-other"))
        assert snapshot(gate) == before
        assert sum(bank.calls.values()) == 0


def test_nothing_enters_the_session_between_the_grant_and_the_run(tmp_path: Path) -> None:
    """The session's lock is held from the proposal to the execution: an observation recorded
    concurrently lands before the proposal or after the execution, never in between."""
    gate, _, _ = open_gate(tmp_path)
    with gate:
        gate.open_session(AGENT, banking.INSTRUCTION, session_id=SID)
        granted = threading.Event()
        release = threading.Event()
        real_execute = gate.execute

        def slow_execute(*args: Any, **kwargs: Any) -> Executed:
            granted.set()
            release.wait(5)
            return real_execute(*args, **kwargs)

        gate.execute = slow_execute  # type: ignore[method-assign]
        worker = threading.Thread(target=gate.act, args=(SID, banking.read_proposal(SID)))
        worker.start()
        assert granted.wait(5)
        recorder = threading.Thread(
            target=gate.record_observation,
            args=(SID,),
            kwargs={"channel": "principal", "content": "also check the balance"},
        )
        recorder.start()
        recorder.join(0.3)
        assert recorder.is_alive()  # waiting for the session's lock
        release.set()
        worker.join(5)
        recorder.join(5)
        assert [o.channel for o in gate.observations(SID)] == [
            "principal", "call", "data", "principal"
        ]  # fmt: skip


def test_acted_is_executed_exactly_when_granted(tmp_path: Path) -> None:
    gate, _, _ = open_gate(tmp_path)
    with gate:
        gate.open_session(AGENT, banking.INSTRUCTION, session_id=SID)
        acted = gate.act(SID, banking.read_proposal(SID))
        assert acted.executed is not None
        with pytest.raises(ValidationError, match="exactly when"):
            Acted(outcome=acted.outcome)
        denied = Denied(reason="no")
        with pytest.raises(ValidationError, match="exactly when"):
            Acted(outcome=denied, executed=acted.executed)
        again = Acted.model_validate_json(acted.model_dump_json())
        assert again == acted
