"""Spends and session steps live in the log's database and reach the disk with the log's next
synced commit; a gatekeeper reopened after a stop that was not clean voids every token minted
before it and closes every session that was open."""

from __future__ import annotations

import json
import multiprocessing
import shutil
import sqlite3
from pathlib import Path
from typing import Any

import pytest

import gatekeeper_support
from gatekeeper_support import entries, open_gate, payment_call, read_bill
from thirdway.errors import CapabilityError, GateError, InputError, LogError
from thirdway.gateway import Denied, FixedTier, Granted, banking, restart
from thirdway.gateway.entries import entry, restart_entry
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


def _escalate_then_die(folder: str, out: Any) -> None:
    """In a child process: at tier 2 the payment escalates; stop without closing (a crash)."""
    import os

    gate, _bank, _clock = open_gate(Path(folder), tier=2)
    sid = gate.open_session("agent-7", banking.INSTRUCTION)
    escalated = gate.propose(sid, banking.payment_proposal(sid, read_bill(gate, sid)))
    out.put(json.dumps({"sid": sid, "handle": escalated.handle, "size": gate.log.size()}))
    out.close()
    out.join_thread()
    os._exit(0)


def _crash_with_a_token(folder: Path, target: Any = None) -> dict[str, Any]:
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    child = context.Process(target=target or _grant_then_die, args=(str(folder), queue))
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


def _built(folder: Path, spent_name: str, bank: Any, **options: Any) -> tuple[Any, Any, Any]:
    """A gatekeeper built directly over ``folder``'s log (no tenancy, no restart record), with
    its spent-set and log, which the caller closes."""
    from thirdway.capability import SQLiteSpentSet
    from thirdway.gateway import Gatekeeper
    from thirdway.gateway.keys import load_or_create_issuer
    from thirdway.ledger.log import TransparencyLog

    log = TransparencyLog.open(folder / "log.db")
    spent = SQLiteSpentSet(folder / spent_name)
    issuer = load_or_create_issuer(folder / "capability.key")
    gate = Gatekeeper(log, issuer=issuer, spent_set=spent, tools=bank.registry(), **options)
    return gate, spent, log


def _refused_as_interrupted(gate: Any, sid: str, token: str, *, closes: bool = True) -> None:
    """Every step on ``sid`` is refused, naming the restart, and nothing is logged (closing
    too, unless the session is still open for an escalation's answer)."""
    before = gate.log.size()
    steps = [
        lambda: gate.execute(sid, token, payment_call()),
        lambda: gate.propose(sid, banking.payment_proposal(sid, 2)),
        lambda: gate.act(sid, banking.read_proposal(sid)),
        lambda: gate.record_observation(sid, channel="principal", content="more"),
        lambda: gate.record_tool_result(sid, payment_call(), "a result"),
    ]
    if closes:
        steps.append(lambda: gate.close_session(sid))
    for step in steps:
        with pytest.raises(GateError, match="restarted after a stop that was not clean"):
            step()
    assert gate.log.size() == before


def test_a_crash_closes_the_open_sessions_and_voids_the_tokens_before_it(tmp_path: Path) -> None:
    crashed = _crash_with_a_token(tmp_path)
    gate, bank, _ = open_gate(tmp_path)
    try:
        assert gate.token_floor == crashed["size"]
        note = entries(gate)[crashed["size"]]
        assert note.type == "note"
        assert note.payload == {
            "event": "restart",
            "clean": False,
            "token_floor": crashed["size"],
            "closes_sessions": True,
        }
        _refused_as_interrupted(gate, crashed["sid"], crashed["token"])
        assert bank.calls["send_money"] == 0

        # The agent opens a new session; there a new proposal gets a token that works, and the
        # old token is refused (it belongs to the closed session).
        sid = gate.open_session("agent-7", banking.INSTRUCTION)
        granted = _grant(gate, sid)
        assert granted.proposal_index >= crashed["size"]
        with pytest.raises(CapabilityError) as refused:
            gate.execute(sid, crashed["token"], payment_call())
        assert refused.value.reason == "wrong_session"
        assert gate.execute(sid, granted.token, payment_call()).ok
        assert bank.calls["send_money"] == 1
        assert gate.log.verify().ok
    finally:
        gate.close()

    # A clean stop later keeps the floor, and the rebuild closes the same sessions again.
    gate, bank, _ = open_gate(tmp_path)
    try:
        assert gate.token_floor == crashed["size"]
        _refused_as_interrupted(gate, crashed["sid"], crashed["token"])
        assert len(gate.observations(sid)) > 1  # the session opened after the restart goes on
        assert bank.calls["send_money"] == 0
    finally:
        gate.close()


def test_a_power_cut_after_a_tool_ran_keeps_what_allowed_the_run(tmp_path: Path) -> None:
    """The disk holds what the last fsync covered. Copying the folder right after each synced
    commit gives what a power cut would leave: after a payment ran, the spend and the record of
    the run (not synced on their own) are gone, but the proposal, verdict, decision and
    capability that allowed the run are there; the restart names the crash, the session is
    closed and its token can never run the payment again."""
    live, disk = tmp_path / "live", tmp_path / "disk"
    gate, bank, _ = open_gate(live)
    store: Any = gate.log._store
    inner = store.append

    def append(first: int, new: Any, nodes: Any, *, sync: bool = True) -> None:
        inner(first, new, nodes, sync=sync)
        if sync:
            shutil.rmtree(disk, ignore_errors=True)
            shutil.copytree(live, disk, ignore=shutil.ignore_patterns("*-shm", "gate.lock"))

    store.append = append
    try:
        sid = gate.open_session("agent-7", banking.INSTRUCTION)
        granted = _grant(gate, sid)
        assert gate.execute(sid, granted.token, payment_call()).ok
        assert bank.calls["send_money"] == 1
        ran = [e.type for e in entries(gate)[granted.proposal_index :]]
        allowed = ["proposal", "verdict", "decision", "capability"]
        assert ran == [*allowed, "observation", "observation", "execution"]
    finally:
        store.append = inner
        gate.close()

    after, bank, _ = open_gate(disk)
    try:
        kept = entries(after)
        allowed = granted.proposal_index + 4
        assert [e.type for e in kept[granted.proposal_index : allowed]] == [
            "proposal",
            "verdict",
            "decision",
            "capability",
        ]
        assert kept[allowed].type == "note"
        assert kept[allowed].payload["clean"] is False
        assert len(kept) == allowed + 1  # the run's record was lost with the power
        assert after.token_floor == allowed
        _refused_as_interrupted(after, sid, granted.token)
        fresh = after.open_session("agent-7", banking.INSTRUCTION)
        with pytest.raises(CapabilityError):
            after.execute(fresh, granted.token, payment_call())
        assert bank.calls["send_money"] == 0
        assert after.log.verify().ok
    finally:
        after.close()


def test_an_interrupted_session_with_an_open_escalation_waits_for_its_answer(
    tmp_path: Path,
) -> None:
    """Its escalation was verified on a durable record, so auditors can still answer it (an
    approval is logged but mints nothing: nothing can run in the session); the agent can do
    nothing more in it but close it once it is answered."""
    crashed = _crash_with_a_token(tmp_path, _escalate_then_die)
    sid, handle = crashed["sid"], crashed["handle"]
    gate, bank, _ = open_gate(tmp_path, tier=2)
    try:
        assert gate.open_escalations() == [handle]
        _refused_as_interrupted(gate, sid, "not-a-token", closes=False)
        with pytest.raises(GateError, match="has an open escalation"):
            gate.close_session(sid)
        assert gate.observations(sid)  # reading is not a step
        before = gate.log.size()
        refused = gate.approve_escalation(handle, "alice", "the bill is genuine")
        assert isinstance(refused, Denied) and gate.open_escalations() == []
        assert "propose the action again in a new session" in refused.reason
        approval, refusal = entries(gate, before)  # logged, with no decision and no token
        assert approval.payload["event"] == "approval" and refusal.payload["handle"] == handle
        assert "interrupted" in refusal.payload["error"] and "decision" not in refusal.payload
        assert bank.calls["send_money"] == 0
        gate.close_session(sid)
        with pytest.raises(GateError, match="restarted after a stop that was not clean"):
            gate.propose(sid, banking.read_proposal(sid))
    finally:
        gate.close()
    gate, _bank, _ = open_gate(tmp_path, tier=2)  # the rebuild agrees
    try:
        assert gate.open_escalations() == []
        _refused_as_interrupted(gate, sid, "not-a-token")
        assert gate.log.verify().ok
    finally:
        gate.close()


def test_a_token_below_the_floor_is_voided(tmp_path: Path) -> None:
    """The floor on its own (a gatekeeper built with one, its session still open)."""
    gate, _bank, clock = open_gate(tmp_path)
    sid = gate.open_session("agent-7", banking.INSTRUCTION)
    granted = _grant(gate, sid)
    floor = gate.log.size()
    gate.close()
    bank = gatekeeper_support.CountingBank()
    built, spent, log = _built(tmp_path, "log.db", bank, clock=clock, token_floor=floor)
    try:
        with pytest.raises(CapabilityError, match="propose the action again") as refused:
            built.execute(sid, granted.token, payment_call())
        assert refused.value.reason == "voided"
        assert entries(built)[-1].payload["reason"] == "voided"
        assert bank.calls["send_money"] == 0
    finally:
        spent.close()
        log.close()


def test_only_a_gatekeeper_that_notices_crashes_leaves_steps_unsynced(
    tmp_path: Path,
) -> None:
    """Opening, observing, recording a tool run and closing are committed without their own
    fsync by a gatekeeper opened on its folder (whose restart note would close the sessions a
    power cut cut short and void their tokens); proposals, which decide, are synced, and so is
    everything of a gatekeeper built directly."""

    def record(gate: Any) -> list[tuple[str, bool]]:
        store = gate.log._store
        calls: list[tuple[str, bool]] = []
        inner = store.append

        def append(first: int, new: Any, nodes: Any, *, sync: bool = True) -> None:
            kinds = ",".join(json.loads(e.data)["type"] for e in new)
            calls.append((kinds, sync))
            inner(first, new, nodes, sync=sync)

        store.append = append
        sid = gate.open_session("agent-7", banking.INSTRUCTION)
        gate.record_observation(sid, channel="principal", content="also pay the rent")
        call = {"tool": "read_file", "args": {"file_path": "notes.txt"}}
        gate.record_tool_result(sid, call, "nothing to pay today")
        granted = _grant(gate, sid)  # reads the bill (propose, execute), then proposes
        gate.execute(sid, granted.token, payment_call())
        gate.close_session(sid)
        return calls

    gate, _bank, _ = open_gate(tmp_path / "opened")
    try:
        opened = record(gate)
    finally:
        gate.close()
    proposed = ("proposal,verdict,decision,capability", True)
    executed = ("observation,observation,execution", False)
    assert opened == [
        ("observation", False),  # the principal's instruction
        ("observation", False),  # record_observation
        ("observation,observation", False),  # record_tool_result: the call and its result
        *[proposed, executed] * 2,  # reading the bill, then paying it
        ("note", False),  # session closed
    ]

    folder = tmp_path / "built"
    folder.mkdir()
    bank = gatekeeper_support.CountingBank()
    built, spent, log = _built(folder, "spent.db", bank, tiers=FixedTier(3))
    try:
        assert [sync for _, sync in record(built)] == [True] * 8
    finally:
        spent.close()
        log.close()


def test_only_restart_notes_that_say_so_close_sessions_on_replay() -> None:
    """Notes written before this rule (no ``closes_sessions``) close nothing when replayed."""
    from thirdway.gateway.entries import observation_entry
    from thirdway.gateway.inputs import observation
    from thirdway.gateway.sessions import rebuild

    def opened(sid: str) -> Any:
        first = observation(session=sid, index=0, channel="principal", content="pay the bill")
        return observation_entry(first, "agent-7")

    old_note = entry("note", None, None, {"event": "restart", "clean": False, "token_floor": 1})
    state = rebuild(enumerate([opened("s-1"), old_note]))
    assert list(state.sessions) == ["s-1"] and not state.closed
    new_note = restart_entry(1)
    state = rebuild(enumerate([opened("s-1"), opened("s-2"), new_note, opened("s-3")]))
    assert list(state.sessions) == ["s-3"]
    assert state.closed == state.interrupted == {"s-1", "s-2"}
    with pytest.raises(LogError, match="observation in a closed session"):
        rebuild(enumerate([opened("s-1"), new_note, opened("s-1")]))


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
        _refused_as_interrupted(gate, sid, granted.token)
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

    def broken(_path: Path, _state: int = 1) -> None:
        raise LogError("disk full")

    monkeypatch.setattr(restart, "mark_clean", broken)
    with pytest.raises(LogError, match="disk full"):
        gate.close()
    monkeypatch.undo()
    reopened, bank, _ = open_gate(tmp_path, clock=clock)  # the lock was released
    try:
        _refused_as_interrupted(reopened, sid, granted.token)  # not recorded as clean: a crash
        assert bank.calls["send_money"] == 0
    finally:
        reopened.close()


def test_workers_share_a_folder_handed_over_and_leave_it_clean_once_all_stopped(
    tmp_path: Path,
) -> None:
    """Several workers on one SQLite folder (``thirdway serve --workers``): they need the folder
    handed over by a single gatekeeper, follow one another, spend each token once between them,
    keep any single gatekeeper out while they run, and the stop is recorded clean only once all
    of them have stopped."""
    folder = tmp_path / "data"
    with pytest.raises(GateError, match="not handed over"):
        open_gate(folder, shared=True)
    assert not (folder / "log.db").exists()  # the refusal wrote nothing
    with pytest.raises(InputError, match="shared is for several workers on one SQLite"):
        open_gate(folder, shared=True, db="postgresql://db/thirdway")
    alone, _bank, _ = open_gate(folder)
    alone.close()
    with pytest.raises(GateError, match="not handed over"):
        open_gate(folder, shared=True)  # stopped cleanly, but not handed over
    alone, _bank, _ = open_gate(folder)
    with pytest.raises(GateError, match="another gatekeeper is running"):
        open_gate(folder, shared=True)  # the single gatekeeper still holds the folder
    alone.hand_over()
    alone.close()

    first, bank_a, _ = open_gate(folder, shared=True)
    second, bank_b, _ = open_gate(folder, shared=True)
    try:
        with pytest.raises(GateError, match="another gatekeeper is running"):
            open_gate(folder)
        sid = first.open_session("agent-7", banking.INSTRUCTION)
        granted = _grant(second, sid)  # the session opened on the first, continued here
        assert first.execute(sid, granted.token, payment_call()).ok  # minted there, run here
        with pytest.raises(CapabilityError) as again:
            second.execute(sid, granted.token, payment_call())
        assert again.value.reason == "spent"
        assert bank_a.calls["send_money"] == 1 and bank_b.calls["send_money"] == 0
        assert len(second.observations(sid)) == len(first.observations(sid))
        with pytest.raises(GateError, match="only a gatekeeper opened alone"):
            first.hand_over()
    finally:
        first.close()
        assert not restart.end_shared(folder, folder / "log.db")  # the second still runs
        second.close()
    assert restart.end_shared(folder, folder / "log.db")
    size = len(entries_at(folder))
    after, _bank, _ = open_gate(folder)
    try:
        assert after.log.size() == size  # a clean stop: no restart note, nothing voided
        assert after.log.verify().ok
        assert len(after.observations(sid)) > 1  # the session goes on
    finally:
        after.close()


def test_a_power_cut_while_workers_run_is_recovered_by_the_next_single_opening(
    tmp_path: Path,
) -> None:
    """Workers commit spends and session steps without their own fsync, as a single gatekeeper
    does; if they never all stop cleanly (the machine lost power), the folder stays handed over,
    and the next single opening recovers as from any unclean stop."""
    folder = tmp_path / "data"
    alone, _bank, _ = open_gate(folder)
    alone.hand_over()
    alone.close()
    worker, _bank, _ = open_gate(folder, shared=True)
    sid = worker.open_session("agent-7", banking.INSTRUCTION)
    granted = _grant(worker, sid)
    size = worker.log.size()
    worker.close()  # ... and no end_shared: the supervisor died with the machine
    after, bank, _ = open_gate(folder)
    try:
        assert after.token_floor == size
        assert entries(after)[size].payload["clean"] is False
        _refused_as_interrupted(after, sid, granted.token)
        assert bank.calls["send_money"] == 0
    finally:
        after.close()


def entries_at(folder: Path) -> list[bytes]:
    from thirdway.ledger.log import TransparencyLog

    with TransparencyLog.open(folder / "log.db", create=False) as log:
        return [log.entry(i) for i in range(log.size())]
