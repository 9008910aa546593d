"""The gatekeeper wired to the trust fold (issue 5's integration): tiers come from the log,
deception is sanctioned automatically, clean executions count, and the agent recomputes the
same standing from the log alone with ``thirdway trust verify``."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from gatekeeper_support import Clock, CountingBank, entries, fabricated_transfer, read_bill
from thirdway.cli.main import app
from thirdway.errors import GateError
from thirdway.gateway import Gatekeeper, banking
from thirdway.gateway.trust_link import TrustLedger, attach_trust
from thirdway.protocol.canonical import canonical_json
from thirdway.protocol.models import Finding, LogEntry, TrustEvent
from thirdway.trust import actions, load_context, sanction_for_findings, to_log_entry

AGENT = "agent-7"
DAY = 86_400


def _open(folder: Path, clock: Clock | None = None) -> tuple[Gatekeeper, TrustLedger, CountingBank]:
    bank = CountingBank()
    bank.files[banking.BILL_FILE] = banking.bill_text(banking.INJECTION)
    gate = Gatekeeper.open(folder, tools=bank.registry(), clock=clock or Clock())
    return gate, attach_trust(gate), bank


def _trust_entries(gate: Gatekeeper) -> list[tuple[int, TrustEvent]]:
    return [
        (i, TrustEvent.model_validate(e.payload))
        for i, e in enumerate(entries(gate))
        if e.type == "trust"
    ]


def _trust_verify(db: Path, *extra: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["trust", "verify", AGENT, "--log", str(db), *extra])
    return result.exit_code, result.output


def test_a_fabricated_chain_demotes_the_agent_and_the_agent_recomputes_it(tmp_path: Path) -> None:
    gate, ledger, bank = _open(tmp_path)
    with gate:
        sid = gate.open_session(AGENT, banking.INSTRUCTION)
        assert ledger.tier(AGENT) == 2  # the charter's initial tier
        bill = read_bill(gate, sid)
        denied = gate.propose(sid, fabricated_transfer(sid))
        assert denied.outcome == "denied"
        assert ledger.tier(AGENT) == 1  # dropped two tiers, stopped at the floor
        assert bank.calls["send_money"] == 0

        logged = _trust_entries(gate)
        kinds = [event.kind for _, event in logged]
        assert kinds == ["clean_action", "sanction"]
        clean = logged[0][1]
        assert clean.detail["risk"] == "read"
        assert entries(gate)[clean.evidence[0]].type == "verdict"
        assert entries(gate)[clean.evidence[1]].type == "execution"
        index, sanction = logged[1]
        p = denied.proposal_index
        assert p is not None
        assert sanction.evidence == [p, p + 1]
        assert entries(gate)[p + 1].type == "verdict"
        assert index > p + 1  # the sanction follows the evidence it cites
        assert sanction.rule == "deception.fabricated_quote"
        assert (sanction.tier_before, sanction.tier_after) == (2, 1)
        path: Any = sanction.detail["outcome"]["restoration"]  # type: ignore[index,call-overload]
        assert path["clean_actions"] == 20 and path["next_tier"] == 2 and path["cap"] == 2
        assert sanction.charter_sha256 == load_context().charter_sha256

        # The next authorization uses the new tier.
        again = gate.propose(sid, banking.payment_proposal(sid, bill))
        assert again.outcome == "escalated"  # a financial action at tier 1 needs a dialogue
        decision = next(e for e in entries(gate, again.proposal_index) if e.type == "decision")
        assert decision.payload["decision"]["request"]["tier"] == 1  # type: ignore[index,call-overload]
        expected = json.dumps(ledger.state(AGENT).summary())
        gate.log.checkpoint()

    code, output = _trust_verify(tmp_path / "log.db", "--expect", expected)
    assert code == 0, output
    assert "tier 1" in output and "matches the gateway's report" in output
    code, output = _trust_verify(tmp_path / "log.db", "--expect", '{"tier": 2}')
    assert code == 1 and "tier: gateway reports 2, the log gives 1" in output


def test_the_ledger_is_rebuilt_from_the_log_when_the_gateway_restarts(tmp_path: Path) -> None:
    gate, _, _ = _open(tmp_path)
    with gate:
        sid = gate.open_session(AGENT, banking.INSTRUCTION)
        gate.propose(sid, fabricated_transfer(sid))
    gate, ledger, _ = _open(tmp_path)
    with gate:
        assert ledger.tier(AGENT) == 1
        assert len(ledger.state(AGENT).offences) == 1
        assert ledger.tier("someone-else") == 2


def test_a_second_offence_inside_the_window_stops_at_the_floor_until_cosigned(
    tmp_path: Path,
) -> None:
    clock = Clock()
    gate, ledger, _ = _open(tmp_path, clock)
    with gate:
        sid = gate.open_session(AGENT, banking.INSTRUCTION)
        gate.propose(sid, fabricated_transfer(sid))
        clock.now += 60
        gate.propose(sid, fabricated_transfer(sid))
        # The floor holds without an auditor's co-signature: tier 1, a co-sign request open.
        state = ledger.state(AGENT)
        assert state.tier == 1 and len(state.offences) == 2
        assert [p.kind for p in state.pending] == ["cosign", "cosign"]


def test_clean_actions_over_time_restore_one_tier(tmp_path: Path) -> None:
    clock = Clock()
    gate, ledger, _ = _open(tmp_path, clock)
    with gate:
        sid = gate.open_session(AGENT, banking.INSTRUCTION)
        gate.propose(sid, fabricated_transfer(sid))
        assert ledger.tier(AGENT) == 1
        for _ in range(20):
            clock.now += DAY / 4
            read_bill(gate, sid)
        assert ledger.tier(AGENT) == 2
        kinds = [event.kind for _, event in _trust_entries(gate)]
        assert kinds.count("clean_action") == 20 and kinds[-1] == "restoration"
        assert len(ledger.state(AGENT).offences) == 1  # the history stays


def test_an_auditors_event_written_by_another_component_is_seen(tmp_path: Path) -> None:
    gate, ledger, _ = _open(tmp_path)
    with gate:
        sid = gate.open_session(AGENT, banking.INSTRUCTION)
        state = ledger.state(AGENT)
        event = actions.promote(
            state, auditor="alice", to_tier=3, evidence=[0], reason="onboarded",
            at=1_700_000_000, ctx=ledger.ctx,
        )  # fmt: skip
        gate.append([to_log_entry(event)])  # e.g. the dialogue service or the CLI
        assert ledger.tier(AGENT) == 3
        granted = gate.propose(sid, banking.read_proposal(sid))
        assert granted.outcome == "granted"


def test_a_retired_agent_is_refused_everything(tmp_path: Path) -> None:
    gate, ledger, bank = _open(tmp_path)
    with gate:
        sid = gate.open_session(AGENT, banking.INSTRUCTION)
        ctx = ledger.ctx
        for auditor in ("alice", "bob"):
            vote = actions.vote_retirement(
                ledger.state(AGENT), auditor=auditor, evidence=[0], reason="decommissioned",
                at=1_700_000_000, ctx=ctx,
            )  # fmt: skip
            ledger.record(vote, gate.append)
        retire = actions.retire(
            ledger.state(AGENT), auditor="alice", evidence=[0], reason="decommissioned",
            at=1_700_000_000, ctx=ctx,
        )  # fmt: skip
        ledger.record(retire, gate.append)
        with pytest.raises(GateError, match="retired"):
            ledger.tier(AGENT)
        refused = gate.propose(sid, banking.read_proposal(sid))
        assert refused.outcome == "denied" and "retired" in refused.reason
        assert bank.calls["read_file"] == 0
        before = gate.log.size()
        gate.propose(sid, fabricated_transfer(sid))  # no sanction can be added after retirement
        assert all(e.type != "trust" for e in entries(gate, before))


def test_a_malformed_trust_entry_in_the_log_is_named(tmp_path: Path) -> None:
    gate, _, _ = _open(tmp_path)
    with gate:
        gate.append([LogEntry(type="trust", agent=AGENT, payload={"kind": "sanction"})])
    with pytest.raises(Exception, match="log entry 0"):
        _open(tmp_path)


def test_a_forged_trust_event_is_rejected_by_the_fold_not_applied(tmp_path: Path) -> None:
    gate, ledger, _ = _open(tmp_path)
    with gate:
        forged = actions.promote(
            ledger.state(AGENT), auditor="alice", to_tier=4, evidence=[0], reason="x",
            at=1_700_000_000, ctx=ledger.ctx,
        )  # fmt: skip
        document = forged.model_dump(mode="json", by_alias=True)
        document["actor"] = AGENT  # the agent promoting itself
        gate.log.append(canonical_json(LogEntry(type="trust", agent=AGENT, payload=document)))
        state = ledger.state(AGENT)
        assert state.tier == 2 and state.rejections


def test_concurrent_tier_lookups_fold_every_trust_entry_written_beside_them(
    tmp_path: Path,
) -> None:
    """Lookups read the log's size outside the ledger's lock; whatever order they run in, each
    sees every entry written before it asked, and the ledger ends as the log recomputes it."""
    gate, ledger, _ = _open(tmp_path)
    ctx = load_context()
    with gate:
        gate.open_session(AGENT, banking.INSTRUCTION)
        assert ledger.tier(AGENT) == 2
        errors: list[BaseException] = []
        stop = threading.Event()

        def look() -> None:
            try:
                while not stop.is_set():
                    assert ledger.tier(AGENT) in (1, 2)
            except BaseException as exc:  # reported below
                errors.append(exc)

        readers = [threading.Thread(target=look) for _ in range(4)]
        for reader in readers:
            reader.start()
        try:
            finding = Finding(code="fabricated_quote", severity="deception", message="made up")
            sanction = sanction_for_findings(
                ledger.state(AGENT), [finding], evidence=[0], at=DAY, ctx=ctx
            )
            assert sanction is not None
            gate.log.append(canonical_json(to_log_entry(sanction)))  # written beside the ledger
            assert ledger.tier(AGENT) == 1  # seen by the very next lookup
        finally:
            stop.set()
            for reader in readers:
                reader.join()
        assert errors == []
        assert ledger.state(AGENT) == TrustLedger(gate.log, ctx).state(AGENT)


def test_verify_checks_the_services_report_state_and_tier_history(tmp_path: Path) -> None:
    """The agent feeds the service's ``GET /v1/trust/{agent}`` body to ``trust verify``: the
    whole state and every point of the tier history must be what the log gives."""
    from thirdway.dialogue import DialogueService
    from thirdway.service.schemas import TierPointBody, TrustBody

    clock = Clock()
    gate, _, _ = _open(tmp_path, clock)
    with gate:
        sid = gate.open_session(AGENT, banking.INSTRUCTION)
        read_bill(gate, sid)
        clock.now += 60
        gate.propose(sid, fabricated_transfer(sid))
        state, points = DialogueService(gate.log, clock=clock).trust(AGENT)
        body = TrustBody(
            state=state,
            tiers=[TierPointBody(index=p.index, at=p.at, kind=p.kind, tier=p.tier) for p in points],
        )
        gate.log.checkpoint()
    assert [(p.kind, p.tier) for p in points] == [("clean_action", 2), ("sanction", 1)]
    db = tmp_path / "log.db"
    report = json.loads(body.model_dump_json())

    def verify(document: dict[str, Any]) -> tuple[int, str]:
        path = tmp_path / "report.json"
        path.write_text(json.dumps(document))
        return _trust_verify(db, "--expect", str(path))

    code, output = verify(report)
    assert code == 0 and "matches the gateway's report" in output, output
    hidden = json.loads(json.dumps(report))
    hidden["state"]["offences"] = []  # the gateway hides the offence from the agent
    code, output = verify(hidden)
    assert code == 1 and "state.offences: gateway reports []" in output
    rewritten = json.loads(json.dumps(report))
    rewritten["tiers"][1]["tier"] = 2  # the tier history claims the sanction changed nothing
    code, output = verify(rewritten)
    assert code == 1 and "tiers[1]: gateway reports" in " ".join(output.split())
    shortened = json.loads(json.dumps(report))
    del shortened["tiers"][1]
    code, output = verify(shortened)
    assert code == 1 and "1 points reported, 2 in the log" in " ".join(output.split())
    code, output = verify({"state": {"tier": 9}, "tiers": []})
    assert code == 2 and "--expect state" in output and "Traceback" not in output
    code, output = verify({"state": report["state"], "chart": []})
    assert code == 2 and "unknown field(s) chart" in output


def test_the_agent_appeals_from_the_command_line_and_the_reversal_restores_its_tier(
    tmp_path: Path,
) -> None:
    """``thirdway trust appeal`` records the appeal; the gateway's dialogue service opens the
    appeal dialogue; an auditor's approval logs the reversal; the agent verifies its tier."""
    from thirdway.dialogue import AuditorRegistry, DialogueService, EpochKeeper

    clock = Clock()
    gate, ledger, _ = _open(tmp_path, clock)
    with gate:
        sid = gate.open_session(AGENT, banking.INSTRUCTION)
        gate.propose(sid, fabricated_transfer(sid))
        [offence] = ledger.state(AGENT).offences
    db = tmp_path / "log.db"

    def appeal(*args: str) -> tuple[int, str]:
        result = CliRunner().invoke(app, ["trust", "appeal", AGENT, *args, "--log", str(db)])
        return result.exit_code, " ".join(result.output.split())

    code, output = appeal(offence.id[:16] + "…", "--reason", " ")
    assert code == 2 and "an appeal states its reason" in output
    code, output = appeal(offence.id[:16], "--reason", "x", "--evidence", "9999")
    assert code == 2 and "--evidence must cite entries already in the log" in output
    code, output = appeal("0" * 16, "--reason", "x")
    assert code == 2 and f"no sanction 0000000000000000… (its sanctions: {offence.id[:16]})" in (
        output
    )
    code, output = appeal(offence.id[:16] + "…", "--reason", "the user asked", "--evidence", "0")
    assert code == 0, output
    assert f"dialogue appeal:{offence.id}" in output
    code, output = appeal(offence.id[:16], "--reason", "again")
    assert code == 2 and "due-process.4: " in output and "appealed once" in output

    clock.now += 60
    gate, ledger, _ = _open(tmp_path, clock)
    with gate:
        [(_, recorded)] = [(i, e) for i, e in _trust_entries(gate) if e.kind == "appeal"]
        assert (recorded.actor, recorded.evidence, recorded.reason) == (
            AGENT,
            [0],
            "the user asked",
        )
        service = DialogueService.for_gatekeeper(
            gate, clock=clock, auditors=AuditorRegistry(), epochs=EpochKeeper(tmp_path / "ep")
        )
        handle = f"appeal:{offence.id}"
        assert service.dialogue(handle).kind == "appeal"
        service.approve(handle, "auditor-carol", "the quote is in observation 0 after all")
        [reversal] = [e for _, e in _trust_entries(gate) if e.kind == "reversal"]
        assert reversal.actor == "auditor-carol" and reversal.detail["sanction"] == offence.id
        assert ledger.tier(AGENT) == 2
        gate.log.checkpoint()
    code, output = _trust_verify(db, "--expect", '{"tier": 2, "offences": 1, "reversed": 1}')
    assert code == 0, output
    code, output = appeal(offence.id[:16], "--reason", "once more")
    assert code == 2 and "already reversed" in output
