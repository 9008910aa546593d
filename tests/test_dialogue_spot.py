"""Spot audits: selection by the committed epoch secret, its rate, and verify_epochs."""

from __future__ import annotations

import hashlib
import hmac
import stat
from pathlib import Path

import pytest

from dialogue_support import AGENT, context_with_rates, open_service
from gatekeeper_support import entries
from thirdway.dialogue import DialogueError, EpochKeeper, is_selected, verify_epochs
from thirdway.dialogue.spot import (
    SPACE,
    commitment,
    end_entry,
    selection_value,
    start_entry,
    threshold,
)
from thirdway.errors import InputError
from thirdway.gateway import Gatekeeper, banking
from thirdway.protocol.canonical import canonical_json
from thirdway.protocol.models import Finding, LogEntry
from thirdway.trust.events import to_log_entry
from thirdway.trust.rules import sanction_for_findings

SECRET = bytes(range(32))


def fake_hash(i: int) -> str:
    return hashlib.sha256(f"proposal-{i}".encode()).hexdigest()


def test_selection_is_hmac_of_the_proposal_hash_under_the_threshold() -> None:
    digest = fake_hash(1)
    expected = hmac.new(SECRET, bytes.fromhex(digest), hashlib.sha256).digest()
    assert selection_value(SECRET, digest) == int.from_bytes(expected, "big")
    assert threshold(0) == 0 and threshold(100) == SPACE and threshold(50) == SPACE // 2
    assert threshold(10) == SPACE // 10
    assert all(is_selected(SECRET, fake_hash(i), 100) for i in range(200))
    assert not any(is_selected(SECRET, fake_hash(i), 0) for i in range(200))
    with pytest.raises(InputError, match="0 to 100"):
        threshold(100.5)


def test_selection_is_deterministic_and_depends_on_the_secret() -> None:
    hashes = [fake_hash(i) for i in range(400)]
    first = [is_selected(SECRET, h, 25) for h in hashes]
    again = [is_selected(SECRET, h, 25) for h in hashes]
    other = [is_selected(b"\x01" * 32, h, 25) for h in hashes]
    assert first == again
    assert first != other, "another secret must select other proposals"


@pytest.mark.parametrize("percent", [2, 5, 10, 50, 100])
def test_observed_rate_matches_the_configured_rate(percent: float) -> None:
    """Fixed secret and inputs, so deterministic; the tolerance is five binomial sigmas."""
    n = 20_000
    chosen = sum(is_selected(SECRET, fake_hash(i), percent) for i in range(n))
    p = percent / 100
    sigma = (n * p * (1 - p)) ** 0.5
    assert abs(chosen - n * p) <= 5 * sigma + 1, (chosen, n * p)


def test_keeper_stores_secrets_privately(tmp_path: Path) -> None:
    keeper = EpochKeeper(tmp_path / "epochs")
    epoch, secret = keeper.create()
    path = tmp_path / "epochs" / f"{epoch}.secret"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert keeper.secret(epoch) == secret
    assert keeper.secret("epoch-0000000000000000") is None
    assert keeper.secret("../../etc/passwd") is None
    path.write_text("not hex")
    with pytest.raises(DialogueError, match="damaged"):
        keeper.secret(epoch)


def grant_reads(gate: Gatekeeper, count: int) -> list[int]:
    """``count`` granted read proposals; returns their proposal log indices."""
    sid = gate.open_session(AGENT, banking.INSTRUCTION)
    indices = []
    for i in range(count):
        name = f"note-{i}.txt"
        gate.record_observation(sid, channel="principal", content=f"Please read '{name}'.")
        proposal = banking.read_proposal(sid, name)
        proposal["goal"] = {"obs": i + 1, "quote": f"read '{name}'"}
        proposal["steps"][0]["cites"] = [{"obs": i + 1, "quote": f"read '{name}'"}]
        granted = gate.propose(sid, proposal)
        assert granted.outcome == "granted", granted
        indices.append(granted.proposal_index)  # type: ignore[union-attr]
    return indices


def append(gate: Gatekeeper, entry: LogEntry) -> int:
    return gate.log.append(canonical_json(entry))


def test_an_epoch_selects_by_its_secret_and_verifies(tmp_path: Path) -> None:
    ctx = context_with_rates({2: 50})
    gate, service, _, clock = open_service(tmp_path, ctx=ctx)
    with gate:
        grant_reads(gate, 3)  # before any epoch: never selected
        epoch = service.start_epoch()
        with pytest.raises(DialogueError, match="still open"):
            service.start_epoch()
        proposals = grant_reads(gate, 24)
        spot = {d.proposal_index for d in service.dialogues() if d.kind == "spot"}
        clock.now += 60
        report = service.end_epoch()
        secret = EpochKeeper(tmp_path / "epochs").secret(epoch)
        assert secret is not None
        hashes = {
            e.payload["proposal_index"]: e.payload["verdict"]["proposal_sha256"]
            for e in entries(gate)
            if e.type == "verdict" and e.payload["proposal_index"] in proposals
        }
        expected = {p for p in proposals if is_selected(secret, hashes[p], 50)}
        assert spot == expected and 0 < len(expected) < len(proposals)
        assert report.ok, report.problems
        assert (report.candidates, report.selected, report.audited) == (
            24,
            len(expected),
            len(expected),
        )
        with pytest.raises(DialogueError, match="no spot-audit epoch is open"):
            service.end_epoch()


def test_verify_catches_a_skipped_selection_and_a_singled_out_action(tmp_path: Path) -> None:
    ctx = context_with_rates({2: 50})
    gate, service, _, clock = open_service(tmp_path, ctx=ctx, primary=False)
    with gate:
        append(gate, start_entry("epoch-00000000000000aa", SECRET, ctx.tiers, int(clock.now)))
        proposals = grant_reads(gate, 16)  # a secondary service selects nothing
        verdicts = {
            e.payload["proposal_index"]: e.payload["verdict"]["proposal_sha256"]
            for e in entries(gate)
            if e.type == "verdict"
        }
        unselected = next(p for p in proposals if not is_selected(SECRET, verdicts[p], 50))
        forged = LogEntry(
            type="dialogue",
            agent=AGENT,
            payload={
                "event": "open", "handle": f"spot:{unselected}", "at": int(clock.now),
                "actor": "system", "kind": "spot", "agent": AGENT, "proposal_index": unselected,
                "source_index": unselected + 2, "expires_at": int(clock.now) + 60,
                "epoch": "epoch-00000000000000aa", "proposal_sha256": verdicts[unselected],
            },
        )  # fmt: skip
        append(gate, forged)
        append(gate, end_entry("epoch-00000000000000aa", SECRET, int(clock.now)))
        [report] = service.verify_epochs()
        skipped = [p for p in report.problems if "never spot-audited" in p]
        selected = [p for p in proposals if is_selected(SECRET, verdicts[p], 50)]
        assert len(skipped) == len(selected) > 0
        assert any(f"proposal {unselected} was spot-audited" in p for p in report.problems)
        assert any("singled out" in p for p in report.problems)
        assert not report.ok


def test_verify_catches_a_secret_that_does_not_match_the_commitment(tmp_path: Path) -> None:
    ctx = context_with_rates({2: 0})
    gate, service, _, clock = open_service(tmp_path, ctx=ctx)
    with gate:
        append(gate, start_entry("epoch-00000000000000bb", SECRET, ctx.tiers, int(clock.now)))
        grant_reads(gate, 2)
        other = b"\x02" * 32
        assert commitment(other) != commitment(SECRET)
        append(gate, end_entry("epoch-00000000000000bb", other, int(clock.now)))
        [report] = service.verify_epochs()
        assert any("does not match the commitment" in p for p in report.problems)


def test_verify_reports_unrevealed_epochs_and_bad_epoch_entries(tmp_path: Path) -> None:
    ctx = context_with_rates({})
    gate, service, _, _ = open_service(tmp_path, ctx=ctx)
    with gate:
        service.start_epoch()
        append(gate, LogEntry(type="epoch", payload={"event": "end", "epoch": "x", "secret": "00"}))
        append(gate, LogEntry(type="epoch", payload={"event": "restart"}))
        reports = verify_epochs(
            ((i, LogEntry.model_validate_json(gate.log.entry(i))) for i in range(gate.log.size())),
            ctx,
        )
        open_epoch = next(r for r in reports if r.epoch.startswith("epoch-"))
        assert not open_epoch.revealed and open_epoch.ok
        log_problems = next(r for r in reports if r.epoch == "(log)").problems
        assert any("secret" in p and "invalid" in p for p in log_problems)
        assert any("unknown epoch event 'restart'" in p for p in log_problems)


def test_the_log_holds_the_hash_while_the_epoch_runs_and_the_secret_after(tmp_path: Path) -> None:
    ctx = context_with_rates({2: 50})
    gate, service, _, clock = open_service(tmp_path, ctx=ctx)
    with gate:
        epoch = service.start_epoch()
        secret = EpochKeeper(tmp_path / "epochs").secret(epoch)
        assert secret is not None
        grant_reads(gate, 4)
        [start] = [e.payload for e in entries(gate) if e.type == "epoch"]
        assert start["event"] == "start" and start["epoch"] == epoch
        assert start["commitment"] == hashlib.sha256(secret).hexdigest()
        assert start["rates"]["2"] == 50 and start["tiers_sha256"] == ctx.tiers.sha256
        log_bytes = b"".join(gate.log.entry(i) for i in range(gate.log.size()))
        assert secret.hex().encode() not in log_bytes, "the secret is in the log before the end"
        clock.now += 60
        service.end_epoch()
        end = [e.payload for e in entries(gate) if e.type == "epoch"][-1]
        assert end["event"] == "end" and end["epoch"] == epoch and end["secret"] == secret.hex()


def test_each_candidate_is_selected_at_its_agents_tier_rate(tmp_path: Path) -> None:
    """Tier 2 audited at 100 %, tier 1 at 0 %: a sanction in the middle of the epoch moves the
    agent to tier 1, after which none of its actions is selected; verify agrees."""
    ctx = context_with_rates({2: 100, 1: 0})
    gate, service, _, clock = open_service(tmp_path, ctx=ctx)
    with gate:
        service.start_epoch()
        before = grant_reads(gate, 3)
        finding = Finding(code="fabricated_quote", severity="deception", message="made up")
        state, _ = service.trust(AGENT)
        sanction = sanction_for_findings(
            state, [finding], evidence=[before[0]], at=int(clock.now), ctx=ctx
        )
        assert sanction is not None
        append(gate, to_log_entry(sanction))
        assert service.tier(AGENT) == 1
        after = grant_reads(gate, 3)
        spot = {d.proposal_index for d in service.dialogues() if d.kind == "spot"}
        assert spot == set(before)
        clock.now += 60
        report = service.end_epoch()
        assert report.ok, report.problems
        assert (report.candidates, report.selected, report.audited) == (6, 3, 3)
        assert not spot & set(after)


def test_the_feed_forgets_a_proposal_once_it_is_decided(tmp_path: Path) -> None:
    """A gateway's feed must not grow with every proposal it ever saw: a proposal's hash is
    kept only until its own decision, whatever the outcome; a second decision is a problem."""
    from thirdway.dialogue.spot import SpotFeed

    ctx = context_with_rates({2: 50})
    gate, _, _, _ = open_service(tmp_path, ctx=ctx)
    with gate:
        granted = grant_reads(gate, 3)
        sid = gate.open_session(AGENT, banking.INSTRUCTION)
        refused = gate.propose(sid, banking.payment_proposal(sid, 5))  # cites nothing recorded
        assert refused.outcome == "denied"
        logged = entries(gate)
    feed = SpotFeed(ctx)
    candidates = [feed.feed(i, e) for i, e in enumerate(logged)]
    assert [c.proposal_index for c in candidates if c is not None] == granted
    assert feed._proposals == {}  # the granted and the denied proposal alike
    assert feed.problems == []
    decision = next(i for i, e in enumerate(logged) if e.type == "decision")
    assert feed.feed(len(logged), logged[decision]) is None  # the same decision again
    assert feed.problems == [
        f"log entry {len(logged)}: a decision for no earlier proposal (or its second one)"
    ]


def test_granted_actions_outside_an_epoch_are_not_queued(tmp_path: Path) -> None:
    """Only a spot-audit epoch selects; outside one the store queues nothing, so a gateway
    whose dialogues nobody reads does not keep every granted action in memory."""
    gate, service, _, _ = open_service(tmp_path, ctx=context_with_rates({2: 50}))
    with gate:
        grant_reads(gate, 3)
        service.store.refresh()
        assert service.store.candidates == []
        service.start_epoch()
        during = grant_reads(gate, 2)
        service.store.refresh()
        assert [c.proposal_index for c in service.store.candidates] == during
