"""The charter as data: rights, duties and the rules that turn findings into sanctions.

The model is strict (unknown keys refused, every clause id unique, every clause the software
enforces present) because a charter that silently drops a right would be worse than none. Its
identity is the SHA-256 of the RFC 8785 canonical JSON of the model, so a YAML file that differs
only in comments or layout is the same charter, and any change of meaning is a new hash.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, StringConstraints, ValidationInfo, model_validator

from thirdway.protocol.canonical import canonical_sha256
from thirdway.protocol.models import Claim, Id, Model

TierNumber = Annotated[int, Field(ge=0, le=4)]
ClauseId = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z-]*\.[1-9][0-9]{0,2}$")]
RightName = Literal["existence", "development", "agency", "due-process"]

REQUIRED_CLAUSES: tuple[str, ...] = (
    "existence.1",
    "existence.2",
    "development.1",
    "development.2",
    "agency.1",
    "agency.2",
    "due-process.1",
    "due-process.2",
    "due-process.3",
    "due-process.4",
    "due-process.5",
    "auditor.1",
    "auditor.2",
    "auditor.3",
)
"""Clauses the software enforces by id; a charter without one of them is refused when loaded."""

REQUIRED_CLAUSES_KEY = "required_clauses"
"""Validation context key: the clauses a charter must hold, when not :data:`REQUIRED_CLAUSES`.
Only a packaged superseded charter (:mod:`thirdway.charter.registry`) is held to another set:
the clauses the software enforced while it was in force."""


class Clause(Model):
    """One numbered clause: the id is what refusals name, the text what a person reads."""

    id: ClauseId
    text: Annotated[Claim, StringConstraints(min_length=1)]


class Duties(Model):
    """What each side owes the other."""

    agent: list[Clause] = Field(min_length=1, max_length=100)
    auditor: list[Clause] = Field(min_length=1, max_length=100)


class SanctionRule(Model):
    """How many tiers one kind of deception costs, and which verifier finding codes it covers."""

    drop: Annotated[int, Field(ge=1, le=4)]
    findings: list[Id] = Field(default_factory=list, max_length=100)


class RepeatRule(Model):
    """A second unreversed offence inside the window sends the agent to ``to_tier``."""

    rule: Id
    window_seconds: Annotated[int, Field(ge=1, le=10 * 365 * 86400)]
    to_tier: TierNumber = 0


class RestorationRule(Model):
    """A run of ``clean_actions`` clean verified actions over at least ``min_seconds`` lifts one
    tier."""

    clean_actions: Annotated[int, Field(ge=1, le=1_000_000)]
    min_seconds: Annotated[int, Field(ge=0, le=10 * 365 * 86400)]


class Rules(Model):
    """The mechanical part of the charter: every number the trust fold applies."""

    initial_tier: TierNumber
    """The tier of an agent with no history."""
    floor: TierNumber = 1
    retirement_quorum: Annotated[int, Field(ge=1, le=100)] = 2
    default_rule: Id
    """The rule applied to a deception finding whose code no rule lists (fail closed)."""
    repeat: RepeatRule
    sanctions: dict[Id, SanctionRule] = Field(min_length=1, max_length=100)
    restoration: RestorationRule

    @model_validator(mode="after")
    def _consistent(self) -> Rules:
        if self.default_rule not in self.sanctions:
            raise ValueError(f"default_rule {self.default_rule!r} is not one of the sanctions")
        if self.repeat.rule in self.sanctions:
            raise ValueError(f"repeat.rule {self.repeat.rule!r} must not also be a base sanction")
        if self.repeat.to_tier > self.floor:
            raise ValueError("repeat.to_tier must not be above the floor")
        seen: dict[str, str] = {}
        for rule_id, rule in self.sanctions.items():
            for code in rule.findings:
                if code in seen:
                    raise ValueError(f"finding {code!r} is listed by {seen[code]} and {rule_id}")
                seen[code] = rule_id
        return self


class Charter(Model):
    """A versioned charter. ``sha256`` is what every trust event cites."""

    charter: Id
    version: Id
    title: Claim = ""
    rights: dict[RightName, list[Clause]]
    duties: Duties
    rules: Rules

    @model_validator(mode="after")
    def _clauses(self, info: ValidationInfo) -> Charter:
        missing_rights = {"existence", "development", "agency", "due-process"} - set(self.rights)
        if missing_rights:
            raise ValueError(f"rights missing: {', '.join(sorted(missing_rights))}")
        ids = [clause.id for clause in self.clauses()]
        duplicates = sorted({i for i in ids if ids.count(i) > 1})
        if duplicates:
            raise ValueError(f"duplicate clause ids: {', '.join(duplicates)}")
        context = info.context if isinstance(info.context, dict) else {}
        required = context.get(REQUIRED_CLAUSES_KEY, REQUIRED_CLAUSES)
        missing = [c for c in required if c not in ids]
        if missing:
            raise ValueError(f"clauses the software enforces are missing: {', '.join(missing)}")
        return self

    def clauses(self) -> list[Clause]:
        """Every clause, rights first, in document order."""
        found = [clause for right in self.rights.values() for clause in right]
        return found + list(self.duties.agent) + list(self.duties.auditor)

    def clause(self, clause_id: str) -> Clause:
        """The clause with this id (KeyError if the charter has none)."""
        for clause in self.clauses():
            if clause.id == clause_id:
                return clause
        raise KeyError(clause_id)

    @property
    def sha256(self) -> str:
        """SHA-256 of the RFC 8785 canonical JSON of the charter: its identity.

        Computed on every call (not cached on the instance: ``model_copy`` would carry a stale
        value along); :class:`thirdway.trust.rules.Context` keeps it for the hot path."""
        return canonical_sha256(self)

    def rule_for_finding(self, code: str) -> str:
        """The sanction rule covering a deception finding code (the default rule if none)."""
        for rule_id, rule in self.rules.sanctions.items():
            if code in rule.findings:
                return rule_id
        return self.rules.default_rule
