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

Several gateway workers (one PostgreSQL log): there is no trust table; each worker's ledger folds
the trust entries every worker appended, so an agent has the same tier on all of them. An event
is stamped from the state it changes (``tier_before``), so it must not be decided on a stale
one: with :meth:`TrustLedger.bind` the event is written with a check that runs under the log's
sequencer lock and refuses it if another worker wrote a trust event for the same agent since
this ledger last folded; the ledger then folds again and decides again.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Final

from pydantic import ValidationError

from thirdway.errors import GateError, InputError, LogError
from thirdway.gateway.hooks import Append
from thirdway.gateway.sessions import StaleRecordError
from thirdway.gateway.writer import Check
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

CheckedAppend = Callable[[Sequence[LogEntry], Check], range]
STALE_RETRIES: Final = 8


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
        self._checked: CheckedAppend | None = None
        with self._lock:
            self._catch_up()

    def bind(self, checked: CheckedAppend) -> None:
        """Write through ``checked`` (an append taking a check; the gatekeeper's) on a log
        several workers append to, so that no event is decided on a stale state."""
        self._checked = checked if self.log.sequenced else None

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

        def decide(state: TrustState) -> list[TrustEvent]:
            if state.retired_at is not None:
                return []  # nothing is left to take; the verdict entry records the findings
            event = sanction_for_findings(
                state, findings, evidence=evidence, at=self._at(state, at), ctx=self.ctx
            )
            return [] if event is None else [event]

        self._decide(agent, decide, append)

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

        def decide(state: TrustState) -> list[TrustEvent]:
            if state.retired_at is not None:
                return []
            when = self._at(state, at)
            clean = record_clean_action(state, risk=risk, evidence=evidence, at=when, ctx=self.ctx)
            after = apply(state, clean, self.ctx)
            restored = restoration_due(after, at=when, ctx=self.ctx)
            return [clean] if restored is None else [clean, restored]

        self._decide(agent, decide, append)

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

    def _decide(
        self, agent: str, decide: Callable[[TrustState], list[TrustEvent]], append: Append
    ) -> None:
        """Fold, decide from the agent's state, write; on a log several workers append to,
        decided again while another worker's event for the agent got in first."""
        for _ in range(STALE_RETRIES):
            with self._lock:
                self._catch_up()
                events = decide(self._state(agent))
                if not events:
                    return
                try:
                    self._write(events, append, agent)
                except StaleRecordError:
                    continue
                return
        # Not StaleRecordError: the gatekeeper step that called this hook is already written.
        raise GateError(
            f"agent {agent!r}'s trust standing kept changing on other workers "
            f"({STALE_RETRIES} tries); its trust event was not recorded"
        )

    def _write(
        self, events: Sequence[TrustEvent], append: Append, agent: str | None = None
    ) -> None:
        entries = [to_log_entry(event) for event in events]
        if self._checked is not None and agent is not None:
            self._checked(entries, self._unchanged(agent, self._seen))
        else:
            append(entries)
        self._catch_up()

    def _unchanged(self, agent: str, since: int) -> Check:
        """A writer check: no trust event about ``agent`` in the log from ``since`` on."""

        def check(first: int) -> None:
            for index, data in self.log.entries_between(since, first):
                if b'"trust"' not in data:
                    continue
                entry = LogEntry.model_validate_json(data)
                if entry.type == "trust" and entry.agent == agent:
                    raise StaleRecordError(
                        f"another worker wrote a trust event about {agent!r} (log entry {index})"
                    )

        return check

    def _catch_up(self, size: int | None = None) -> None:
        """Fold every trust entry appended since the last look, in log order: up to ``size``
        (read by the caller) or, by default, to the log's size now."""
        if size is None:
            size = self.log.size()
        if size <= self._seen:
            return  # another caller has folded at least this far
        for index, data in self.log.entries_between(self._seen, size):
            try:
                entry = LogEntry.model_validate_json(data)
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
    :class:`TrustLedger` over its own log (rebuilt from that log now). The trust context's
    charter must be the one ``gate`` acts on verdicts under (one charter per gateway)."""
    ctx = ctx or load_context()
    if ctx.charter_sha256 != gate.charter_sha256:
        raise InputError(
            "the trust context's charter is not the one the gatekeeper acts on verdicts under "
            f"({ctx.charter_sha256[:16]}… vs {gate.charter_sha256[:16]}…)"
        )
    ledger = TrustLedger(gate.log, ctx)
    ledger.bind(lambda entries, check: gate.append(entries, check=check))
    gate.tiers = ledger
    gate.sanctioner = ledger
    gate.on_executed = ledger
    return ledger
