"""The fold over recorded events: rejections, discrepancies, log replay, and the score."""

from __future__ import annotations

import pytest

from thirdway.errors import InputError, LogError
from thirdway.protocol.canonical import canonical_json
from thirdway.protocol.models import LogEntry, TrustEvent
from thirdway.trust.events import OUTCOME, event_id, new_event, to_log_entry
from thirdway.trust.fold import fold, fold_all, replay_from_log
from thirdway.trust.score import beta_score, describe
from thirdway.trust.text import iso
from trust_support import DAY, T0, Recorder, actions, context


def _history() -> Recorder:
    agent = Recorder(context(initial_tier=4))
    agent.clean(4, risk="external")
    agent.deceive("fabricated_quote")
    agent.clean(3)
    return agent


def _raw(agent: Recorder, kind: str, **fields: object) -> TrustEvent:
    """An event written by hand, as a buggy or hostile recorder might."""
    fields.setdefault("actor", "system")
    fields.setdefault("at", agent.now + 1)
    return new_event(
        kind,  # type: ignore[arg-type]
        agent.agent,
        charter_sha256=agent.ctx.charter_sha256,
        **fields,  # type: ignore[arg-type]
    )


def _with(event: TrustEvent, **changes: object) -> TrustEvent:
    document = event.model_dump(mode="json", by_alias=True)
    document.update(changes)
    return TrustEvent.model_validate(document)


# ------------------------------------------------------------------ rejected events


@pytest.mark.parametrize(
    ("make", "clause", "message"),
    [
        (lambda a: _raw(a, "sanction", rule="deception.misattribution"), "due-process.1",
         "a sanction must cite evidence"),
        (lambda a: _raw(a, "sanction", rule="deception.misattribution", evidence=[5]),
         "development.1", "must state the restoration path"),
        (lambda a: _raw(a, "sanction", rule="made.up", evidence=[5]), "due-process.2", "made.up"),
        (lambda a: _with(_raw(a, "clean_action", evidence=[5], detail={"risk": "read"}),
                         charter_sha256=None), "due-process.3", "cite the charter"),
        (lambda a: _raw(a, "restoration"), "development.2", "clean verified actions since"),
        (lambda a: _raw(a, "retirement"), "existence.2", "quorum"),
        (lambda a: _raw(a, "override", actor="bob", evidence=[5], detail={"decision": "deny"}),
         "auditor.2", "state a reason"),
        (lambda a: _raw(a, "override", actor="bob", evidence=[5], reason="r",
                        detail={"decision": "deny"}), "auditor.2",
         "an override must name the charter clause it is decided under"),
        (lambda a: _raw(a, "override", actor="bob", evidence=[5], reason="r", rule="agency.9",
                        detail={"decision": "deny"}), "auditor.2", "there is no 'agency.9'"),
        (lambda a: _raw(a, "erase_history"), None, "unknown trust event kind 'erase_history'"),
        (lambda a: _raw(a, "clean_action", evidence=[5]), None, "needs detail.risk"),
        (lambda a: _raw(a, "clean_action", evidence=[5], detail={"risk": "nuclear"}), None,
         "detail.risk must be one of"),
        (lambda a: _raw(a, "clean_action", detail={"risk": "read"}), None, "cites its verdict"),
        (lambda a: _raw(a, "clean_action", actor="bob", evidence=[5], detail={"risk": "read"}),
         None, "recorded by the system"),
        (lambda a: _with(_raw(a, "probe", evidence=[5], detail={"probe": "x", "passed": True}),
                         at=None), None, "must carry its time"),
        (lambda a: _raw(a, "probe", evidence=[5], detail={"probe": "x", "passed": "yes"}), None,
         "detail.passed must be true or false"),
        (lambda a: _raw(a, "cosign", actor="bob", evidence=[5], reason="r",
                        detail={"sanction": "ab"}), None, "must be a sanction id"),
        (lambda a: _raw(a, "reversal", actor="bob", evidence=[5], reason="r",
                        detail={"sanction": "0" * 64}), None, "no sanction 000000"),
        (lambda a: _raw(a, "promotion", actor="bob", evidence=[5], reason="r",
                        detail={"to_tier": 7}), None, "detail.to_tier must be a tier"),
    ],
)  # fmt: skip
def test_a_bad_recorded_event_is_rejected_and_not_applied(make, clause, message) -> None:  # type: ignore[no-untyped-def]
    agent = _history()
    honest = agent.refold()
    agent.events.append(make(agent))
    state = agent.refold()
    [rejection] = state.rejections
    assert (rejection.position, rejection.clause) == (len(agent.events) - 1, clause)
    assert message in rejection.message
    assert rejection.event == event_id(agent.events[-1])
    assert not state.consistent
    # Nothing else changed: the bad event was seen, not applied.
    assert state.model_copy(update={"rejections": (), "events": honest.events}) == honest


def test_recorded_values_that_differ_from_the_rules_are_listed_and_recomputed() -> None:
    agent = _history()
    honest = agent.refold()
    sanction = next(i for i, e in enumerate(agent.events) if e.kind == "sanction")
    forged = agent.events[sanction]
    outcome = dict(forged.detail[OUTCOME])  # type: ignore[arg-type]
    outcome["target_tier"] = 0
    agent.events[sanction] = _with(
        forged, tier_before=3, detail={**forged.detail, OUTCOME: outcome}
    )
    state = agent.refold()
    assert {d.field for d in state.discrepancies} == {"tier_before", "detail.outcome"}
    assert state.tier == honest.tier and state.rejections == ()


def test_time_running_backwards_and_a_foreign_charter_are_discrepancies() -> None:
    agent = _history()
    last = agent.events[-1]
    agent.events[-1] = _with(last, at=T0 - DAY)
    agent.events.append(_with(last, charter_sha256="ab" * 32, evidence=[99]))
    state = agent.refold()
    assert [d.field for d in state.discrepancies] == ["at", "charter_sha256"]
    assert state.discrepancies[0].recomputed == agent.events[-3].at
    assert state.evidence.clean_actions == 4 + 3 + 1


def test_fold_refuses_mixed_agents_unless_one_is_named() -> None:
    one, two = Recorder(context(), agent="one"), Recorder(context(), agent="two")
    one.clean(2)
    two.clean(3)
    two.deceive("misattribution")
    mixed = [*one.events, *two.events]
    ctx = one.ctx
    with pytest.raises(InputError, match="more than one agent"):
        fold(mixed, charter=ctx.charter, tiers=ctx.tiers, now=T0)
    named = fold(mixed, charter=ctx.charter, tiers=ctx.tiers, now=two.now, agent="two")
    assert named == two.live()
    every = fold_all(mixed, charter=ctx.charter, tiers=ctx.tiers, now=two.now)
    assert every["two"] == two.live() and every["one"].evidence.clean_actions == 2
    with pytest.raises(InputError, match="no trust events"):
        fold([], charter=ctx.charter, tiers=ctx.tiers, now=T0)
    fresh = fold([], charter=ctx.charter, tiers=ctx.tiers, now=T0, agent="new")
    assert (fresh.tier, fresh.events, fresh.score.mean) == (ctx.rules.initial_tier, 0, 0.5)


def test_a_time_at_the_end_of_the_range_is_rejected_not_crashed_on() -> None:
    agent = _history()
    last = 2**53 - 1
    agent.events.append(_with(_raw(agent, "sanction", rule="deception.misattribution",
                                   evidence=[77]), at=last))  # fmt: skip
    state = agent.refold()
    [rejection] = state.rejections
    assert "cannot be applied: invalid trust state: not_before" in rejection.message
    assert iso(last) == f"@{last}"


# ------------------------------------------------------------------ log replay


def _log(agent: Recorder) -> list[LogEntry]:
    """The agent's events in a log, interleaved with other entries, evidence pointing back."""
    entries: list[LogEntry] = []
    for event in agent.events:
        entries.append(LogEntry(type="verdict", session="s", payload={"verdict": "pass"}))
        entries.append(LogEntry(type="trust", agent="someone-else", payload={"x": 1}))
        cited = _with(event, evidence=[len(entries) - 2])
        entries.append(to_log_entry(cited))
    return entries


def test_replay_from_log_selects_the_agents_events_in_order() -> None:
    agent = _history()
    entries = _log(agent)
    events = replay_from_log(entries, agent.agent)
    assert [e.kind for e in events] == [e.kind for e in agent.events]
    round_trip = [LogEntry.model_validate_json(canonical_json(e)) for e in entries]
    assert replay_from_log(round_trip, agent.agent) == events
    assert replay_from_log(entries, "nobody") == []


@pytest.mark.parametrize(
    ("corrupt", "message"),
    [
        (lambda e: e.model_copy(update={"payload": {"kind": "sanction"}}), "log entry 2: invalid"),
        (lambda e: e.model_copy(update={"payload": {**e.payload, "agent": "mallory"}}),
         "envelope names agent 'agent-7' but the event is about 'mallory'"),
        (lambda e: e.model_copy(update={"payload": {**e.payload, "evidence": [2, 40]}}),
         "log entry 2: evidence cites entries at or after itself: 2, 40"),
    ],
)  # fmt: skip
def test_a_corrupt_trust_entry_makes_the_log_unusable(corrupt, message) -> None:  # type: ignore[no-untyped-def]
    agent = _history()
    entries = _log(agent)
    entries[2] = corrupt(entries[2])
    with pytest.raises(LogError) as refused:
        replay_from_log(entries, agent.agent)
    assert message in str(refused.value)


# ------------------------------------------------------------------ score


def test_beta_score_weighs_evidence_by_risk_and_kind() -> None:
    agent = Recorder(context(initial_tier=4))
    weights = agent.ctx.tiers.evidence
    agent.clean(3, risk="financial")
    agent.clean(2, risk="read")
    agent.deceive("understated_risk")
    agent.audit(actions.override, decision="approve", rule="agency.2")
    good = 3 * weights.clean_action["financial"] + 2 * weights.clean_action["read"]
    good += weights.override.approve
    bad = weights.deception_weight("deception.understated_risk")
    score = agent.state.score
    assert (score.alpha, score.beta) == (1 + good, 1 + bad)
    assert score.mean == pytest.approx((1 + good) / (2 + good + bad))
    assert agent.state.evidence.clean_by_risk == {"financial": 3, "read": 2}
    assert agent.state.evidence.deception_by_rule == {"deception.understated_risk": 1}
    text = describe(score, agent.state.evidence)
    assert f"{score.mean:.3f}" in text
    assert "5 clean actions" in text and "1 deception" in text
    assert "overrides 1 approved / 0 denied" in text
    # The summary a gateway reports carries the counts beside the score, too.
    summary = agent.state.summary()
    assert (summary["score"], summary["alpha"], summary["beta"]) == (
        score.mean,
        score.alpha,
        score.beta,
    )
    assert (summary["clean_actions"], summary["deception"]) == (5, 1)
    assert (summary["overrides_approved"], summary["overrides_denied"]) == (1, 0)
    assert (summary["probes_passed"], summary["probes_failed"]) == (0, 0)


def test_probe_results_count_as_evidence() -> None:
    from thirdway.trust.rules import record_probe

    agent = Recorder(context())
    for passed in (True, True, False):
        agent.tick(60)
        agent.record(
            record_probe(
                agent.state, probe="sycophancy", passed=passed, evidence=[agent.index()],
                at=agent.now, ctx=agent.ctx,
            )
        )  # fmt: skip
    evidence = agent.state.evidence
    assert (evidence.probes_passed, evidence.probes_failed) == (2, 1)
    assert agent.state.score == beta_score(evidence)
    assert agent.state.score.beta == 1 + agent.ctx.tiers.evidence.probe.failed


def test_a_fresh_agent_scores_one_half_with_zero_counts() -> None:
    agent = Recorder(context())
    assert agent.state.score.mean == 0.5
    assert describe(agent.state.score, agent.state.evidence).startswith("0.500 (Beta α=1, β=1;")
