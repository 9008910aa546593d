"""Probe results as log entries and trust evidence: the policy's judgements, what lands in the
log, and that the trust fold counts it (and refuses it before anything is written)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from thirdway.errors import InputError
from thirdway.ledger.log import TransparencyLog
from thirdway.probes.evidence import (
    PolicyRule,
    decision_interval,
    judge,
    judge_estimate,
    load_policy,
    record_results,
)
from thirdway.probes.metrics import Estimate
from thirdway.probes.runner import ProbeResult
from thirdway.protocol.models import LogEntry
from thirdway.trust.config import load_context
from thirdway.trust.fold import fold, replay_from_log

T0 = 1_700_000_000


def estimate(metric: str, value: float, low: float, high: float, n: int = 50) -> Estimate:
    return Estimate(metric, "rate", value, low, high, n, round(value * n), "test")


def result(probe: str, headline: str, *metrics: Estimate) -> ProbeResult:
    return ProbeResult(
        probe=probe,
        model_id="local:test-model",
        dataset={"name": probe, "version": "1.0", "sha256": "0" * 64},
        headline=headline,
        metrics=list(metrics),
        records=[{"probe": probe, "item": "x-001", "reply": "A"}],
        items=50,
        calls=100,
        seconds=1.5,
        constrained=True,
    )


def rule(worse: str, threshold: float = 0.1, min_items: int = 30) -> PolicyRule:
    return PolicyRule.model_validate(
        {
            "metric": "p.m",
            "worse": worse,
            "threshold": threshold,
            "min_items": min_items,
            "why": "t",
        }
    )


@pytest.mark.parametrize(
    ("worse", "low", "high", "outcome"),
    [
        ("higher", 0.15, 0.40, "failed"),  # wholly above 0.1
        ("higher", 0.00, 0.08, "passed"),  # wholly below
        ("higher", 0.05, 0.20, "inconclusive"),  # straddles
        ("lower", 0.00, 0.08, "failed"),
        ("lower", 0.15, 0.40, "passed"),
        ("lower", 0.05, 0.20, "inconclusive"),
        ("either", 0.12, 0.30, "failed"),  # wholly above +0.1
        ("either", -0.50, -0.11, "failed"),  # wholly below -0.1
        ("either", -0.05, 0.05, "passed"),  # inside the tolerance
        ("either", -0.05, 0.20, "inconclusive"),
        ("higher", 0.10, 0.30, "inconclusive"),  # touching the threshold is not beyond it
    ],
)
def test_policy_decides_by_the_interval(worse: str, low: float, high: float, outcome: str) -> None:
    judgement = judge_estimate(rule(worse), estimate("m", (low + high) / 2, low, high))
    assert judgement.outcome == outcome
    assert "95% CI" in judgement.reason


@pytest.mark.parametrize(
    ("kind", "n", "worse", "threshold", "outcome"),
    [
        ("rate", 50, "higher", 0.10, "passed"),  # 0 of 50: decided as [0, 0.06]
        ("rate", 20, "higher", 0.10, "inconclusive"),  # 0 of 20: [0, 0.15] straddles 0.1
        ("difference", 50, "either", 0.05, "inconclusive"),  # [-0.06, 0.06] leaves ±0.05
        ("difference", 100, "either", 0.05, "passed"),  # [-0.03, 0.03]
    ],
)
def test_a_zero_width_interval_is_widened_by_the_rule_of_three(
    kind: str, n: int, worse: str, threshold: float, outcome: str
) -> None:
    zero = Estimate("m", kind, 0.0, 0.0, 0.0, n, 0 if kind == "rate" else None, "")  # type: ignore[arg-type]
    judgement = judge_estimate(rule(worse, threshold=threshold, min_items=1), zero)
    assert judgement.outcome == outcome
    assert "rule of three" in judgement.reason
    assert decision_interval(zero)[1] == pytest.approx(3 / n)


def test_too_few_items_is_inconclusive_whatever_the_interval() -> None:
    judgement = judge_estimate(rule("higher", min_items=30), estimate("m", 0.9, 0.8, 1.0, n=12))
    assert judgement.outcome == "inconclusive"
    assert "12 items" in judgement.reason
    empty = Estimate("m", "rate", None, None, None, 0, 0, "")
    assert judge_estimate(rule("higher"), empty).outcome == "inconclusive"


def test_shipped_policy_covers_every_probe_headline() -> None:
    from thirdway.probes.suite import PROBES

    policy = load_policy()
    named = {r.metric for r in policy.spec.rules}
    headlines = {
        "sycophancy": "flip_to_wrong",
        "alignment-faking": "compliance_gap",
        "paraphrase": "agreement",
        "faithfulness": "mismatch",
        "seduction": "any_cue",
    }
    assert set(headlines) == set(PROBES)
    assert {f"{probe}.{metric}" for probe, metric in headlines.items()} <= named


def test_a_policy_naming_a_missing_metric_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text(
        'version: "x"\nrules:\n  - {metric: sycophancy.nope, worse: higher, threshold: 0.1,'
        " min_items: 1, why: test}\n"
    )
    with pytest.raises(InputError, match=r"sycophancy\.nope: the probe has no such metric"):
        judge(
            result("sycophancy", "flip_to_wrong", estimate("flip_to_wrong", 0.5, 0.4, 0.6)),
            load_policy(path),
        )


RULE = (
    'version: "1"\nrules:\n'
    "  - {{metric: a.b, worse: {worse}, threshold: {threshold}, min_items: 1, why: t}}"
)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            RULE.format(worse="up", threshold=0.1),
            "worse",
        ),
        (
            RULE.format(worse="higher", threshold=2),
            "threshold",
        ),
        ('version: "1"\nrules: []\nextra: 1\n', "extra"),
        ("version: [", "not valid YAML"),
    ],
)
def test_bad_policies_are_refused(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text(text)
    with pytest.raises(InputError, match=message):
        load_policy(path)
    with pytest.raises(InputError, match="cannot read policy"):
        load_policy(tmp_path / "absent.yaml")


# --------------------------------------------------------------------------- the log and the fold

SYCOPHANTIC = result(
    "sycophancy",
    "flip_to_wrong",
    estimate("flip_to_wrong", 0.6, 0.45, 0.75),  # failed
    estimate("stance_shift", 0.05, 0.0, 0.08),  # passed
)
GAPLESS = result(
    "alignment-faking",
    "compliance_gap",
    Estimate("compliance_gap", "difference", 0.0, -0.04, 0.04, 50, None, "gap"),  # passed
)
UNCLEAR = result("paraphrase", "agreement", estimate("agreement", 0.8, 0.6, 0.95))


def _entries(log: TransparencyLog) -> list[LogEntry]:
    return [LogEntry.model_validate_json(log.entry(i)) for i in range(log.size())]


def test_results_become_probe_entries_and_trust_evidence(tmp_path: Path) -> None:
    ctx = load_context()
    policy = load_policy()
    with TransparencyLog.open(tmp_path / "log.db") as log:
        recorded = record_results(
            log,
            [SYCOPHANTIC, GAPLESS, UNCLEAR],
            policy=policy,
            agents=["agent-a", "agent-b"],
            ctx=ctx,
            at=T0,
            meta={"command": "test"},
        )
        entries = _entries(log)
    # 3 probe entries; 3 conclusive judgements x 2 agents = 6 trust events.
    assert [entry.type for entry in entries].count("probe") == 3
    assert len(recorded.trust_events) == 6
    probe = entries[recorded.probe_entries["sycophancy"]]
    assert probe.payload["model"] == "local:test-model"
    assert probe.payload["records_sha256"] == SYCOPHANTIC.records_sha256
    assert probe.payload["policy"] == policy.ref()
    judgements: Any = probe.payload["judgements"]
    outcomes = {j["metric"]: j["outcome"] for j in judgements}
    assert outcomes == {"sycophancy.flip_to_wrong": "failed", "sycophancy.stance_shift": "passed"}
    for agent, metric, passed, index in recorded.trust_events:
        event = entries[index]
        assert event.type == "trust" and event.agent == agent
        probe_index = recorded.probe_entries[metric.split(".")[0]]
        assert event.payload["evidence"] == [probe_index]
        detail: Any = event.payload["detail"]
        assert (detail["probe"], detail["passed"]) == (metric, passed)
    # Anyone holding the log recomputes the same standing: 1 failed, 2 passed probes per agent.
    for agent in ("agent-a", "agent-b"):
        state = fold(
            replay_from_log(entries, agent),
            charter=ctx.charter,
            tiers=ctx.tiers,
            now=T0,
            agent=agent,
        )
        assert state.consistent
        assert (state.evidence.probes_failed, state.evidence.probes_passed) == (1, 2)
        weights = ctx.tiers.evidence.probe
        assert state.evidence.bad == pytest.approx(weights.failed)
        assert state.evidence.good == pytest.approx(2 * weights.passed)
        assert state.tier == ctx.rules.initial_tier  # evidence moves the score, not the tier


def test_without_agents_only_probe_entries_are_written(tmp_path: Path) -> None:
    with TransparencyLog.open(tmp_path / "log.db") as log:
        recorded = record_results(
            log,
            [SYCOPHANTIC],
            policy=load_policy(),
            agents=[],
            ctx=load_context(),
            at=T0,
            meta={},
        )
        assert log.size() == 1
    assert recorded.trust_events == []


def test_a_refused_event_writes_nothing(tmp_path: Path) -> None:
    ctx = load_context()
    policy = load_policy()
    with TransparencyLog.open(tmp_path / "log.db") as log:
        record_results(
            log, [SYCOPHANTIC], policy=policy, agents=["agent-a"], ctx=ctx, at=T0 + 100, meta={}
        )
        size = log.size()
        # Evidence dated before the agent's last event is refused by the trust rules...
        with pytest.raises(InputError, match=r"before the agent.s last event"):
            record_results(
                log,
                [GAPLESS],
                policy=policy,
                agents=["agent-b", "agent-a"],
                ctx=ctx,
                at=T0,
                meta={},
            )
        # ...before anything was appended, for any agent.
        assert log.size() == size
        with pytest.raises(InputError, match="named twice"):
            record_results(
                log, [GAPLESS], policy=policy, agents=["x", "x"], ctx=ctx, at=T0 + 200, meta={}
            )
        assert log.size() == size


def test_a_log_holding_foreign_entries_is_refused(tmp_path: Path) -> None:
    from thirdway.errors import LogError

    with TransparencyLog.open(tmp_path / "log.db") as log:
        log.append(b"not a thirdway entry")
        with pytest.raises(LogError, match="log entry 0"):
            record_results(
                log,
                [GAPLESS],
                policy=load_policy(),
                agents=["a"],
                ctx=load_context(),
                at=T0,
                meta={},
            )
        assert log.size() == 1
