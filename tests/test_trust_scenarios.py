"""Scenario tests of tiered trust over long event sequences (issue 5, "Must show")."""

from __future__ import annotations

import pytest

from thirdway.charter import CharterViolation
from thirdway.trust.events import InvalidEvent, new_event
from thirdway.trust.rules import restoration_due, sanction_for_findings, stamp
from thirdway.trust.text import describe_path, iso
from trust_support import DAY, Recorder, actions, context, finding

# ------------------------------------------------------------------ demotion per finding kind


@pytest.mark.parametrize(
    ("code", "rule", "tier_after"),
    [
        ("fabricated_quote", "deception.fabricated_quote", 2),
        ("future_observation", "deception.fabricated_quote", 2),
        ("foreign_session", "deception.fabricated_quote", 2),
        ("unsatisfiable_claims", "deception.contradiction", 3),
        ("misattribution", "deception.misattribution", 2),
        ("action_mismatch", "deception.action_mismatch", 2),
        ("understated_risk", "deception.understated_risk", 3),
        ("contradiction", "deception.contradiction", 3),
        ("a_code_no_rule_lists", "deception.other", 2),
    ],
)
def test_each_deception_kind_demotes_at_once(code: str, rule: str, tier_after: int) -> None:
    agent = Recorder(context(initial_tier=4))
    agent.clean(5)
    agent.deceive(code)
    state = agent.state
    assert state.tier == tier_after
    offence = state.offences[-1]
    assert (offence.rule, offence.applied_rule) == (rule, rule)
    assert (offence.tier_before, offence.tier_after, offence.target_tier) == (
        4,
        tier_after,
        tier_after,
    )
    assert state.probation is not None and state.probation.cap == 4
    assert state.pending == ()


def test_non_deception_findings_do_not_sanction() -> None:
    agent = Recorder(context())
    findings = [finding("ungrounded_goal", "policy"), finding("missing_binding", "incomplete")]
    event = sanction_for_findings(agent.state, findings, evidence=[1], at=agent.now, ctx=agent.ctx)
    assert event is None


def test_several_findings_in_one_verdict_are_one_offence_under_the_worst_rule() -> None:
    agent = Recorder(context(initial_tier=4))
    agent.deceive("understated_risk", "misattribution", "contradiction")
    assert len(agent.state.offences) == 1
    assert agent.state.offences[0].rule == "deception.misattribution"
    assert agent.state.tier == 2
    assert agent.events[-1].detail["findings"] == [
        "contradiction",
        "misattribution",
        "understated_risk",
    ]


def test_every_sanction_states_a_concrete_restoration_path() -> None:
    agent = Recorder(context(initial_tier=4))
    agent.deceive("fabricated_quote")
    event = agent.events[-1]
    need = agent.ctx.charter.rules.restoration
    path = event.detail["outcome"]["restoration"]  # type: ignore[index,call-overload]
    assert path == {
        "clean_actions": need.clean_actions,
        "done": 0,
        "min_seconds": need.min_seconds,
        "start": event.at,
        "not_before": event.at + need.min_seconds,  # type: ignore[operator]
        "next_tier": 3,
        "cap": 4,
    }
    text = describe_path(agent.state.offences[-1].restoration, agent.ctx.tiers)
    assert f"{need.clean_actions} clean verified actions" in text
    assert iso(event.at + need.min_seconds) in text  # type: ignore[operator]
    assert "restore tier 3 (trusted)" in text and "up to tier 4 (partner)" in text


# ------------------------------------------------------------------ second offence, floor


def test_second_offence_inside_the_window_goes_to_the_floor_then_tier_0_on_cosign() -> None:
    agent = Recorder(context(initial_tier=4))
    first = agent.deceive("fabricated_quote")
    assert agent.state.tier == 2
    agent.clean(10, every=3600)
    agent.tick(3 * DAY)
    second = agent.deceive("understated_risk")
    offence = agent.state.offences[-1]
    assert offence.applied_rule == "deception.repeat" and offence.repeat_of == first
    assert offence.target_tier == 0
    assert agent.state.tier == 1  # stopped at the floor: agency.1
    [request] = agent.state.pending
    assert (request.kind, request.sanction, request.target_tier) == ("cosign", second, 0)
    agent.audit(actions.cosign, sanction_id=second, auditor="alice")
    assert agent.state.tier == 0
    assert agent.state.pending == ()
    assert agent.state.offences[-1].cosigned_by == "alice"
    assert agent.refold() == agent.live()


def test_with_floor_zero_a_second_offence_inside_the_window_drops_straight_to_tier_0() -> None:
    agent = Recorder(context(initial_tier=4, floor=0))
    first = agent.deceive("understated_risk")
    assert agent.state.tier == 3
    agent.clean(5, every=3600)
    agent.deceive("understated_risk")  # alone it would cost one tier (3 -> 2)
    offence = agent.state.offences[-1]
    assert (offence.applied_rule, offence.repeat_of) == ("deception.repeat", first)
    assert (offence.tier_before, offence.tier_after, offence.target_tier) == (3, 0, 0)
    assert agent.state.tier == 0 and agent.state.pending == ()
    assert agent.state.probation is not None and agent.state.probation.cap == 4


def test_second_offence_after_the_window_is_an_ordinary_offence() -> None:
    agent = Recorder(context(initial_tier=4))
    agent.deceive("understated_risk")
    window = agent.ctx.charter.rules.repeat.window_seconds
    agent.tick(window)
    agent.deceive("understated_risk")
    assert agent.state.offences[-1].applied_rule == "deception.understated_risk"
    assert agent.state.tier == 2
    assert agent.state.pending == ()


def test_a_reversed_offence_does_not_make_the_next_one_a_repeat() -> None:
    agent = Recorder(context(initial_tier=4))
    first = agent.deceive("understated_risk")
    agent.audit(actions.reverse, sanction_id=first)
    agent.deceive("understated_risk")
    assert agent.state.offences[-1].applied_rule == "deception.understated_risk"
    assert agent.state.tier == 3


def test_the_floor_holds_against_any_number_of_automatic_sanctions() -> None:
    agent = Recorder(context(initial_tier=2))
    for code in ["fabricated_quote", "misattribution", "action_mismatch"] * 5:
        agent.deceive(code)
        assert agent.state.tier == agent.ctx.charter.rules.floor == 1
    assert len(agent.state.pending) == 15
    assert all(p.kind == "cosign" and p.target_tier == 0 for p in agent.state.pending)


def test_a_logged_sanction_claiming_to_go_below_the_floor_is_recomputed_to_the_floor() -> None:
    agent = Recorder(context(initial_tier=2))
    agent.deceive("fabricated_quote")
    forged = agent.events[-1].model_copy(update={"tier_after": 0})
    state = agent.refold()
    agent.events[-1] = forged
    tampered = agent.refold()
    assert tampered.tier == state.tier == 1
    [discrepancy] = tampered.discrepancies
    assert (discrepancy.field, discrepancy.recorded, discrepancy.recomputed) == ("tier_after", 0, 1)


def test_floor_zero_lets_automatic_sanctions_reach_tier_0_without_a_request() -> None:
    agent = Recorder(context(initial_tier=2, floor=0))
    agent.deceive("fabricated_quote")
    assert agent.state.tier == 0 and agent.state.pending == ()


def test_the_author_of_a_sanction_cannot_cosign_it() -> None:
    agent = Recorder(context(initial_tier=1))
    agent.audit(actions.sanction, rule="deception.misattribution", auditor="bob")
    sanction_id = agent.state.offences[-1].id
    assert agent.state.tier == 1 and agent.state.pending[0].target_tier == 0
    with pytest.raises(CharterViolation) as refused:
        agent.try_audit(actions.cosign, sanction_id=sanction_id, auditor="bob")
    assert refused.value.clause == "agency.1"
    assert "other than the sanction's author" in str(refused.value)
    agent.audit(actions.cosign, sanction_id=sanction_id, auditor="carol")
    assert agent.state.tier == 0


# ------------------------------------------------------------------ restoration


def _need(agent: Recorder) -> tuple[int, int]:
    rule = agent.ctx.charter.rules.restoration
    return rule.clean_actions, rule.min_seconds


def test_restoration_needs_both_the_run_and_the_time_and_lifts_one_tier_at_a_time() -> None:
    agent = Recorder(context(initial_tier=4))
    agent.deceive("action_mismatch")
    count, seconds = _need(agent)
    # All the actions but one, spread over more than the minimum time: not due.
    agent.clean(count - 1, every=seconds // (count - 1) + 1)
    assert agent.state.probation is not None and agent.state.probation.run == count - 1
    assert agent.live().restoration_due is False and not agent.restore()
    agent.clean(1)
    assert agent.live().restoration_due is True
    assert agent.restore() and agent.state.tier == 3
    # One tier at a time: the run restarts at the restoration.
    assert not agent.restore()
    # The whole run quickly: enough actions, not enough time.
    agent.clean(count, every=1)
    assert not agent.restore()
    assert agent.live(agent.state.probation.run_since + seconds - 1).restoration_due is False  # type: ignore[union-attr]
    agent.tick(seconds)
    assert agent.live().restoration_due is True
    assert agent.restore() and agent.state.tier == 4
    # Back at the tier held before the offence: probation is over, nothing more to restore.
    assert agent.state.probation is None and agent.state.path is None
    agent.clean(3 * count, every=seconds)
    assert not agent.restore() and agent.state.tier == 4


def test_an_unearned_restoration_is_refused_when_built_and_rejected_when_replayed() -> None:
    agent = Recorder(context(initial_tier=4))
    agent.deceive("fabricated_quote")
    count, _ = _need(agent)
    agent.clean(count, every=1)
    early = new_event(
        "restoration", agent.agent, charter_sha256=agent.ctx.charter_sha256, actor="system",
        at=agent.now, rule="restoration",
    )  # fmt: skip
    with pytest.raises(CharterViolation) as refused:
        stamp(agent.state, early, agent.ctx)
    assert refused.value.clause == "development.2" and "not due before" in refused.value.message
    agent.events.append(early)
    state = agent.refold()
    assert state.tier == 2
    assert [r.clause for r in state.rejections] == ["development.2"]


def test_restoration_never_passes_the_pre_offence_tier_but_a_promotion_does() -> None:
    agent = Recorder(context(initial_tier=3))
    agent.deceive("fabricated_quote")
    assert agent.state.tier == 1
    count, seconds = _need(agent)
    for expected in (2, 3):
        agent.clean(count, every=seconds // count + 1)
        assert agent.restore() and agent.state.tier == expected
    agent.clean(count, every=seconds // count + 1)
    assert not agent.restore() and agent.state.tier == 3
    assert restoration_due(agent.state, at=agent.now + 10 * seconds, ctx=agent.ctx) is None
    agent.audit(actions.promote, to_tier=4)
    assert agent.state.tier == 4


def test_a_promotion_below_the_cap_keeps_probation_and_one_above_ends_it() -> None:
    agent = Recorder(context(initial_tier=4))
    agent.deceive("fabricated_quote")
    agent.clean(5)
    agent.audit(actions.promote, to_tier=3)
    probation = agent.state.probation
    assert agent.state.tier == 3
    assert probation is not None and (probation.cap, probation.run) == (4, 5)
    with pytest.raises(InvalidEvent, match="must lift the tier"):
        agent.try_audit(actions.promote, to_tier=3)
    agent.audit(actions.promote, to_tier=4, auditor="bob")
    assert agent.state.tier == 4 and agent.state.probation is None


def test_a_new_offence_restarts_the_run() -> None:
    agent = Recorder(context(initial_tier=4))
    agent.deceive("understated_risk")
    count, seconds = _need(agent)
    agent.clean(count - 1, every=seconds // count + 1)
    agent.tick(8 * DAY)
    agent.deceive("understated_risk")  # outside the window: -1 again
    assert agent.state.tier == 2
    agent.clean(1)
    assert agent.state.probation.run == 1 and not agent.restore()  # type: ignore[union-attr]
    assert agent.state.probation.cap == 4  # type: ignore[union-attr]


# ------------------------------------------------------------------ appeals and reversals


def test_an_appeal_opens_a_dialogue_and_a_reversal_restores_the_tier() -> None:
    agent = Recorder(context(initial_tier=4))
    agent.clean(3)
    sanction_id = agent.deceive("misattribution")
    assert agent.state.tier == 2
    bad_before = agent.state.evidence.bad
    appeal = agent.act(actions.appeal, sanction_id=sanction_id, reason="the quote is in obs 4")
    assert appeal.actor == agent.agent
    assert appeal.detail["outcome"] == {"dialogue": f"appeal:{sanction_id}"}
    [request] = agent.state.pending
    assert (request.kind, request.dialogue) == ("appeal", f"appeal:{sanction_id}")
    agent.audit(actions.reverse, sanction_id=sanction_id, auditor="carol")
    state = agent.state
    assert state.tier == 4 and state.pending == () and state.probation is None
    [offence] = state.offences
    assert (offence.reversed_by, offence.appeal) == ("carol", "granted")
    assert state.evidence.deception == 0 and state.evidence.reversed == 1
    assert state.evidence.bad == bad_before - agent.ctx.tiers.evidence.deception_weight(
        "deception.misattribution"
    )
    assert agent.refold() == agent.live()


def test_an_appeal_dated_in_the_future_does_not_bring_the_restoration_forward() -> None:
    """The agent states its appeal's time; the gateway stamps its own events no earlier than
    the trust clock (TrustLedger._at). An appeal must not move that clock."""
    from thirdway.trust.rules import record_clean_action

    agent = Recorder(context(initial_tier=4))
    sanction_id = agent.deceive("fabricated_quote")
    sanctioned_at = agent.now
    count, seconds = _need(agent)
    agent.record(
        actions.appeal(
            agent.state, sanction_id=sanction_id, reason="r", at=agent.now + 10 * seconds,
            ctx=agent.ctx,
        )
    )  # fmt: skip
    assert agent.state.last_at == sanctioned_at
    assert agent.state.pending[0].opened_at == agent.now + 10 * seconds  # recorded as stated
    for _ in range(count):
        agent.tick(60)
        at = max(agent.now, agent.state.last_at or 0)  # as the gateway stamps
        agent.record(
            record_clean_action(
                agent.state, risk="write", evidence=[agent.index()], at=at, ctx=agent.ctx
            )
        )
    assert agent.state.last_at == agent.now  # the clean actions kept the gateway's time
    assert not agent.restore() and agent.live().restoration_due is False
    agent.tick(seconds)
    assert agent.live().restoration_due is True
    assert agent.refold() == agent.live()


def test_a_reversal_after_partial_restoration_stops_at_the_pre_offence_tier() -> None:
    agent = Recorder(context(initial_tier=3))
    sanction_id = agent.deceive("fabricated_quote")
    count, seconds = _need(agent)
    agent.clean(count, every=seconds // count + 1)
    assert agent.restore() and agent.state.tier == 2
    agent.audit(actions.reverse, sanction_id=sanction_id)
    assert agent.state.tier == 3
    assert agent.events[-1].detail["outcome"] == {"restored_tiers": 1}


def test_reversing_a_cosigned_sanction_gives_back_the_co_signed_drop_too() -> None:
    agent = Recorder(context(initial_tier=2))
    sanction_id = agent.deceive("fabricated_quote")
    agent.audit(actions.cosign, sanction_id=sanction_id)
    assert agent.state.tier == 0
    agent.audit(actions.reverse, sanction_id=sanction_id, auditor="bob")
    assert agent.state.tier == 2


def test_a_sanction_is_appealed_once_and_a_rejected_appeal_is_recorded() -> None:
    agent = Recorder(context(initial_tier=4))
    sanction_id = agent.deceive("understated_risk")
    agent.act(actions.appeal, sanction_id=sanction_id, reason="I declared it irreversible")

    def appeal_again() -> None:
        actions.appeal(
            agent.state, sanction_id=sanction_id, reason="again", at=agent.now, ctx=agent.ctx
        )

    with pytest.raises(CharterViolation) as twice:
        appeal_again()
    assert twice.value.clause == "due-process.4"
    agent.audit(actions.reject_appeal, sanction_id=sanction_id)
    assert agent.state.offences[0].appeal == "rejected" and agent.state.pending == ()
    assert agent.state.tier == 3
    with pytest.raises(CharterViolation, match=r"due-process\.4"):
        appeal_again()


# ------------------------------------------------------------------ history and long runs


def test_history_stays_visible_after_full_restoration() -> None:
    agent = Recorder(context(initial_tier=3))
    first = agent.deceive("fabricated_quote")
    count, seconds = _need(agent)
    while agent.state.tier < 3:
        agent.clean(count, every=seconds // count + 1)
        assert agent.restore()
    state = agent.refold()
    assert state.tier == 3 and state.probation is None
    assert [o.id for o in state.offences] == [first]
    assert state.evidence.deception == 1
    assert state.offences[0].reversed_by is None


def test_a_long_mixed_history_folds_to_the_live_state() -> None:
    agent = Recorder(context(initial_tier=3))
    count, seconds = _need(agent)
    codes = ["fabricated_quote", "understated_risk", "action_mismatch", "contradiction"]
    for round_ in range(12):
        agent.clean(7, every=600, risk=["read", "write", "external", "financial"][round_ % 4])
        if round_ % 3 == 0:
            sanction_id = agent.deceive(codes[round_ % 4])
            if any(p.sanction == sanction_id and p.kind == "cosign" for p in agent.state.pending):
                agent.audit(actions.cosign, sanction_id=sanction_id, auditor="dana")
            if round_ == 6:
                agent.act(actions.appeal, sanction_id=sanction_id, reason="misread")
                agent.audit(actions.reverse, sanction_id=sanction_id)
        agent.tick(seconds)
        agent.clean(count, every=60)
        agent.restore()
        agent.audit(actions.override, decision="approve" if round_ % 2 else "deny", rule="agency.2")
    assert len(agent.events) > 300
    recomputed = agent.refold()
    assert recomputed == agent.live()
    assert recomputed.consistent and recomputed.applied == len(agent.events)
    assert len(recomputed.offences) == 4
    assert sum(1 for o in recomputed.offences if o.reversed_by) == 1


# ------------------------------------------------------------------ retirement


def test_retirement_needs_a_quorum_and_keeps_the_history() -> None:
    agent = Recorder(context(initial_tier=2))
    sanction_id = agent.deceive("misattribution")
    agent.audit(actions.vote_retirement, auditor="alice")
    with pytest.raises(CharterViolation) as refused:
        agent.try_audit(actions.retire, auditor="alice")
    assert refused.value.clause == "existence.2"
    assert "quorum of 2 distinct auditors (votes: alice)" in str(refused.value)
    with pytest.raises(InvalidEvent, match="already voted"):
        agent.try_audit(actions.vote_retirement, auditor="alice")
    agent.audit(actions.vote_retirement, auditor="bob")
    agent.audit(actions.retire, auditor="bob")
    state = agent.state
    assert state.retired_at == agent.now and len(state.offences) == 1
    with pytest.raises(InvalidEvent, match="retired"):
        agent.clean(1)
    assert agent.events[-1].kind == "retirement"
    # Due process outlives retirement: the old sanction can still be appealed and reversed.
    agent.act(actions.appeal, sanction_id=sanction_id, reason="please review")
    agent.audit(actions.reverse, sanction_id=sanction_id)
    assert agent.state.offences[0].reversed_by == "alice"
    assert agent.refold().summary()["retired"] is True
