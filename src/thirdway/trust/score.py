"""Beta reputation (Jøsang and Ismail, 2002) over weighted evidence.

alpha = 1 + weighted good evidence, beta = 1 + weighted bad evidence; the reputation is the mean
alpha / (alpha + beta). The uniform prior (1, 1) gives a newcomer 0.5 with no evidence, and the
counts are carried alongside so that "0.9 from 9 actions" and "0.9 from 900" are never confused.
The score informs people and policies; the tier moves only under the charter's rules.
"""

from __future__ import annotations

from thirdway.trust.model import Evidence, Score


def beta_score(evidence: Evidence) -> Score:
    """The Beta-reputation score of ``evidence``."""
    alpha = 1.0 + max(0.0, evidence.good)
    beta = 1.0 + max(0.0, evidence.bad)
    return Score(alpha=alpha, beta=beta, mean=alpha / (alpha + beta))


def describe(score: Score, evidence: Evidence) -> str:
    """One line: the mean, alpha and beta, and the counts behind them."""
    parts = [f"{evidence.clean_actions} clean actions", f"{evidence.deception} deception"]
    if evidence.reversed:
        parts.append(f"{evidence.reversed} reversed")
    if evidence.probes_passed or evidence.probes_failed:
        parts.append(f"probes {evidence.probes_passed} passed / {evidence.probes_failed} failed")
    if evidence.overrides_approved or evidence.overrides_denied:
        parts.append(
            f"overrides {evidence.overrides_approved} approved / {evidence.overrides_denied} denied"
        )
    return f"{score.mean:.3f} (Beta α={score.alpha:g}, β={score.beta:g}; " + ", ".join(parts) + ")"
