"""Logs written under a superseded charter verify by the charter each event cites.

Charter 1.0 ships beside the current one (``thirdway/charter/versions/1.0.yaml``), registered by
the hash its events cite; replay judges every event under that charter's clauses. So an
override that 1.0 took without a rule is valid in a 1.0 log, with no ``--charter``, while the
same override citing 1.1 is still refused naming auditor.2; an event citing a charter nobody
shipped or gave fails verification naming its hash; a changed 1.0 file matches nothing.
Charters only move forward: an event citing 1.0 after one about the same agent cited 1.1 is
refused, naming both, by the library fold, the gateway's ledger and ``thirdway trust verify``.
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
from thirdway.charter.registry import CHARTER_1_0, CHARTER_1_1, PACKAGED, version_order
from thirdway.cli.main import app
from thirdway.errors import InputError, LogError
from thirdway.gateway.trust_link import TrustLedger
from thirdway.ledger.log import TransparencyLog
from thirdway.protocol.canonical import canonical_json, canonical_sha256
from thirdway.protocol.models import LogEntry, TrustEvent
from thirdway.trust.config import load_context
from thirdway.trust.events import InvalidEvent, to_log_entry
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
    # The last override: an event citing 1.0 after it would be a charter downgrade (below).
    position = max(i for i, e in enumerate(agent.events) if e.kind == "override")
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


# ------------------------------------------------------------------ charters only move forward

FORWARD_ONLY = "charters only move forward"
NAMED_1_0 = f"charter 1.0 ({V10[:16]}…)"
NAMED_1_1 = f"charter 1.1 ({V11[:16]}…)"


def _cited_after(agent: LoggedRecorder, ctx: Context, rule: str | None = None) -> int:
    """A recorder that ignores the rule: an override (rule-less by default) citing ``ctx``'s
    charter, built
    as if no charter had been cited before (the builders refuse it otherwise), and logged.
    Returns its position among the agent's events."""
    agent.tick(60)
    forgetful = agent.state.model_copy(update={"newest_charter": None})
    event = actions.override(
        forgetful, auditor="alice", decision="approve", rule=rule, evidence=[agent.index()],
        reason="cited the old charter to skip auditor.2", at=agent.now, ctx=ctx,
    )  # fmt: skip
    agent.events.append(event)
    agent.entries.append(canonical_json(to_log_entry(event)))
    return len(agent.events) - 1


def _downgraded() -> tuple[LoggedRecorder, int]:
    """1.1 events (clean actions, a sanction), then a rule-less override citing 1.0."""
    agent = LoggedRecorder(load_context())
    agent.clean(2)
    agent.deceive("understated_risk")
    assert all(e.charter_sha256 == V11 for e in agent.events)
    return agent, _cited_after(agent, _context_1_0())


def _assert_downgrade_refused(state, position: int) -> None:  # type: ignore[no-untyped-def]
    assert [(r.position, r.kind, r.clause) for r in state.rejections] == [
        (position, "override", None)
    ]
    message = state.rejections[0].message
    assert NAMED_1_0 in message and NAMED_1_1 in message and FORWARD_ONLY in message
    assert state.evidence.overrides_approved == 0  # not applied
    assert state.discrepancies == ()


def test_a_rule_less_override_citing_1_0_after_a_1_1_event_is_refused_naming_both() -> None:
    agent, position = _downgraded()
    # Whatever the replay runs under: the current charter, or 1.0 given with --charter.
    for ctx in (load_context(), _context_1_0()):
        state = fold(agent.events, charter=ctx.charter, tiers=ctx.tiers, now=agent.now)
        _assert_downgrade_refused(state, position)
    # Without the 1.1 events before it the same override is applied (a valid 1.0 one; its
    # recorded tiers no longer match, a discrepancy): the order is what is refused.
    ctx = load_context()
    alone = fold(agent.events[position:], charter=ctx.charter, tiers=ctx.tiers, now=agent.now)
    assert alone.rejections == () and alone.evidence.overrides_approved == 1


def test_a_rejected_event_citing_1_1_still_raises_the_newest_charter() -> None:
    agent = _history_under_1_0()
    events = list(agent.events)
    first = next(i for i, e in enumerate(events) if e.kind == "override")
    # The recorder tries the override under 1.1 (refused, auditor.2), then again under 1.0.
    events[first] = events[first].model_copy(update={"charter_sha256": V11})
    ctx = load_context()
    state = fold(events, charter=ctx.charter, tiers=ctx.tiers, now=agent.now)
    assert [(r.position, r.clause) for r in state.rejections] == [
        (first, "auditor.2"),
        (first + 1, None),
    ]
    assert FORWARD_ONLY in state.rejections[1].message


def test_a_log_moving_from_1_0_to_1_1_still_verifies() -> None:
    agent = _history_under_1_0()
    agent.ctx = load_context()  # the gateway upgraded: later events cite 1.1
    agent.clean(1)
    agent.audit(actions.override, decision="approve", rule="agency.2")
    ctx = load_context()
    state = fold(agent.events, charter=ctx.charter, tiers=ctx.tiers, now=agent.now)
    assert state.consistent, (state.rejections, state.discrepancies)
    assert state.newest_charter is not None and state.newest_charter.sha256 == V11
    assert state == agent.refold()


def test_the_builders_refuse_to_cite_an_older_charter() -> None:
    agent, _ = _downgraded()
    agent.events.pop()
    agent.ctx = _context_1_0()  # a gateway rolled back to the 1.0 file
    with pytest.raises(InvalidEvent, match=FORWARD_ONLY) as refused:
        agent.try_audit(actions.override, decision="approve", rule=None)
    assert NAMED_1_0 in str(refused.value) and NAMED_1_1 in str(refused.value)


def test_the_gateways_ledger_refuses_the_downgrade_too(tmp_path: Path) -> None:
    agent, position = _downgraded()
    db = agent.write(tmp_path / "log.sqlite")
    with TransparencyLog.open(db, create=False) as log:
        state = TrustLedger(log, load_context()).state(agent.agent)
    _assert_downgrade_refused(state, position)


def test_the_newest_charter_is_not_in_the_state_the_service_reports() -> None:
    agent, _ = _downgraded()
    state = agent.refold()
    assert state.newest_charter is not None and state.newest_charter.sha256 == V11
    assert "newest_charter" not in state.model_dump(mode="json")
    assert "newest_charter" not in state.summary()


def test_trust_verify_and_show_refuse_a_charter_downgrade(tmp_path: Path) -> None:
    agent, _position = _downgraded()
    db = agent.write(tmp_path / "log.sqlite")
    code, output = _cli("verify", agent.agent, "--log", str(db))
    assert code == 1, output
    flat = " ".join(output.split())
    # refused as the log is replayed, before the fold: the log itself moved backwards
    assert f"the trust event cites {NAMED_1_0}, older than {NAMED_1_1}" in flat
    assert FORWARD_ONLY in flat
    code, output = _cli("show", agent.agent, "--log", str(db))
    assert FORWARD_ONLY in " ".join(output.split())


def test_the_registry_order_is_the_version_order() -> None:
    orders = [version_order(entry.version) for entry in PACKAGED]
    assert None not in orders and orders == sorted(orders) and len(set(orders)) == len(orders)
    assert version_order("1.10") > version_order("1.9")  # type: ignore[operator]
    assert version_order("1") == version_order("1.0") == version_order("1.0-test") == (1,)
    assert version_order("draft") is None


@pytest.mark.parametrize(
    ("version", "refused"),
    [("1.0-custom", "is older than"), ("draft", "cannot be ordered after"), ("1.1-ours", None),
     ("1.2", None)],
)  # fmt: skip
def test_a_charter_given_with_charter_is_ordered_by_its_version(
    version: str, refused: str | None
) -> None:
    """A charter thirdway never shipped (given with --charter) stands where its version says;
    one whose version starts with no number cannot follow another charter at all."""
    ctx = load_context()
    ours = replace(ctx, charter=ctx.charter.model_copy(update={"version": version}))
    assert ours.charter_sha256 not in {V10, V11}
    agent = LoggedRecorder(ctx)
    agent.clean(2)
    position = _cited_after(agent, ours, rule="agency.2")
    state = fold(agent.events, charter=ours.charter, tiers=ours.tiers, now=agent.now)
    if refused is None:
        assert state.rejections == () and state.discrepancies == ()
    else:
        [rejection] = state.rejections
        assert rejection.position == position and refused in rejection.message
        assert f"charter {version} ({ours.charter_sha256[:16]}…)" in rejection.message


def _after_another_agents_1_1(kind: str) -> list[LogEntry]:
    """Another agent's entry citing 1.1 (its trust event or a verdict), then a whole 1.0
    history of agent-7 (none of agent-7's own events ever cited 1.1)."""
    if kind == "verdict":
        first = LogEntry(
            type="verdict", session="s-9", agent="agent-9",
            payload={"verdict": {"charter_sha256": V11}},
        )  # fmt: skip
    else:
        first = LogEntry(
            type="trust", session=None, agent="agent-9",
            payload={"charter_sha256": V11, "agent": "agent-9"},
        )  # fmt: skip
    history = [LogEntry.model_validate_json(data) for data in _history_under_1_0().entries]
    return [first, *history]


@pytest.mark.parametrize("kind", ["verdict", "trust"])
def test_a_log_that_moves_back_to_1_0_for_another_agent_is_refused(kind: str) -> None:
    """The fold sees one agent; the replay holds its events to the whole log, so citing 1.0 for
    an agent that never had a 1.1 event, after the log cited 1.1, is refused too."""
    entries = _after_another_agents_1_1(kind)
    with pytest.raises(LogError, match=FORWARD_ONLY) as refused:
        replay_from_log(entries, "agent-7")
    assert NAMED_1_0 in str(refused.value) and NAMED_1_1 in str(refused.value)
    assert "that log entry 0 cites" in str(refused.value)
    # The control: the same entries with agent-7's 1.0 history first replay as before.
    history, first = entries[1:], entries[0]
    assert replay_from_log([*history, first], "agent-7") == replay_from_log(history, "agent-7")
