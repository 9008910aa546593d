"""Spends live in the log's database and reach the disk with the log's next commit; a gatekeeper
reopened after a stop that was not clean voids every token minted before it."""

from __future__ import annotations

import json
import multiprocessing
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from gatekeeper_support import entries, open_gate, payment_call, read_bill
from thirdway.errors import CapabilityError, GateError, LogError
from thirdway.gateway import Granted, banking, restart
from thirdway.gateway.restart import mark_clean, open_floor


def _grant(gate: Any, sid: str) -> Granted:
    bill = read_bill(gate, sid)
    granted = gate.propose(sid, banking.payment_proposal(sid, bill))
    assert isinstance(granted, Granted), granted
    return granted


def _grant_then_die(folder: str, out: Any) -> None:
    """In a child process: open, get a payment token, and stop without closing (a crash)."""
    import os

    gate, _bank, _clock = open_gate(Path(folder))
    sid = gate.open_session("agent-7", banking.INSTRUCTION)
    granted = _grant(gate, sid)
    out.put(json.dumps({"sid": sid, "token": granted.token, "size": gate.log.size()}))
    out.close()
    out.join_thread()
    os._exit(0)


def _crash_with_a_token(folder: Path) -> dict[str, Any]:
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    child = context.Process(target=_grant_then_die, args=(str(folder), queue))
    child.start()
    result: dict[str, Any] = json.loads(queue.get(timeout=120))
    child.join(timeout=60)
    assert child.exitcode == 0
    return result


def test_spends_are_kept_in_the_log_database(tmp_path: Path) -> None:
    gate, bank, _ = open_gate(tmp_path)
    try:
        sid = gate.open_session("agent-7", banking.INSTRUCTION)
        granted = _grant(gate, sid)
        gate.execute(sid, granted.token, payment_call())
        nonce = entries(gate)[granted.capability_index].payload["claims"]["nonce"]
    finally:
        gate.close()
    assert not (tmp_path / "spent.db").exists()
    with sqlite3.connect(tmp_path / "log.db") as conn:
        rows = conn.execute("SELECT nonce FROM capability_spent").fetchall()
    assert (nonce,) in rows
    assert bank.calls["send_money"] == 1


def test_after_a_clean_stop_tokens_stay_good_and_spent_ones_stay_spent(tmp_path: Path) -> None:
    gate, _bank, clock = open_gate(tmp_path)
    sid = gate.open_session("agent-7", banking.INSTRUCTION)
    unused = _grant(gate, sid)
    gate.close()

    gate, bank, _ = open_gate(tmp_path, clock=clock)
    try:
        size = gate.log.size()
        assert gate.token_floor == 0
        executed = gate.execute(sid, unused.token, payment_call())
        assert executed.ok and bank.calls["send_money"] == 1
        assert all(e.payload.get("event") != "restart" for e in entries(gate, size))
    finally:
        gate.close()

    gate, bank, _ = open_gate(tmp_path, clock=clock)
    try:
        with pytest.raises(CapabilityError) as refused:
            gate.execute(sid, unused.token, payment_call())
        assert refused.value.reason == "spent"
        assert bank.calls["send_money"] == 0
    finally:
        gate.close()


def test_a_crash_voids_the_tokens_minted_before_it(tmp_path: Path) -> None:
    crashed = _crash_with_a_token(tmp_path)
    gate, bank, _ = open_gate(tmp_path)
    try:
        assert gate.token_floor == crashed["size"]
        note = entries(gate)[crashed["size"]]
        assert note.type == "note"
        assert note.payload == {"event": "restart", "clean": False, "token_floor": crashed["size"]}

        before = gate.log.size()
        with pytest.raises(CapabilityError, match="propose the action again") as refused:
            gate.execute(crashed["sid"], crashed["token"], payment_call())
        assert refused.value.reason == "voided"
        assert bank.calls["send_money"] == 0
        (refusal,) = entries(gate, before)
        assert refusal.type == "execution" and refusal.payload["reason"] == "voided"

        # The session goes on: a new proposal gets a token that works.
        granted = gate.propose(crashed["sid"], banking.payment_proposal(crashed["sid"], 2))
        assert isinstance(granted, Granted) and granted.proposal_index >= crashed["size"]
        assert gate.execute(crashed["sid"], granted.token, payment_call()).ok
        assert bank.calls["send_money"] == 1
        assert gate.log.verify().ok
    finally:
        gate.close()

    # A clean stop later keeps the floor: the token from before the crash stays void.
    gate, bank, _ = open_gate(tmp_path)
    try:
        assert gate.token_floor == crashed["size"]
        with pytest.raises(CapabilityError) as refused:
            gate.execute(crashed["sid"], crashed["token"], payment_call())
        assert refused.value.reason == "voided"
        assert bank.calls["send_money"] == 0
    finally:
        gate.close()


def test_a_folder_without_a_stop_record_is_treated_as_a_crash(tmp_path: Path) -> None:
    gate, _bank, clock = open_gate(tmp_path)
    sid = gate.open_session("agent-7", banking.INSTRUCTION)
    granted = _grant(gate, sid)
    gate.close()
    with sqlite3.connect(tmp_path / "log.db") as conn:  # as an earlier version left it
        conn.execute("DROP TABLE gate_restart")

    gate, bank, _ = open_gate(tmp_path, clock=clock)
    try:
        assert gate.token_floor == granted.capability_index + 1
        with pytest.raises(CapabilityError) as refused:
            gate.execute(sid, granted.token, payment_call())
        assert refused.value.reason == "voided"
        assert bank.calls["send_money"] == 0
    finally:
        gate.close()


def test_an_empty_folder_voids_nothing_and_logs_no_restart(tmp_path: Path) -> None:
    gate, _bank, _ = open_gate(tmp_path)
    try:
        assert gate.token_floor == 0 and gate.log.size() == 0
    finally:
        gate.close()


def test_the_floor_only_rises_and_a_clean_mark_is_consumed(tmp_path: Path) -> None:
    path = tmp_path / "log.db"
    first = open_floor(path, 5)
    assert (first.token_floor, first.clean, first.raised) == (5, None, True)
    mark_clean(path)
    clean = open_floor(path, 9)
    assert (clean.token_floor, clean.clean, clean.raised) == (5, True, False)
    crashed = open_floor(path, 12)  # no mark since the last opening
    assert (crashed.token_floor, crashed.clean, crashed.raised) == (12, False, True)


def test_a_second_gatekeeper_on_a_folder_in_use_is_refused(tmp_path: Path) -> None:
    gate, _bank, _ = open_gate(tmp_path)
    try:
        size = gate.log.size()
        with pytest.raises(GateError, match="another gatekeeper is running on"):
            open_gate(tmp_path)
        assert gate.log.size() == size  # no restart note, nothing voided
        assert gate.token_floor == 0
    finally:
        gate.close()
    again, _bank, _ = open_gate(tmp_path)  # released by close
    again.close()


def test_a_failed_clean_stop_record_still_closes_everything(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    gate, _bank, clock = open_gate(tmp_path)
    sid = gate.open_session("agent-7", banking.INSTRUCTION)
    granted = _grant(gate, sid)

    def broken(_path: Path) -> None:
        raise LogError("disk full")

    monkeypatch.setattr(restart, "mark_clean", broken)
    with pytest.raises(LogError, match="disk full"):
        gate.close()
    monkeypatch.undo()
    reopened, bank, _ = open_gate(tmp_path, clock=clock)  # the lock was released
    try:
        with pytest.raises(CapabilityError) as refused:
            reopened.execute(sid, granted.token, payment_call())
        assert refused.value.reason == "voided"  # not recorded as clean: treated as a crash
        assert bank.calls["send_money"] == 0
    finally:
        reopened.close()
