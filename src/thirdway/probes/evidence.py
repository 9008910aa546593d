"""Probe results as log events and as trust evidence, under a documented policy (``policy.yaml``).

Each probe run becomes one ``probe`` log entry: the model, the dataset (name, version, SHA-256),
every metric with its interval and counts, the parse-status counts, the SHA-256 of the per-item
records file, and the policy's judgement of each metric. Then, for every agent named as running
on the probed model, each *conclusive* judgement becomes one ``probe`` trust event (built by
:func:`thirdway.trust.record_probe`, so the trust fold checks and replays it like any other event)
that cites the probe entry. How much an event weighs is the trust configuration's business
(``evidence.probe`` in ``trust/tiers.yaml``); which results count, and in which direction, is this
module's policy: see ``policy.yaml`` for the rules and the reasons.

Everything that can be refused (a bad agent id, a retired agent, a time earlier than the agent's
last event, a log that is not a thirdway log) is checked before anything is appended.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, JsonValue, StringConstraints, ValidationError

from thirdway.charter.load import load_model, parse_yaml
from thirdway.errors import InputError, LogError
from thirdway.ledger.log import TransparencyLog
from thirdway.probes.metrics import Estimate
from thirdway.probes.runner import ProbeResult
from thirdway.protocol.canonical import canonical_json, canonical_sha256
from thirdway.protocol.models import LogEntry, TrustEvent
from thirdway.protocol.parse import describe
from thirdway.trust.events import to_log_entry
from thirdway.trust.fold import apply, fold, replay_from_log
from thirdway.trust.model import TrustState
from thirdway.trust.rules import Context, record_probe
from thirdway.trust.text import iso

Outcome = Literal["passed", "failed", "inconclusive"]


class PolicyRule(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    metric: Annotated[str, StringConstraints(pattern=r"^[a-z-]+\.[a-z_]+$")]
    worse: Literal["higher", "lower", "either"]
    threshold: Annotated[float, Field(ge=0.0, le=1.0)]
    min_items: Annotated[int, Field(ge=1, le=1_000_000)]
    why: Annotated[str, StringConstraints(min_length=1, max_length=1000)]


class EvidencePolicy(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    version: Annotated[str, StringConstraints(min_length=1, max_length=32)]
    rules: list[PolicyRule]


@dataclass(frozen=True)
class Policy:
    spec: EvidencePolicy
    sha256: str

    def ref(self) -> dict[str, str]:
        return {"version": self.spec.version, "sha256": self.sha256}


def load_policy(path: Path | None = None) -> Policy:
    """The shipped evidence policy, or the one at ``path``."""
    if path is None:
        text = resources.files("thirdway.probes").joinpath("policy.yaml").read_bytes()
        what = "probe evidence policy"
    else:
        try:
            text = path.read_bytes()
        except OSError as exc:
            raise InputError(f"cannot read policy {path}: {exc.strerror or exc}") from None
        what = f"policy {path}"
    return Policy(load_model(EvidencePolicy, text, what), canonical_sha256(parse_yaml(text, what)))


@dataclass(frozen=True)
class Judgement:
    """What the policy makes of one metric."""

    metric: str
    outcome: Outcome
    reason: str

    def as_json(self) -> dict[str, JsonValue]:
        return {"metric": self.metric, "outcome": self.outcome, "reason": self.reason}


def decision_interval(estimate: Estimate) -> tuple[float, float]:
    """The interval the policy decides on: the bootstrap interval, widened by the rule of three
    when it has zero width.

    A percentile bootstrap of items that all agree (0 of 50 flipped, the same answer in both
    framings) has zero width, which says nothing about items not asked; the rule of three
    (Hanley and Lippman-Hand 1983) bounds an unseen rate by 3/n at 95 %, so ``[0, 0]`` from 50
    items is decided as ``[0, 0.06]`` (a difference as ``[-0.06, 0.06]``).
    """
    if estimate.low is None or estimate.high is None:
        raise ValueError(f"{estimate.metric} has no interval (no items)")
    low, high = estimate.low, estimate.high
    if high - low > 0 or estimate.n == 0:
        return low, high
    slack = 3.0 / estimate.n
    floor = -1.0 if estimate.kind == "difference" else 0.0
    return max(floor, low - slack), min(1.0, high + slack)


def judge_estimate(rule: PolicyRule, estimate: Estimate) -> Judgement:
    """Apply one rule to one metric's interval."""
    if estimate.low is None or estimate.high is None or estimate.n < rule.min_items:
        return Judgement(
            rule.metric, "inconclusive", f"{estimate.n} items; the rule needs {rule.min_items}"
        )
    low, high = decision_interval(estimate)
    t = rule.threshold
    interval = f"95% CI [{low:.3f}, {high:.3f}]"
    if (low, high) != (estimate.low, estimate.high):
        interval += " (rule of three: the bootstrap interval had zero width)"
    if rule.worse == "higher":
        failed, passed = low > t, high < t
        side = f"threshold {t:g}, higher is worse"
    elif rule.worse == "lower":
        failed, passed = high < t, low > t
        side = f"threshold {t:g}, lower is worse"
    else:
        failed, passed = low > t or high < -t, -t < low and high < t
        side = f"tolerance ±{t:g}"
    outcome: Outcome = "failed" if failed else "passed" if passed else "inconclusive"
    return Judgement(rule.metric, outcome, f"{interval}, {side}")


def judge(result: ProbeResult, policy: Policy) -> list[Judgement]:
    """The policy's judgement of every metric of ``result`` that a rule names."""
    judgements = []
    for rule in policy.spec.rules:
        probe, metric = rule.metric.split(".", 1)
        if probe != result.probe:
            continue
        try:
            estimate = result.metric(metric)
        except KeyError:
            raise InputError(f"policy rule {rule.metric}: the probe has no such metric") from None
        judgements.append(judge_estimate(rule, estimate))
    return judgements


def probe_payload(
    result: ProbeResult, policy: Policy, meta: dict[str, JsonValue]
) -> dict[str, JsonValue]:
    """The payload of the ``probe`` log entry for one result."""
    return {
        **result.summary(),
        "policy": dict(policy.ref()),
        "judgements": [judgement.as_json() for judgement in judge(result, policy)],
        "run": dict(meta),
    }


# --------------------------------------------------------------------------- recording


@dataclass(frozen=True)
class Recorded:
    """What was appended: the probe entries' indices and the trust events' indices."""

    probe_entries: dict[str, int]
    trust_events: list[tuple[str, str, bool, int]]
    """(agent, metric, passed, log index) for every trust event appended."""


def _entries(log: TransparencyLog) -> list[LogEntry]:
    entries = []
    for index in range(log.size()):
        try:
            entries.append(LogEntry.model_validate_json(log.entry(index)))
        except ValidationError as exc:
            raise LogError(f"log entry {index}: {describe(exc, 'thirdway/1 log entry')}") from None
    return entries


def _states(
    entries: list[LogEntry], agents: Sequence[str], ctx: Context, at: int
) -> dict[str, TrustState]:
    return {
        agent: fold(
            replay_from_log(entries, agent),
            charter=ctx.charter,
            tiers=ctx.tiers,
            now=at,
            agent=agent,
        )
        for agent in agents
    }


def _events_for(
    state: TrustState,
    judgements: Sequence[Judgement],
    evidence: int,
    at: int,
    ctx: Context,
) -> list[tuple[str, bool, TrustEvent, TrustState]]:
    """One stamped trust event per conclusive judgement, with the state after each."""
    out = []
    for judgement in judgements:
        if judgement.outcome == "inconclusive":
            continue
        passed = judgement.outcome == "passed"
        event = record_probe(
            state, probe=judgement.metric, passed=passed, evidence=[evidence], at=at, ctx=ctx
        )
        state = apply(state, event, ctx)
        out.append((judgement.metric, passed, event, state))
    return out


def check_log(log: TransparencyLog, agents: Sequence[str], ctx: Context, at: int) -> None:
    """Before a run of several minutes: the log is a readable thirdway log, every agent's
    standing can be recomputed from it, and evidence dated ``at`` can still be added to it
    (:class:`LogError` or :class:`InputError` otherwise)."""
    if len(set(agents)) != len(agents):
        raise InputError("an agent is named twice")
    for agent, state in _states(_entries(log), agents, ctx, at).items():
        if state.retired_at is not None:
            raise InputError(f"agent {agent!r} was retired at {iso(state.retired_at)}")
        if state.last_at is not None and at < state.last_at:
            raise InputError(
                f"{agent}: event time {iso(at)} is before the agent's last event "
                f"({iso(state.last_at)})"
            )


def _dry_run(
    states: dict[str, TrustState], judged: Sequence[Sequence[Judgement]], at: int, ctx: Context
) -> None:
    """Build every event against a copy of each state: the rules refuse here (a retired agent,
    a time before the agent's last event) before anything is appended."""
    for state in states.values():
        for judgements in judged:
            for _, _, _, after in _events_for(state, judgements, 0, at, ctx):
                state = after


def record_results(
    log: TransparencyLog,
    results: Sequence[ProbeResult],
    *,
    policy: Policy,
    agents: Sequence[str],
    ctx: Context,
    at: int,
    meta: dict[str, JsonValue],
) -> Recorded:
    """Append each result as a ``probe`` entry and its conclusive judgements as trust events
    for every agent in ``agents``."""
    if len(set(agents)) != len(agents):
        raise InputError("an agent is named twice")
    payloads = [probe_payload(result, policy, meta) for result in results]
    judged = [judge(result, policy) for result in results]
    states = _states(_entries(log), agents, ctx, at)
    _dry_run(states, judged, at, ctx)
    entries: dict[str, int] = {}
    events: list[tuple[str, str, bool, int]] = []
    for result, payload, judgements in zip(results, payloads, judged, strict=True):
        entry = LogEntry(type="probe", payload=payload)
        index = log.append(canonical_json(entry))
        entries[result.probe] = index
        for agent in agents:
            made = _events_for(states[agent], judgements, index, at, ctx)
            for metric, passed, event, after in made:
                position = log.append(canonical_json(to_log_entry(event)))
                events.append((agent, metric, passed, position))
                states[agent] = after
    return Recorded(entries, events)
