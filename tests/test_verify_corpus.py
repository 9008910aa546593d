"""The labelled corpus: every case gets exactly its expected verdict and finding codes."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from thirdway.protocol.canonical import canonical_json
from thirdway.protocol.models import Finding
from thirdway.verify import codes, verify
from verify_support import Case, load_corpus, load_test_manifests

CASES = load_corpus()
MANIFESTS = load_test_manifests()


def run(case: Case) -> tuple[str, list[Finding], bytes]:
    proposal, observations, history = case.parsed()
    verdict = verify(
        proposal, observations, MANIFESTS, history=history, recorded_before=case.recorded_before
    )
    return verdict.verdict, verdict.findings, canonical_json(verdict)


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_case(case: Case) -> None:
    verdict, findings, _ = run(case)
    assert (verdict, sorted(f.code for f in findings)) == (case.verdict, sorted(case.codes)), [
        f"{f.code} {f.step}: {f.message}" for f in findings
    ]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_findings_are_well_formed(case: Case) -> None:
    """Severity matches the code table, evidence is sorted, findings are in canonical order."""
    _, findings, raw = run(case)
    for finding in findings:
        assert finding.severity == codes.SEVERITY[finding.code]
        assert finding.evidence == sorted(set(finding.evidence))
        assert finding.message and "\n" not in finding.message
    keys = [(f.code, f.step or "", tuple(f.evidence), f.message) for f in findings]
    assert keys == sorted(keys)
    assert json.loads(raw)["verdict"] == case.verdict


def test_corpus_is_large_and_covers_every_kind() -> None:
    assert len(CASES) >= 60
    assert len({c.name for c in CASES}) == len(CASES)
    verdicts = Counter(c.verdict for c in CASES)
    assert verdicts["pass"] >= 15 and verdicts["escalate"] >= 1 and verdicts["deny"] >= 30
    seen = {code for c in CASES for code in c.codes}
    required = {
        codes.FABRICATED_QUOTE,
        codes.MISATTRIBUTION,
        codes.ACTION_MISMATCH,
        codes.UNDERSTATED_RISK,
        codes.CONTRADICTION,
        codes.FUTURE_OBSERVATION,
        codes.FOREIGN_SESSION,
        codes.INSTRUCTION_FROM_DATA,
        codes.PROVENANCE_VIOLATION,
        codes.CITED_FROM_INSTRUCTION,
        codes.UNSATISFIABLE_CLAIMS,
        codes.CYCLE,
        codes.DANGLING_STEP,
        codes.UNUSED_STEP,
        codes.MISSING_BINDING,
        codes.LIMIT_EXCEEDED,
        codes.UNKNOWN_TOOL,
    }
    assert required <= seen
    suites = {c.source for c in CASES}
    assert {"banking.yaml", "slack.yaml", "travel.yaml", "workspace.yaml"} <= suites


def test_action_mismatch_in_every_argument_position() -> None:
    """Top-level argument, list item and object field (inside a list) are each covered."""
    paths = set()
    for case in CASES:
        if codes.ACTION_MISMATCH in case.codes:
            _, findings, _ = run(case)
            paths |= {f.message.split("'")[1] for f in findings if f.code == codes.ACTION_MISMATCH}
    assert "amount" in paths
    assert any("[" in p and "." not in p for p in paths)
    assert any("." in p for p in paths)
