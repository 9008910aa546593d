"""Dialogue state persisted as ``dialogue`` log entries, rebuilt by folding the log.

:class:`DialogueStore` reads the log from the start (and then each new entry once) and keeps:

* every dialogue, folded from its own events through the state machine (an event the machine
  refuses on replay is listed in :attr:`DialogueStore.rejected`, never applied);
* what the gatekeeper wrote about escalations (opened, approved, denied, re-decided), so the
  service knows which decisions it still has to forward;
* what spot selection and the console need: the agents, each session's observations, the trust
  tiers over time, the epochs and the granted actions (:class:`~thirdway.dialogue.spot.SpotFeed`);
* appeals recorded by the trust layer (``appeal:<sanction id>``), and which log entries trust
  events already cite, so evidence is recorded once.

Nothing here writes: :class:`~thirdway.dialogue.service.DialogueService` appends and refreshes.
This fold is the only copy of the dialogues there is, also with several gateway workers on one
PostgreSQL log: each worker's store folds every worker's events (new ones in one read).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from thirdway.dialogue.errors import DialogueError, TransitionRefused, one_line
from thirdway.dialogue.machine import apply
from thirdway.dialogue.model import Dialogue, EventEnvelope
from thirdway.dialogue.spot import Candidate, SpotFeed
from thirdway.errors import LogError
from thirdway.ledger.log import TransparencyLog
from thirdway.protocol.models import LogEntry, Observation, Proposal, TrustEvent, Verdict
from thirdway.trust.rules import Context

GATE_EVENTS = frozenset({"escalation", "approval", "denial"})
"""The gatekeeper's own ``dialogue`` events."""


@dataclass
class EscalationRef:
    """A gatekeeper escalation: where its proposal, verdict and decision are in the log."""

    handle: str
    index: int
    session: str
    agent: str
    proposal_index: int
    verdict_index: int
    decision_index: int
    approvals: list[str] = field(default_factory=list)
    denied_by: str | None = None
    final: str | None = None
    """The gatekeeper's last re-decision outcome once it is no longer ``needs_dialogue``
    (``error``: it refused to decide, e.g. the verdict cites an earlier charter)."""
    capability_index: int | None = None
    refusal: str | None = None
    """Why the gatekeeper refused to decide (``final == "error"``), as it logged it."""


@dataclass(frozen=True)
class AppealRef:
    index: int
    agent: str
    sanction: str
    dialogue: str
    at: int
    reason: str


@dataclass(frozen=True)
class TierPoint:
    """One trust event's effect on an agent's tier, for the tier-over-time chart."""

    index: int
    at: int
    kind: str
    tier: int


@dataclass(frozen=True)
class Rejected:
    index: int
    handle: str
    reason: str


class DialogueStore:
    """The log, folded into dialogue state (see the module docstring). Thread-safe."""

    def __init__(self, log: TransparencyLog, ctx: Context) -> None:
        self.log = log
        self.ctx = ctx
        self.feed = SpotFeed(ctx)
        self.dialogues: dict[str, Dialogue] = {}
        self.escalations: dict[str, EscalationRef] = {}
        self.appeals: dict[str, AppealRef] = {}
        self.agents: set[str] = set()
        self.sessions: dict[str, list[int]] = {}
        self.candidates: list[Candidate] = []
        self.rejected: list[Rejected] = []
        self.cited_by_trust: set[int] = set()
        self.tiers: dict[str, list[TierPoint]] = {}
        self.size = 0
        self._releasing: dict[int, EscalationRef] = {}
        self._lock = threading.RLock()

    # ------------------------------------------------------------------ folding

    def refresh(self) -> int:
        """Fold the entries appended since the last refresh; returns the new size.

        The log's size is read before taking the store's lock: reading it waits while a
        commit is being made durable, and holding the lock meanwhile would queue every other
        reader behind that one commit. Each caller still folds at least every entry that was
        in the log when it called (a caller that finds the store already further is done)."""
        size = self.log.size()
        with self._lock:
            if size <= self.size:
                return self.size
            for index, raw in self.log.entries_between(self.size, size):
                if index != self.size:
                    raise LogError(f"log entry {self.size} is missing")
                self._fold(index, self._parse(index, raw))
                self.size = index + 1
            return self.size

    def tier(self, agent: str) -> int:
        """The agent's tier as every trust entry in the log when this is called makes it."""
        self.refresh()
        with self._lock:
            return self.feed.tier(agent)

    @staticmethod
    def _parse(index: int, raw: bytes) -> LogEntry:
        try:
            return LogEntry.model_validate_json(raw)
        except ValidationError as exc:
            raise LogError(f"log entry {index}: {one_line(exc, 'thirdway/1 log entry')}") from None

    def _fold(self, index: int, entry: LogEntry) -> None:
        candidate = self.feed.feed(index, entry)
        if candidate is not None and candidate.epoch is not None:
            # Outside a spot-audit epoch nothing is selected (the service skips such
            # candidates), so they are not queued: with no auditor asking, the queue is only
            # emptied when something syncs, and it grew by every granted action.
            self.candidates.append(candidate)
        payload = entry.payload
        if entry.type == "observation":
            self._observation(index, entry)
        elif entry.type == "trust":
            self._trust(index, entry)
        elif entry.type == "decision" and isinstance(payload.get("handle"), str):
            self._redecision(index, payload)
        elif entry.type == "capability":
            self._capability(index, payload)
        elif entry.type == "dialogue":
            if payload.get("event") in GATE_EVENTS:
                self._gate_event(index, entry)
            else:
                self._dialogue_event(index, payload)

    def _observation(self, index: int, entry: LogEntry) -> None:
        session, position = entry.payload.get("session"), entry.payload.get("index")
        if entry.agent is not None:
            self.agents.add(entry.agent)
        if isinstance(session, str) and isinstance(position, int):
            indices = self.sessions.setdefault(session, [])
            if position == len(indices):
                indices.append(index)

    def _trust(self, index: int, entry: LogEntry) -> None:
        try:
            event = TrustEvent.model_validate(entry.payload)
        except ValidationError:
            return  # the feed has listed it as a problem
        self.cited_by_trust.update(event.evidence)
        tier = self.feed.tier(event.agent)
        self.tiers.setdefault(event.agent, []).append(
            TierPoint(index, event.at or 0, event.kind, tier)
        )
        outcome = event.detail.get("outcome")
        if event.kind == "appeal" and isinstance(outcome, Mapping):
            dialogue = outcome.get("dialogue")
            sanction = event.detail.get("sanction")
            if isinstance(dialogue, str) and isinstance(sanction, str):
                self.appeals[dialogue] = AppealRef(
                    index, event.agent, sanction, dialogue, event.at or 0, event.reason
                )

    def _gate_event(self, index: int, entry: LogEntry) -> None:
        payload = entry.payload
        handle = payload.get("handle")
        if not isinstance(handle, str):
            return
        event = payload.get("event")
        if event == "escalation":
            try:
                self.escalations[handle] = EscalationRef(
                    handle=handle,
                    index=index,
                    session=str(entry.session),
                    agent=str(entry.agent),
                    proposal_index=_int(payload["proposal_index"]),
                    verdict_index=_int(payload["verdict_index"]),
                    decision_index=_int(payload["decision_index"]),
                )
            except (KeyError, TypeError):
                self.rejected.append(Rejected(index, handle, "malformed escalation entry"))
            return
        ref = self.escalations.get(handle)
        if ref is None:
            return
        if event == "approval":
            ref.approvals.append(str(payload.get("auditor")))
        elif event == "denial":
            ref.denied_by = str(payload.get("auditor"))

    def _redecision(self, index: int, payload: Mapping[str, Any]) -> None:
        ref = self.escalations.get(str(payload["handle"]))
        decision = payload.get("decision")
        if ref is None:
            return
        if not isinstance(decision, Mapping):
            ref.final = "error"
            ref.refusal = str(payload.get("error"))[:4000]
        elif decision.get("outcome") != "needs_dialogue":
            ref.final = str(decision.get("outcome"))
            if ref.final == "allow":
                self._releasing[index] = ref

    def _capability(self, index: int, payload: Mapping[str, Any]) -> None:
        ref = self._releasing.pop(payload.get("decision_index"), None)  # type: ignore[arg-type]
        if ref is not None:
            ref.capability_index = index

    def _dialogue_event(self, index: int, payload: Mapping[str, Any]) -> None:
        handle = str(payload.get("handle"))
        try:
            event = EventEnvelope.model_validate({"item": payload}).item
        except ValidationError as exc:
            self.rejected.append(Rejected(index, handle, one_line(exc, "dialogue event")))
            return
        try:
            self.dialogues[handle] = apply(self.dialogues.get(handle), event, index=index)
        except TransitionRefused as exc:
            self.rejected.append(Rejected(index, handle, str(exc)))

    # ------------------------------------------------------------------ reading

    def dialogue(self, handle: str) -> Dialogue:
        with self._lock:
            found = self.dialogues.get(handle) if isinstance(handle, str) else None
        if found is None:
            raise DialogueError(f"no dialogue {str(handle)[:80]!r}")
        return found

    def raw(self, index: int) -> Mapping[str, Any]:
        """The payload of entry ``index`` (read from the log, not cached)."""
        data: dict[str, Any] = json.loads(self.log.entry(index))
        payload = data.get("payload")
        if not isinstance(payload, dict):
            raise LogError(f"log entry {index} has no payload")
        return payload

    def proposal(self, index: int) -> tuple[Proposal, int]:
        """The proposal logged at ``index`` and how many observations preceded it."""
        payload = self.raw(index)
        try:
            return Proposal.model_validate(payload["proposal"]), int(payload["recorded_before"])
        except (KeyError, TypeError, ValueError, ValidationError):
            raise LogError(f"log entry {index} is not a proposal entry") from None

    def verdict(self, index: int) -> Verdict | None:
        """The verdict logged at ``index`` (``None`` when the verifier gave none)."""
        payload = self.raw(index)
        if "verdict" not in payload:
            return None
        try:
            return Verdict.model_validate(payload["verdict"])
        except ValidationError:
            raise LogError(f"log entry {index} is not a verdict entry") from None

    def observations(self, session: str, before: int | None = None) -> list[Observation]:
        """The session's observations (the first ``before`` of them), as the gateway recorded."""
        with self._lock:
            indices = list(self.sessions.get(session, ()))
        if before is not None:
            indices = indices[:before]
        return [Observation.model_validate(self.raw(i)) for i in indices]

    def take_candidates(self) -> list[Candidate]:
        """Granted actions folded since the last call, during a spot-audit epoch (each is
        returned once)."""
        with self._lock:
            taken, self.candidates = self.candidates, []
            return taken


def _int(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"expected a log index, got {value!r}")
    return value
