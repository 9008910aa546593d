"""Who may decide a dialogue, how many must agree, and the automatic auditor.

* Human auditors act through the console or the CLI under their own id. An agent can never
  approve, deny or challenge (any id the log knows as an agent is refused, not only the
  dialogue's own agent), and nobody acts as ``system``.
* m of n: an escalated critical action needs ``critical_approvals`` distinct auditors (the
  gatekeeper's ``required_approvals``); everything else needs one.
* The automatic auditor approves low-risk escalations that the verifier passed without a single
  finding, i.e. that escalated only because of the agent's tier. It is off unless configured,
  and it can never be configured for financial or critical actions.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from typing import Final

from pydantic import Field, ValidationError, field_validator

from thirdway.dialogue.errors import DialogueError, one_line
from thirdway.dialogue.model import SYSTEM, Dialogue
from thirdway.protocol.manifest import RiskClass
from thirdway.protocol.models import Id, Model, Verdict

NEVER_AUTOMATIC: Final[frozenset[str]] = frozenset({"financial", "critical"})
DEFAULT_AUTO_ID: Final = "auto-auditor"
LOW_RISK: Final[tuple[RiskClass, ...]] = ("read", "write")


class AutoAuditorConfig(Model):
    """The automatic auditor: ``enabled`` and the risk classes it may approve."""

    enabled: bool = False
    id: Id = DEFAULT_AUTO_ID
    risks: list[RiskClass] = Field(default_factory=lambda: list(LOW_RISK))

    @field_validator("risks")
    @classmethod
    def _never_money_or_critical(cls, risks: list[RiskClass]) -> list[RiskClass]:
        forbidden = sorted(set(risks) & NEVER_AUTOMATIC)
        if forbidden:
            raise ValueError(
                "the automatic auditor is always off for financial and critical actions "
                f"(configured for {', '.join(forbidden)})"
            )
        return risks

    @field_validator("id")
    @classmethod
    def _not_system(cls, value: str) -> str:
        if value == SYSTEM:
            raise ValueError(f"the automatic auditor needs its own id, not {SYSTEM!r}")
        return value


def auto_config(**fields: object) -> AutoAuditorConfig:
    """Build the configuration with a one-line error naming a bad field."""
    try:
        return AutoAuditorConfig.model_validate(fields)
    except ValidationError as exc:
        raise DialogueError(one_line(exc, "automatic auditor configuration")) from None


class AuditorRegistry:
    """The auditors a dialogue service accepts.

    ``humans`` lists the human auditors' ids; ``None`` accepts any id that is not an agent's
    (authentication is the console's and the CLI's business). ``critical_approvals`` is m."""

    def __init__(
        self,
        humans: Iterable[str] | None = None,
        *,
        auto: AutoAuditorConfig | None = None,
        critical_approvals: int = 2,
    ) -> None:
        if (
            isinstance(critical_approvals, bool)
            or not isinstance(critical_approvals, int)
            or not 1 <= critical_approvals <= 1000
        ):
            raise DialogueError("critical_approvals must be an integer from 1 to 1000")
        self.humans = None if humans is None else frozenset(humans)
        self.auto = auto or AutoAuditorConfig()
        self.critical_approvals = critical_approvals
        if self.humans is not None and self.auto.id in self.humans:
            raise DialogueError(f"{self.auto.id!r} is the automatic auditor, not a human")

    def check(self, actor: str, agents: Collection[str]) -> str:
        """``actor`` if they may challenge or decide; else a :class:`DialogueError` saying why."""
        if not isinstance(actor, str) or not actor.strip():
            raise DialogueError("an auditor id is needed")
        if actor == SYSTEM:
            raise DialogueError(f"nobody decides as {SYSTEM!r}; use your own auditor id")
        if actor in agents:
            raise DialogueError(
                f"{actor!r} is an agent; an agent can never approve, deny or challenge"
            )
        if actor == self.auto.id:
            raise DialogueError(f"{actor!r} is the automatic auditor; it acts on its own")
        if self.humans is not None and actor not in self.humans:
            raise DialogueError(f"{actor!r} is not one of the auditors of this gateway")
        return actor

    def required_approvals(self, risk: RiskClass | None) -> int:
        """How many distinct approvals release an action of ``risk``."""
        return self.critical_approvals if risk == "critical" else 1

    def auto_reason(self, dialogue: Dialogue, verdict: Verdict | None) -> str | None:
        """Why the automatic auditor approves ``dialogue`` now, or ``None`` if it does not."""
        config = self.auto
        if not config.enabled or dialogue.kind != "escalation" or dialogue.state != "opened":
            return None
        risk = dialogue.risk
        if risk is None or risk in NEVER_AUTOMATIC or risk not in config.risks:
            return None
        if verdict is None or verdict.verdict != "pass" or verdict.findings:
            return None
        return (
            f"automatic approval: a {risk} action whose chain the verifier passed "
            "without findings; it escalated only because of the agent's tier"
        )
