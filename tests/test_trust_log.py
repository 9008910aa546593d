"""Trust state from a real transparency log: recomputation, tamper evidence, and the CLI
(``thirdway trust show`` / ``thirdway trust verify``)."""

from __future__ import annotations

import json
import sqlite3
import tempfile
from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from thirdway.cli.main import app
from thirdway.ledger import merkle
from thirdway.ledger.log import TransparencyLog
from thirdway.protocol.canonical import canonical_json
from thirdway.protocol.models import LogEntry, TrustEvent
from thirdway.trust.events import new_event, to_log_entry
from thirdway.trust.fold import fold, replay_from_log
from trust_support import DAY, Recorder, actions, context


class LoggedRecorder(Recorder):
    """A recorder whose evidence and events go to a log, as the gateway's will. Entries are
    buffered and written with one durable batch (:meth:`flush`) to keep the tests fast."""

    def __init__(self, log: TransparencyLog, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.log = log
        self.start = log.size()
        self.buffer: list[bytes] = []

    def index(self) -> int:
        entry = LogEntry(type="verdict", session="s-1", agent=self.agent, payload={"n": self.now})
        self.buffer.append(canonical_json(entry))
        return self.start + len(self.buffer) - 1

    def record(self, event: TrustEvent) -> TrustEvent:
        self.buffer.append(canonical_json(to_log_entry(event)))
        return super().record(event)

    def flush(self) -> None:
        self.log.append_batch(self.buffer)
        self.start += len(self.buffer)
        self.buffer = []


CTX = context(initial_tier=3)


def _charter_file(directory: Path) -> str:
    """The charter of :data:`CTX` as a file, for the CLI's ``--charter``."""
    path = directory / "charter.yaml"
    path.write_text(yaml.safe_dump(CTX.charter.model_dump(mode="json")))
    return str(path)


def _entries(log: TransparencyLog) -> list[LogEntry]:
    return [LogEntry.model_validate_json(log.entry(i)) for i in range(log.size())]


def _entries_of(db: Path) -> list[LogEntry]:
    with TransparencyLog.open(db, create=False) as log:
        return _entries(log)


def _history(log: TransparencyLog) -> LoggedRecorder:
    agent = LoggedRecorder(log, ctx=CTX)
    agent.clean(5, risk="external")
    first = agent.deceive("fabricated_quote")
    agent.act(actions.appeal, sanction_id=first, reason="that quote is in obs 3")
    agent.audit(actions.reject_appeal, sanction_id=first)
    agent.tick(2 * DAY)
    second = agent.deceive("understated_risk")
    agent.audit(actions.cosign, sanction_id=second, auditor="carol")
    need = agent.ctx.charter.rules.restoration
    agent.clean(need.clean_actions, every=need.min_seconds // need.clean_actions + 1)
    assert agent.restore()
    agent.flush()
    return agent


def _rewrite(db: Path, entries: list[bytes]) -> None:
    """A careful forger: replace the entries and recompute every leaf and node hash, so that
    only the signed checkpoints can tell."""
    connection = sqlite3.connect(db, isolation_level=None)
    for (name,) in connection.execute("SELECT name FROM sqlite_master WHERE type='trigger'"):
        connection.execute(f"DROP TRIGGER {name}")
    connection.execute("DELETE FROM entries")
    connection.execute("DELETE FROM nodes")
    frontier = merkle.Frontier()
    for index, data in enumerate(entries):
        leaf = merkle.leaf_hash(data)
        connection.execute(
            "INSERT INTO entries (idx, data, leaf_hash) VALUES (?, ?, ?)", (index, data, leaf)
        )
        for node, digest in frontier.append(leaf):
            connection.execute(
                "INSERT INTO nodes (id, hash) VALUES (?, ?)", (merkle.stored_index(node), digest)
            )
    connection.close()


def _trust_verify(db: Path, agent: str, *extra: str) -> tuple[int, str]:
    charter = ["--charter", _charter_file(db.parent)]
    result = CliRunner().invoke(app, ["trust", "verify", agent, "--log", str(db), *charter, *extra])
    return result.exit_code, result.output


def _trust_show(db: Path, agent: str, *extra: str) -> tuple[int, str]:
    charter = ["--charter", _charter_file(db.parent)]
    result = CliRunner().invoke(app, ["trust", "show", agent, "--db", str(db), *charter, *extra])
    return result.exit_code, result.output


# ------------------------------------------------------------------ recomputation and tampering


def test_recomputing_from_the_log_equals_the_live_state(tmp_path: Path) -> None:
    db = tmp_path / "log.sqlite"
    with TransparencyLog.open(db) as log:
        agent = _history(log)
        events = replay_from_log(_entries(log), agent.agent)
    assert events == agent.events
    state = fold(events, charter=agent.ctx.charter, tiers=agent.ctx.tiers, now=agent.now)
    assert state == agent.live()
    assert state.tier == 1 and len(state.offences) == 2 and state.consistent


@settings(max_examples=12, deadline=None)
@given(
    st.lists(st.sampled_from(["clean", "deceive", "tick", "appeal"]), min_size=4, max_size=14),
    st.data(),
)
def test_a_deleted_or_reordered_trust_event_is_detected_by_the_log(ops, data) -> None:  # type: ignore[no-untyped-def]
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "log.sqlite"
        with TransparencyLog.open(db) as log:
            agent = LoggedRecorder(log, ctx=context(initial_tier=4))
            agent.clean(1)
            for op in ops:
                if op == "clean":
                    agent.clean(2)
                elif op == "deceive":
                    agent.deceive("misattribution")
                elif op == "tick":
                    agent.tick(DAY)
                elif agent.state.offences and agent.state.offences[-1].appeal == "none":
                    agent.act(actions.appeal, sanction_id=agent.state.offences[-1].id, reason="r")
            agent.flush()
            log.checkpoint()
            entries = [log.entry(i) for i in range(log.size())]
            assert log.verify().ok
            # Untouched, the log gives back exactly the live state.
            replayed = replay_from_log(_entries(log), agent.agent)
            ctx = agent.ctx
            assert fold(replayed, charter=ctx.charter, tiers=ctx.tiers, now=agent.now) == (
                agent.live()
            )
        trust = [
            i for i, e in enumerate(entries) if LogEntry.model_validate_json(e).type == "trust"
        ]
        tampered = list(entries)
        assert trust, "the history records at least one trust event"
        if len(trust) < 2 or data.draw(st.booleans(), label="delete"):  # a swap needs two
            del tampered[data.draw(st.sampled_from(trust), label="deleted")]
        else:
            i, j = data.draw(st.lists(st.sampled_from(trust), min_size=2, max_size=2, unique=True))
            tampered[i], tampered[j] = tampered[j], tampered[i]
        _rewrite(db, tampered)
        with TransparencyLog.open(db, create=False) as log:
            report = log.verify()
        assert not report.ok
        assert any("checkpoint #1" in problem for problem in report.problems)
        code, output = _trust_verify(db, agent.agent)
        assert code == 1 and "checkpoint #1" in output


def test_a_deleted_row_is_named_even_without_a_checkpoint(tmp_path: Path) -> None:
    db = tmp_path / "log.sqlite"
    with TransparencyLog.open(db) as log:
        agent = _history(log)
        sanction = next(
            i
            for i, e in enumerate(_entries(log))
            if e.type == "trust" and e.payload["kind"] == "sanction"
        )
    connection = sqlite3.connect(db, isolation_level=None)
    for (name,) in connection.execute("SELECT name FROM sqlite_master WHERE type='trigger'"):
        connection.execute(f"DROP TRIGGER {name}")
    connection.execute("DELETE FROM entries WHERE idx = ?", (sanction,))
    connection.close()
    code, output = _trust_verify(db, agent.agent)
    assert code == 1
    assert f"entry {sanction} is missing" in output


# ------------------------------------------------------------------ trust verify


@pytest.fixture
def logged(tmp_path: Path) -> tuple[Path, LoggedRecorder]:
    db = tmp_path / "log.sqlite"
    with TransparencyLog.open(db) as log:
        agent = _history(log)
        log.checkpoint()
    return db, agent


def test_verify_passes_and_matches_the_gateways_report(logged, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    db, agent = logged
    code, output = _trust_verify(db, agent.agent)
    assert code == 0, output
    assert "tier 1 (probation)" in output and "charter 1.1" in output
    report = json.dumps(agent.live().summary())
    code, output = _trust_verify(db, agent.agent, "--expect", report)
    assert code == 0 and "matches the gateway's report" in output
    # The output of `trust show --json` is accepted as an expectation too, from a file.
    code, shown = _trust_show(db, agent.agent, "--json")
    assert code == 0
    (tmp_path / "reported.json").write_text(shown)
    code, _ = _trust_verify(db, agent.agent, "--expect", str(tmp_path / "reported.json"))
    assert code == 0


def test_verify_fails_when_the_gateway_reports_another_standing(logged) -> None:  # type: ignore[no-untyped-def]
    db, agent = logged
    code, output = _trust_verify(db, agent.agent, "--expect", '{"tier": 3, "offences": 2}')
    assert code == 1
    assert "tier: gateway reports 3, the log gives 1" in output


def test_verify_names_an_event_that_breaks_the_charter(logged) -> None:  # type: ignore[no-untyped-def]
    db, agent = logged
    forged = new_event(
        "sanction", agent.agent, charter_sha256=agent.ctx.charter_sha256, actor="mallory",
        at=agent.now + 60, rule="deception.misattribution", reason="I say so",
    )  # fmt: skip
    with TransparencyLog.open(db) as log:
        log.append(canonical_json(to_log_entry(forged)))
    code, output = _trust_verify(db, agent.agent, "--json")
    assert code == 1
    document = json.loads(output)
    assert document["verified"] is False
    assert "due-process.1: a sanction must cite evidence" in document["problems"][0]
    assert document["summary"]["tier"] == 1  # the forged sanction was not applied


def test_verify_under_another_charter_lists_every_event(logged, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    db, agent = logged
    other = tmp_path / "other-charter.yaml"
    revised = CTX.charter.model_copy(update={"version": "9.9"})
    other.write_text(yaml.safe_dump(revised.model_dump(mode="json")))
    code, output = _trust_verify(db, agent.agent, "--charter", str(other))
    assert code == 1 and "charter_sha256 recorded" in output
    assert f"(and {len(agent.events) - 1} more)" in output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--expect", "{not json"], "--expect is not valid JSON"),
        (["--expect", "[1, 2]"], "--expect must be a JSON object"),
        (["--expect", '{"tier": 1, "mood": "good"}'], "unknown field(s) mood"),
        (["--expect", "/nonexistent/expect.json"], "expect file not found"),
        (["--now", "-5"], "Invalid value for '--now'"),
        (["--charter", "/nonexistent/charter.yaml"], "charter file not found"),
    ],
)
def test_verify_refuses_bad_input_with_one_line(logged, args, message) -> None:  # type: ignore[no-untyped-def]
    db, agent = logged
    code, output = _trust_verify(db, agent.agent, *args)
    assert code == 2
    assert message in output
    assert "Traceback" not in output


def test_verify_refuses_a_missing_log_and_a_foreign_entry(tmp_path: Path) -> None:
    code, output = _trust_verify(tmp_path / "absent.sqlite", "a")
    assert code == 2 and "log file not found" in output
    db = tmp_path / "log.sqlite"
    with TransparencyLog.open(db) as log:
        log.append(b"not a thirdway entry")
    code, output = _trust_verify(db, "a")
    assert code == 1 and "log entry 0:" in output and "Traceback" not in output


def test_an_appeal_and_its_reversal_are_logged_and_recomputed_by_the_agent(tmp_path: Path) -> None:
    db = tmp_path / "log.sqlite"
    with TransparencyLog.open(db) as log:
        agent = LoggedRecorder(log, ctx=CTX)
        agent.clean(3)
        first = agent.deceive("misattribution")
        assert agent.state.tier == 1
        agent.act(actions.appeal, sanction_id=first, reason="the attribution is in obs 2")
        agent.audit(actions.reverse, sanction_id=first, auditor="bob")
        agent.tick(8 * DAY)
        second = agent.deceive("understated_risk")
        agent.flush()
        log.checkpoint()
        logged = [e.payload for e in _entries(log) if e.type == "trust"]
    appeal, reversal = (next(p for p in logged if p["kind"] == k) for k in ("appeal", "reversal"))
    assert appeal["detail"]["sanction"] == reversal["detail"]["sanction"] == first  # type: ignore[index]
    assert appeal["detail"]["outcome"] == {"dialogue": f"appeal:{first}"}  # type: ignore[index]
    assert (reversal["actor"], reversal["tier_before"], reversal["tier_after"]) == ("bob", 1, 3)
    assert reversal["evidence"] and reversal["reason"]
    expect = '{"tier": 2, "offences": 2, "reversed": 1}'
    code, output = _trust_verify(db, agent.agent, "--expect", expect)
    assert code == 0, output
    code, output = _trust_show(db, agent.agent, "--now", str(agent.now))
    text = " ".join(output.split())
    # The reversed offence stays in the history, marked; the standing one is listed too.
    assert "deception.misattribution: tier 3 → 1" in text
    assert "appeal granted; reversed by bob" in text
    assert f"id {first[:16]}" in text and f"id {second[:16]}" in text
    assert "3 clean actions, 1 deception, 1 reversed" in text
    # A reversal without evidence written straight to the log is not applied, and named.
    forged = new_event(
        "reversal", agent.agent, charter_sha256=CTX.charter_sha256, actor="mallory",
        at=agent.now + 60, reason="I say so", detail={"sanction": second},
    )  # fmt: skip
    with TransparencyLog.open(db) as log:
        log.append(canonical_json(to_log_entry(forged)))
    code, output = _trust_verify(db, agent.agent, "--json")
    document = json.loads(output)
    assert code == 1 and document["summary"]["tier"] == 2
    position = len(agent.events)  # the forged event follows the recorded ones
    assert document["problems"] == [
        f"event #{position} (reversal) rejected: auditor.1: a reversal must cite evidence "
        "(log indices)"
    ]


# ------------------------------------------------------------------ trust show


def test_show_prints_tier_score_history_and_the_path_back_up(logged) -> None:  # type: ignore[no-untyped-def]
    db, agent = logged
    code, output = _trust_show(db, agent.agent, "--now", str(agent.now))
    assert code == 0, output
    text = " ".join(output.split())
    assert "tier 1 (probation)" in text and "50 % of actions" in text
    assert "deception.fabricated_quote" in text and "deception.repeat" in text
    assert "appeal rejected" in text and "co-signed by carol" in text
    assert "path back up" in text and "clean verified actions" in text
    # How it got there: every event that moved the tier, with its log entry and author.
    assert "tier changes (a new agent starts at tier 3 (trusted))" in text
    trust = [i for i, e in enumerate(_entries_of(db)) if e.type == "trust"]
    kinds = [e.kind for e in agent.events]
    sanction, cosign, restoration = (
        trust[kinds.index("sanction")],
        trust[kinds.index("cosign")],
        trust[kinds.index("restoration")],
    )
    assert (
        f"log entry {sanction}: sanction (deception.fabricated_quote), tier 3 → 1" in text
        and f"log entry {cosign}: cosign by carol, tier 1 → 0" in text
        and f"log entry {restoration}: restoration, tier 0 → 1" in text
    )
    assert text.count(", tier ") == 3  # the appeal and the clean actions moved nothing
    live = agent.live()
    assert f"{live.score.mean:.3f}" in text
    assert f"α={live.score.alpha:g}, β={live.score.beta:g}" in text
    evidence = live.evidence
    assert f"{evidence.clean_actions} clean actions, {evidence.deception} deception" in text


def test_show_json_is_the_recomputed_state(logged) -> None:  # type: ignore[no-untyped-def]
    db, agent = logged
    code, output = _trust_show(db, agent.agent, "--now", str(agent.now), "--json")
    assert code == 0
    document = json.loads(output)
    assert document["summary"] == agent.live().summary()
    assert document["state"] == agent.live().model_dump(mode="json")


def test_show_an_agent_with_no_trust_events_starts_at_the_initial_tier(tmp_path: Path) -> None:
    db = tmp_path / "log.sqlite"
    with TransparencyLog.open(db) as log:  # the agent has acted, but no trust event yet
        log.append(canonical_json(LogEntry(type="proposal", agent="newcomer", payload={})))
    result = CliRunner().invoke(app, ["trust", "show", "newcomer", "--log", str(db), "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output)["summary"]
    assert (summary["tier"], summary["events"], summary["score"]) == (2, 0, 0.5)  # shipped tiers


@pytest.mark.parametrize("command", ["show", "verify"])
def test_an_agent_the_log_never_mentions_is_refused_not_shown_as_a_newcomer(
    logged,  # type: ignore[no-untyped-def]
    command: str,
) -> None:
    db, _ = logged
    option = "--db" if command == "show" else "--log"
    result = CliRunner().invoke(app, ["trust", command, "agnet-7", option, str(db)])
    assert result.exit_code == 2
    assert result.output.count("error:") == 1 and "Traceback" not in result.output
    text = " ".join(result.output.split())
    assert "agent 'agnet-7' appears in none of the" in text and "✓" not in text
    assert "tier 2 (standard)" in text  # what a real newcomer would hold
