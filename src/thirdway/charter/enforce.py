"""The charter's clauses as checks that refuse, naming the clause.

These are the primitive guarantees; :mod:`thirdway.trust.rules` calls them while applying each
trust event, so the same check refuses an auditor's bad action before it is logged
(:mod:`thirdway.trust.actions`) and flags a bad event already in a log when anyone replays it.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence

from thirdway.charter.model import Charter
from thirdway.errors import ThirdwayError

SYSTEM = "system"
"""The actor name of automatic rules (verifier findings, clean actions, restorations)."""

OVERRIDE_CLAUSE = "agency.2"
"""The clause an auditor's decision on a held action (an override) is taken under."""


class CharterViolation(ThirdwayError):
    """An action that a charter clause forbids. ``str()`` starts with the clause id."""

    def __init__(self, clause: str, message: str) -> None:
        super().__init__(f"{clause}: {message}")
        self.clause = clause
        self.message = message

    def __repr__(self) -> str:
        return f"CharterViolation({self.clause!r}, {self.message!r})"


def require_charter(charter: Charter, cited: str | None) -> None:
    """due-process.3: the event cites this charter's hash."""
    if cited is None:
        raise CharterViolation("due-process.3", "a trust event must cite the charter's SHA-256")


def require_sanction_evidence(evidence: Sequence[int], already_sanctioned: Collection[int]) -> None:
    """due-process.1: a sanction cites evidence, none of it sanctioned before."""
    if not evidence:
        raise CharterViolation("due-process.1", "a sanction must cite evidence (log indices)")
    repeated = sorted(set(evidence) & set(already_sanctioned))
    if repeated:
        listed = ", ".join(str(i) for i in repeated)
        raise CharterViolation(
            "due-process.1", f"evidence already sanctioned cannot be sanctioned again: {listed}"
        )


def require_rule(charter: Charter, rule: str | None) -> str:
    """due-process.2: a sanction names a base rule of this charter. Returns the rule id."""
    if rule is None:
        raise CharterViolation("due-process.2", "a sanction must name the charter rule it applies")
    if rule == charter.rules.repeat.rule:
        raise CharterViolation(
            "due-process.2",
            f"{rule} is applied by the rules from the offence history, not cited directly",
        )
    if rule not in charter.rules.sanctions:
        known = ", ".join(sorted(charter.rules.sanctions))
        raise CharterViolation("due-process.2", f"no charter rule {rule!r} (rules: {known})")
    return rule


def require_override_rule(charter: Charter, rule: str | None) -> str:
    """auditor.2: an override names the clause of this charter it is decided under (the
    dialogue service cites :data:`OVERRIDE_CLAUSE`). Returns the clause id."""
    if rule is None:
        raise CharterViolation(
            "auditor.2",
            "an override must name the charter clause it is decided under "
            f"(e.g. {OVERRIDE_CLAUSE})",
        )
    try:
        charter.clause(rule)
    except KeyError:
        raise CharterViolation(
            "auditor.2", f"an override names a clause of this charter; there is no {rule!r}"
        ) from None
    return rule


def require_auditor(actor: str | None, agent: str, what: str) -> str:
    """auditor.3: an auditor action is taken in an auditor's own name. Returns the auditor."""
    if actor is None or actor == SYSTEM:
        raise CharterViolation("auditor.3", f"{what} must be made by a named auditor")
    if actor == agent:
        raise CharterViolation("auditor.3", f"{what} cannot be made by the agent concerned")
    return actor


def require_auditor_evidence(evidence: Sequence[int], what: str) -> None:
    """auditor.1: every auditor action cites evidence."""
    if not evidence:
        raise CharterViolation("auditor.1", f"{what} must cite evidence (log indices)")


def require_reason(reason: str, what: str) -> None:
    """auditor.2: every auditor action states a reason."""
    if not reason.strip():
        raise CharterViolation("auditor.2", f"{what} must state a reason")


def require_cosigner(cosigner: str, sanction_author: str) -> None:
    """agency.1: the co-signature comes from an auditor other than the sanction's author."""
    if cosigner == sanction_author:
        raise CharterViolation(
            "agency.1",
            "going below the floor needs the co-signature of an auditor other than the "
            f"sanction's author ({sanction_author})",
        )


def require_quorum(charter: Charter, voters: Collection[str]) -> None:
    """existence.2: retirement takes a quorum of distinct auditors."""
    need = charter.rules.retirement_quorum
    if len(set(voters)) < need:
        have = ", ".join(sorted(set(voters))) or "none"
        raise CharterViolation(
            "existence.2",
            f"retiring an agent needs a quorum of {need} distinct auditors (votes: {have})",
        )


def auditor_action(
    charter: Charter,
    *,
    agent: str,
    actor: str | None,
    evidence: Sequence[int],
    reason: str,
    what: str,
) -> str:
    """The duties common to every auditor action (auditor.1-3). Returns the auditor."""
    auditor = require_auditor(actor, agent, what)
    require_auditor_evidence(evidence, what)
    require_reason(reason, what)
    return auditor
