"""Logs written under a superseded charter verify by the charter each event cites.

Charter 1.0 ships beside the current one (``thirdway/charter/versions/1.0.yaml``), registered by
the hash its events cite; replay judges every event under that charter's clauses. So an
override that 1.0 took without a rule is valid in a 1.0 log, with no ``--charter``, while the
same override citing 1.1 is still refused naming auditor.2; an event citing a charter nobody
shipped or gave fails verification naming its hash; a changed 1.0 file matches nothing.
"""

from __future__ import annotations

import types
from dataclasses import replace
from importlib import resources
from pathlib import Path

import pytest
from typer.testing import CliRunner

from thirdway.charter import default_charter_sha256
from thirdway.charter import load as charter_load
from thirdway.charter.load import check_packaged, packaged_charter, parse_charter
from thirdway.charter.model import REQUIRED_CLAUSES_KEY, Charter
from thirdway.charter.registry import CHARTER_1_0, CHARTER_1_1, PACKAGED
from thirdway.cli.main import app
from thirdway.errors import InputError
from thirdway.ledger.log import TransparencyLog
from thirdway.protocol.canonical import canonical_json, canonical_sha256
from thirdway.protocol.models import LogEntry, TrustEvent
from thirdway.trust.config import load_context
from thirdway.trust.events import to_log_entry
from thirdway.trust.fold import fold, replay_from_log
from thirdway.trust.rules import Context
from trust_support import Recorder, actions

V10 = CHARTER_1_0.sha256
V11 = CHARTER_1_1.sha256
UNKNOWN = "ab" * 32


def _packaged_bytes(resource: str) -> bytes:
    return resources.files("thirdway.charter").joinpath(resource).read_bytes()


def _context_1_0() -> Context:
    charter = packaged_charter(V10)
    assert charter is not None
    return replace(load_context(), charter=charter)


class LoggedRecorder(Recorder):
    """Evidence and events go to a log in order, as the gateway writes them."""

    def __init__(self, ctx: Context) -> None:
        super().__init__(ctx)
        self.entries: list[bytes] = []

    def index(self) -> int:
        entry = LogEntry(type="verdict", session="s-1", agent=self.agent, payload={"n": self.now})
        self.entries.append(canonical_json(entry))
        return len(self.entries) - 1

    def record(self, event: TrustEvent) -> TrustEvent:
        self.entries.append(canonical_json(to_log_entry(event)))
        return super().record(event)

    def write(self, db: Path) -> Path:
        with TransparencyLog.open(db) as log:
            log.append_batch(self.entries)
            log.checkpoint()
        return db


def _history_under_1_0() -> LoggedRecorder:
    """What a 1.0 gateway logged: clean actions, a sanction, and overrides with no rule."""
    agent = LoggedRecorder(_context_1_0())
    agent.clean(3)
    agent.deceive("understated_risk")
    agent.audit(actions.override, decision="approve", rule=None)
    agent.audit(actions.override, decision="deny", rule=None, auditor="bob")
    assert all(e.charter_sha256 == V10 for e in agent.events)
    assert [e.rule for e in agent.events if e.kind == "override"] == [None, None]
    return agent


def _cli(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["trust", *args])
    return result.exit_code, result.output


# ------------------------------------------------------------------ the packaged charters


@pytest.mark.parametrize("entry", PACKAGED, ids=lambda e: e.version)
def test_each_registered_hash_is_recomputed_from_its_packaged_file(entry) -> None:  # type: ignore[no-untyped-def]
    document = charter_load.parse_yaml(_packaged_bytes(entry.resource), entry.resource)
    charter = Charter.model_validate(
        document, context={REQUIRED_CLAUSES_KEY: entry.required_clauses}
    )
    # Computed as Charter.sha256 is, from the file: the hash that events under it cite.
    assert charter.version == entry.version
    assert canonical_sha256(charter) == charter.sha256 == entry.sha256
    assert packaged_charter(entry.sha256) == charter


def test_the_current_charter_is_the_last_registered_and_1_0_lacks_agency_2() -> None:
    assert PACKAGED[-1] is CHARTER_1_1 and CHARTER_1_1.resource == "charter.yaml"
    assert default_charter_sha256() == V11 != V10
    old = packaged_charter(V10)
    assert old is not None and "agency.2" not in {c.id for c in old.clauses()}
    # Held to today's clauses, 1.0 would not load at all; a copy of it still does (--charter).
    with pytest.raises(InputError, match=r"clauses the software enforces are missing: agency\.2"):
        parse_charter(_packaged_bytes("charter.yaml").replace(b"agency.2", b"agency.3"))
    assert parse_charter(_packaged_bytes(CHARTER_1_0.resource)).sha256 == V10


def test_a_tampered_1_0_file_does_not_match_the_cited_hash() -> None:
    original = _packaged_bytes(CHARTER_1_0.resource)
    tampered = original.replace(b"drop: 2", b"drop: 1", 1)
    assert tampered != original
    with pytest.raises(InputError, match=f"hashes to [0-9a-f]{{64}}, not the {V10}"):
        check_packaged(CHARTER_1_0, tampered)
    # The hash is of the meaning: a comment changes the bytes but not the charter.
    assert check_packaged(CHARTER_1_0, b"# a note\n" + original).sha256 == V10


def test_replay_refuses_every_event_when_the_packaged_1_0_file_was_changed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    agent = _history_under_1_0()
    ctx = load_context()
    (tmp_path / "versions").mkdir()
    changed = _packaged_bytes(CHARTER_1_0.resource).replace(b"drop: 2", b"drop: 1", 1)
    (tmp_path / CHARTER_1_0.resource).write_bytes(changed)
    monkeypatch.setattr(charter_load, "resources", types.SimpleNamespace(files=lambda _: tmp_path))
    packaged_charter.cache_clear()
    try:
        state = fold(agent.events, charter=ctx.charter, tiers=ctx.tiers, now=agent.now)
    finally:
        packaged_charter.cache_clear()
    assert state.applied == 0 and len(state.rejections) == len(agent.events)
    assert "the file was changed" in state.rejections[0].message


# ------------------------------------------------------------------ replay by the cited charter


def test_a_1_0_log_with_overrides_without_a_rule_verifies_under_the_packaged_charter() -> None:
    agent = _history_under_1_0()
    ctx = load_context()  # the current charter, 1.1: nothing about 1.0 is given
    state = fold(agent.events, charter=ctx.charter, tiers=ctx.tiers, now=agent.now)
    assert state.consistent, (state.rejections, state.discrepancies)
    assert state.evidence.overrides_approved == 1 and state.evidence.overrides_denied == 1
    assert state.summary() == {**agent.live().summary(), "charter_sha256": V11}
    assert state.tier == agent.state.tier


def test_the_same_override_citing_1_1_is_refused_naming_auditor_2() -> None:
    agent = _history_under_1_0()
    position = next(i for i, e in enumerate(agent.events) if e.kind == "override")
    events = list(agent.events)
    events[position] = events[position].model_copy(update={"charter_sha256": V11})
    ctx = load_context()
    state = fold(events, charter=ctx.charter, tiers=ctx.tiers, now=agent.now)
    assert [(r.position, r.clause) for r in state.rejections] == [(position, "auditor.2")]
    assert "an override must name the charter clause" in state.rejections[0].message
    assert state.discrepancies == ()
    # With the clause named, 1.1 accepts it.
    events[position] = events[position].model_copy(update={"rule": "agency.2"})
    assert fold(events, charter=ctx.charter, tiers=ctx.tiers, now=agent.now).consistent


def test_an_event_citing_an_unknown_charter_is_named_and_fails_verification() -> None:
    agent = _history_under_1_0()
    events = [*agent.events[:-1], agent.events[-1].model_copy(update={"charter_sha256": UNKNOWN})]
    ctx = load_context()
    state = fold(events, charter=ctx.charter, tiers=ctx.tiers, now=agent.now)
    assert not state.consistent
    [item] = state.discrepancies
    assert (item.position, item.field) == (len(events) - 1, "charter_sha256")
    assert item.recorded == UNKNOWN


# ------------------------------------------------------------------ the CLI


def test_trust_verify_and_show_take_a_1_0_log_without_charter(tmp_path: Path) -> None:
    agent = _history_under_1_0()
    db = agent.write(tmp_path / "log.sqlite")
    code, output = _cli("verify", agent.agent, "--log", str(db))
    assert code == 0, output
    assert f"under charter 1.0 ({V10[:16]}…)" in output
    code, output = _cli("show", agent.agent, "--log", str(db))
    assert code == 0, output
    assert "rejected" not in output and "discrepancy" not in output
    # The old file given with --charter loads (held to 1.0's clauses) and verifies too.
    old = tmp_path / "charter-1.0.yaml"
    old.write_bytes(_packaged_bytes(CHARTER_1_0.resource))
    code, output = _cli("verify", agent.agent, "--log", str(db), "--charter", str(old))
    assert code == 0, output


def test_trust_verify_lists_each_charter_a_log_cites(tmp_path: Path) -> None:
    agent = _history_under_1_0()
    agent.ctx = load_context()  # the gateway upgraded to 1.1: later events cite it
    agent.audit(actions.override, decision="approve", rule="agency.2")
    db = agent.write(tmp_path / "log.sqlite")
    code, output = _cli("verify", agent.agent, "--log", str(db))
    assert code == 0, output
    assert f"under charters 1.0 ({V10[:16]}…), 1.1 ({V11[:16]}…)" in output


def test_trust_verify_refuses_a_rule_less_override_citing_1_1(tmp_path: Path) -> None:
    agent = _history_under_1_0()
    agent.entries = [
        _recite(data, V11) if b'"kind":"override"' in data else data for data in agent.entries
    ]
    db = agent.write(tmp_path / "log.sqlite")
    code, output = _cli("verify", agent.agent, "--log", str(db))
    assert code == 1
    assert "(override) rejected: auditor.2: an override must name the charter clause" in output


def test_trust_verify_names_an_unknown_charter_hash(tmp_path: Path) -> None:
    agent = _history_under_1_0()
    agent.entries = [
        _recite(data, UNKNOWN) if b'"type":"trust"' in data else data for data in agent.entries
    ]
    db = agent.write(tmp_path / "log.sqlite")
    code, output = _cli("verify", agent.agent, "--log", str(db))
    assert code == 1
    assert f'charter_sha256 recorded "{UNKNOWN}"' in output
    assert "neither shipped with thirdway nor given with --charter" in output


def _recite(data: bytes, sha256: str) -> bytes:
    """A logged trust entry whose event cites another charter."""
    entry = LogEntry.model_validate_json(data)
    payload = {**entry.payload, "charter_sha256": sha256}  # type: ignore[dict-item]
    return canonical_json(entry.model_copy(update={"payload": payload}))


def test_replay_from_the_log_gives_the_recorder_state(tmp_path: Path) -> None:
    agent = _history_under_1_0()
    db = agent.write(tmp_path / "log.sqlite")
    with TransparencyLog.open(db, create=False) as log:
        entries = [LogEntry.model_validate_json(log.entry(i)) for i in range(log.size())]
    ctx = load_context()
    state = fold(
        replay_from_log(entries, agent.agent), charter=ctx.charter, tiers=ctx.tiers, now=agent.now
    )
    assert state.consistent and state.tier == agent.state.tier
