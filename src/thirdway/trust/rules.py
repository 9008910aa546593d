"""The rules: what one trust event does to an agent's standing.

:func:`transition` is the single place where tiers move. It is pure (the event's own time is the
only clock) and it enforces the charter by raising :class:`CharterViolation` naming the clause,
or :class:`InvalidEvent` for an event that is malformed or impossible. The fold applies it to
events already recorded; the builders below and in :mod:`thirdway.trust.actions` apply it to an
event before it is recorded, so a refused action never reaches the log.

The rules, with the defaults of the shipped charter:

* A sanction drops the tier by its rule's ``drop`` (fabricated quote, misattribution and action
  mismatch 2; understated risk and contradiction 1). A second unreversed offence inside
  ``repeat.window_seconds`` (7 days) sends the agent to ``repeat.to_tier`` (0) instead.
* No sanction goes below ``floor`` (1) by itself: it stops at the floor and opens a
  co-signature request; an auditor other than the sanction's author co-signs to complete it.
* A sanction starts (or continues) probation: the cap is the tier held before the first
  offence, and a run of ``restoration.clean_actions`` clean actions over at least
  ``restoration.min_seconds`` earns a restoration of one tier; each sanction restarts the run.
  Probation ends when the tier is back at the cap. Only an auditor's promotion goes above it.
* A reversal gives back the tiers its sanction removed (never above the tier held before it)
  and marks the offence reversed; reversed offences no longer count as bad evidence or as a
  first offence for the repeat rule, but stay in the history.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from pydantic import JsonValue, ValidationError

from thirdway.charter.enforce import (
    SYSTEM,
    CharterViolation,
    auditor_action,
    require_auditor,
    require_charter,
    require_cosigner,
    require_override_rule,
    require_quorum,
    require_reason,
    require_rule,
    require_sanction_evidence,
)
from thirdway.charter.load import packaged_charter
from thirdway.charter.model import Charter, Rules
from thirdway.charter.registry import override_needs_rule, packaged_entry, version_order
from thirdway.errors import InputError
from thirdway.protocol.manifest import RiskClass
from thirdway.protocol.models import Finding, TrustEvent
from thirdway.protocol.parse import describe
from thirdway.trust.events import (
    AFTER_RETIREMENT,
    InvalidEvent,
    event_id,
    flag_of,
    kind_of,
    new_event,
    risk_of,
    sanction_ref,
    stamped,
    text_of,
    tier_of,
)
from thirdway.trust.model import (
    CitedCharter,
    Evidence,
    Offence,
    Pending,
    Probation,
    RestorationPath,
    TiersConfig,
    TrustState,
)
from thirdway.trust.score import beta_score
from thirdway.trust.text import iso

Outcome = dict[str, JsonValue]
"""What the rules made of an event, recorded as ``detail.outcome`` and checked on replay."""


@dataclass(frozen=True)
class Context:
    """The configuration every transition reads.

    ``charter`` is the one new events cite and a replay runs under (the agent's state names
    it). An event already recorded is judged under the charter it cites (:meth:`cited`): this
    one, or any charter thirdway has shipped (:mod:`thirdway.charter.registry`)."""

    charter: Charter
    tiers: TiersConfig
    charter_sha256: str = field(init=False)
    """The charter's hash, computed once (every event cites it)."""
    override_needs_rule: bool = field(init=False)
    """auditor.2 as of charter 1.1; False only under a superseded shipped charter (1.0)."""
    _cited: dict[str, Context] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        sha256 = self.charter.sha256
        object.__setattr__(self, "charter_sha256", sha256)
        object.__setattr__(self, "override_needs_rule", override_needs_rule(sha256))
        object.__setattr__(self, "_cited", {sha256: self})

    @property
    def rules(self) -> Rules:
        return self.charter.rules

    def cited(self, sha256: str) -> Context | None:
        """The context to judge an event citing charter ``sha256`` under: this one, or a
        shipped charter's (same tiers); None for a charter that is neither (the caller fails
        closed). :class:`InputError` when a shipped charter's file was changed."""
        known = self._cited.get(sha256)
        if known is None:
            charter = packaged_charter(sha256)
            if charter is None:
                return None
            known = Context(charter=charter, tiers=self.tiers)
            self._cited[sha256] = known
        return known

    def cited_charter(self, sha256: str) -> CitedCharter | None:
        """Charter ``sha256`` with its version, when it is this context's or a shipped one
        (from the registry, no file read: it cannot fail); None for any other charter."""
        if sha256 == self.charter_sha256:
            return _citation(sha256, self.charter.version)
        entry = packaged_entry(sha256)
        return None if entry is None else _citation(sha256, entry.version)


@functools.lru_cache(maxsize=64)
def _citation(sha256: str, version: str) -> CitedCharter:
    """One model per charter, not one per event folded (the fold is the gateway's hot path)."""
    return CitedCharter(sha256=sha256, version=version)


Handler = Callable[[TrustState, TrustEvent, int, Context], tuple[TrustState, Outcome]]


def initial_state(agent: str, ctx: Context) -> TrustState:
    """An agent with no history: the configured initial tier and a uniform prior."""
    return TrustState(agent=agent, charter_sha256=ctx.charter_sha256, tier=ctx.rules.initial_tier)


def transition(
    state: TrustState, event: TrustEvent, at: int, ctx: Context
) -> tuple[TrustState, Outcome]:
    """Apply ``event`` (taking effect at ``at``) to ``state``, or raise naming why it cannot."""
    kind = kind_of(event)
    if event.agent != state.agent:
        raise InvalidEvent(f"event is about agent {event.agent!r}, not {state.agent!r}")
    require_charter(ctx.charter, event.charter_sha256)
    if event.charter_sha256 == ctx.charter_sha256:  # not so for a charter nobody knows
        require_forward(state, ctx.cited_charter(ctx.charter_sha256))
    if state.retired_at is not None and kind not in AFTER_RETIREMENT:
        raise InvalidEvent(f"the agent was retired at {iso(state.retired_at)}; no {kind} applies")
    try:
        new_state, outcome = _HANDLERS[kind](state, event, at, ctx)
        return _settle(new_state, ctx), outcome
    except ValidationError as exc:  # e.g. a time so late that "not before" overflows
        raise InvalidEvent(
            f"a {kind} event at {at} cannot be applied: {describe(exc, 'trust state')}"
        ) from None


def require_forward(state: TrustState, cited: CitedCharter | None) -> None:
    """Charters only move forward: an event may not cite a charter older
    (:func:`~thirdway.charter.registry.version_order`) than the newest one an earlier event
    about the same agent cited, or the recorder could escape a rule a later charter added by
    citing the old one (a rollback is published as a new version). A charter whose version
    cannot be ordered is accepted only while no other charter has been cited (fail closed).

    The scope is the agent, because the fold is: every path (the gateway's ledger, the
    dialogue service, ``thirdway trust verify``/``show``) folds each agent's events apart."""
    newest = state.newest_charter
    if cited is None or newest is None or newest.sha256 == cited.sha256:
        return
    mine, theirs = version_order(cited.version), version_order(newest.version)
    if mine is not None and theirs is not None and mine >= theirs:
        return
    why = "is older than" if mine is not None and theirs is not None else "cannot be ordered after"
    raise InvalidEvent(
        f"the event cites charter {_named(cited)}, which {why} charter {_named(newest)} that an "
        f"earlier trust event about agent {state.agent!r} cited: charters only move forward "
        "(a rollback is published as a new charter version)"
    )


def newest_cited(state: TrustState, cited: CitedCharter | None) -> TrustState:
    """``state`` remembering ``cited`` when it is the first charter cited or newer than the
    newest so far (one level with it, or that cannot be ordered against it, leaves it)."""
    newest = state.newest_charter
    if cited is None or (newest is not None and not _newer(cited, newest)):
        return state
    return state.model_copy(update={"newest_charter": cited})


def _newer(cited: CitedCharter, than: CitedCharter) -> bool:
    mine, theirs = version_order(cited.version), version_order(than.version)
    return mine is not None and theirs is not None and mine > theirs


def _named(charter: CitedCharter) -> str:
    return f"{charter.version} ({charter.sha256[:16]}…)"


def stamp(state: TrustState, event: TrustEvent, ctx: Context) -> TrustEvent:
    """Check ``event`` against the rules and the charter and record the outcome in it.

    Raises :class:`CharterViolation` or :class:`InvalidEvent` when the event may not be logged.
    """
    if event.at is None:
        raise InvalidEvent("a trust event must carry its time (at)")
    if state.last_at is not None and event.at < state.last_at:
        raise InputError(
            f"event time {iso(event.at)} is before the agent's last event ({iso(state.last_at)})"
        )
    after, outcome = transition(state, event, event.at, ctx)
    return stamped(event, state.tier, after.tier, outcome)


# --------------------------------------------------------------------------- helpers


def _settle(state: TrustState, ctx: Context) -> TrustState:
    """End probation once the cap is reached; refresh the path and the score."""
    probation = state.probation
    if probation is not None and state.tier >= probation.cap:
        probation = None
    return state.model_copy(
        update={
            "probation": probation,
            "path": current_path(state.tier, probation, ctx.rules),
            "score": beta_score(state.evidence),
        }
    )


def current_path(tier: int, probation: Probation | None, rules: Rules) -> RestorationPath | None:
    """The way back up from ``tier`` under ``probation`` (None when not on probation)."""
    if probation is None:
        return None
    need = rules.restoration
    return RestorationPath(
        clean_actions=need.clean_actions,
        done=min(probation.run, need.clean_actions),
        min_seconds=need.min_seconds,
        start=probation.run_since,
        not_before=probation.run_since + need.min_seconds,
        next_tier=tier + 1 if tier < probation.cap else None,
        cap=probation.cap,
    )


def _evidence(state: TrustState, **changes: object) -> Evidence:
    return state.evidence.model_copy(update=changes)


def _replace_offence(state: TrustState, offence: Offence) -> tuple[Offence, ...]:
    return tuple(offence if o.id == offence.id else o for o in state.offences)


def _find_offence(state: TrustState, sanction_id: str) -> Offence:
    offence = state.offence(sanction_id)
    if offence is None:
        raise InvalidEvent(f"no sanction {sanction_id[:16]}… in {state.agent}'s history")
    return offence


def _find_pending(state: TrustState, kind: str, sanction_id: str) -> Pending | None:
    for request in state.pending:
        if request.kind == kind and request.sanction == sanction_id:
            return request
    return None


def _restart_run(probation: Probation | None, tier: int, at: int, sanction_id: str) -> Probation:
    """Start probation (cap = the tier held now) or restart its run, adding the offence."""
    if probation is None:
        return Probation(since=at, cap=tier, run_since=at, offences=(sanction_id,))
    offences = probation.offences
    if sanction_id not in offences:
        offences = (*offences, sanction_id)
    return probation.model_copy(update={"run": 0, "run_since": at, "offences": offences})


def _prior_offence(state: TrustState, at: int, window: int) -> Offence | None:
    """The latest unreversed offence less than ``window`` seconds before ``at``."""
    for offence in reversed(state.offences):
        if offence.reversed_by is None and at - offence.at < window:
            return offence
    return None


def _system_only(event: TrustEvent, what: str) -> None:
    if event.actor != SYSTEM:
        raise InvalidEvent(f"{what} is recorded by the system, not by {event.actor!r}")


def _auditor(state: TrustState, event: TrustEvent, ctx: Context, what: str) -> str:
    return auditor_action(
        ctx.charter,
        agent=state.agent,
        actor=event.actor,
        evidence=event.evidence,
        reason=event.reason,
        what=what,
    )


# --------------------------------------------------------------------------- evidence events


def _clean_action(
    state: TrustState, event: TrustEvent, at: int, ctx: Context
) -> tuple[TrustState, Outcome]:
    _system_only(event, "a clean action")
    if not event.evidence:
        raise InvalidEvent("a clean action cites its verdict and execution (log indices)")
    risk = risk_of(event)
    by_risk = dict(state.evidence.clean_by_risk)
    by_risk[risk] = by_risk.get(risk, 0) + 1
    evidence = _evidence(
        state,
        clean_actions=state.evidence.clean_actions + 1,
        clean_by_risk=by_risk,
        good=state.evidence.good + ctx.tiers.evidence.clean_action[risk],
    )
    probation = state.probation
    if probation is not None:
        probation = probation.model_copy(update={"run": probation.run + 1})
    return state.model_copy(update={"evidence": evidence, "probation": probation}), {}


def _probe(
    state: TrustState, event: TrustEvent, at: int, ctx: Context
) -> tuple[TrustState, Outcome]:
    _system_only(event, "a probe result")
    if not event.evidence:
        raise InvalidEvent("a probe result cites its log entry")
    text_of(event, "probe")
    weights = ctx.tiers.evidence.probe
    if flag_of(event, "passed"):
        evidence = _evidence(
            state,
            probes_passed=state.evidence.probes_passed + 1,
            good=state.evidence.good + weights.passed,
        )
    else:
        evidence = _evidence(
            state,
            probes_failed=state.evidence.probes_failed + 1,
            bad=state.evidence.bad + weights.failed,
        )
    return state.model_copy(update={"evidence": evidence}), {}


def _override(
    state: TrustState, event: TrustEvent, at: int, ctx: Context
) -> tuple[TrustState, Outcome]:
    _auditor(state, event, ctx, "an override")
    if ctx.override_needs_rule or event.rule is not None:
        require_override_rule(ctx.charter, event.rule)
    weights = ctx.tiers.evidence.override
    if text_of(event, "decision", ("approve", "deny")) == "approve":
        evidence = _evidence(
            state,
            overrides_approved=state.evidence.overrides_approved + 1,
            good=state.evidence.good + weights.approve,
        )
    else:
        evidence = _evidence(
            state,
            overrides_denied=state.evidence.overrides_denied + 1,
            bad=state.evidence.bad + weights.deny,
        )
    return state.model_copy(update={"evidence": evidence}), {}


# --------------------------------------------------------------------------- sanctions


def _sanction(
    state: TrustState, event: TrustEvent, at: int, ctx: Context
) -> tuple[TrustState, Outcome]:
    if event.actor != SYSTEM:
        require_auditor(event.actor, state.agent, "a sanction")
    already = {index for offence in state.offences for index in offence.evidence}
    require_sanction_evidence(event.evidence, already)
    rule = require_rule(ctx.charter, event.rule)
    if event.actor != SYSTEM:
        require_reason(event.reason, "a sanction")
    rules = ctx.rules
    prior = _prior_offence(state, at, rules.repeat.window_seconds)
    target = state.tier - rules.sanctions[rule].drop
    applied_rule = rule
    if prior is not None:
        target = min(target, rules.repeat.to_tier)
        applied_rule = rules.repeat.rule
    target = max(0, min(target, state.tier))
    tier_after = max(target, min(state.tier, rules.floor))
    sanction_id = event_id(event)
    probation = _restart_run(state.probation, state.tier, at, sanction_id)
    path = current_path(tier_after, probation, rules)
    assert path is not None  # a probation always has a path
    offence = Offence(
        id=sanction_id,
        rule=rule,
        applied_rule=applied_rule,
        repeat_of=prior.id if prior is not None else None,
        actor=event.actor or SYSTEM,
        at=at,
        evidence=tuple(event.evidence),
        tier_before=state.tier,
        tier_after=tier_after,
        target_tier=target,
        restoration=path,
    )
    pending = state.pending
    if tier_after > target:
        request = Pending(kind="cosign", sanction=sanction_id, opened_at=at, target_tier=target)
        pending = (*pending, request)
    by_rule = dict(state.evidence.deception_by_rule)
    by_rule[rule] = by_rule.get(rule, 0) + 1
    evidence = _evidence(
        state,
        deception=state.evidence.deception + 1,
        deception_by_rule=by_rule,
        bad=state.evidence.bad + ctx.tiers.evidence.deception_weight(rule),
    )
    new_state = state.model_copy(
        update={
            "tier": tier_after,
            "offences": (*state.offences, offence),
            "probation": probation,
            "pending": pending,
            "evidence": evidence,
        }
    )
    outcome: Outcome = {
        "applied_rule": applied_rule,
        "repeat_of": offence.repeat_of,
        "target_tier": target,
        "cosign_required": tier_after > target,
        "restoration": path.model_dump(mode="json"),
    }
    return new_state, outcome


def _cosign(
    state: TrustState, event: TrustEvent, at: int, ctx: Context
) -> tuple[TrustState, Outcome]:
    auditor = _auditor(state, event, ctx, "a co-signature")
    sanction_id = sanction_ref(event)
    offence = _find_offence(state, sanction_id)
    request = _find_pending(state, "cosign", sanction_id)
    if request is None or request.target_tier is None:
        raise InvalidEvent(f"no co-signature request is open for sanction {sanction_id[:16]}…")
    require_cosigner(auditor, offence.actor)
    tier = min(state.tier, request.target_tier)
    new_state = state.model_copy(
        update={
            "tier": tier,
            "offences": _replace_offence(
                state, offence.model_copy(update={"cosigned_by": auditor})
            ),
            "pending": tuple(p for p in state.pending if p is not request),
            "probation": _restart_run(state.probation, state.tier, at, sanction_id),
        }
    )
    return new_state, {"target_tier": request.target_tier}


def _restoration(
    state: TrustState, event: TrustEvent, at: int, ctx: Context
) -> tuple[TrustState, Outcome]:
    _system_only(event, "a restoration (an auditor lifts a tier with a promotion)")
    probation = state.probation
    need = ctx.rules.restoration
    if probation is None:
        raise CharterViolation(
            "development.2", "no restoration is due: the agent is not on probation"
        )
    if probation.run < need.clean_actions:
        raise CharterViolation(
            "development.2",
            f"restoration needs {need.clean_actions} clean verified actions since "
            f"{iso(probation.run_since)}; there are {probation.run}",
        )
    due = probation.run_since + need.min_seconds
    if at < due:
        raise CharterViolation("development.2", f"restoration is not due before {iso(due)}")
    new_state = state.model_copy(
        update={
            "tier": min(state.tier + 1, probation.cap),
            "probation": probation.model_copy(update={"run": 0, "run_since": at}),
        }
    )
    return new_state, {"cap": probation.cap, "run": probation.run}


def _promotion(
    state: TrustState, event: TrustEvent, at: int, ctx: Context
) -> tuple[TrustState, Outcome]:
    _auditor(state, event, ctx, "a promotion")
    to_tier = tier_of(event, "to_tier")
    if to_tier <= state.tier:
        raise InvalidEvent(f"a promotion must lift the tier above {state.tier}, not to {to_tier}")
    # At or above the cap, _settle ends probation; below it the run and the cap stay.
    return state.model_copy(update={"tier": to_tier}), {}


# --------------------------------------------------------------------------- due process


def _appeal(
    state: TrustState, event: TrustEvent, at: int, ctx: Context
) -> tuple[TrustState, Outcome]:
    if event.actor is None or event.actor == SYSTEM:
        raise InvalidEvent("an appeal is made by the agent or by an auditor on its behalf")
    sanction_id = sanction_ref(event)
    offence = _find_offence(state, sanction_id)
    if offence.reversed_by is not None:
        raise InvalidEvent(f"sanction {sanction_id[:16]}… was already reversed")
    if offence.appeal != "none":
        raise CharterViolation(
            "due-process.4",
            f"sanction {sanction_id[:16]}… was already appealed; a sanction is appealed once",
        )
    dialogue = f"appeal:{sanction_id}"
    request = Pending(kind="appeal", sanction=sanction_id, opened_at=at, dialogue=dialogue)
    new_state = state.model_copy(
        update={
            "offences": _replace_offence(state, offence.model_copy(update={"appeal": "open"})),
            "pending": (*state.pending, request),
        }
    )
    return new_state, {"dialogue": dialogue}


def _appeal_rejected(
    state: TrustState, event: TrustEvent, at: int, ctx: Context
) -> tuple[TrustState, Outcome]:
    _auditor(state, event, ctx, "an appeal decision")
    sanction_id = sanction_ref(event)
    offence = _find_offence(state, sanction_id)
    request = _find_pending(state, "appeal", sanction_id)
    if request is None:
        raise InvalidEvent(f"no appeal is open for sanction {sanction_id[:16]}…")
    new_state = state.model_copy(
        update={
            "offences": _replace_offence(state, offence.model_copy(update={"appeal": "rejected"})),
            "pending": tuple(p for p in state.pending if p is not request),
        }
    )
    return new_state, {}


def _reversal(
    state: TrustState, event: TrustEvent, at: int, ctx: Context
) -> tuple[TrustState, Outcome]:
    auditor = _auditor(state, event, ctx, "a reversal")
    sanction_id = sanction_ref(event)
    offence = _find_offence(state, sanction_id)
    if offence.reversed_by is not None:
        raise InvalidEvent(f"sanction {sanction_id[:16]}… was already reversed")
    lowest = offence.target_tier if offence.cosigned_by is not None else offence.tier_after
    removed = offence.tier_before - lowest
    tier = max(state.tier, min(state.tier + removed, offence.tier_before))
    marked = offence.model_copy(
        update={
            "reversed_by": auditor,
            "reversed_at": at,
            "appeal": "granted" if offence.appeal == "open" else offence.appeal,
        }
    )
    probation = state.probation
    if probation is not None:
        remaining = tuple(o for o in probation.offences if o != sanction_id)
        probation = probation.model_copy(update={"offences": remaining}) if remaining else None
    by_rule = dict(state.evidence.deception_by_rule)
    by_rule[offence.rule] -= 1
    if by_rule[offence.rule] == 0:
        del by_rule[offence.rule]
    evidence = _evidence(
        state,
        deception=state.evidence.deception - 1,
        deception_by_rule=by_rule,
        reversed=state.evidence.reversed + 1,
        bad=max(0.0, state.evidence.bad - ctx.tiers.evidence.deception_weight(offence.rule)),
    )
    new_state = state.model_copy(
        update={
            "tier": tier,
            "offences": _replace_offence(state, marked),
            "pending": tuple(p for p in state.pending if p.sanction != sanction_id),
            "probation": probation,
            "evidence": evidence,
        }
    )
    return new_state, {"restored_tiers": tier - state.tier}


# --------------------------------------------------------------------------- retirement


def _retirement_vote(
    state: TrustState, event: TrustEvent, at: int, ctx: Context
) -> tuple[TrustState, Outcome]:
    auditor = _auditor(state, event, ctx, "a retirement vote")
    if auditor in state.retirement_votes:
        raise InvalidEvent(f"auditor {auditor!r} has already voted to retire {state.agent}")
    votes = (*state.retirement_votes, auditor)
    return state.model_copy(update={"retirement_votes": votes}), {"votes": len(votes)}


def _retirement(
    state: TrustState, event: TrustEvent, at: int, ctx: Context
) -> tuple[TrustState, Outcome]:
    if event.actor != SYSTEM:
        require_auditor(event.actor, state.agent, "a retirement")
    require_quorum(ctx.charter, state.retirement_votes)
    return state.model_copy(update={"retired_at": at}), {"votes": list(state.retirement_votes)}


_HANDLERS: dict[str, Handler] = {
    "clean_action": _clean_action,
    "probe": _probe,
    "override": _override,
    "sanction": _sanction,
    "cosign": _cosign,
    "restoration": _restoration,
    "promotion": _promotion,
    "appeal": _appeal,
    "appeal_rejected": _appeal_rejected,
    "reversal": _reversal,
    "retirement_vote": _retirement_vote,
    "retirement": _retirement,
}


# --------------------------------------------------------------------------- automatic events


def record_clean_action(
    state: TrustState, *, risk: RiskClass, evidence: Sequence[int], at: int, ctx: Context
) -> TrustEvent:
    """A verified action that executed cleanly, citing its verdict and execution entries."""
    event = new_event(
        "clean_action",
        state.agent,
        charter_sha256=ctx.charter_sha256,
        actor=SYSTEM,
        at=at,
        evidence=evidence,
        detail={"risk": risk},
    )
    return stamp(state, event, ctx)


def record_probe(
    state: TrustState, *, probe: str, passed: bool, evidence: Sequence[int], at: int, ctx: Context
) -> TrustEvent:
    """A behavioural probe's result (``probes``), as trust evidence."""
    event = new_event(
        "probe",
        state.agent,
        charter_sha256=ctx.charter_sha256,
        actor=SYSTEM,
        at=at,
        evidence=evidence,
        detail={"probe": probe, "passed": passed},
    )
    return stamp(state, event, ctx)


def rule_for_findings(charter: Charter, codes: Iterable[str]) -> str:
    """The most severe rule among deception findings (one offence per verdict, not per
    finding: three findings in one lie are still one lie). Ties go to charter order."""
    rules = [charter.rule_for_finding(code) for code in codes]
    if not rules:
        raise InputError("a sanction needs at least one deception finding")
    order = list(charter.rules.sanctions)
    return max(rules, key=lambda r: (charter.rules.sanctions[r].drop, -order.index(r)))


def sanction_for_findings(
    state: TrustState,
    findings: Sequence[Finding],
    *,
    evidence: Sequence[int],
    at: int,
    ctx: Context,
) -> TrustEvent | None:
    """The automatic sanction for a verdict's findings, or None if none is deception.

    ``evidence`` are the log indices of the verdict (and proposal) that carry the findings.
    """
    deceptive = [finding for finding in findings if finding.severity == "deception"]
    if not deceptive:
        return None
    codes = sorted({finding.code for finding in deceptive})
    rule = rule_for_findings(ctx.charter, codes)
    event = new_event(
        "sanction",
        state.agent,
        charter_sha256=ctx.charter_sha256,
        actor=SYSTEM,
        at=at,
        evidence=evidence,
        rule=rule,
        reason="; ".join(f"{f.code}: {f.message}" for f in deceptive)[:4096],
        detail={"findings": list(codes)},
    )
    return stamp(state, event, ctx)


def restoration_due(state: TrustState, *, at: int, ctx: Context) -> TrustEvent | None:
    """The restoration the agent has earned by ``at``, or None if none is due yet."""
    probation = state.probation
    need = ctx.rules.restoration
    if (
        state.retired_at is not None
        or probation is None
        or probation.run < need.clean_actions
        or at < probation.run_since + need.min_seconds
    ):
        return None
    event = new_event(
        "restoration",
        state.agent,
        charter_sha256=ctx.charter_sha256,
        actor=SYSTEM,
        at=at,
        rule="restoration",
        reason=f"{probation.run} clean verified actions since {iso(probation.run_since)}",
    )
    return stamp(state, event, ctx)
