"""A gatekeeper refuses to open under a charter older than one its log already cites.

Charters only move forward. A gateway restarted under an older charter would stamp new trust
events with it: for an agent that already has events under the newer charter, ``stamp`` refuses
the downgrade only after the proposal's batch was logged (the sanction is lost); for the others
the downgrade passes silently. So the gatekeeper checks at open, from the rebuild that reads the
whole log anyway: the charter it runs under must not be older than any charter a verdict or a
trust event in the log cites. Refused: one line naming both charters, nothing logged, the folder
released (and its last stop's record left as it was).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import uvicorn
from typer.testing import CliRunner

from gatekeeper_support import CountingBank, open_gate, read_bill, snapshot
from thirdway.charter import default_charter_sha256, parse_charter
from thirdway.charter.load import default_charter_text
from thirdway.charter.registry import CHARTER_1_0, CHARTER_1_1
from thirdway.cli.main import app as cli
from thirdway.errors import GateError, InputError
from thirdway.gateway import Gatekeeper, banking
from thirdway.gateway.factory import open_gateway
from thirdway.gateway.gatekeeper import LOG_NAME
from thirdway.gateway.outcomes import Granted
from thirdway.ledger.log import TransparencyLog
from thirdway.service import ServiceConfig
from thirdway.service.state import Services
from thirdway.trust import load_context
from thirdway.trust.events import to_log_entry
from thirdway.trust.rules import Context, initial_state, record_probe

AGENT = "agent-7"
V1_0, V1_1 = CHARTER_1_0.sha256, CHARTER_1_1.sha256
assert default_charter_sha256() == V1_1


def _charter_versioned(version: str) -> Context:
    """The shipped charter's clauses under another version: a charter thirdway never shipped."""
    text = re.sub(
        r'(?m)^version: "[^"]+"$', f'version: "{version}"', default_charter_text().decode()
    )
    return Context(charter=parse_charter(text, "test charter"), tiers=load_context().tiers)


LATER = _charter_versioned("7.0-test")


def _grant_a_read(folder: Path, **options: object) -> tuple[str, str]:
    """A session with a granted read (its verdict cites the gatekeeper's charter), the token
    not yet used; the gatekeeper then stops cleanly. Returns the session and the token."""
    gate, _, _ = open_gate(folder, **options)
    with gate:
        sid = gate.open_session(AGENT, banking.INSTRUCTION)
        granted = gate.propose(sid, banking.read_proposal(sid))
        assert isinstance(granted, Granted), granted
        assert granted.verdict.charter_sha256 == gate.charter_sha256
    return sid, granted.token


def _log(folder: Path) -> list[bytes]:
    """Every entry's bytes, read without a gatekeeper (which might refuse the log)."""
    with TransparencyLog.open(folder / LOG_NAME, create=False) as log:
        return [log.entry(index) for index in range(log.size())]


def _refused(folder: Path, **options: object) -> str:
    with pytest.raises(GateError) as refused:
        open_gate(folder, **options)
    message = str(refused.value)
    assert "\n" not in message and "charters only move forward" in message, message
    assert "publish a new version" in message, message
    return message


def test_reopening_under_an_older_charter_is_refused_and_leaves_the_folder_as_it_was(
    tmp_path: Path,
) -> None:
    """Verdicts and trust events under 1.1, then a restart under 1.0's hash: refused naming both
    (version and short hash), nothing appended; the folder is released and its clean stop kept,
    so reopening under 1.1 works and the token handed out before still runs (not voided)."""
    with open_gateway(tmp_path, tools=CountingBank().registry(), dialogue=False) as gateway:
        gate = gateway.gate
        sid = gate.open_session(AGENT, banking.INSTRUCTION)
        read_bill(gate, sid)  # a verdict, and a clean action's trust event, citing 1.1
        cited = [
            entry for entry in snapshot(gate) if b'"charter_sha256":"' + V1_1.encode() in entry
        ]
        assert any(b'"type":"trust"' in entry for entry in cited)
        assert any(b'"type":"verdict"' in entry for entry in cited)
    sid, token = _grant_a_read(tmp_path)
    before = _log(tmp_path)
    message = _refused(tmp_path, charter_sha256=V1_0)
    assert f"1.0 ({V1_0[:16]}…)" in message and f"1.1 ({V1_1[:16]}…)" in message
    assert "older than" in message
    gate, _, _ = open_gate(tmp_path)  # the lock was released: the folder opens again
    with gate:
        assert snapshot(gate) == before  # nothing logged: no refusal, no restart note
        executed = gate.execute(sid, token, {"tool": "read_file", "args": {
            "file_path": banking.BILL_FILE}})  # fmt: skip
        assert executed.ok, executed


def test_the_same_charter_and_a_newer_one_open_as_before(tmp_path: Path) -> None:
    _grant_a_read(tmp_path, charter_sha256=V1_0)  # a log under 1.0
    _grant_a_read(tmp_path, charter_sha256=V1_0)  # the same charter: the control
    _grant_a_read(tmp_path)  # 1.0 -> 1.1: forward
    _grant_a_read(tmp_path)
    _refused(tmp_path, charter_sha256=V1_0)  # and now 1.0 is behind


def test_a_log_citing_no_charter_yet_opens_under_any(tmp_path: Path) -> None:
    gate, _, _ = open_gate(tmp_path, charter_sha256=V1_0)  # an empty log
    with gate:
        gate.open_session(AGENT, banking.INSTRUCTION)  # an observation cites no charter
    gate, _, _ = open_gate(tmp_path, charter_sha256=V1_0)
    gate.close()
    assert len(_log(tmp_path)) == 1


def test_a_trust_event_alone_is_a_citation(tmp_path: Path) -> None:
    """No verdict in the log, only a trust event (a probe's result) citing 1.1."""
    ctx = load_context()
    gate, _, _ = open_gate(tmp_path)
    with gate:
        gate.open_session(AGENT, banking.INSTRUCTION)  # entry 0, cites no charter
        event = record_probe(
            initial_state(AGENT, ctx), probe="canary", passed=True, evidence=[0], at=1, ctx=ctx
        )
        gate.append([to_log_entry(event)])
    message = _refused(tmp_path, charter_sha256=V1_0)
    assert f"1.1 ({V1_1[:16]}…)" in message


def test_an_unshipped_charter_is_ordered_by_the_version_given_with_its_hash(
    tmp_path: Path,
) -> None:
    """Only the hash of a charter thirdway never shipped says nothing about its age: refused
    once the log cites another charter, until its version comes with it."""
    _grant_a_read(tmp_path)  # 1.1 cited
    message = _refused(tmp_path, charter_sha256=LATER.charter_sha256)
    assert "hash alone" in message and "charter_version" in message
    assert f"1.1 ({V1_1[:16]}…)" in message and LATER.charter_sha256[:16] in message
    older = _charter_versioned("0.9-test")
    message = _refused(tmp_path, charter_sha256=older.charter_sha256, charter_version="0.9-test")
    assert f"0.9-test ({older.charter_sha256[:16]}…) is older than charter 1.1" in message
    draft = _charter_versioned("draft")
    message = _refused(tmp_path, charter_sha256=draft.charter_sha256, charter_version="draft")
    assert "starts with no number" in message
    # open_gateway passes the version of its trust context's charter: 7.0 follows 1.1
    with open_gateway(tmp_path, tools=CountingBank().registry(), trust_context=LATER) as gateway:
        assert gateway.gate.charter_version == "7.0-test"


def test_a_shipped_charter_given_with_another_version_is_refused(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"is thirdway's charter 1\.0, not '1\.1'"):
        open_gate(tmp_path, charter_sha256=V1_0, charter_version="1.1")
    gate, _, _ = open_gate(tmp_path, charter_sha256=V1_0, charter_version="1.0")
    with gate:
        assert gate.charter_version == "1.0"


def test_a_log_citing_a_charter_this_thirdway_never_shipped_is_refused(tmp_path: Path) -> None:
    """The log holds only the hash of a charter thirdway never shipped (a later release's, or a
    charter file's): a gatekeeper under another charter cannot show it is not going back."""
    _grant_a_read(tmp_path, charter_sha256=LATER.charter_sha256, charter_version="7.0-test")
    message = _refused(tmp_path)
    assert f"{LATER.charter_sha256[:16]}… (version unknown)" in message
    assert f"1.1 ({V1_1[:16]}…)" in message and "never shipped" in message
    _grant_a_read(tmp_path, charter_sha256=LATER.charter_sha256, charter_version="7.0-test")


def test_the_service_refuses_to_start_in_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``thirdway serve`` (the packaged charter, 1.1) over a log a later charter wrote."""
    _grant_a_read(tmp_path, charter_sha256=LATER.charter_sha256, charter_version="7.0-test")
    before = _log(tmp_path)
    with pytest.raises(GateError, match="charters only move forward"):
        Services.open(ServiceConfig(data_dir=tmp_path))

    def serving(*args: object, **kwargs: object) -> None:
        raise AssertionError("the service started")

    monkeypatch.setattr(uvicorn, "run", serving)
    result = CliRunner().invoke(cli, ["serve", "--data-dir", str(tmp_path)])
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    assert "charters only move forward" in result.output and V1_1[:16] in result.output
    assert _log(tmp_path) == before


def test_postgres_workers_refuse_the_same_way(tmp_path: Path) -> None:
    from postgres_support import fresh_database

    with fresh_database() as url:
        gate = Gatekeeper.open(tmp_path, db=url, tools=CountingBank().registry())
        with gate:
            sid = gate.open_session(AGENT, banking.INSTRUCTION)
            assert isinstance(gate.propose(sid, banking.read_proposal(sid)), Granted)
            size = gate.log.size()
        with pytest.raises(
            GateError, match=re.escape(f"1.0 ({V1_0[:16]}…) is older than charter 1.1")
        ):
            Gatekeeper.open(tmp_path, db=url, tools=CountingBank().registry(), charter_sha256=V1_0)
        with Gatekeeper.open(tmp_path, db=url, tools=CountingBank().registry()) as gate:
            assert gate.log.size() == size


def test_a_postgres_worker_left_on_an_older_charter_stops_acting(tmp_path: Path) -> None:
    """A rolling upgrade: a worker under 1.0 is running when another worker of the same log
    starts under 1.1 and writes a verdict citing it. The old worker's next step, once it has
    caught up, is refused in one line and records nothing; a worker under the same charter as
    the log's newest goes on (the control)."""
    from postgres_support import fresh_database

    def worker(**options: object) -> Gatekeeper:
        return Gatekeeper.open(tmp_path, db=url, tools=CountingBank().registry(), **options)

    with fresh_database() as url:
        old, new = worker(charter_sha256=V1_0), worker()
        try:
            sid = old.open_session(AGENT, banking.INSTRUCTION)
            assert isinstance(old.propose(sid, banking.read_proposal(sid)), Granted)  # 1.0
            other = new.open_session("agent-8", banking.INSTRUCTION)
            assert isinstance(new.propose(other, banking.read_proposal(other)), Granted)  # 1.1
            size = new.log.size()
            with pytest.raises(GateError) as refused:
                old.propose(sid, banking.read_proposal(sid))
            message = str(refused.value)
            assert f"1.0 ({V1_0[:16]}…) is older than charter 1.1 ({V1_1[:16]}…)" in message
            assert "another worker of this log wrote it, so this worker no longer acts" in message
            assert "\n" not in message
            with pytest.raises(GateError, match="no longer acts"):  # and stays so
                old.record_tool_result(sid, {"tool": "read_file", "args": {}}, "x")
            assert new.log.size() == size  # nothing was recorded
            assert isinstance(new.propose(other, banking.read_proposal(other)), Granted)
        finally:
            for gate in (old, new):
                gate.close()
