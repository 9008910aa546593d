"""The gatekeeper's trust wiring: tiers from the trust fold, automatic sanctions, clean actions.

:class:`TrustLedger` is the gatekeeper's :class:`~thirdway.gateway.hooks.TierSource`,
:class:`~thirdway.gateway.hooks.Sanctioner` and
:class:`~thirdway.gateway.hooks.ExecutionListener` at once (DESIGN, "deny with deception
findings ─▶ trust sanction ─▶ [log: trust event]"):

* ``tier(agent)`` is the agent's tier as the trust events in the log make it; a retired agent
  gets no tier at all (every action refused);
* a verdict with deception findings becomes a ``sanction`` event citing the proposal and the
  verdict's log indices, the charter rule, and (in ``detail.outcome``) the restoration path;
* a tool that ran cleanly becomes a ``clean_action`` event citing the verdict and the execution,
  followed by a ``restoration`` event when the run of clean actions has earned one.

The live state is never kept apart from the log: the ledger folds every trust entry it has not
seen yet (its own, and those other components such as the dialogue service wrote) before it
answers, so what it reports is what ``thirdway trust verify`` recomputes from the log alone.
Every event is checked by the rules before it is written (:func:`thirdway.trust.stamp`), so an
event the charter refuses never reaches the log.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING

from pydantic import ValidationError

from thirdway.errors import GateError, LogError
from thirdway.gateway.hooks import Append
from thirdway.ledger.log import TransparencyLog
from thirdway.protocol.manifest import RiskClass
from thirdway.protocol.models import Finding, LogEntry, TrustEvent
from thirdway.protocol.parse import describe
from thirdway.trust import (
    Context,
    TrustState,
    apply,
    initial_state,
    load_context,
    record_clean_action,
    restoration_due,
    sanction_for_findings,
    to_log_entry,
)
from thirdway.trust.model import Permission

if TYPE_CHECKING:
    from thirdway.gateway.gatekeeper import Gatekeeper


class TrustLedger:
    """Per-agent trust state over one transparency log (see the module docstring).

    Thread-safe: every read-decide-append-apply runs under one lock, so two sessions of the same
    agent cannot both sanction from the same stale tier."""

    def __init__(self, log: TransparencyLog, ctx: Context | None = None) -> None:
        self.log = log
        self.ctx = ctx or load_context()
        self._states: dict[str, TrustState] = {}
        self._seen = 0
        self._lock = threading.RLock()
        with self._lock:
            self._catch_up()

    # ------------------------------------------------------------------ reading

    def state(self, agent: str) -> TrustState:
        """The agent's trust state as of the last trust entry in the log.

        The log's size is read before taking the lock (reading it waits while a commit is made
        durable; holding the lock meanwhile would queue every session's tier lookup behind
        that one commit). Every entry in the log when this was called is folded first."""
        size = self.log.size()
        with self._lock:
            self._catch_up(size)
            return self._state(agent)

    def tier(self, agent: str) -> int:
        """The agent's current tier (a ``TierSource``); a retired agent is refused outright."""
        state = self.state(agent)
        if state.retired_at is not None:
            raise GateError(f"agent {agent!r} is retired; the charter allows it no actions")
        return state.tier

    def permission(self, agent: str, risk: RiskClass) -> Permission:
        """What the agent's tier may do with a tool of ``risk`` without a dialogue."""
        return self.ctx.tiers.permission(self.tier(agent), risk)

    def spot_audit_percent(self, agent: str) -> float:
        """How often the agent's actions are spot-audited at its current tier."""
        return float(self.ctx.tiers.spec(self.tier(agent)).spot_audit_percent)

    # ------------------------------------------------------------------ hooks

    def on_deception(
        self,
        *,
        agent: str,
        session: str,
        findings: Sequence[Finding],
        evidence: Sequence[int],
        at: int,
        append: Append,
    ) -> None:
        """Sanction the agent by the charter rule for its findings (a ``Sanctioner``)."""
        with self._lock:
            self._catch_up()
            state = self._state(agent)
            if state.retired_at is not None:
                return  # nothing is left to take; the verdict entry records the findings
            event = sanction_for_findings(
                state, findings, evidence=evidence, at=self._at(state, at), ctx=self.ctx
            )
            if event is not None:
                self._write([event], append)

    def on_executed(
        self,
        *,
        agent: str,
        session: str,
        tool: str,
        risk: RiskClass,
        evidence: Sequence[int],
        at: int,
        append: Append,
    ) -> None:
        """Count a clean verified action, and restore a tier if the run has earned one."""
        with self._lock:
            self._catch_up()
            state = self._state(agent)
            if state.retired_at is not None:
                return
            when = self._at(state, at)
            clean = record_clean_action(state, risk=risk, evidence=evidence, at=when, ctx=self.ctx)
            after = apply(state, clean, self.ctx)
            restored = restoration_due(after, at=when, ctx=self.ctx)
            self._write([clean] if restored is None else [clean, restored], append)

    def record(self, event: TrustEvent, append: Append) -> None:
        """Write an already-stamped event someone else built (an auditor's action)."""
        with self._lock:
            self._catch_up()
            self._write([event], append)

    # ------------------------------------------------------------------ internals

    def _state(self, agent: str) -> TrustState:
        found = self._states.get(agent)
        return found if found is not None else initial_state(agent, self.ctx)

    @staticmethod
    def _at(state: TrustState, at: int) -> int:
        """Trust time never runs backwards (a clock step back must not void a sanction)."""
        return max(at, state.last_at or 0)

    def _write(self, events: Sequence[TrustEvent], append: Append) -> None:
        append([to_log_entry(event) for event in events])
        self._catch_up()

    def _catch_up(self, size: int | None = None) -> None:
        """Fold every trust entry appended since the last look, in log order: up to ``size``
        (read by the caller) or, by default, to the log's size now."""
        if size is None:
            size = self.log.size()
        if size <= self._seen:
            return  # another caller has folded at least this far
        for index in range(self._seen, size):
            try:
                entry = LogEntry.model_validate_json(self.log.entry(index))
                if entry.type != "trust":
                    continue
                event = TrustEvent.model_validate(entry.payload)
            except ValidationError as exc:
                raise LogError(f"log entry {index}: {describe(exc, 'trust event')}") from None
            if entry.agent != event.agent:
                raise LogError(
                    f"log entry {index}: envelope names agent {entry.agent!r} but the event is "
                    f"about {event.agent!r}"
                )
            self._states[event.agent] = apply(self._state(event.agent), event, self.ctx)
        self._seen = size


def attach_trust(gate: Gatekeeper, ctx: Context | None = None) -> TrustLedger:
    """Make ``gate`` take its tiers from, and report deception and clean actions to, a
    :class:`TrustLedger` over its own log (rebuilt from that log now)."""
    ledger = TrustLedger(gate.log, ctx)
    gate.tiers = ledger
    gate.sanctioner = ledger
    gate.on_executed = ledger
    return ledger
