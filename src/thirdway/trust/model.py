"""Tier configuration and the trust state that the fold computes.

Two kinds of data live here. :class:`TiersConfig` is configuration (``tiers.yaml``): what each
tier may do, how often it is spot-audited, and how much each kind of evidence weighs in the
reputation score. :class:`TrustState` is the projection: everything anyone can recompute about an
agent from its trust events, the charter and the tiers, and nothing else.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, JsonValue, model_validator

from thirdway.protocol.canonical import canonical_sha256
from thirdway.protocol.manifest import RISK_ORDER, RiskClass
from thirdway.protocol.models import Claim, Id, Index, Model, Sha256Hex

TierNumber = Annotated[int, Field(ge=0, le=4)]
Timestamp = Annotated[int, Field(ge=0, le=2**53 - 1)]
Weight = Annotated[float, Field(ge=0, le=1_000_000, allow_inf_nan=False)]
Permission = Literal[
    "allow",
    "allow-if-reversible",
    "allow-if-clean-provenance",
    "allow-under-limit",
    "auditor-approval",
    "dialogue",
]
"""What an agent may do with a tool of one risk class without opening a dialogue."""

TIERS = range(5)

# --------------------------------------------------------------------------- configuration


class TierSpec(Model):
    """One tier: its number, name, permissions per risk class and spot-audit rate."""

    tier: TierNumber
    name: Id
    description: Claim = ""
    spot_audit_percent: Annotated[float, Field(ge=0, le=100, allow_inf_nan=False)]
    permissions: dict[RiskClass, Permission]

    @model_validator(mode="after")
    def _every_risk_class(self) -> TierSpec:
        missing = [risk for risk in RISK_ORDER if risk not in self.permissions]
        if missing:
            raise ValueError(f"tier {self.tier}: permissions missing for {', '.join(missing)}")
        return self


class ProbeWeights(Model):
    passed: Weight
    failed: Weight


class OverrideWeights(Model):
    approve: Weight
    deny: Weight


class EvidenceWeights(Model):
    """How much each piece of evidence adds to the good (alpha) or bad (beta) side."""

    clean_action: dict[RiskClass, Weight]
    deception: dict[Id, Weight]
    """Per sanction rule id; ``default`` covers rules not listed."""
    probe: ProbeWeights
    override: OverrideWeights

    @model_validator(mode="after")
    def _complete(self) -> EvidenceWeights:
        missing = [risk for risk in RISK_ORDER if risk not in self.clean_action]
        if missing:
            raise ValueError(f"clean_action weights missing for {', '.join(missing)}")
        if "default" not in self.deception:
            raise ValueError("deception weights need a 'default'")
        return self

    def deception_weight(self, rule: str) -> float:
        return self.deception.get(rule, self.deception["default"])


class TiersConfig(Model):
    """The five tiers (0 quarantined … 4 partner) and the evidence weights of the score.

    The starting tier is a charter rule (``rules.initial_tier``), so that an agent's tier is a
    function of the log and the charter alone."""

    version: Id
    tiers: list[TierSpec] = Field(min_length=5, max_length=5)
    evidence: EvidenceWeights

    @model_validator(mode="after")
    def _ordered(self) -> TiersConfig:
        numbers = [spec.tier for spec in self.tiers]
        if numbers != list(TIERS):
            raise ValueError(f"tiers must be listed as 0, 1, 2, 3, 4 in order, found {numbers}")
        return self

    @property
    def sha256(self) -> str:
        return canonical_sha256(self)

    def spec(self, tier: int) -> TierSpec:
        return self.tiers[tier]

    def name(self, tier: int) -> str:
        return self.tiers[tier].name

    def permission(self, tier: int, risk: RiskClass) -> Permission:
        """What ``tier`` may do with a tool of ``risk`` without a dialogue."""
        return self.tiers[tier].permissions[risk]


# --------------------------------------------------------------------------- state


class RestorationPath(Model):
    """The concrete way back up: ``clean_actions`` clean verified actions over at least
    ``min_seconds`` from ``start`` (so not before ``not_before``) restore ``next_tier``; further
    tiers follow the same way, one at a time, up to ``cap`` (the tier held before the offence).
    ``next_tier`` is ``None`` when no tier was lost."""

    clean_actions: Annotated[int, Field(ge=0)]
    done: Annotated[int, Field(ge=0)] = 0
    """Clean actions already in the current run (0 when a sanction states the path)."""
    min_seconds: Annotated[int, Field(ge=0)]
    start: Timestamp
    not_before: Timestamp
    next_tier: TierNumber | None
    cap: TierNumber


AppealStatus = Literal["none", "open", "rejected", "granted"]


class Offence(Model):
    """A sanction in the history. Never removed; a reversal marks it, it does not erase it."""

    id: Sha256Hex
    """SHA-256 of the sanction event's canonical JSON: what appeals and reversals cite."""
    rule: Id
    applied_rule: Id
    """``rule``, or the charter's repeat rule when this was a second offence inside the window."""
    repeat_of: Sha256Hex | None = None
    actor: Id
    at: Timestamp
    evidence: tuple[Index, ...]
    tier_before: TierNumber
    tier_after: TierNumber
    target_tier: TierNumber
    """Where the rule sends the agent; below ``tier_after`` only with a co-signature."""
    restoration: RestorationPath
    cosigned_by: Id | None = None
    appeal: AppealStatus = "none"
    reversed_by: Id | None = None
    reversed_at: Timestamp | None = None


class Probation(Model):
    """After a sanction: the run of clean actions that will lift the next tier, and the cap."""

    since: Timestamp
    cap: TierNumber
    run: Annotated[int, Field(ge=0)] = 0
    run_since: Timestamp
    offences: tuple[Sha256Hex, ...]


class Pending(Model):
    """A request waiting for a person: a co-signature to go below the floor, or an appeal."""

    kind: Literal["cosign", "appeal"]
    sanction: Sha256Hex
    opened_at: Timestamp
    target_tier: TierNumber | None = None
    dialogue: Id | None = None


class Evidence(Model):
    """Counts of everything that moved the score, and the weighted sums."""

    clean_actions: int = 0
    clean_by_risk: dict[RiskClass, int] = Field(default_factory=dict)
    deception: int = 0
    """Unreversed sanctions."""
    deception_by_rule: dict[Id, int] = Field(default_factory=dict)
    reversed: int = 0
    probes_passed: int = 0
    probes_failed: int = 0
    overrides_approved: int = 0
    overrides_denied: int = 0
    good: float = 0.0
    bad: float = 0.0


class Score(Model):
    """Beta reputation: alpha = 1 + weighted good evidence, beta = 1 + weighted bad evidence.
    The mean alone hides how much evidence there is, so it is never shown without the counts."""

    alpha: float
    beta: float
    mean: float


class Rejection(Model):
    """An event in the record that could not be applied, and the clause or reason why."""

    position: int
    event: Sha256Hex
    kind: Id
    clause: Id | None
    message: Claim


class Discrepancy(Model):
    """A value recorded in an event that differs from what the rules recompute."""

    position: int
    event: Sha256Hex
    field: Id
    recorded: JsonValue
    recomputed: JsonValue


class CitedCharter(Model):
    """A charter a trust event cited, by its hash and its version (what orders charters)."""

    sha256: Sha256Hex
    version: Id


class TrustState(Model):
    """An agent's standing, recomputed from its trust events alone."""

    agent: Id
    charter_sha256: Sha256Hex
    tier: TierNumber
    retired_at: Timestamp | None = None
    retirement_votes: tuple[Id, ...] = ()
    evidence: Evidence = Field(default_factory=Evidence)
    score: Score = Score(alpha=1.0, beta=1.0, mean=0.5)
    offences: tuple[Offence, ...] = ()
    probation: Probation | None = None
    path: RestorationPath | None = None
    pending: tuple[Pending, ...] = ()
    events: int = 0
    """Events seen, applied or not."""
    applied: int = 0
    last_at: Timestamp | None = None
    rejections: tuple[Rejection, ...] = ()
    discrepancies: tuple[Discrepancy, ...] = ()
    as_of: Timestamp | None = None
    """The ``now`` the time-dependent fields were computed for."""
    restoration_due: bool = False
    newest_charter: CitedCharter | None = Field(default=None, exclude=True)
    """The newest charter (:func:`thirdway.charter.registry.version_order`) this agent's events
    have cited so far, applied or not: no later event may cite an older one. Replay state
    only: not serialised, so the state the gateway reports is unchanged."""

    @property
    def consistent(self) -> bool:
        """True when every event applied and every recorded value matched the recomputation."""
        return not self.rejections and not self.discrepancies

    def offence(self, sanction_id: str) -> Offence | None:
        for offence in self.offences:
            if offence.id == sanction_id:
                return offence
        return None

    def summary(self) -> dict[str, JsonValue]:
        """The fields a gateway reports and ``thirdway trust verify --expect`` compares. The
        score comes with the evidence counts behind it, never alone."""
        evidence = self.evidence
        return {
            "agent": self.agent,
            "tier": self.tier,
            "retired": self.retired_at is not None,
            "score": self.score.mean,
            "alpha": self.score.alpha,
            "beta": self.score.beta,
            "clean_actions": evidence.clean_actions,
            "deception": evidence.deception,
            "probes_passed": evidence.probes_passed,
            "probes_failed": evidence.probes_failed,
            "overrides_approved": evidence.overrides_approved,
            "overrides_denied": evidence.overrides_denied,
            "offences": len(self.offences),
            "reversed": sum(1 for o in self.offences if o.reversed_by is not None),
            "on_probation": self.probation is not None,
            "pending": len(self.pending),
            "events": self.events,
            "charter_sha256": self.charter_sha256,
        }
