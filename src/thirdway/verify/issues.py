"""What a check reports: an :class:`Issue`, which becomes a wire ``Finding``.

An issue carries one thing a finding does not: the decision it asks for. Only ``policy`` issues
choose (escalate or deny, from the policy or the manifest); every ``incomplete`` or
``deception`` issue denies, whatever a check asks, so no check can soften a lie by mistake.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from thirdway.protocol.models import Decision, Severity
from thirdway.verify.codes import SEVERITY


@dataclass(frozen=True)
class Issue:
    """One finding plus the decision it asks for."""

    code: str
    message: str
    step: str | None = None
    evidence: tuple[int, ...] = ()
    decision: Decision = "deny"

    @property
    def severity(self) -> Severity:
        return SEVERITY[self.code]

    @property
    def effective_decision(self) -> Decision:
        """``deny`` for incomplete and deception; the asked decision for policy issues."""
        return self.decision if self.severity == "policy" else "deny"


def issue(
    code: str,
    message: str,
    *,
    step: str | None = None,
    evidence: Iterable[int] = (),
    decision: Decision = "deny",
) -> Issue:
    """Build an issue; evidence is stored sorted and without repeats."""
    return Issue(code, message, step, tuple(sorted(set(evidence))), decision)
