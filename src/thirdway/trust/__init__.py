"""Tiered trust as an event-sourced projection: tiers, evidence, Beta reputation, sanctions,
probation, restoration, appeals and retirement, all recomputable from trust events alone.

The gateway's loop, in short::

    ctx = load_context()
    state = initial_state(agent, ctx)
    event = sanction_for_findings(state, findings, evidence=[verdict_index], at=now, ctx=ctx)
    log.append(canonical_json(to_log_entry(event)))   # then
    state = apply(state, event, ctx)                  # the live state

and anyone holding the log recomputes the same state with :func:`fold`.
"""

from thirdway.trust.config import load_context, load_tiers, parse_tiers
from thirdway.trust.events import KINDS, InvalidEvent, event_id, new_event, to_log_entry
from thirdway.trust.fold import apply, at_time, fold, fold_all, replay_from_log
from thirdway.trust.model import (
    Offence,
    Pending,
    Probation,
    RestorationPath,
    Score,
    TiersConfig,
    TierSpec,
    TrustState,
)
from thirdway.trust.rules import (
    Context,
    initial_state,
    record_clean_action,
    record_probe,
    restoration_due,
    sanction_for_findings,
    stamp,
    transition,
)

__all__ = [
    "KINDS",
    "Context",
    "InvalidEvent",
    "Offence",
    "Pending",
    "Probation",
    "RestorationPath",
    "Score",
    "TierSpec",
    "TiersConfig",
    "TrustState",
    "apply",
    "at_time",
    "event_id",
    "fold",
    "fold_all",
    "initial_state",
    "load_context",
    "load_tiers",
    "new_event",
    "parse_tiers",
    "record_clean_action",
    "record_probe",
    "replay_from_log",
    "restoration_due",
    "sanction_for_findings",
    "stamp",
    "to_log_entry",
    "transition",
]
