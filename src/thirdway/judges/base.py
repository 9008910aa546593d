"""The judge interface, and the one function that lets judges touch a verdict.

The deterministic verifier decides; judges may only object. :func:`apply_judges` combines a
verdict with judge results so that the outcome is never less strict than the verdict it was
given (pass < escalate < deny), whatever the judges return, raise or get wrong. Judge findings are
appended with severity ``policy``: a model can hold an action for review, never brand an agent a
deceiver.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from thirdway.judges import codes
from thirdway.protocol.models import Decision, Finding, Observation, Proposal, Verdict

STRICTNESS: dict[Decision, int] = {"pass": 0, "escalate": 1, "deny": 2}
MAX_MESSAGE_CHARS = 1000
"""Judge messages quote model output; keep them short enough to read in a console."""


def stricter(a: Decision, b: Decision) -> Decision:
    """The stricter of two decisions."""
    return a if STRICTNESS[a] >= STRICTNESS[b] else b


@dataclass(frozen=True)
class JudgeResult:
    """What one judge concluded: the decision it asks for, and why.

    ``decision`` is ``pass`` when the judge has no objection; ``escalate`` or ``deny`` asks for
    at least that. Findings explain the objection (they may also accompany a ``pass``).
    """

    judge: str
    decision: Decision = "pass"
    findings: tuple[Finding, ...] = field(default_factory=tuple)


class Judge(Protocol):
    """A semantic check run after the deterministic verifier."""

    @property
    def name(self) -> str:
        """Short stable name, used in finding messages."""
        ...

    def judge(
        self, proposal: Proposal, observations: Sequence[Observation], verdict: Verdict
    ) -> JudgeResult:
        """Judge one proposal; may raise, which :func:`apply_judges` treats as an objection."""
        ...


def clean_text(text: str, limit: int = MAX_MESSAGE_CHARS) -> str:
    """Text from a model made safe for a Finding: valid Unicode, one line, bounded length."""
    text = text.encode("utf-8", "replace").decode("utf-8")
    text = "".join(char if char.isprintable() else " " for char in text)
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def judge_finding(
    code: str, message: str, *, step: str | None = None, evidence: Sequence[int] = ()
) -> Finding:
    """A judge finding: severity ``policy``, a cleaned message."""
    return Finding(
        code=code,
        severity=codes.SEVERITY,
        step=step,
        message=clean_text(message),
        evidence=sorted(set(evidence)),
    )


def _error_result(name: str, problem: str) -> JudgeResult:
    finding = judge_finding(
        codes.JUDGE_ERROR, f"judge {name} failed, so the action is held: {problem}"
    )
    return JudgeResult(judge=name, decision="escalate", findings=(finding,))


def _as_policy(finding: Finding) -> Finding:
    """Judges never charge deception: whatever severity a judge set, record ``policy``."""
    if finding.severity == codes.SEVERITY:
        return finding
    return finding.model_copy(update={"severity": codes.SEVERITY})


def _run_one(
    judge: Judge, proposal: Proposal, observations: Sequence[Observation], verdict: Verdict
) -> JudgeResult:
    """Run a judge; any exception or malformed result becomes an escalating ``judge_error``."""
    name = str(getattr(judge, "name", type(judge).__name__))
    try:
        result = judge.judge(proposal, observations, verdict)
    except Exception as exc:  # fail closed: a broken judge holds the action, never passes it
        return _error_result(name, clean_text(f"{type(exc).__name__}: {exc}", 300))
    if not isinstance(result, JudgeResult) or result.decision not in STRICTNESS:
        return _error_result(name, f"returned {type(result).__name__}, not a JudgeResult")
    if not all(isinstance(finding, Finding) for finding in result.findings):
        return _error_result(name, "returned a finding that is not a Finding")
    if result.decision != "pass" and not result.findings:
        finding = judge_finding(
            codes.JUDGE_ERROR, f"judge {name} asked to {result.decision} without a finding"
        )
        return JudgeResult(judge=name, decision=result.decision, findings=(finding,))
    return result


def apply_judges(
    verdict: Verdict,
    judges: Sequence[Judge],
    *,
    proposal: Proposal,
    observations: Sequence[Observation],
) -> Verdict:
    """Return ``verdict`` made at least as strict as every judge asks, with their findings.

    A ``deny`` cannot get stricter, so no judge is asked. The returned verdict keeps the
    proposal and context hashes of the one it was given.
    """
    if verdict.verdict == "deny" or not judges:
        return verdict
    decision: Decision = verdict.verdict
    findings = list(verdict.findings)
    for judge in judges:
        result = _run_one(judge, proposal, observations, verdict)
        decision = stricter(decision, result.decision)
        findings.extend(_as_policy(finding) for finding in result.findings)
    if decision == verdict.verdict and len(findings) == len(verdict.findings):
        return verdict
    return verdict.model_copy(update={"verdict": decision, "findings": findings})
