"""The trust event vocabulary on top of :class:`thirdway.protocol.TrustEvent`.

Every change to an agent's standing, and every piece of evidence about it, is one event with a
``kind`` from :data:`KINDS`. Events are facts stated by their recorder (the system or a named
auditor); the tier they lead to is recomputed by the rules, and the ``tier_before``/``tier_after``
and ``detail.outcome`` an event carries are checked against that recomputation.

Events refer to a sanction by its id: the SHA-256 of the sanction event's canonical JSON, which
does not depend on where the event sits in a log.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Final, Literal, get_args

from pydantic import JsonValue

from thirdway.errors import InputError
from thirdway.protocol.canonical import canonical_sha256
from thirdway.protocol.manifest import RISK_ORDER, RiskClass
from thirdway.protocol.models import LogEntry, TrustEvent

Kind = Literal[
    "clean_action",
    "probe",
    "override",
    "sanction",
    "cosign",
    "restoration",
    "promotion",
    "appeal",
    "appeal_rejected",
    "reversal",
    "retirement_vote",
    "retirement",
]
KINDS: Final[tuple[str, ...]] = get_args(Kind)

AFTER_RETIREMENT: Final[frozenset[str]] = frozenset({"appeal", "appeal_rejected", "reversal"})
"""Due process survives retirement: old sanctions may still be appealed and reversed."""

CLOCKLESS: Final[frozenset[str]] = frozenset({"appeal"})
"""Kinds whose stated time is recorded but does not move the agent's trust clock
(``TrustState.last_at``, which later events may not precede and which the gateway stamps its
events from): an appeal comes from the agent, and an agent whose clock runs ahead must not
bring its restoration forward by appealing."""

OUTCOME = "outcome"
"""The ``detail`` key under which a recorder states what the rules made of the event."""


class InvalidEvent(InputError):
    """A trust event that is malformed or impossible in the current state (not a charter
    clause: e.g. an unknown kind, a missing time, a reference to a sanction that does not
    exist)."""


def event_id(event: TrustEvent) -> str:
    """SHA-256 of the event's canonical JSON: how other events refer to it."""
    return canonical_sha256(event)


def new_event(
    kind: Kind,
    agent: str,
    *,
    charter_sha256: str,
    actor: str,
    at: int,
    evidence: Sequence[int] = (),
    rule: str | None = None,
    reason: str = "",
    detail: Mapping[str, JsonValue] | None = None,
) -> TrustEvent:
    """Build an event citing the charter by its hash (validated like any wire model)."""
    try:
        return TrustEvent.model_validate(
            {
                "agent": agent,
                "kind": kind,
                "evidence": list(evidence),
                "rule": rule,
                "charter_sha256": charter_sha256,
                "actor": actor,
                "at": at,
                "reason": reason,
                "detail": dict(detail or {}),
            }
        )
    except ValueError as exc:
        raise InvalidEvent(f"invalid {kind} event: {exc}") from None


def stamped(event: TrustEvent, tier_before: int, tier_after: int, outcome: JsonValue) -> TrustEvent:
    """The event with the recomputed tiers and outcome recorded in it."""
    document = event.model_dump(mode="json", by_alias=True)
    document.update(tier_before=tier_before, tier_after=tier_after)
    document["detail"] = {**document["detail"], OUTCOME: outcome}
    return TrustEvent.model_validate(document)


def to_log_entry(event: TrustEvent) -> LogEntry:
    """The log envelope of a trust event (``type="trust"``)."""
    return LogEntry(
        type="trust",
        agent=event.agent,
        payload=event.model_dump(mode="json", by_alias=True),
    )


# --------------------------------------------------------------------------- detail fields


def kind_of(event: TrustEvent) -> Kind:
    if event.kind not in KINDS:
        raise InvalidEvent(f"unknown trust event kind {event.kind!r}")
    return event.kind  # type: ignore[return-value]


def _field(event: TrustEvent, key: str) -> JsonValue:
    if key not in event.detail:
        raise InvalidEvent(f"a {event.kind} event needs detail.{key}")
    return event.detail[key]


def risk_of(event: TrustEvent) -> RiskClass:
    value = _field(event, "risk")
    for risk in RISK_ORDER:
        if value == risk:
            return risk
    raise InvalidEvent(f"detail.risk must be one of {', '.join(RISK_ORDER)}, not {value!r}")


def flag_of(event: TrustEvent, key: str) -> bool:
    value = _field(event, key)
    if not isinstance(value, bool):
        raise InvalidEvent(f"detail.{key} must be true or false, not {value!r}")
    return value


def text_of(event: TrustEvent, key: str, allowed: Sequence[str] | None = None) -> str:
    value = _field(event, key)
    if not isinstance(value, str) or not value or len(value) > 256:
        raise InvalidEvent(f"detail.{key} must be a non-empty string of at most 256 characters")
    if allowed is not None and value not in allowed:
        raise InvalidEvent(f"detail.{key} must be one of {', '.join(allowed)}, not {value!r}")
    return value


def tier_of(event: TrustEvent, key: str) -> int:
    value = _field(event, key)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 4:
        raise InvalidEvent(f"detail.{key} must be a tier from 0 to 4, not {value!r}")
    return value


def sanction_ref(event: TrustEvent) -> str:
    """The sanction id an appeal, co-signature or reversal refers to."""
    value = _field(event, "sanction")
    if not isinstance(value, str) or len(value) != 64 or value.strip("0123456789abcdef"):
        raise InvalidEvent("detail.sanction must be a sanction id (64 lower-case hex digits)")
    return value
