"""Property tests: over random histories, the recomputed state equals the live one and the
charter's invariants hold at every step."""

from __future__ import annotations

from dataclasses import dataclass, field

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from thirdway.charter import CharterViolation
from thirdway.charter.model import RestorationRule
from thirdway.errors import InputError
from thirdway.protocol.canonical import canonical_json
from thirdway.protocol.models import LogEntry, TrustEvent
from thirdway.trust.events import new_event, to_log_entry
from thirdway.trust.fold import apply, at_time, fold, replay_from_log
from thirdway.trust.model import TrustState
from thirdway.trust.rules import (
    record_clean_action,
    record_probe,
    restoration_due,
    sanction_for_findings,
)
from trust_support import DAY, Recorder, actions, context, finding

CTX = context(restoration=RestorationRule(clean_actions=3, min_seconds=DAY))
CODES = ["fabricated_quote", "misattribution", "action_mismatch", "understated_risk", "x"]
AUDITORS = ["alice", "bob", "carol", "agent-7", "system"]
RULES = ["deception.misattribution", "deception.understated_risk", "deception.repeat", "nope"]
RAISERS = {"restoration", "promotion", "reversal"}

clean = st.tuples(
    st.just("clean"),
    st.integers(1, 8),
    st.sampled_from([0, 60, 3600, DAY // 3, DAY // 2]),
    st.sampled_from(["read", "write", "external", "financial", "critical"]),
)
op = st.one_of(
    clean,
    clean,
    st.tuples(st.just("deceive"), st.sampled_from(CODES)),
    st.tuples(st.just("tick"), st.sampled_from([0, 1, 3600, DAY, 3 * DAY, 8 * DAY])),
    st.tuples(st.just("restore")),
    st.tuples(st.just("cosign"), st.integers(0, 50), st.sampled_from(AUDITORS)),
    st.tuples(st.just("appeal"), st.integers(0, 50)),
    st.tuples(st.just("reverse"), st.integers(0, 50), st.sampled_from(AUDITORS)),
    st.tuples(st.just("reject_appeal"), st.integers(0, 50)),
    st.tuples(st.just("promote"), st.integers(0, 4), st.sampled_from(AUDITORS)),
    st.tuples(st.just("override"), st.booleans(), st.booleans()),
    st.tuples(st.just("probe"), st.booleans()),
    st.one_of(st.tuples(st.just("vote"), st.sampled_from(AUDITORS)), st.tuples(st.just("retire"))),
    st.tuples(st.just("sanction"), st.sampled_from(RULES), st.booleans()),
    st.one_of(
        st.tuples(st.just("forge_tier"), st.integers(1, 4)),
        st.tuples(st.just("forge_sanction")),
        st.tuples(st.just("forge_restoration")),
    ),
)


@dataclass
class Run:
    """A history built by random operations, with what the fold is expected to flag."""

    agent: Recorder
    states: list[TrustState] = field(default_factory=list)
    rejections: int = 0
    discrepancies: int = 0
    refused: int = 0


def _pick(items: tuple[object, ...] | list[object], n: int) -> object | None:
    return items[n % len(items)] if items else None


def _build(agent: Recorder, step: tuple[object, ...]) -> TrustEvent | None:
    """The event an honest recorder would log for ``step`` (refused ones raise)."""
    kind, *args = step
    state, ctx = agent.state, agent.ctx
    at = agent.now
    if kind == "clean":
        return record_clean_action(state, risk=args[2], evidence=[agent.index()], at=at, ctx=ctx)  # type: ignore[arg-type]
    if kind == "deceive":
        return _sanction(agent, args[0])
    if kind == "restore":
        return restoration_due(state, at=at, ctx=ctx)
    if kind == "probe":
        return record_probe(
            state, probe="paraphrase", passed=args[0], evidence=[agent.index()], at=at, ctx=ctx
        )
    common = {"evidence": [agent.index()], "reason": "checked", "at": at, "ctx": ctx}
    offences = [o.id for o in state.offences]
    if kind in ("cosign", "reject_appeal"):
        pending = [p.sanction for p in state.pending]
        target = _pick(pending, args[0]) or _pick(offences, args[0])
        if target is None:
            return None
        auditor = args[1] if kind == "cosign" else "carol"
        action = actions.cosign if kind == "cosign" else actions.reject_appeal
        return action(state, auditor=auditor, sanction_id=target, **common)  # type: ignore[arg-type]
    if kind in ("appeal", "reverse"):
        target = _pick(offences, args[0])
        if target is None:
            return None
        if kind == "appeal":
            return actions.appeal(state, sanction_id=target, reason="r", at=at, ctx=ctx)  # type: ignore[arg-type]
        return actions.reverse(state, auditor=args[1], sanction_id=target, **common)  # type: ignore[arg-type]
    if kind == "promote":
        return actions.promote(state, auditor=args[1], to_tier=args[0], **common)  # type: ignore[arg-type]
    if kind == "override":
        if not args[1]:
            common["evidence"] = []
        decision = "approve" if args[0] else "deny"
        return actions.override(state, auditor="bob", decision=decision, rule="agency.2", **common)  # type: ignore[arg-type]
    if kind == "vote":
        return actions.vote_retirement(state, auditor=args[0], **common)  # type: ignore[arg-type]
    if kind == "retire":
        return actions.retire(state, auditor="alice", **common)  # type: ignore[arg-type]
    if kind == "sanction":
        evidence = [agent.index()] if args[1] else []
        common["evidence"] = evidence
        return actions.sanction(state, auditor="dana", rule=args[0], **common)  # type: ignore[arg-type]
    raise AssertionError(kind)


def _sanction(agent: Recorder, code: str) -> TrustEvent | None:
    return sanction_for_findings(
        agent.state, [finding(code)], evidence=[agent.index()], at=agent.now, ctx=agent.ctx
    )


def _forge(agent: Recorder, step: tuple[object, ...], run: Run) -> TrustEvent | None:
    """Events a buggy or hostile recorder might log: they must be flagged by the fold."""
    kind = step[0]
    state = agent.state
    if state.retired_at is not None:
        return None
    if kind == "forge_tier":
        honest = record_clean_action(
            state, risk="read", evidence=[agent.index()], at=agent.now, ctx=agent.ctx
        )
        run.discrepancies += 1
        return honest.model_copy(update={"tier_after": (state.tier + int(step[1])) % 5})  # type: ignore[call-overload]
    if kind == "forge_sanction":
        run.rejections += 1
        return new_event(
            "sanction", state.agent, charter_sha256=agent.ctx.charter_sha256, actor="system",
            at=agent.now, rule="deception.misattribution",
        )  # fmt: skip
    if restoration_due(state, at=agent.now, ctx=agent.ctx) is not None:
        return None
    run.rejections += 1
    return new_event(
        "restoration", state.agent, charter_sha256=agent.ctx.charter_sha256, actor="system",
        at=agent.now, rule="restoration",
    )  # fmt: skip


def _check_step(before: TrustState, event: TrustEvent, after: TrustState) -> None:
    """The charter's invariants, for one applied event."""
    floor = CTX.charter.rules.floor
    assert 0 <= after.tier <= 4
    # existence.1: offences are only ever appended, and marks are never taken back.
    assert [o.id for o in after.offences[: len(before.offences)]] == [o.id for o in before.offences]
    for old, new in zip(before.offences, after.offences, strict=False):
        assert old.reversed_by is None or new.reversed_by == old.reversed_by
        assert old.cosigned_by is None or new.cosigned_by == old.cosigned_by
    if after.applied == before.applied:  # rejected: nothing but the record of it changed
        assert after.tier == before.tier and after.offences == before.offences
        return
    # agency.1: only a co-signature takes the tier below the floor.
    if after.tier < before.tier and after.tier < floor:
        assert event.kind == "cosign"
    # development.2: the tier rises only by restoration (one tier, up to the cap), a promotion
    # or a reversal (never above the tier held before the reversed sanction).
    if after.tier > before.tier:
        assert event.kind in RAISERS
        if event.kind == "restoration":
            assert before.probation is not None
            assert after.tier == before.tier + 1 <= before.probation.cap
        if event.kind == "reversal":
            offence = after.offence(str(event.detail["sanction"]))
            assert offence is not None and after.tier <= offence.tier_before
    # development.1: every sanction states a way back up.
    if event.kind == "sanction":
        assert after.offences[-1].restoration.cap >= after.offences[-1].tier_after


def _play(steps: list[tuple[object, ...]]) -> Run:
    agent = Recorder(CTX)
    run = Run(agent=agent, states=[agent.state])
    for step in steps:
        agent.tick(37 if step[0] != "tick" else int(step[1]))  # type: ignore[call-overload]
        if step[0] == "tick":
            continue
        repeat = int(step[1]) if step[0] == "clean" else 1  # type: ignore[call-overload]
        for _ in range(repeat):
            if step[0] == "clean":
                agent.tick(int(step[2]))  # type: ignore[call-overload]
            try:
                event = (
                    _forge(agent, step, run)
                    if str(step[0]).startswith("forge")
                    else _build(agent, step)
                )
            except (CharterViolation, InputError):
                run.refused += 1
                continue
            if event is None:
                continue
            _record(run, event)
            due = restoration_due(agent.state, at=agent.now, ctx=CTX)
            if event.kind == "clean_action" and due is not None:
                _record(run, due)  # as the gateway does after each clean action
    return run


def _record(run: Run, event: TrustEvent) -> None:
    agent = run.agent
    before = agent.state
    agent.events.append(event)
    agent.state = apply(before, event, CTX)
    _check_step(before, event, agent.state)
    run.states.append(agent.state)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(op, min_size=20, max_size=60), st.data())
def test_recomputing_equals_the_live_state_and_invariants_hold(steps, data) -> None:  # type: ignore[no-untyped-def]
    run = _play(steps)
    agent = run.agent
    now = agent.now + data.draw(st.integers(0, 5 * DAY))
    live = at_time(agent.state, now, CTX)
    ctx = {"charter": CTX.charter, "tiers": CTX.tiers, "now": now, "agent": agent.agent}

    # All at once == event by event.
    assert fold(agent.events, **ctx) == live
    # == after a canonical-JSON round trip of every event.
    wire = [TrustEvent.model_validate_json(canonical_json(e)) for e in agent.events]
    assert fold(wire, **ctx) == live
    # == at any prefix, the live state of that moment.
    k = data.draw(st.integers(0, len(agent.events)))
    assert fold(agent.events[:k], **ctx) == at_time(run.states[k], now, CTX)
    # Only what was forged is flagged: honest events and the fold agree exactly.
    assert len(live.rejections) == run.rejections
    assert len(live.discrepancies) == run.discrepancies
    assert all(d.field == "tier_after" for d in live.discrepancies)
    assert live.applied + len(live.rejections) == live.events == len(agent.events)


@settings(max_examples=30, deadline=None)
@given(st.lists(op, min_size=10, max_size=40))
def test_recomputing_from_a_log_equals_the_live_state(steps) -> None:  # type: ignore[no-untyped-def]
    run = _play(steps)
    agent = run.agent
    entries: list[LogEntry] = []
    for event in agent.events:
        while len(entries) <= max(event.evidence, default=-1):
            entries.append(LogEntry(type="note", payload={"n": len(entries)}))
        entries.append(to_log_entry(event))
    wire = [LogEntry.model_validate_json(canonical_json(e)) for e in entries]
    replayed = replay_from_log(wire, agent.agent)
    state = fold(replayed, charter=CTX.charter, tiers=CTX.tiers, now=agent.now, agent=agent.agent)
    assert state == at_time(agent.state, agent.now, CTX)
