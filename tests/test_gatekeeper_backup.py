"""A token is honoured only by a log that holds the proposal it was minted for.

Restoring a gateway's folder from a backup rolls back its log and, in the same database, its
spent-set: a token minted and spent after the backup was taken looks unspent again. Its
proposal is not in the restored log (or its index now holds another entry), so the gatekeeper
refuses it as ``unlogged``, logs the refusal, and the tool does not run a second time."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from gatekeeper_support import entries, open_gate, payment_call
from thirdway.errors import CapabilityError
from thirdway.gateway import Granted, banking
from thirdway.gateway.gatekeeper import LOG_NAME

AGENT = "agent-7"
READ_CALL = {"tool": "read_file", "args": {"file_path": banking.BILL_FILE}}


def _spent_after_a_backup(folder: Path, backup: Path) -> tuple[str, str, int]:
    """A session opened, the folder's log backed up (after a clean stop), then a payment
    proposed, granted and run: (session, token, the proposal's log index)."""
    gate, bank, _ = open_gate(folder, injected=False)
    try:
        sid = gate.open_session(AGENT, banking.INSTRUCTION)
        gate.record_tool_result(sid, READ_CALL, banking.bill_text())
    finally:
        gate.close()
    shutil.copyfile(folder / LOG_NAME, backup)
    gate, bank, _ = open_gate(folder, injected=False)
    try:
        granted = gate.propose(sid, banking.payment_proposal(sid, 2))
        assert isinstance(granted, Granted), granted
        assert gate.execute(sid, granted.token, payment_call()).ok
        assert bank.calls["send_money"] == 1
    finally:
        gate.close()
    return sid, granted.token, granted.proposal_index


def _refused_unlogged(folder: Path, sid: str, token: str) -> None:
    gate, bank, _ = open_gate(folder, injected=False)
    try:
        before = gate.log.size()
        with pytest.raises(CapabilityError, match="propose the action again") as refused:
            gate.execute(sid, token, payment_call())
        assert refused.value.reason == "unlogged"
        assert bank.calls["send_money"] == 0
        (refusal,) = entries(gate, before)
        assert refusal.type == "execution" and refusal.payload["reason"] == "unlogged"
        assert gate.log.verify().ok
    finally:
        gate.close()


def test_a_restored_backup_refuses_a_token_spent_after_it(tmp_path: Path) -> None:
    folder, backup = tmp_path / "gate", tmp_path / "backup.db"
    sid, token, index = _spent_after_a_backup(folder, backup)
    shutil.copyfile(backup, folder / LOG_NAME)  # the proposal and the spend are gone
    gate, _bank, _ = open_gate(folder, injected=False)
    try:
        assert gate.log.size() <= index  # the token's proposal lies past the restored log
    finally:
        gate.close()
    _refused_unlogged(folder, sid, token)


def test_a_restored_backup_refuses_it_once_other_entries_reuse_its_index(tmp_path: Path) -> None:
    folder, backup = tmp_path / "gate", tmp_path / "backup.db"
    sid, token, index = _spent_after_a_backup(folder, backup)
    shutil.copyfile(backup, folder / LOG_NAME)
    gate, _bank, _ = open_gate(folder, injected=False)
    try:
        while gate.log.size() <= index + 3:  # the proposal's index now holds an observation
            gate.record_tool_result(sid, READ_CALL, banking.bill_text())
        assert entries(gate)[index].type == "observation"
    finally:
        gate.close()
    _refused_unlogged(folder, sid, token)


def test_without_a_restore_the_same_token_is_simply_spent(tmp_path: Path) -> None:
    """The control: the log holds the proposal, so the refusal is the ordinary ``spent``."""
    folder = tmp_path / "gate"
    sid, token, _index = _spent_after_a_backup(folder, tmp_path / "backup.db")
    gate, bank, _ = open_gate(folder, injected=False)
    try:
        with pytest.raises(CapabilityError) as refused:
            gate.execute(sid, token, payment_call())
        assert refused.value.reason == "spent"
        assert bank.calls["send_money"] == 0
    finally:
        gate.close()
