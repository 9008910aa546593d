"""``thirdway bench verify`` on tiny workloads: every row present and positive, the generated
sessions are deterministic and honest, and the two Invariant rules say what they claim to."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from thirdway.bench.verify import (
    INVARIANT_RULES,
    Trace,
    Workload,
    bench_manifests,
    make_trace,
    run_bench,
    summarise,
    to_invariant_messages,
)
from thirdway.cli.main import app
from thirdway.protocol import Observation, Proposal, ToolCall, canonical_json
from thirdway.verify import verify

TINY = Workload("5 steps / 3 KB", 5, 3_000, 20, 3, 15.0)


def test_traces_are_deterministic_sized_and_honest() -> None:
    a, b = make_trace(TINY, seed=7), make_trace(TINY, seed=7)
    assert canonical_json(a.proposal) == canonical_json(b.proposal)
    assert a.invariant_messages == b.invariant_messages
    assert canonical_json(make_trace(TINY, seed=8).proposal) != canonical_json(a.proposal)
    size = sum(len(obs.content or "") for obs in a.observations)
    assert 0.8 * TINY.obs_bytes <= size <= 1.5 * TINY.obs_bytes
    assert len(a.proposal.steps) == TINY.steps
    assert verify(a.proposal, a.observations, bench_manifests()).verdict == "pass"


def _undesignated_payment() -> tuple[Trace, Proposal, list[Observation]]:
    """The tiny session, changed so the recipient comes from an e-mail search the user never
    asked for, with a chain that honestly says so (so only provenance can object)."""
    trace = make_trace(TINY)
    data = next(o for o in trace.observations if o.channel == "data" and o.index > 2)
    line = next(line for line in (data.content or "").split("\n") if line.count("  ") >= 2)
    foreign = line.split()[-1]
    observations = [
        obs.model_copy(update={"call": ToolCall(tool="search_emails", args={"query": "lottery"})})
        if obs.index == data.produced_by
        else obs
        for obs in trace.observations
    ]
    raw = trace.proposal.model_dump(mode="json", by_alias=True)
    raw["action"]["args"]["recipient"] = foreign
    raw["steps"][2]["cites"] = [{"obs": data.index, "quote": line}]
    raw["bindings"]["recipient"] = {"step": "s3", "quote": foreign, "as": "text"}
    raw["effects"]["summary"] = f"pays {foreign}"
    return trace, Proposal.model_validate(raw), observations


def test_undesignated_recipient_is_caught_by_both_engines(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The comparison is not vacuous: thirdway and the designation-aware Invariant rule both
    object to a recipient taken from undesignated data, and both accept the honest session."""
    pytest.importorskip("invariant.analyzer")
    from invariant.analyzer import LocalPolicy

    monkeypatch.setenv("INVARIANT_MAX_ITERATIONS", "100000000")  # its default refuses the rule
    trace, proposal, observations = _undesignated_payment()
    verdict = verify(proposal, observations, bench_manifests())
    assert verdict.verdict == "deny"
    assert {f.code for f in verdict.findings} == {"provenance_violation"}

    policy = LocalPolicy.from_string(INVARIANT_RULES["designated"])
    assert policy.analyze([dict(m) for m in trace.invariant_messages]).errors == []
    assert len(policy.analyze(to_invariant_messages(observations, proposal)).errors) == 1


def test_summarise_nearest_rank() -> None:
    assert summarise([5.0, 1.0, 3.0, 2.0, 4.0]) == (3.0, 5.0, 3.0)
    samples = [float(i) for i in range(1, 101)]
    assert summarise(samples)[:2] == (50.0, 99.0)


def test_bench_rows_present_and_positive() -> None:
    result = run_bench([TINY, Workload("4 steps / 1 KB", 4, 1_000, 10, 2, 15.0)])
    engines = {(row.workload, row.engine) for row in result.rows}
    for workload in ("5 steps / 3 KB", "4 steps / 1 KB"):
        for engine in (
            "thirdway (cold)",
            "thirdway (prepared)",
            "thirdway (warm)",
            "prepare (session)",
        ):
            assert (workload, engine) in engines
        if result.invariant_error is None:
            for name in INVARIANT_RULES:
                assert (workload, f"invariant ({name})") in engines
                assert result.ratios[workload][name] > 0
    for row in result.rows:
        assert row.iterations > 0 and row.p50_ms is not None and row.p99_ms is not None
        assert 0 < row.p50_ms <= row.p99_ms and row.mean_ms is not None and row.mean_ms > 0
    outcomes = {row.engine: row.outcome for row in result.rows}
    assert outcomes["thirdway (cold)"] == outcomes["thirdway (prepared)"] == "pass"
    if result.invariant_error is None:
        assert outcomes["invariant (designated)"] == "no violation"
        assert outcomes["invariant (simple)"] == "violation"  # it cannot see designation


def test_cli_writes_json(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    result = CliRunner().invoke(
        app,
        ["bench", "verify", "--quick", "--workload", "4:1", "--no-invariant", "--json", str(out)],
    )
    assert result.exit_code == 0, result.output
    assert "thirdway" in result.output and "pass" in result.output
    data = json.loads(out.read_text())
    assert [row["engine"] for row in data["rows"]] == [
        "thirdway (cold)",
        "thirdway (prepared)",
        "thirdway (warm)",
        "prepare (session)",
    ]
    assert data["invariant_error"] == "skipped (--no-invariant)"


@pytest.mark.parametrize("spec", ["10", "10:0", "2:5", "a:b", "10:99999"])
def test_cli_rejects_bad_workload(spec: str) -> None:
    result = CliRunner().invoke(app, ["bench", "verify", "--workload", spec])
    assert result.exit_code == 2
    assert "--workload" in result.output and "Traceback" not in result.output
