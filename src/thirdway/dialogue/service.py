"""The dialogue service: opens dialogues, records challenges, answers and decisions, forwards
decisions to the gatekeeper, and records what they mean for the agent's trust.

Everything it knows is in the log (:class:`~thirdway.dialogue.store.DialogueStore` folds it);
everything it does is an append followed by a refresh. :meth:`DialogueService.sync` does the
work nobody asks for explicitly, idempotently, so a restarted service (or one that another
process's CLI wrote to) catches up:

1. open a dialogue for every gatekeeper escalation and every appeal not yet in one;
2. spot-select the actions granted during an epoch whose secret this service holds;
3. expire dialogues past their deadline;
4. let the automatic auditor approve what it may;
5. record trust evidence: each answer (a passed or failed dialogue probe, or a sanction if the
   answer's own chain lies), each human decision on an action (an override), each appeal
   decision (a reversal or a rejection) — once, citing the entry it rests on;
6. forward recorded decisions on escalations to the gatekeeper, which releases or refuses the
   capability; the outcome is held for the agent (:meth:`DialogueService.resolution`).

Several gateway workers on one PostgreSQL log: there is no dialogue table; every worker's
service folds the dialogue events all workers appended (the log is the one copy). Each event is
decided on the store's state, so over a log several processes append to, the service writes
through the gatekeeper with a check that runs under the sequencer lock and refuses the event if
another writer logged an event of the same dialogue (or, for a trust event, about the same
agent) since the store last folded (:class:`DialogueMoved`). :meth:`DialogueService.sync` then
stops and picks the work up again on its next run, on the new state; a person's action gets
the error and retries. So two workers never both open, approve or expire the same dialogue, nor
record the same trust evidence twice.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Literal

from pydantic import ValidationError

from thirdway.charter.enforce import OVERRIDE_CLAUSE, CharterViolation
from thirdway.dialogue.answers import Answer, AnswerCheck, check_answer
from thirdway.dialogue.auditors import AuditorRegistry
from thirdway.dialogue.challenges import Challenge, check_against_record
from thirdway.dialogue.errors import DialogueError, TransitionRefused, one_line
from thirdway.dialogue.machine import Event, apply, refusal
from thirdway.dialogue.model import (
    SYSTEM,
    AnswerEvent,
    ApproveEvent,
    ChallengeEvent,
    DenyEvent,
    Dialogue,
    ExpireEvent,
    OpenEvent,
    Turn,
    Vote,
)
from thirdway.dialogue.sink import Append, EscalationSink, gatekeeper_appender
from thirdway.dialogue.spot import (
    EpochKeeper,
    EpochReport,
    end_entry,
    is_selected,
    start_entry,
    verify_epochs,
)
from thirdway.dialogue.store import AppealRef, DialogueStore, EscalationRef, TierPoint
from thirdway.errors import InputError, ThirdwayError
from thirdway.ledger.log import TransparencyLog
from thirdway.protocol.manifest import ManifestSet
from thirdway.protocol.models import LogEntry, Observation, Proposal, TrustEvent, Verdict
from thirdway.trust import actions
from thirdway.trust.config import load_context
from thirdway.trust.model import TrustState
from thirdway.trust.rules import Context, record_probe, sanction_for_findings
from thirdway.verify import VerifyPolicy

DEFAULT_TTL_SECONDS: Final = 24 * 3600
EXPIRY_ACTOR: Final = "dialogue-expiry"
"""The id the service uses to tell the gatekeeper that an escalation expired undecided."""
MAX_ANSWER_BYTES: Final = 1 << 20

Status = Literal["pending", "granted", "denied", "expired", "approved"]
Check = Callable[[int], None]
"""Called with a batch's first index under the log's sequencer lock; raises to keep it out."""
CheckedAppend = Callable[[Sequence[LogEntry], Check], range]


class DialogueMoved(DialogueError):
    """Another process logged an event of this dialogue (or a trust event about its agent)
    after this service last folded the log: nothing was recorded; look again and retry."""


@dataclass(frozen=True)
class Resolution:
    """What the agent learns about its dialogue: still ``pending`` (and why), ``granted`` (with
    the capability token, held only in this process's memory), ``denied`` or ``expired`` (with
    the reason), or ``approved`` without a token here (a cleared spot audit, a granted appeal,
    or a capability minted by another process)."""

    status: Status
    reason: str
    token: str | None = field(default=None, repr=False)
    capability_index: int | None = None


@dataclass(frozen=True)
class Review:
    """Everything an auditor sees about one dialogue."""

    dialogue: Dialogue
    proposal: Proposal | None
    recorded_before: int | None
    verdict: Verdict | None
    observations: list[Observation]
    decision: Mapping[str, Any] | None
    trust: TrustState
    tiers: list[TierPoint]
    escalation: EscalationRef | None
    appeal: AppealRef | None
    forward_error: str | None


class DialogueService:
    """Continuous verification dialogues over one transparency log (see the module docstring).

    ``append`` writes to the log (default: straight to ``log``; with a gatekeeper use
    :meth:`for_gatekeeper`, which appends through the gatekeeper's writer); ``sink`` receives
    decided escalations; ``epochs`` holds spot-audit secrets.

    The *primary* service (by default, the one holding the ``sink``: the gateway process) does
    all of :meth:`sync`. A secondary one (the CLI, a second console) only opens dialogues, expires
    them and records its users' own challenges, answers and decisions; the primary picks those up
    from the log, so trust evidence and forwarding happen once. A ``read_only`` service only
    reads (``thirdway audit list`` and ``show``). Thread-safe."""

    def __init__(
        self,
        log: TransparencyLog,
        *,
        append: Append | None = None,
        sink: EscalationSink | None = None,
        ctx: Context | None = None,
        auditors: AuditorRegistry | None = None,
        manifests: ManifestSet | None = None,
        verify_policy: VerifyPolicy | None = None,
        epochs: EpochKeeper | None = None,
        clock: Callable[[], float] = time.time,
        ttl_seconds: int = DEFAULT_TTL_SECONDS,
        primary: bool | None = None,
        read_only: bool = False,
        checked_append: CheckedAppend | None = None,
    ) -> None:
        if isinstance(ttl_seconds, bool) or not isinstance(ttl_seconds, int) or ttl_seconds < 1:
            raise InputError("a dialogue's time to live is a positive number of seconds")
        self.log = log
        self.ctx = ctx or load_context()
        self.store = DialogueStore(log, self.ctx)
        self.auditors = auditors or AuditorRegistry()
        self.manifests = manifests or ManifestSet()
        self.verify_policy = verify_policy
        self.epochs = epochs
        self.sink = sink
        self.clock = clock
        self.ttl_seconds = ttl_seconds
        self.primary = sink is not None if primary is None else primary
        self.read_only = read_only
        self._append: Append = append or _direct_appender(log)
        self._checked = checked_append if getattr(log, "sequenced", False) else None
        self._lock = threading.RLock()
        self._delivered: dict[str, Resolution] = {}
        self._forward_errors: dict[str, str] = {}
        self._failed: set[tuple[str, str, str]] = set()
        self.sync()

    @classmethod
    def for_gatekeeper(cls, gate: Any, **options: Any) -> DialogueService:
        """A service over ``gate``'s log, appending through its writer, forwarding to it, with
        its manifests and (unless given) its auditors and m-of-n."""
        options.setdefault("manifests", gate.manifests)
        if "auditors" not in options:
            options["auditors"] = AuditorRegistry(
                gate.auditors, critical_approvals=gate.required_approvals
            )
        options.setdefault(
            "checked_append", lambda entries, check: gate.append(entries, check=check)
        )
        return cls(gate.log, append=gatekeeper_appender(gate), sink=gate, **options)

    # ------------------------------------------------------------------ time and appends

    def now(self) -> int:
        return math.floor(self.clock())

    def _write(self, entries: list[LogEntry]) -> range:
        if self.read_only:
            raise DialogueError("this dialogue service is read-only; nothing was recorded")
        if self._checked is None:
            written = self._append(entries)
        else:
            try:
                written = self._checked(entries, self._unmoved(entries, self.store.size))
            except DialogueMoved:
                self.store.refresh()
                raise
        self.store.refresh()
        return written

    @staticmethod
    def _keys(log_entry: LogEntry) -> set[tuple[str, str]]:
        """What an entry's decision rests on: its dialogue, or the agent of a trust event."""
        if log_entry.type == "dialogue" and isinstance(log_entry.payload.get("handle"), str):
            return {("dialogue", str(log_entry.payload["handle"]))}
        if log_entry.type == "trust" and log_entry.agent is not None:
            return {("trust", log_entry.agent)}
        return set()

    def _unmoved(self, entries: Sequence[LogEntry], since: int) -> Check:
        """The writer check for ``entries`` decided on the store as of ``since``."""
        keys = set().union(*(self._keys(entry) for entry in entries)) if entries else set()

        def check(first: int) -> None:
            if not keys:
                return
            for index, data in self.log.entries_between(since, first):
                if b'"dialogue"' not in data and b'"trust"' not in data:
                    continue
                try:
                    found = self._keys(LogEntry.model_validate_json(data))
                except ValidationError:
                    continue  # the store lists it as a problem when it folds it
                if found & keys:
                    what, name = sorted(found & keys)[0]
                    raise DialogueMoved(
                        f"another process logged a {what} entry for {name!r} (log entry "
                        f"{index}) after this one looked; nothing was recorded, retry"
                    )

        return check

    def _record(self, dialogue: Dialogue | None, event: Event) -> Dialogue:
        """Check ``event`` with the state machine, log it, and return the dialogue after it."""
        apply(dialogue, event)  # raises TransitionRefused: nothing is logged
        session = dialogue.session if dialogue else getattr(event, "session", None)
        agent = dialogue.agent if dialogue else getattr(event, "agent", None)
        entry = LogEntry(
            type="dialogue",
            session=session,
            agent=agent,
            payload=event.model_dump(mode="json", by_alias=True, exclude_none=True),
        )
        self._write([entry])
        return self.store.dialogue(event.handle)

    def _at(self, dialogue: Dialogue) -> int:
        return max(self.now(), dialogue.last_at)

    # ------------------------------------------------------------------ reading

    def dialogues(self, *, open_only: bool = False) -> list[Dialogue]:
        """Every dialogue (or the open ones), oldest first."""
        with self._lock:
            self.sync()
            found = list(self.store.dialogues.values())
        found.sort(key=lambda d: (d.opened_at, d.id))
        return [d for d in found if d.open] if open_only else found

    def dialogue(self, handle: str) -> Dialogue:
        with self._lock:
            self.sync()
            return self.store.dialogue(handle)

    def review(self, handle: str) -> Review:
        """The dialogue with its proposal, verdict, the session's record and the agent's trust."""
        with self._lock:
            dialogue = self.dialogue(handle)
            proposal, before, verdict, decision = self._subject(dialogue)
            observations = (
                self.store.observations(dialogue.session, before)
                if dialogue.session is not None
                else []
            )
            return Review(
                dialogue=dialogue,
                proposal=proposal,
                recorded_before=before,
                verdict=verdict,
                observations=observations,
                decision=decision,
                trust=self.store.feed.trust_state(dialogue.agent),
                tiers=list(self.store.tiers.get(dialogue.agent, ())),
                escalation=self.store.escalations.get(handle),
                appeal=self.store.appeals.get(handle),
                forward_error=self._forward_errors.get(handle),
            )

    def _subject(
        self, dialogue: Dialogue
    ) -> tuple[Proposal | None, int | None, Verdict | None, Mapping[str, Any] | None]:
        if dialogue.proposal_index is None:
            return None, None, None, None
        proposal, before = self.store.proposal(dialogue.proposal_index)
        verdict = self.store.verdict(dialogue.proposal_index + 1)
        ref = self.store.escalations.get(dialogue.id)
        decision_at = ref.decision_index if ref else dialogue.proposal_index + 2
        raw = self.store.raw(decision_at)
        decision = raw.get("decision") if isinstance(raw.get("decision"), Mapping) else None
        return proposal, before, verdict, decision

    def tier(self, agent: str) -> int:
        """The agent's trust tier as the log's trust events make it (a ``TierSource``).

        Asked on every proposal, so it takes only the store's lock, not the service's: a
        ``sync`` in progress (which holds the service's lock across its appends) must not stall
        every gated action, and the store folds whatever the log holds when this is called,
        trust events of other components and processes included."""
        return self.store.tier(agent)

    def trust(self, agent: str) -> tuple[TrustState, list[TierPoint]]:
        """The agent's trust state and its tier after each trust event, from the log."""
        with self._lock:
            self.sync()
            return (
                self.store.feed.trust_state(agent),
                list(self.store.tiers.get(agent, ())),
            )

    def agents(self) -> list[str]:
        with self._lock:
            self.store.refresh()
            return sorted(self.store.agents | set(self.store.feed.trust))

    # ------------------------------------------------------------------ auditors

    def challenge(self, handle: str, auditor: str, challenge: Challenge) -> Dialogue:
        """Ask the agent ``challenge``."""
        with self._lock:
            dialogue = self.dialogue(handle)
            auditor = self.auditors.check(auditor, self.store.agents)
            if not isinstance(challenge, Challenge):
                raise InputError("a challenge must be a Challenge (see make_challenge)")
            self._check_challenge(dialogue, challenge)
            event = ChallengeEvent(
                handle=handle, at=self._at(dialogue), actor=auditor, challenge=challenge
            )
            return self._record(dialogue, event)

    def _check_challenge(self, dialogue: Dialogue, challenge: Challenge) -> None:
        if challenge.obs is None:
            return
        if dialogue.proposal_index is None or dialogue.session is None:
            raise DialogueError("this dialogue reviews no proposal; a counterfactual needs one")
        _, before = self.store.proposal(dialogue.proposal_index)
        check_against_record(challenge, self.store.observations(dialogue.session), before)

    def approve(self, handle: str, auditor: str, reason: str) -> Dialogue:
        """One auditor's approval; enough of them approve the dialogue (m of n)."""
        return self._decide(handle, auditor, reason, approve=True)

    def deny(self, handle: str, auditor: str, reason: str) -> Dialogue:
        """An auditor's denial: the dialogue closes as denied."""
        return self._decide(handle, auditor, reason, approve=False)

    def _decide(self, handle: str, auditor: str, reason: str, *, approve: bool) -> Dialogue:
        with self._lock:
            dialogue = self.dialogue(handle)
            auditor = self.auditors.check(auditor, self.store.agents)
            if not isinstance(reason, str) or not reason.strip():
                raise DialogueError("an auditor cannot approve or deny without a reason")
            at = self._at(dialogue)
            event: ApproveEvent | DenyEvent
            try:
                if approve:
                    event = ApproveEvent(handle=handle, at=at, actor=auditor, reason=reason)
                else:
                    event = DenyEvent(handle=handle, at=at, actor=auditor, reason=reason)
            except ValidationError as exc:
                raise DialogueError(one_line(exc, "decision")) from None
            after = apply(dialogue, event)
            if after.kind == "appeal" and not after.open:
                self._appeal_decision(after, Vote(auditor=auditor, reason=reason, at=at), ())
            self._record(dialogue, event)
            self.sync()
            return self.store.dialogue(handle)

    # ------------------------------------------------------------------ the agent

    def pending(self, agent: str) -> list[tuple[Dialogue, Turn]]:
        """The challenges waiting for ``agent``'s answer."""
        with self._lock:
            self.sync()
            return [
                (d, d.pending_turn)
                for d in self.store.dialogues.values()
                if d.agent == agent and d.pending_turn is not None
            ]

    def answer(
        self, handle: str, agent: str, answer: Answer | Mapping[str, Any] | str | bytes
    ) -> Dialogue:
        """The agent answers its pending challenge; the answer is verified and compared."""
        parsed = parse_answer(answer)
        with self._lock:
            dialogue = self.dialogue(handle)
            turn = dialogue.pending_turn
            # The fields refusal() reads; answer and verdict come after the verification.
            probe = AnswerEvent.model_construct(  # type: ignore[call-arg]
                handle=handle,
                at=self._at(dialogue),
                actor=agent,
                challenge=turn.number if turn else 1,
            )
            reason = refusal(dialogue, probe)
            if reason is not None:  # checked before the (costlier) verification
                raise TransitionRefused(dialogue.state, "answer", reason)
            assert turn is not None
            checked = self._check_answer(dialogue, turn.challenge, parsed)
            event = AnswerEvent(
                handle=handle,
                at=self._at(dialogue),
                actor=agent,
                challenge=turn.number,
                answer=parsed,
                verdict=checked.verdict,
                findings=list(checked.findings),
            )
            self._record(dialogue, event)
            self.sync()
            return self.store.dialogue(handle)

    def _check_answer(
        self, dialogue: Dialogue, challenge: Challenge, answer: Answer
    ) -> AnswerCheck:
        if dialogue.proposal_index is None or dialogue.session is None:
            raise DialogueError("this dialogue reviews no proposal, so answers cannot be checked")
        proposal, before = self.store.proposal(dialogue.proposal_index)
        verdict = self.store.verdict(dialogue.proposal_index + 1)
        return check_answer(
            challenge,
            answer,
            proposal,
            verdict,
            self.store.observations(dialogue.session),
            recorded_before=before,
            manifests=self.manifests,
            policy=self.verify_policy,
            charter_sha256=self.ctx.charter_sha256,
        )

    def resolution(self, handle: str, agent: str) -> Resolution:
        """What ``agent`` learns about its dialogue ``handle`` (see :class:`Resolution`)."""
        with self._lock:
            dialogue = self.dialogue(handle)
            if dialogue.agent != agent:
                raise DialogueError(f"dialogue {handle!r} belongs to another agent")
            delivered = self._delivered.get(handle)
            if delivered is not None:
                return delivered
            return self._resolution(dialogue)

    def _resolution(self, dialogue: Dialogue) -> Resolution:
        if dialogue.state == "denied" and dialogue.denial is not None:
            vote = dialogue.denial
            return Resolution(
                "denied", f"auditor {vote.auditor!r} denied the action: {vote.reason}"
            )
        if dialogue.state == "expired":
            return Resolution("expired", "no auditor decided before the dialogue's deadline")
        if dialogue.state == "approved":
            ref = self.store.escalations.get(dialogue.id)
            if ref is not None and ref.final == "deny":
                return Resolution("denied", "approved, but the gatekeeper's policy denied it")
            if ref is not None and ref.final == "error":
                return Resolution("denied", f"approved, but the gatekeeper refused: {ref.refusal}")
            if ref is not None and ref.capability_index is not None:
                return Resolution(
                    "approved",
                    f"approved; the capability (log entry {ref.capability_index}) went to the "
                    "process holding the gatekeeper",
                    capability_index=ref.capability_index,
                )
            return Resolution("approved", "approved; no capability for this action is held here")
        turn = dialogue.pending_turn
        if turn is not None:
            return Resolution("pending", f"challenge {turn.number} waits for your answer")
        return Resolution(
            "pending",
            f"{len(dialogue.approvals)} of {dialogue.required_approvals} required auditor "
            "approvals so far",
        )

    # ------------------------------------------------------------------ spot-audit epochs

    def start_epoch(self) -> str:
        """Start a spot-audit epoch: a fresh secret, its SHA-256 committed to the log."""
        with self._lock:
            keeper = self._keeper()
            self.sync()
            active = self.store.feed.active
            if active is not None:
                raise DialogueError(f"epoch {active.id} is still open; end it first")
            epoch, secret = keeper.create()
            self._write([start_entry(epoch, secret, self.ctx.tiers, self.now())])
            return epoch

    def end_epoch(self) -> EpochReport:
        """End the open epoch: reveal its secret, finish its selections, verify it."""
        with self._lock:
            keeper = self._keeper()
            self.sync()
            active = self.store.feed.active
            if active is None:
                raise DialogueError("no spot-audit epoch is open")
            secret = keeper.secret(active.id)
            if secret is None:
                raise DialogueError(f"this gateway does not hold the secret of {active.id}")
            self._write([end_entry(active.id, secret, self.now())])
            self.sync()
            reports = [r for r in self.verify_epochs() if r.epoch == active.id]
            return reports[0]

    def verify_epochs(self) -> list[EpochReport]:
        """:func:`~thirdway.dialogue.spot.verify_epochs` over this log."""
        return verify_epochs(_log_entries(self.log), self.ctx)

    def _keeper(self) -> EpochKeeper:
        if self.epochs is None:
            raise DialogueError("this dialogue service keeps no epoch secrets (no epochs folder)")
        return self.epochs

    # ------------------------------------------------------------------ sync

    def sync(self) -> None:
        """Catch up with the log and do what it calls for (see the module docstring)."""
        with self._lock:
            self.store.refresh()
            if self.read_only:
                return
            try:
                self._sync_steps()
            except DialogueMoved:
                return  # another worker got there first: the next sync starts from its events

    def _sync_steps(self) -> None:
        self._open_escalations()
        self._open_appeals()
        self._expire_due()
        if not self.primary:
            return
        self._select_spots()
        self._auto_approve()
        self._record_evidence()
        if self.sink is not None:
            self._forward()

    def _open(self, **fields: Any) -> None:
        now = self.now()
        event = OpenEvent(at=now, actor=SYSTEM, expires_at=now + self.ttl_seconds, **fields)
        self._record(None, event)

    def _open_escalations(self) -> None:
        for ref in list(self.store.escalations.values()):
            if ref.handle in self.store.dialogues or ref.final or ref.denied_by:
                continue
            raw = self.store.raw(ref.decision_index).get("decision")
            request = raw.get("request", {}) if isinstance(raw, Mapping) else {}
            risk = request.get("risk")
            required = request.get("required_approvals", 1) if risk == "critical" else 1
            self._open(
                handle=ref.handle,
                kind="escalation",
                agent=ref.agent,
                session=ref.session,
                proposal_index=ref.proposal_index,
                source_index=ref.index,
                tool=request.get("tool"),
                risk=risk,
                required_approvals=required,
                reason=_escalation_reason(raw),
            )

    def _open_appeals(self) -> None:
        for appeal in list(self.store.appeals.values()):
            if appeal.dialogue in self.store.dialogues:
                continue
            state = self.store.feed.trust_state(appeal.agent)
            offence = state.offence(appeal.sanction)
            subject = self._appealed_proposal(offence.evidence if offence else ())
            self._open(
                handle=appeal.dialogue,
                kind="appeal",
                agent=appeal.agent,
                session=subject[1] if subject else None,
                proposal_index=subject[0] if subject else None,
                source_index=appeal.index,
                sanction=appeal.sanction,
                reason=f"appeal of sanction {appeal.sanction[:16]}…: {appeal.reason}"[:4000],
            )

    def _appealed_proposal(self, evidence: tuple[int, ...]) -> tuple[int, str] | None:
        """The proposal among a sanction's evidence, if it is one the store can read."""
        for index in evidence:
            if index < self.store.size:
                try:
                    proposal, _ = self.store.proposal(index)
                except ThirdwayError:
                    continue
                return index, proposal.session
        return None

    def _select_spots(self) -> None:
        for candidate in self.store.take_candidates():
            handle = f"spot:{candidate.proposal_index}"
            if candidate.epoch is None or handle in self.store.dialogues:
                continue
            epoch = self.store.feed.epochs[candidate.epoch]
            secret = epoch.secret or (self.epochs.secret(epoch.id) if self.epochs else None)
            if secret is None:
                continue  # another process holds this epoch's secret and does its selections
            if not is_selected(secret, candidate.proposal_sha256, epoch.rate(candidate.tier)):
                continue
            self._open(
                handle=handle,
                kind="spot",
                agent=candidate.agent,
                session=candidate.session,
                proposal_index=candidate.proposal_index,
                source_index=candidate.decision_index,
                epoch=epoch.id,
                proposal_sha256=candidate.proposal_sha256,
                reason=f"spot audit selected by {epoch.id} at tier {candidate.tier}",
            )

    def _expire_due(self) -> None:
        now = self.now()
        for dialogue in list(self.store.dialogues.values()):
            if dialogue.open and now >= dialogue.expires_at:
                event = ExpireEvent(
                    handle=dialogue.id,
                    at=max(now, dialogue.last_at),
                    actor=SYSTEM,
                    reason="no auditor decided before the deadline",
                )
                self._record(dialogue, event)

    def _auto_approve(self) -> None:
        auto = self.auditors.auto
        if not auto.enabled or auto.id in self.store.agents:
            return
        for dialogue in list(self.store.dialogues.values()):
            if dialogue.kind != "escalation" or dialogue.state != "opened":
                continue
            ref = self.store.escalations.get(dialogue.id)
            verdict = self.store.verdict(ref.verdict_index) if ref else None
            reason = self.auditors.auto_reason(dialogue, verdict)
            if reason is not None:
                event = ApproveEvent(
                    handle=dialogue.id, at=self._at(dialogue), actor=auto.id, reason=reason
                )
                self._record(dialogue, event)

    # ------------------------------------------------------------------ trust evidence

    def _record_evidence(self) -> None:
        for dialogue in list(self.store.dialogues.values()):
            for turn in dialogue.turns:
                if (
                    turn.answer_index is not None
                    and turn.answer_index not in self.store.cited_by_trust
                ):
                    self._answer_evidence(dialogue, turn)
            vote = _deciding_vote(dialogue)
            if vote is None or vote.index is None or vote.index in self.store.cited_by_trust:
                continue
            if vote.auditor == self.auditors.auto.id:
                continue  # not a person's judgement of the agent
            if dialogue.kind == "appeal":
                event = self._appeal_decision(dialogue, vote, (vote.index,))
            else:
                event = actions.override(
                    self.store.feed.trust_state(dialogue.agent),
                    auditor=vote.auditor,
                    decision="approve" if dialogue.state == "approved" else "deny",
                    rule=OVERRIDE_CLAUSE,
                    evidence=[vote.index],
                    reason=vote.reason,
                    at=self._trust_at(dialogue.agent),
                    ctx=self.ctx,
                )
            self._write_trust(event)

    def _answer_evidence(self, dialogue: Dialogue, turn: Turn) -> None:
        assert turn.answer_index is not None
        state = self.store.feed.trust_state(dialogue.agent)
        at = self._trust_at(dialogue.agent)
        evidence = [turn.answer_index]
        findings = turn.verdict.findings if turn.verdict is not None else []
        event: TrustEvent | None = None
        if any(f.severity == "deception" for f in findings):
            event = sanction_for_findings(state, findings, evidence=evidence, at=at, ctx=self.ctx)
        else:
            inconsistent = sorted(f.code for f in turn.findings if f.code in _INCONSISTENT)
            probe = f"dialogue.{turn.challenge.kind}"
            if inconsistent:
                probe = f"dialogue.{inconsistent[0]}"
            complete = not any(f.severity == "incomplete" for f in (*findings, *turn.findings))
            if inconsistent or complete:
                event = record_probe(
                    state, probe=probe, passed=not inconsistent, evidence=evidence, at=at,
                    ctx=self.ctx,
                )  # fmt: skip
        if event is not None:
            self._write_trust(event)

    def _appeal_decision(
        self, dialogue: Dialogue, vote: Vote, extra: tuple[int, ...]
    ) -> TrustEvent:
        """The reversal or rejection an appeal decision means; raises what the charter refuses
        (checked before the decision is logged, with the evidence known so far)."""
        appeal = self.store.appeals.get(dialogue.id)
        if appeal is None or dialogue.sanction is None:
            raise DialogueError(f"dialogue {dialogue.id!r} has no appeal in the log")
        action = actions.reverse if dialogue.state == "approved" else actions.reject_appeal
        try:
            return action(
                self.store.feed.trust_state(dialogue.agent),
                auditor=vote.auditor,
                sanction_id=dialogue.sanction,
                evidence=[appeal.index, *extra],
                reason=vote.reason,
                at=self._trust_at(dialogue.agent),
                ctx=self.ctx,
            )
        except CharterViolation as exc:
            raise DialogueError(f"the charter refuses this appeal decision: {exc}") from None

    def _trust_at(self, agent: str) -> int:
        last = self.store.feed.trust_state(agent).last_at
        return max(self.now(), last or 0)

    def _write_trust(self, event: TrustEvent) -> None:
        self._write(
            [
                LogEntry(
                    type="trust",
                    agent=event.agent,
                    payload=event.model_dump(mode="json", by_alias=True),
                )
            ]
        )

    # ------------------------------------------------------------------ forwarding

    def _forward(self) -> None:
        assert self.sink is not None
        for dialogue in list(self.store.dialogues.values()):
            ref = self.store.escalations.get(dialogue.id)
            if dialogue.kind != "escalation" or ref is None or ref.final or ref.denied_by:
                continue
            for vote in dialogue.approvals:
                if vote.auditor not in ref.approvals:
                    self._send(dialogue, "approve", vote.auditor, vote.reason)
            if dialogue.state == "denied" and dialogue.denial is not None:
                self._send(dialogue, "deny", dialogue.denial.auditor, dialogue.denial.reason)
            elif dialogue.state == "expired":
                self._send(dialogue, "deny", EXPIRY_ACTOR, "the dialogue expired undecided")

    def _send(self, dialogue: Dialogue, what: str, auditor: str, reason: str) -> None:
        assert self.sink is not None
        key = (dialogue.id, what, auditor)
        if key in self._failed:
            return
        hook = self.sink.approve_escalation if what == "approve" else self.sink.deny_escalation
        try:
            outcome = hook(dialogue.id, auditor, reason)
        except ThirdwayError as exc:
            self._failed.add(key)
            self._forward_errors[dialogue.id] = f"the gatekeeper refused the {what}: {exc}"
            return
        finally:
            self.store.refresh()
        self._deliver(dialogue, outcome)

    def _deliver(self, dialogue: Dialogue, outcome: Any) -> None:
        kind = getattr(outcome, "outcome", None)
        if kind == "granted":
            self._delivered[dialogue.id] = Resolution(
                "granted",
                "approved; the capability for exactly this action is released",
                token=outcome.token,
                capability_index=getattr(outcome, "capability_index", None),
            )
        elif kind == "denied":
            status: Status = "expired" if dialogue.state == "expired" else "denied"
            self._delivered[dialogue.id] = Resolution(status, str(outcome.reason))


_INCONSISTENT = frozenset({"goal_mismatch", "counterfactual_inconsistent"})


def _deciding_vote(dialogue: Dialogue) -> Vote | None:
    if dialogue.state == "denied":
        return dialogue.denial
    if dialogue.state == "approved" and dialogue.approvals:
        return dialogue.approvals[-1]
    return None


def _escalation_reason(decision: object) -> str:
    if not isinstance(decision, Mapping):
        return "escalated by the gatekeeper"
    request = decision.get("request", {})
    reasons = ", ".join(str(r) for r in decision.get("reasons", []))
    if isinstance(request, Mapping):
        return (
            f"tier {request.get('tier')} {request.get('risk')} action, verdict "
            f"{request.get('verdict')}: {reasons}"
        )[:4000]
    return reasons[:4000]


def parse_answer(value: Answer | Mapping[str, Any] | str | bytes) -> Answer:
    """An answer from the API, a form or a file, or a one-line error naming the problem."""
    if isinstance(value, Answer):
        return value
    try:
        if isinstance(value, str | bytes):
            if len(value) > MAX_ANSWER_BYTES:
                raise InputError(f"an answer is at most {MAX_ANSWER_BYTES} bytes")
            return Answer.model_validate_json(value)
        if isinstance(value, Mapping):
            return Answer.model_validate(dict(value))
    except ValidationError as exc:
        raise InputError(one_line(exc, "answer")) from None
    raise InputError(f"an answer is a JSON object, not {type(value).__name__}")


def _direct_appender(log: TransparencyLog) -> Append:
    from thirdway.protocol.canonical import canonical_json

    def append(entries: Any) -> range:
        return log.append_batch([canonical_json(entry) for entry in entries])

    return append


def _log_entries(log: TransparencyLog) -> Iterator[tuple[int, LogEntry]]:
    for index in range(log.size()):
        try:
            yield index, LogEntry.model_validate_json(log.entry(index))
        except ValidationError as exc:
            raise InputError(
                f"log entry {index}: {one_line(exc, 'thirdway/1 log entry')}"
            ) from None
