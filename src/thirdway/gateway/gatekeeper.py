"""The in-process Gatekeeper: one action, end to end (DESIGN, "One action, end to end").

::

    open_session ─▶ [observation: principal]
    record_observation / record_tool_result ─▶ [observation: call, data]
    propose ─▶ [proposal, verdict, decision, capability | dialogue] ─▶ Granted | Denied | Escalated
    approve_escalation / deny_escalation ─▶ [dialogue, decision, capability?] ─▶ Granted | …
    execute(token, call) ─▶ token checked for exactly this call and spent ─▶ the tool runs
        ─▶ [observation: call, observation: data (produced_by the call), execution] ─▶ Executed
    act(proposal) ─▶ propose, and when granted execute its action (one session lock) ─▶ Acted

Durability: every decision (a verdict, a token, a denial, an escalation, an auditor's answer)
is durably in the log before it is answered, the entries of one step in one transaction (see
:mod:`thirdway.gateway.writer` for how the proposal's index is known before its token is minted).
Opening a session, recording an observation, recording a tool run and closing a session are
committed without an fsync of their own: they reach the disk with the next synced commit, at the
latest the proposal that is verified against them, so no verdict, token or tool run ever rests
on an entry that is not on the disk. A power cut may
lose such a step after it was answered; on SQLite the next start is then not clean, and its
``restart`` note closes every session that was open, or freezes one with an open escalation
until that is answered (:mod:`thirdway.gateway.restart`), so no agent is ever judged against a
record that lost part of itself. Execution: the token is verified and
spent (atomically, in the spent-set) before the tool runs; the call, its result and the execution
record are written together when the tool returns. A crash in between leaves a spent nonce and
a logged capability without an execution: the action must be proposed again, never run twice.
On SQLite the spend and the execution record are committed without an fsync of their own as
well (they reach the disk with the next synced commit), so a durable action costs one fsync,
the proposal's: a power cut can lose them only as such a crash would, and a gatekeeper reopened
after a stop that was not clean refuses every token minted before and closes the sessions that
were open (:mod:`thirdway.gateway.restart`).

Several workers (PostgreSQL, see :meth:`Gatekeeper.open`): every worker appends to one log, and
the log is the only record of sessions, escalations, trust and dialogues there is. Before it
acts on a session a worker catches up (:meth:`Gatekeeper.catch_up`: it applies what the other
workers appended since it last looked), so a session opened on one worker can be continued on
another and every proposal is verified against the session's whole record. A decision must not
rest on a record that moved meanwhile: under the sequencer lock, just before the step's entries
get their indices, the worker checks that no other worker wrote to that session since its
catch-up; if one did, the attempt fails with :class:`StaleRecordError` and is redone (catch up,
verify again) a few times before the caller gets the error to retry.

Thread safety: sessions are independent; within one session steps run one at a time (a
session lock, held while a tool runs); all appends go through the writer's one lock. Session
state changes only after the append recording the change has returned, so a failed append
leaves memory and log agreeing.
"""

from __future__ import annotations

import itertools
import math
import re
import secrets
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Final, Protocol, TypeVar

import orjson
from pydantic import ValidationError

from thirdway.capability import (
    DEFAULT_TTL_SECONDS,
    CapabilityClaims,
    CapabilityIssuer,
    LockedTool,
    SpentSet,
    SQLiteSpentSet,
    args_sha256,
)
from thirdway.charter import default_charter_sha256
from thirdway.charter.registry import packaged_entry, version_order
from thirdway.errors import (
    CapabilityError,
    GateError,
    InputError,
    LogError,
    QuotaExceeded,
    ThirdwayError,
)
from thirdway.gateway import entries as log_entries
from thirdway.gateway import restart
from thirdway.gateway.entries import entry_bytes, observation_entry, proposal_entry
from thirdway.gateway.hooks import (
    ExecutionListener,
    FixedTier,
    RecordOnlySanctioner,
    Sanctioner,
    StageTimer,
    TierSource,
)
from thirdway.gateway.inputs import (
    amount_of,
    call_input,
    check_reason,
    check_ttl,
    observation,
    proposal_input,
    valid_id,
)
from thirdway.gateway.keys import load_or_create_issuer
from thirdway.gateway.outcomes import (
    Acted,
    Denied,
    Escalated,
    Executed,
    Granted,
    Outcome,
    denial_reason,
    escalation_reason,
    verifier_denial,
)
from thirdway.gateway.sessions import (
    MAX_SESSION_CHARS,
    Escalation,
    Projection,
    Session,
    StaleRecordError,
    State,
    touches_record,
)
from thirdway.gateway.tools import ToolRegistry, render_result
from thirdway.gateway.verifiers import (
    CharterMismatch,
    InProcessVerifier,
    Verifier,
    VerifierResult,
    check_charter_sha256,
    check_verdict_charter,
)
from thirdway.gateway.writer import Check, Item, LogWriter
from thirdway.ledger.log import TransparencyLog
from thirdway.ledger.wal import FALLBACK_PAGES
from thirdway.policy.authorize import (
    AuthorizationDecision,
    AuthorizationRequest,
    Authorizer,
    default_authorizer,
)
from thirdway.protocol.canonical import canonical_sha256
from thirdway.protocol.limits import MAX_CLAIM_CHARS, MAX_OBSERVATIONS
from thirdway.protocol.manifest import ManifestSet, ToolManifest
from thirdway.protocol.models import (
    Channel,
    Finding,
    LogEntry,
    Observation,
    Proposal,
    ToolCall,
    Verdict,
)
from thirdway.protocol.parse import describe
from thirdway.verify import VerifyPolicy, prepare

if TYPE_CHECKING:
    from thirdway.ledger.leader import CheckpointLeader

Clock = Callable[[], float]
T = TypeVar("T")

PROVENANCE_CODES: Final = frozenset(
    {"provenance_violation", "cited_from_instruction", "instruction_from_data"}
)
"""Findings meaning a value did not come from the principal or a source it designated."""
LOGGED_REFUSALS: Final = frozenset(
    {
        "wrong_tool",
        "wrong_args",
        "wrong_agent",
        "wrong_session",
        "expired",
        "spent",
        "voided",
        "unlogged",
    }
)
"""Token refusals worth a log entry: the token is genuine, so someone holding a real capability
tried to use it for another call, elsewhere, late or again. Garbage tokens are refused without
an entry: they say nothing about anyone, and logging them would let anyone grow the log."""
SESSIONS_PER_AGENT: Final = 4096
"""Open sessions one agent may hold at once by default (each costs memory until closed)."""
INTERRUPTED_APPROVAL: Final = (
    "the session was interrupted when the gateway restarted after a stop that was not clean, "
    "so nothing can run in it; the escalation is closed: the agent must propose the action "
    "again in a new session"
)
"""Why an approval in a frozen session (see :mod:`thirdway.gateway.restart`) mints nothing."""
MAX_REASON_CHARS: Final = 4096
STALE_RETRIES: Final = 8
"""How often a step is redone when other workers keep writing to its session meanwhile."""
_READ_CHUNK: Final = 4096
LOG_NAME: Final = "log.db"
KEY_NAME: Final = "capability.key"
LOG_KEY_NAME: Final = "log.key"
"""A PostgreSQL log's checkpoint key, in the shared data folder (:meth:`Gatekeeper.open`)."""


class Closeable(Protocol):
    def close(self) -> None: ...


class _Stopping:
    """Something :meth:`Gatekeeper.close` must stop (the checkpoint leader's thread)."""

    def __init__(self, leader: CheckpointLeader) -> None:
        self._leader = leader

    def close(self) -> None:
        self._leader.stop()


@dataclass(frozen=True)
class _NoVerdict:
    """Why no verdict could be had, and whether proposing again may get one (the verifier
    enclave died or hung: :class:`~thirdway.errors.EnclaveUnavailable` is retryable)."""

    error: str
    retryable: bool = False


@dataclass(frozen=True)
class _Minted:
    token: str
    claims: CapabilityClaims
    nanoseconds: int
    """Time spent minting, reported by the caller's thread (the writer may mint for it)."""


class Gatekeeper:
    """The gate between an agent and its tools (see the module docstring for the flow).

    ``manifests`` plus the hosted ``tools``' own manifests say what every tool risks; the
    ``verifier`` (default: the pure in-process one) must judge with exactly those, and under
    ``charter_sha256`` (the charter the gateway runs under; default: the packaged one): a
    verdict citing another charter, or none, is no verdict (no token). ``charter_version`` is
    that charter's version, needed only for one thirdway never shipped (a shipped one's comes
    from :mod:`thirdway.charter.registry`): charters only move forward, so a gatekeeper refuses
    to open over a log that cites a charter newer than its own, or one it cannot order its own
    after (:func:`_charter_rollback`). ``tiers``
    gives each agent's trust tier (default: 2 for everyone), ``sanctioner`` hears of deception,
    ``auditors`` (when given) are the only ids that may answer escalations, ``timer`` receives
    the time of every stage (for ``thirdway bench gate``), ``on_executed`` hears of every tool that
    ran cleanly (the trust layer's evidence)."""

    def __init__(
        self,
        log: TransparencyLog,
        *,
        issuer: CapabilityIssuer,
        spent_set: SpentSet,
        manifests: ManifestSet | None = None,
        tools: ToolRegistry | None = None,
        verifier: Verifier | None = None,
        verify_policy: VerifyPolicy | None = None,
        charter_sha256: str | None = None,
        charter_version: str | None = None,
        authorizer: Authorizer | None = None,
        tiers: TierSource | None = None,
        sanctioner: Sanctioner | None = None,
        clock: Clock = time.time,
        ttl_seconds: int = DEFAULT_TTL_SECONDS,
        required_approvals: int = 2,
        auditors: Iterable[str] | None = None,
        timer: StageTimer | None = None,
        on_executed: ExecutionListener | None = None,
        token_floor: int = 0,
        sessions_per_agent: int = SESSIONS_PER_AGENT,
        chars_per_agent: int = MAX_SESSION_CHARS,
    ) -> None:
        self.tools = tools if tools is not None else ToolRegistry()
        if manifests is None:
            manifests = verifier.manifests if verifier is not None else ManifestSet()
        self.manifests = self.tools.merged_manifests(manifests)
        self.charter_sha256 = check_charter_sha256(
            charter_sha256 if charter_sha256 is not None else default_charter_sha256()
        )
        self.charter_version = _charter_version(self.charter_sha256, charter_version)
        """The version of :attr:`charter_sha256`, or None for an unshipped charter given by its
        hash alone."""
        if verifier is None:
            verifier = InProcessVerifier(self.manifests, verify_policy, self.charter_sha256)
        elif verifier.manifests != self.manifests:
            raise InputError(
                "the verifier judges with other tool manifests than the gatekeeper's "
                "(they must include every hosted tool's manifest)"
            )
        self.verifier = verifier
        self.log = log
        self.issuer = issuer
        self.spent_set = spent_set
        self.authorizer = authorizer or default_authorizer()
        self.tiers: TierSource = tiers or FixedTier()
        self.sanctioner: Sanctioner = sanctioner or RecordOnlySanctioner()
        self.clock = clock
        self.ttl_seconds = check_ttl(ttl_seconds)
        if (
            isinstance(required_approvals, bool)
            or not isinstance(required_approvals, int)
            or not 1 <= required_approvals <= 1000
        ):
            raise InputError("required_approvals must be an integer from 1 to 1000")
        self.required_approvals = required_approvals
        self.auditors = (
            None if auditors is None else frozenset(valid_id(a, "auditor id") for a in auditors)
        )
        self._timer = timer
        self.on_executed = on_executed
        self.sessions_per_agent = _limit(sessions_per_agent, "sessions_per_agent")
        """The most sessions one agent may hold open at once (:class:`QuotaExceeded`)."""
        self.chars_per_agent = _limit(chars_per_agent, "chars_per_agent")
        """The most observation characters one agent's open sessions may hold together, so
        that no agent can make the gateway hold more than this for it, however many sessions
        it opens (each session also stays within ``MAX_SESSION_CHARS``)."""
        if isinstance(token_floor, bool) or not isinstance(token_floor, int) or token_floor < 0:
            raise InputError("token_floor must be a log index (an integer >= 0)")
        self.token_floor = token_floor
        """Tokens minted for proposals below this log index are refused (``voided``): they date
        from before a stop that was not clean (see :mod:`thirdway.gateway.restart`)."""
        self._writer = LogWriter(log, self._time)
        self._sync_record = True
        """Whether opening, observing and closing are synced on their own. Only a gatekeeper
        that notices its unclean stops and closes the sessions they interrupted (:meth:`open`
        over SQLite, :mod:`thirdway.gateway.restart`) leaves them to the next synced commit."""
        self._locked: dict[str, LockedTool[Any]] = self.tools.lock(
            verifier=issuer.verifier(), spent_set=spent_set, clock=clock
        )
        self._table_lock = threading.Lock()
        state, size = self._rebuild()
        if (refusal := self._outdated(state.charters)) is not None:
            raise GateError(f"{refusal}; not opened")  # :meth:`open` closes what it opened
        self._charters_seen = len(state.charters)
        self._superseded: str | None = None
        """Why this worker no longer acts: another worker of its log cites a newer charter."""
        self._sessions: dict[str, Session] = state.sessions
        self._escalations: dict[str, Escalation] = state.escalations
        self._agents = {session.agent for session in state.sessions.values()}
        self._state = state
        self._closed: set[str] = state.closed
        self._interrupted: set[str] = state.interrupted
        self._frozen: set[str] = state.frozen
        # Following the other workers (a sequencing log only): the projection goes on from
        # where the rebuild stopped, skipping the ranges this worker's writer committed.
        self._follow_lock = threading.Lock()
        self._cursor = size
        # Follows are grouped like commits: each caller takes a ticket on arrival; one whose
        # ticket is older than the start of a catch-up finished since has nothing left to read.
        self._tickets = itertools.count()
        self._caught_from = 0
        self._own: list[range] = []
        self._projection = Projection(state, deferred=True)
        self._owned: list[Closeable] = []
        self.checkpoint_leader: CheckpointLeader | None = None
        """The checkpoint signer candidacy started by :meth:`open` (``checkpoint_every_s``)."""

    # ------------------------------------------------------------------ opening and closing

    @classmethod
    def open(
        cls,
        data_dir: Path | str,
        *,
        db: str | None = None,
        origin: str | None = None,
        checkpoint_every_s: float | None = None,
        shared: bool = False,
        **options: Any,
    ) -> Gatekeeper:
        """A gatekeeper over ``data_dir`` (created if missing). Reopening carries on where it
        stopped. ``options`` are the constructor's keyword arguments.

        ``shared`` (SQLite only): this process is one of several workers on ``data_dir`` (see
        :meth:`_open_shared`).

        Without ``db`` (one machine, one process): ``data_dir`` holds ``log.db`` (the
        transparency log and, in the same database, the spent-set and the record of clean
        stops; its checkpoint key ``log.db.key``) and ``capability.key`` (the token signing key,
        mode 0600). Reopening after a stop that was not clean (a crash, a kill, a power cut)
        refuses every token minted before (``voided``, logged as a ``restart`` note): a spend
        reaches the disk with the log's next commit, and this is what keeps a token whose spend
        a power cut lost from running twice (:mod:`thirdway.gateway.restart`). A ``spent.db``
        left by an earlier version is no longer read.

        With ``db`` a ``postgresql://`` URL (several gateway workers, one deployment): the log
        and the spent-set live in that database, and ``data_dir`` keeps only the keys every
        worker of the deployment shares: ``capability.key`` (a token minted by one worker is
        checked by another) and ``log.key`` (whichever worker is elected signs checkpoints).
        Give every worker a copy of the same folder. Sessions, open escalations, trust
        standings and dialogues are not stored anywhere else: they are projections of the log,
        which each worker follows. ``checkpoint_every_s`` starts a
        :class:`~thirdway.ledger.leader.CheckpointLeader`: the one worker holding the leader
        lock signs a checkpoint that often, and another takes over if it dies."""
        folder = Path(data_dir)
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        issuer = load_or_create_issuer(folder / KEY_NAME)
        if db is not None:
            if shared:
                raise InputError(
                    "shared is for several workers on one SQLite folder; workers on PostgreSQL "
                    "always share their database (leave shared out)"
                )
            return cls._open_postgres(folder, db, issuer, origin, checkpoint_every_s, options)
        if checkpoint_every_s is not None:
            raise InputError(
                "checkpoint_every_s elects a signer among several workers; it needs db="
            )
        path = folder / LOG_NAME
        if shared:
            return cls._open_shared(folder, path, issuer, origin, options)
        tenancy = restart.Tenancy(folder, path)
        try:
            log = TransparencyLog.open(path, origin=origin, background_checkpoints=True)
        except BaseException:
            tenancy.release()
            raise
        spent: SQLiteSpentSet | None = None
        try:
            # In the log's database, not synced on its own: the log's next commit syncs it.
            # The log's background checkpointer checkpoints for it too (thirdway.ledger.wal).
            spent = SQLiteSpentSet(path, durable=False, wal_autocheckpoint=FALLBACK_PAGES)
            # Built (the log read, a charter rollback refused) before this start is recorded,
            # so a refused start leaves the last stop's record as it was: the next start voids
            # no token it would not have voided anyway. No token exists before the floor is set.
            gate = cls(log, issuer=issuer, spent_set=spent, token_floor=0, **options)
            opening = tenancy.open_floor(log.size())
            gate.token_floor = opening.token_floor
            if opening.raised:
                note = log_entries.restart_entry(opening.token_floor)
                written = gate._writer.append([note])
                gate._projection.apply(written.start, note)  # interrupts the open sessions
            gate._sync_record = False
        except BaseException:
            if spent is not None:
                spent.close()
            log.close()
            tenancy.release()
            raise
        gate._owned = [spent, log, tenancy]  # the clean stop is recorded last
        return gate

    @classmethod
    def _open_shared(
        cls,
        folder: Path,
        path: Path,
        issuer: CapabilityIssuer,
        origin: str | None,
        options: dict[str, Any],
    ) -> Gatekeeper:
        """One of several worker processes on one SQLite folder (``thirdway serve --workers``).

        They share the folder (a shared lock on ``gate.lock``: no single gatekeeper can open it
        meanwhile) and its log, whose store gives the indices under SQLite's write lock
        (:mod:`thirdway.ledger.sqlite_shared`); each follows what the others append, as workers
        on PostgreSQL do. Spends and session steps are committed as a single gatekeeper commits
        them, reaching the disk with the next synced commit: the folder must have been handed
        over to workers by a single gatekeeper (:meth:`hand_over`), and it is recorded clean
        only once they have all stopped, so a power cut meanwhile is recovered from as any
        unclean stop (:func:`thirdway.gateway.restart.shared_floor`)."""
        tenancy = restart.Tenancy(folder, path, shared=True)
        owned: list[Closeable] = [tenancy]
        try:
            floor = restart.shared_floor(path)
            log = TransparencyLog.open(
                path, origin=origin, create=False, background_checkpoints=True, shared=True
            )
            owned.insert(0, log)
            spent = SQLiteSpentSet(
                path, durable=False, wal_autocheckpoint=FALLBACK_PAGES, writer_lock=True
            )
            owned.insert(0, spent)
            gate = cls(log, issuer=issuer, spent_set=spent, token_floor=floor, **options)
            gate._sync_record = False
        except BaseException:
            for resource in owned:
                resource.close()
            raise
        gate._owned = owned
        return gate

    @classmethod
    def _open_postgres(
        cls,
        folder: Path,
        db: str,
        issuer: CapabilityIssuer,
        origin: str | None,
        checkpoint_every_s: float | None,
        options: dict[str, Any],
    ) -> Gatekeeper:
        from thirdway.capability.spent_pg import PostgresSpentSet
        from thirdway.ledger.leader import CheckpointLeader
        from thirdway.ledger.open import is_postgres_url, open_log

        if not isinstance(db, str) or not is_postgres_url(db):
            raise InputError(
                "db must be a postgresql:// URL (a single-process gatekeeper keeps its SQLite "
                "log in data_dir: leave db out)"
            )
        log = open_log(db, key_path=folder / LOG_KEY_NAME, origin=origin)
        owned: list[Closeable] = [log]
        try:
            spent = PostgresSpentSet(db)
            owned.insert(0, spent)
            gate = cls(log, issuer=issuer, spent_set=spent, **options)
            if checkpoint_every_s is not None:
                leader = CheckpointLeader(db, log, interval_s=checkpoint_every_s)
                leader.start()
                owned.insert(0, _Stopping(leader))
                gate.checkpoint_leader = leader
        except BaseException:
            for resource in owned:
                resource.close()
            raise
        gate._owned = owned
        return gate

    def hand_over(self) -> None:
        """Let :meth:`close` hand this gatekeeper's SQLite folder over to several workers
        (:meth:`_open_shared`) instead of recording a clean stop."""
        tenancies = [r for r in self._owned if isinstance(r, restart.Tenancy)]
        if not tenancies or self._writer.sequenced:
            raise GateError("only a gatekeeper opened alone on a SQLite folder can hand it over")
        tenancies[0].hand_over()

    def close(self) -> None:
        """Close what :meth:`open` opened. Everything already answered is durable. Every
        resource is closed even if one fails (the first failure is raised after): a failed
        clean-stop record only makes the next opening void the tokens handed out before."""
        owned, self._owned = self._owned, []
        failure: BaseException | None = None
        for resource in owned:
            try:
                resource.close()
            except BaseException as exc:
                failure = failure or exc
        if failure is not None:
            raise failure

    def __enter__(self) -> Gatekeeper:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def _rebuild(self) -> tuple[State, int]:
        """Sessions and escalations from the whole log, and the size they were read to."""
        size = self.log.size()
        projection = Projection()
        for index, data in self._read(0, size):
            projection.apply(index, _parse(index, data))
        return projection.state, size

    def _read(self, start: int, stop: int) -> Iterable[tuple[int, bytes]]:
        """Entries ``start <= index < stop``, a few thousand per read; every one must be there."""
        expected = start
        for first in range(start, stop, _READ_CHUNK):
            for index, data in self.log.entries_between(first, min(first + _READ_CHUNK, stop)):
                if index != expected:
                    raise LogError(f"log entry {expected} is missing")
                expected += 1
                yield index, data
        if expected != max(stop, start):
            raise LogError(f"log entry {expected} is missing")

    # ------------------------------------------------------------------ following other workers

    def catch_up(self) -> int | None:
        """Apply what other workers appended to the log since this one last looked; returns the
        size caught up to, or ``None`` for a log only this process appends to (SQLite), which
        has nothing to follow. Called before every step on a session; cheap when nothing new."""
        if not self._writer.sequenced:
            return None
        arrived = next(self._tickets)
        with self._follow_lock:
            return self._catch_up_locked(arrived)

    def _catch_up_locked(self, arrived: int) -> int:
        """Catch up unless a catch-up that began after ``arrived`` (a ticket) has finished:
        that one read the size after this caller arrived, so it applied everything this caller
        must see (the threads queued behind one follow share it, as a commit group does)."""
        if arrived < self._caught_from:
            return self._cursor
        began = next(self._tickets)
        cursor = self._catch_up_from_log()
        self._caught_from = began
        return cursor

    def _catch_up_from_log(self) -> int:
        size, own = self._writer.settled()
        self._own.extend(own)
        if size > self._cursor:
            projection = self._projection
            # Only the other workers' entries are read: this worker's own ranges are skipped
            # without a query (with one worker, a catch-up reads nothing but the size).
            for start, stop in _gaps(self._cursor, size, self._own):
                for index, data in self._read(start, stop):
                    log_entry = _parse(index, data)
                    with self._table_lock:
                        projection.apply(index, log_entry)
                self._cursor = stop
            self._cursor = size
            projection.forget()  # ``size`` ends a batch: no later entry refers back into it
            self._note_charters(projection.state.charters)
            with self._table_lock:
                self._agents.update(projection.new_agents)
            projection.new_agents.clear()
            self._own = [mine for mine in self._own if mine.stop > size]
        return self._cursor

    def _outdated(self, cited: Iterable[str]) -> str | None:
        """Why this gatekeeper's charter may not act on a log citing ``cited``, or None."""
        return _charter_rollback(_Cited(self.charter_sha256, self.charter_version), cited)

    def _note_charters(self, cited: set[str]) -> None:
        """After a catch-up: if other workers cite a charter this one cannot act under (a
        rolling upgrade left this worker on the older charter), stop acting (:meth:`_follow`):
        the trust events it would stamp are refused on replay, so it must not write them."""
        if len(cited) == self._charters_seen:
            return
        self._charters_seen = len(cited)
        if (refusal := self._outdated(cited)) is not None:
            self._superseded = (
                f"{refusal}: another worker of this log wrote it, so this worker no longer acts "
                "(restart it under the newer charter); nothing was recorded"
            )

    def _follow(self, session: Session) -> None:
        """Catch up, then apply what other workers added to ``session`` (the caller holds its
        lock) and note where this worker's view of it stands (:meth:`_check`). A worker left on
        an older charter than another worker of its log refuses the step
        (:meth:`_note_charters`)."""
        if not self._writer.sequenced:
            return
        arrived = next(self._tickets)
        with self._follow_lock:
            since = self._catch_up_locked(arrived)
            if self._superseded is not None:
                raise GateError(self._superseded)
            queued, session.pending = session.pending, []
        session.settle(queued)
        session.since = since
        with self._table_lock:
            if self._sessions.get(session.id) is not session:
                raise GateError(f"session {session.id!r} was closed (on another worker)")

    def _check(self, session: Session, *, record_only: bool = False) -> Check | None:
        """The writer's check for a step on ``session``: nothing another worker wrote to the
        session since this worker's catch-up (``record_only``: no observation and no closing).
        It runs under the sequencer lock, so whatever it lets through was decided on the
        session's whole record."""
        since = session.since
        if since is None:
            return None
        sid = session.id
        needle = sid.encode() if _PLAIN_ID.fullmatch(sid) else b""

        def check(first: int) -> None:
            for index, data in self.log.entries_containing(since, first, needle):
                log_entry = _parse(index, data)
                if log_entry.session == sid and touches_record(log_entry, record_only):
                    raise StaleRecordError(
                        f"session {sid!r} changed on another worker (log entry {index}, "
                        f"{log_entry.type}) while this one decided; retry"
                    )

        return check

    def _fresh(self, session: Session, step: Callable[[], T]) -> T:
        """Run ``step`` (the caller holds the session's lock) on an up-to-date record, redone
        while another worker writes to the session meanwhile (see the module docstring)."""
        for _ in range(STALE_RETRIES):
            self._follow(session)
            try:
                return step()
            except StaleRecordError:
                continue
        raise StaleRecordError(
            f"session {session.id!r} kept changing on other workers ({STALE_RETRIES} tries); "
            "nothing was recorded for this step, retry"
        )

    def append(self, entries: Sequence[LogEntry], *, check: Check | None = None) -> range:
        """Append ``entries`` to this gatekeeper's log in one durable batch; returns their
        indices. Other components that write to the same log (the dialogue service, the trust
        layer) must come through here: the gatekeeper binds tokens to the index its own batch
        will start at, so an append that bypasses it voids that batch (see
        :mod:`thirdway.gateway.writer`). ``check(first)`` runs before they get their indices
        (on a log several workers share, under the sequencer lock) and may raise to keep them
        out."""
        if not all(isinstance(item, LogEntry) for item in entries):
            raise InputError("the gatekeeper appends thirdway/1 LogEntry objects only")
        return self._writer.append(list(entries), check=check)

    # ------------------------------------------------------------------ sessions, observations

    def open_session(self, agent: str, instruction: str, *, session_id: str | None = None) -> str:
        """Start a session for ``agent`` with the principal's ``instruction`` (observation 0)."""
        agent = valid_id(agent, "agent id")
        if self.auditors is not None and agent in self.auditors:
            raise GateError(f"{agent!r} is an auditor; an auditor cannot act as an agent")
        sid = "s-" + secrets.token_hex(8) if session_id is None else valid_id(session_id, "id")
        first = observation(session=sid, index=0, channel="principal", content=instruction)
        session = Session(sid, agent)
        with session.lock:
            session.since = self.catch_up()
            with self._table_lock:
                if sid in self._sessions or sid in self._closed:
                    raise GateError(f"session {sid!r} already exists")
                self._check_quota(agent, [first], opening=True)
                self._state.hold(session)
            try:
                self._writer.append(
                    [observation_entry(first, agent)],
                    check=self._check(session),
                    sync=self._sync_record,
                )
            except StaleRecordError:
                with self._table_lock:
                    if self._sessions.get(sid) is session:
                        self._state.release(sid)
                raise GateError(
                    f"session {sid!r} already exists (opened on another worker)"
                ) from None
            except BaseException:
                with self._table_lock:
                    self._state.release(sid)
                raise
            _record(session, [first])
            with self._table_lock:
                self._agents.add(agent)
        return sid

    def record_observation(
        self,
        session_id: str,
        *,
        channel: Channel,
        content: str | None = None,
        call: ToolCall | Mapping[str, Any] | None = None,
        produced_by: int | None = None,
        agent: str | None = None,
    ) -> int:
        """Record one observation that reached the agent from elsewhere; returns its index."""
        session = self._session(session_id, agent)

        def step() -> int:
            index = len(session.observations)
            recorded = observation(
                session=session.id,
                index=index,
                channel=channel,
                content=content,
                call=call,
                produced_by=produced_by,
            )
            if recorded.produced_by is not None:
                _check_produced_by(session, recorded.produced_by)
            self._check_room(session, [recorded])
            self._writer.append(
                [observation_entry(recorded, session.agent)],
                check=self._check(session),
                sync=self._sync_record,
            )
            _record(session, [recorded])
            return index

        with session.lock:
            return self._fresh(session, step)

    def record_tool_result(
        self,
        session_id: str,
        call: ToolCall | Mapping[str, Any],
        content: str,
        *,
        agent: str | None = None,
    ) -> tuple[int, int]:
        """Record a tool call made elsewhere and its result, in one durable batch; returns the
        indices of the call and of the data observation."""
        session = self._session(session_id, agent)

        def step() -> tuple[int, int]:
            index = len(session.observations)
            pair = [
                observation(session=session.id, index=index, channel="call", call=call),
                observation(
                    session=session.id,
                    index=index + 1,
                    channel="data",
                    content=content,
                    produced_by=index,
                ),
            ]
            self._check_room(session, pair)
            self._writer.append(
                [observation_entry(o, session.agent) for o in pair],
                check=self._check(session),
                sync=self._sync_record,
            )
            _record(session, pair)
            return index, index + 1

        with session.lock:
            return self._fresh(session, step)

    def observations(self, session_id: str) -> tuple[Observation, ...]:
        """The session's record so far: what its proposals are verified against."""
        session = self._session(session_id, step=False)
        with session.lock:
            self._follow(session)
            return tuple(session.observations)

    def session_agent(self, session_id: str) -> str:
        """The agent a session belongs to."""
        return self._session(session_id, step=False).agent

    def close_session(self, session_id: str, *, agent: str | None = None) -> None:
        """End a session: a ``note`` entry says so, and its record leaves memory (a restarted
        gatekeeper does not load it either). Its tokens can no longer be used here. A session
        with an open escalation cannot be closed until an auditor has answered."""
        session = self._session(session_id, agent, step=False)

        def step() -> None:
            with self._table_lock:
                if any(e.session == session.id for e in self._escalations.values()):
                    raise GateError(f"session {session.id!r} has an open escalation")
            self._writer.append(
                [log_entries.session_closed_entry(session.id, session.agent)],
                check=self._check(session),
                sync=self._sync_record,
            )
            with self._table_lock:
                self._state.close(session.id)

        with session.lock:
            self._fresh(session, step)

    # ------------------------------------------------------------------ proposals

    def propose(
        self,
        session_id: str,
        proposal: Proposal | Mapping[str, Any] | str | bytes,
        *,
        agent: str | None = None,
    ) -> Outcome:
        """Verify the proposal against the session's record, authorize it, and mint a token if
        both allow; otherwise say why (:class:`Denied`) or who must look (:class:`Escalated`)."""
        session = self._session(session_id, agent)
        parsed = proposal_input(proposal)
        if parsed.session != session.id:
            raise GateError(
                f"the proposal names session {parsed.session!r} but was sent to {session.id!r}"
            )
        if parsed.agent is not None and parsed.agent != session.agent:
            raise GateError(
                f"the proposal names agent {parsed.agent!r}; session {session.id!r} belongs to "
                f"another agent"
            )
        manifest = self._manifest(parsed.action.tool)
        with session.lock:
            return self._fresh(session, lambda: self._decide(session, parsed, manifest))

    def _decide(self, session: Session, parsed: Proposal, manifest: ToolManifest) -> Outcome:
        """One attempt at a proposal (the caller holds the session's lock and has caught up)."""
        recorded_before = len(session.observations)
        started = time.perf_counter_ns()
        proposal_bytes = entry_bytes(proposal_entry(parsed, session.agent, recorded_before))
        self._time("log", time.perf_counter_ns() - started)
        result = self._verify(session, parsed, recorded_before)
        if isinstance(result, _NoVerdict):
            return self._no_verdict(session, parsed, proposal_bytes, result)
        request = self._request(session, manifest, parsed, result.verdict)
        if isinstance(request, str):
            outcome: Outcome = self._no_decision(session, parsed, proposal_bytes, result, request)
        else:
            decision = self._authorize(request)
            outcome = self._conclude(session, parsed, proposal_bytes, result, decision)
        if result.verdict.verdict == "pass":
            session.history.append(parsed)
        if any(finding.severity == "deception" for finding in result.verdict.findings):
            assert outcome.proposal_index is not None
            evidence = [outcome.proposal_index, outcome.proposal_index + 1]
            self._sanction(session, result.verdict.findings, evidence)
        return outcome

    def _verify(
        self, session: Session, proposal: Proposal, recorded_before: int
    ) -> VerifierResult | _NoVerdict:
        """The verifier's result, or why there is none (fail closed: no verdict, no token)."""
        started = time.perf_counter_ns()
        try:
            result = self.verifier(
                proposal, tuple(session.observations), tuple(session.history), recorded_before
            )
            check_verdict_charter(result.verdict, self.charter_sha256)
        except ThirdwayError as exc:
            error = f"{type(exc).__name__}: {exc}"[:MAX_REASON_CHARS]
            return _NoVerdict(error, retryable=getattr(exc, "retryable", False) is True)
        finally:
            self._time("verify", time.perf_counter_ns() - started)
        if result.verdict.session != session.id:
            return _NoVerdict(f"the verifier answered for session {result.verdict.session!r}")
        return result

    def _request(
        self, session: Session, manifest: ToolManifest, proposal: Proposal, verdict: Verdict
    ) -> AuthorizationRequest | str:
        """The authorization request for this verdict, or why none can be built."""
        try:
            return AuthorizationRequest.for_tool(
                manifest,
                agent=session.agent,
                tier=self.tiers.tier(session.agent),
                verdict=verdict.verdict,
                provenance_clean=not any(f.code in PROVENANCE_CODES for f in verdict.findings),
                required_approvals=self.required_approvals,
                amount=amount_of(manifest, proposal.action.args),
            )
        except ThirdwayError as exc:
            return str(exc)[:MAX_REASON_CHARS]

    def _authorize(self, request: AuthorizationRequest) -> AuthorizationDecision:
        started = time.perf_counter_ns()
        try:
            return self.authorizer.authorize(request)
        finally:
            self._time("authorize", time.perf_counter_ns() - started)

    def _no_verdict(
        self, session: Session, proposal: Proposal, proposal_bytes: bytes, missing: _NoVerdict
    ) -> Denied:
        name = self.verifier.name
        written = self._writer.append_at(
            lambda p: [
                proposal_bytes,
                log_entries.verdict_error_entry(proposal, session.agent, p, name, missing.error),
            ],
            check=self._check(session),
        )
        again = "propose again" if missing.retryable else "proposing again may not help"
        return Denied(
            reason=f"no verdict could be had ({missing.error}); nothing was granted, {again}",
            proposal_index=written.start,
            retryable=missing.retryable,
        )

    def _no_decision(
        self,
        session: Session,
        proposal: Proposal,
        proposal_bytes: bytes,
        result: VerifierResult,
        error: str,
    ) -> Denied:
        written = self._writer.append_at(
            lambda p: [
                proposal_bytes,
                self._verdict_entry(proposal, session, p, result),
                log_entries.decision_entry(session.id, session.agent, p, p + 1, None, error=error),
            ],
            check=self._check(session),
        )
        unauthorizable = f"the action cannot be authorized: {error}"
        denied = verifier_denial(result.verdict)  # the verifier's word comes first
        return Denied(
            reason=unauthorizable if denied is None else f"{denied}; {unauthorizable}",
            findings=result.verdict.findings,
            verdict=result.verdict,
            proposal_index=written.start,
        )

    def _conclude(
        self,
        session: Session,
        proposal: Proposal,
        proposal_bytes: bytes,
        result: VerifierResult,
        decision: AuthorizationDecision,
    ) -> Outcome:
        """Write proposal, verdict and decision, plus a capability (allow) or a dialogue
        (needs_dialogue), in one batch; answer accordingly."""
        verdict = result.verdict
        minted: list[_Minted] = []
        handle = "esc-" + secrets.token_hex(12)

        def build(p: int) -> list[Item]:
            items: list[Item] = [
                proposal_bytes,
                self._verdict_entry(proposal, session, p, result),
                log_entries.decision_entry(session.id, session.agent, p, p + 1, decision),
            ]
            if decision.outcome == "allow":
                minted.append(self._mint(session, proposal.action, p, canonical_sha256(verdict)))
                items.append(log_entries.capability_entry(minted[0].claims, p, p + 2))
            elif decision.outcome == "needs_dialogue":
                items.append(log_entries.escalation_entry(session.id, session.agent, handle, p))
            return items

        p = self._writer.append_at(build, check=self._check(session)).start
        if decision.outcome == "allow":
            self._time("mint", minted[0].nanoseconds)
            return Granted(
                token=minted[0].token,
                verdict=verdict,
                decision=decision,
                proposal_index=p,
                capability_index=p + 3,
                expires_at=minted[0].claims.expires_at,
            )
        if decision.outcome == "needs_dialogue":
            escalation = Escalation(
                handle=handle,
                session=session.id,
                agent=session.agent,
                proposal=proposal,
                proposal_index=p,
                verdict=verdict,
                verdict_index=p + 1,
                request=decision.request,
            )
            with self._table_lock:
                self._escalations[handle] = escalation
            return Escalated(
                handle=handle,
                reason=escalation_reason(verdict, decision),
                verdict=verdict,
                decision=decision,
                proposal_index=p,
            )
        return Denied(
            reason=denial_reason(verdict, decision),
            findings=verdict.findings,
            verdict=verdict,
            decision=decision,
            proposal_index=p,
        )

    def _mint(
        self, session: Session, action: ToolCall, proposal_index: int, verdict_sha256: str
    ) -> _Minted:
        started = time.perf_counter_ns()
        claims = CapabilityClaims.for_call(
            agent=session.agent,
            session=session.id,
            tool=action.tool,
            args=action.args,
            proposal_index=proposal_index,
            verdict_sha256=verdict_sha256,
            now=self.clock(),
            ttl_seconds=self.ttl_seconds,
        )
        token = self.issuer.mint(claims)
        return _Minted(token, claims, time.perf_counter_ns() - started)

    def _verdict_entry(
        self, proposal: Proposal, session: Session, p: int, result: VerifierResult
    ) -> LogEntry:
        return log_entries.verdict_entry(
            proposal, session.agent, p, self.verifier.name, result.verdict, result.signed
        )

    # ------------------------------------------------------------------ escalations

    def escalation(self, handle: str) -> Escalation:
        """The open escalation ``handle`` (what an auditor reviews)."""
        self.catch_up()
        with self._table_lock:
            found = self._escalations.get(handle) if isinstance(handle, str) else None
        if found is None:
            raise GateError(f"no open escalation {str(handle)[:80]!r}")
        return found

    def open_escalations(self) -> list[str]:
        """Handles of the escalations waiting for an auditor."""
        self.catch_up()
        with self._table_lock:
            return sorted(self._escalations)

    def approve_escalation(self, handle: str, auditor: str, reason: str) -> Outcome:
        """An auditor approves: the action is decided again with the dialogue ``approved``, and
        a token minted if that allows it. A critical action needs ``required_approvals``
        distinct auditors; until then the answer stays :class:`Escalated`.

        An escalation whose verdict cites another charter than the one this gatekeeper runs
        under (it was proposed before a restart under a new charter) is never approved: the
        approval is logged with a decision entry whose ``error`` names both charters, the
        escalation is closed and the answer is :class:`Denied` (no token; the agent must
        propose the action again, to be judged under the current charter). This is a refusal
        like any other the gatekeeper answers, not an error: nothing is left pending."""
        return self._answer(handle, auditor, reason, approve=True)

    def deny_escalation(self, handle: str, auditor: str, reason: str) -> Outcome:
        """An auditor refuses: the decision becomes a final ``deny`` (also for an escalation
        whose verdict cites an earlier charter: refusing rests on no verdict)."""
        return self._answer(handle, auditor, reason, approve=False)

    def _answer(self, handle: str, auditor: str, reason: str, *, approve: bool) -> Outcome:
        auditor = self._check_auditor(auditor)
        reason = check_reason(reason, MAX_CLAIM_CHARS)
        escalation = self.escalation(handle)
        session = self._session(escalation.session, step=False)
        with session.lock:
            return self._fresh(
                session,
                lambda: self._answer_once(session, escalation, auditor, reason, approve=approve),
            )

    def _answer_once(
        self, session: Session, escalation: Escalation, auditor: str, reason: str, *, approve: bool
    ) -> Outcome:
        """One attempt at an auditor's answer (the caller holds the session's lock)."""
        handle = escalation.handle
        with self._table_lock:
            if self._escalations.get(handle) is not escalation:
                raise GateError(f"escalation {handle!r} was resolved meanwhile")
        if auditor in escalation.approvers:
            raise GateError(f"auditor {auditor!r} already approved {handle!r}")
        stale = self._stale_charter(escalation) if approve else None
        if approve and stale is None and session.id in self._frozen:
            stale = INTERRUPTED_APPROVAL
        if stale is not None:
            return self._refuse_approval(session, escalation, auditor, reason, stale)
        approvals = len(escalation.approvers) + (1 if approve else 0)
        request = AuthorizationRequest.build(
            **{
                **escalation.request.model_dump(),
                "tier": self.tiers.tier(escalation.agent),
                "dialogue": "approved" if approve else "denied",
                "approvals": approvals,
            }
        )
        decision = self._authorize(request)
        written, minted = self._record_answer(
            session, escalation, auditor, reason, approve, decision
        )
        if approve:
            escalation.approvers.append(auditor)
        if decision.outcome != "needs_dialogue":
            with self._table_lock:
                self._escalations.pop(handle, None)
        return self._answer_outcome(escalation, auditor, reason, decision, written, minted)

    def _stale_charter(self, escalation: Escalation) -> str | None:
        """Why ``escalation``'s verdict cannot be acted on now (it cites another charter than
        this gatekeeper's: the gateway restarted under a new charter while it was pending), or
        ``None`` when it still can."""
        try:
            check_verdict_charter(escalation.verdict, self.charter_sha256)
        except CharterMismatch as exc:
            return (
                f"{exc}; the escalation is closed: the agent must propose the action again "
                "under the current charter"
            )[:MAX_REASON_CHARS]
        return None

    def _refuse_approval(
        self, session: Session, escalation: Escalation, auditor: str, reason: str, why: str
    ) -> Denied:
        """Log the auditor's approval and, instead of a decision, the refusal ``why`` (a
        decision entry with ``error``, ``handle`` and ``dialogue_index``: the log's rebuild
        closes the escalation on it); close the escalation; mint nothing."""
        self._writer.append_at(
            lambda d: _answer_entries(session, escalation, auditor, reason, True, None, d, why),
            check=self._check(session),
        )
        with self._table_lock:
            self._escalations.pop(escalation.handle, None)
        return Denied(
            reason=f"auditor {auditor!r} approved, but the action cannot be authorized: {why}",
            findings=escalation.verdict.findings,
            verdict=escalation.verdict,
            proposal_index=escalation.proposal_index,
        )

    def _record_answer(
        self,
        session: Session,
        escalation: Escalation,
        auditor: str,
        reason: str,
        approve: bool,
        decision: AuthorizationDecision,
    ) -> tuple[range, _Minted | None]:
        """Write the auditor's answer, the new decision and (on allow) the capability."""
        minted: list[_Minted] = []
        p = escalation.proposal_index

        def build(d: int) -> list[Item]:
            items: list[Item] = _answer_entries(
                session, escalation, auditor, reason, approve, decision, d
            )
            if decision.outcome == "allow":
                minted.append(
                    self._mint(session, escalation.proposal.action, p, escalation.verdict_sha256)
                )
                items.append(log_entries.capability_entry(minted[0].claims, p, d + 1))
            return items

        written = self._writer.append_at(build, check=self._check(session))
        if minted:
            self._time("mint", minted[0].nanoseconds)
        return written, (minted[0] if minted else None)

    def _answer_outcome(
        self,
        escalation: Escalation,
        auditor: str,
        reason: str,
        decision: AuthorizationDecision,
        written: range,
        minted: _Minted | None,
    ) -> Outcome:
        if minted is not None:
            return Granted(
                token=minted.token,
                verdict=escalation.verdict,
                decision=decision,
                proposal_index=escalation.proposal_index,
                capability_index=written.start + 2,
                expires_at=minted.claims.expires_at,
            )
        if decision.outcome == "needs_dialogue":
            return Escalated(
                handle=escalation.handle,
                reason=(
                    f"{len(escalation.approvers)} of {decision.request.required_approvals} "
                    "required auditor approvals so far"
                ),
                verdict=escalation.verdict,
                decision=decision,
                proposal_index=escalation.proposal_index,
                approvals=len(escalation.approvers),
            )
        if decision.request.dialogue == "denied":
            why = f"auditor {auditor!r} denied the action: {reason}"
        else:
            why = denial_reason(escalation.verdict, decision)
        return Denied(
            reason=why,
            findings=escalation.verdict.findings,
            verdict=escalation.verdict,
            decision=decision,
            proposal_index=escalation.proposal_index,
        )

    def _check_auditor(self, auditor: str) -> str:
        auditor = valid_id(auditor, "auditor id")
        self.catch_up()  # an agent seen only on another worker is still an agent
        with self._table_lock:
            is_agent = auditor in self._agents
        if is_agent:
            raise GateError(f"{auditor!r} is an agent; an agent can never approve or deny actions")
        if self.auditors is not None and auditor not in self.auditors:
            raise GateError(f"{auditor!r} is not one of this gatekeeper's auditors")
        return auditor

    # ------------------------------------------------------------------ execution

    def execute(
        self,
        session_id: str,
        token: str,
        call: ToolCall | Mapping[str, Any] | str | bytes,
        *,
        agent: str | None = None,
    ) -> Executed:
        """Run a hosted tool with a capability for exactly this call, and record the result.

        Raises :class:`~thirdway.errors.CapabilityError` (see its ``reason``) when the token does
        not allow this call; a genuine token used wrongly is also logged as a refusal. A tool
        that raises is not an error here: its failure is the result (``ok=False``), recorded."""
        session = self._session(session_id, agent)
        parsed = call_input(call)
        locked = self._hosted(parsed.tool)
        with session.lock:
            self._follow(session)
            index = len(session.observations)
            if index + 2 > MAX_OBSERVATIONS:
                raise GateError(f"session {session.id!r} holds the most observations allowed")
            claims, bound_args = self._redeem(session, locked, token, parsed)
            value, content, error = self._run(locked, bound_args)
            call_obs = observation(
                session=session.id,
                index=index,
                channel="call",
                call=ToolCall(tool=parsed.tool, args=bound_args),
            )
            data_obs = self._result_observation(session, index + 1, content)
            if data_obs.content != content:  # the result could not be recorded as it was
                value, content, error = None, data_obs.content or "", data_obs.content
            written = self._record_execution(
                session,
                [
                    observation_entry(call_obs, session.agent),
                    observation_entry(data_obs, session.agent),
                    log_entries.execution_entry(claims, parsed.tool, index, error),
                ],
            )
            _record(session, [call_obs, data_obs])
            if error is None and self.on_executed is not None:
                self.on_executed.on_executed(
                    agent=session.agent,
                    session=session.id,
                    tool=parsed.tool,
                    risk=self._manifest(parsed.tool).risk,
                    evidence=[claims.proposal_index + 1, written.start + 2],
                    at=math.floor(self.clock()),
                    append=self._writer.append,
                )
        return Executed(
            tool=parsed.tool,
            ok=error is None,
            error=error,
            result=value,
            content=content,
            call_index=index,
            result_index=index + 1,
            log_index=written.start + 2,
        )

    def act(
        self,
        session_id: str,
        proposal: Proposal | Mapping[str, Any] | str | bytes,
        *,
        agent: str | None = None,
    ) -> Acted:
        """Propose and, when granted, run the hosted tool at once: the gateway's ``tools/call``.

        Exactly :meth:`propose` followed by :meth:`execute` with the minted token and the
        proposal's own action, so the log gets the same entries in the same order (proposal,
        verdict, decision, capability; then call, data, execution) and a denial or escalation
        is answered as :meth:`propose` answers it, nothing run (an escalation's handle works as
        ever). The session's lock is held from the proposal to the run: nothing else enters
        the session's record between the verdict and the execution. A tool that is not hosted
        here is refused before anything is logged. The token never has to leave the process;
        the :class:`Granted` in the answer still carries it, spent. An error raised by the
        execution (see :meth:`execute`) propagates: a granted action that did not run must be
        proposed again."""
        session = self._session(session_id, agent)
        parsed = proposal_input(proposal)
        self._hosted(parsed.action.tool)
        with session.lock:
            outcome = self.propose(session.id, parsed, agent=agent)
            if not isinstance(outcome, Granted):
                return Acted(outcome=outcome)
            executed = self.execute(session.id, outcome.token, parsed.action, agent=agent)
        return Acted(outcome=outcome, executed=executed)

    def _hosted(self, tool: str) -> LockedTool[Any]:
        locked = self._locked.get(tool)
        if locked is None:
            hosted = ", ".join(self.tools.names()) or "none"
            raise GateError(f"tool {tool!r} is not hosted here (hosted: {hosted})")
        return locked

    def _record_execution(self, session: Session, items: list[LogEntry]) -> range:
        """Write what a tool run did. The token is spent and the tool has run, so this cannot be
        redone: if another worker recorded observations in the session meanwhile (the agent
        acting on one session through two workers at once), the run is reported unrecorded,
        like a crash between spending and recording (propose again).

        Not synced on its own where session steps are not (:attr:`_sync_record`): what let the
        tool run (proposal, verdict, decision, capability) was durable before its token left
        the gate, and a power cut that loses this record is the crash between spending and
        recording that :mod:`thirdway.gateway.restart` already answers (the token voided, the
        session closed)."""
        try:
            return self._writer.append(
                items, check=self._check(session, record_only=True), sync=self._sync_record
            )
        except StaleRecordError as exc:
            raise GateError(
                f"the tool ran but its result was not recorded: {exc}; propose the action again"
            ) from None

    def _redeem(
        self, session: Session, locked: LockedTool[Any], token: str, call: ToolCall
    ) -> tuple[CapabilityClaims, dict[str, Any]]:
        """Verify ``token`` for exactly this call by this session's agent, and spend it."""
        started = time.perf_counter_ns()
        try:
            return locked.authorize_call(
                token, call.args, agent=session.agent, session=session.id, admit=self._admit
            )
        except CapabilityError as exc:
            if exc.reason in LOGGED_REFUSALS:
                message = str(exc)[:MAX_REASON_CHARS]
                refusal = log_entries.refusal_entry(
                    session.id, session.agent, call.tool, exc.reason, message
                )
                self._writer.append([refusal])
            raise
        finally:
            self._time("token", time.perf_counter_ns() - started)

    def _admit(self, claims: CapabilityClaims) -> None:
        """Refuse a genuine token minted before the last stop that was not clean, or one whose
        proposal this log does not hold (:func:`_proposes`)."""
        if claims.proposal_index < self.token_floor:
            raise CapabilityError(
                "voided",
                f"the token was minted before the gatekeeper restarted after a stop that was not "
                f"clean (tokens for proposals before log index {self.token_floor} are void); "
                "propose the action again",
            )
        try:
            logged = self.log.entry(claims.proposal_index)
        except LogError:
            logged = None
        if logged is None or not _proposes(logged, claims):
            raise CapabilityError(
                "unlogged",
                f"this gateway's log holds no proposal of this call at index "
                f"{claims.proposal_index}, where the token says it was approved (a log restored "
                "from a backup, or a token of another deployment); propose the action again",
            )

    def _run(self, locked: LockedTool[Any], args: dict[str, Any]) -> tuple[Any, str, str | None]:
        """Call the tool: (value, the text the agent sees, error or None)."""
        started = time.perf_counter_ns()
        try:
            value = locked.func(**args)
            return value, render_result(value), None
        except Exception as exc:  # the tool's failure is the agent's result, and is logged
            error = f"{type(exc).__name__}: {exc}"[:MAX_REASON_CHARS]
            return None, f"error: {error}", error
        finally:
            self._time("tool", time.perf_counter_ns() - started)

    def _result_observation(self, session: Session, index: int, content: str) -> Observation:
        """The data observation of a result, or of why the result cannot be recorded (too large
        for one observation, for the session or for its agent's share)."""
        fields = {
            "session": session.id,
            "index": index,
            "channel": "data",
            "produced_by": index - 1,
        }
        try:
            recorded = observation(**fields, content=content)
            self._check_room(session, [recorded])
            return recorded
        except InputError as exc:
            problem = f"error: the tool's result cannot be recorded ({exc})"[:MAX_REASON_CHARS]
            return observation(**fields, content=problem)

    # ------------------------------------------------------------------ helpers

    def _session(self, session_id: str, agent: str | None = None, *, step: bool = True) -> Session:
        """The open session ``session_id`` (of ``agent``, when given). A ``step`` adds to its
        record or acts in it, which a session interrupted by an unclean stop refuses; reading
        it, closing it and answering its escalations are not steps."""
        if not isinstance(session_id, str):
            raise GateError(f"a session id is a string, not {type(session_id).__name__}")
        with self._table_lock:
            session = self._sessions.get(session_id)
        if session is None and self.catch_up() is not None:  # opened on another worker?
            with self._table_lock:
                session = self._sessions.get(session_id)
        if session is None or (step and session_id in self._frozen):
            if session_id in self._interrupted:
                raise GateError(
                    f"session {session_id[:80]!r} was interrupted when the gateway restarted "
                    "after a stop that was not clean (its record may have lost observations); "
                    "open a new session"
                )
            raise GateError(f"unknown session {session_id[:80]!r}; open one first")
        if agent is not None and agent != session.agent:
            raise GateError(f"session {session.id!r} belongs to another agent, not {agent!r}")
        return session

    def _check_room(self, session: Session, new: Sequence[Observation]) -> None:
        """Refuse observations the session or its agent has no room for (nothing is logged)."""
        _check_room(session, new)
        with self._table_lock:
            self._check_quota(session.agent, new)

    def _check_quota(
        self, agent: str, new: Sequence[Observation], *, opening: bool = False
    ) -> None:
        """Refuse (:class:`QuotaExceeded`) a new session past :attr:`sessions_per_agent`, or
        observations that would take the agent's open sessions past :attr:`chars_per_agent`.
        The caller holds the table lock."""
        held = self._state.open_sessions(agent)
        if opening and len(held) >= self.sessions_per_agent:
            raise QuotaExceeded(
                f"agent {agent!r} already has {len(held)} open sessions, the most one agent "
                "may hold; close one before opening another"
            )
        chars = sum(session.chars for session in held)
        added = sum(len(o.content or "") for o in new)
        if chars + added > self.chars_per_agent:
            raise QuotaExceeded(
                f"the open sessions of agent {agent!r} would hold more than "
                f"{self.chars_per_agent} "
                f"characters of observations ({chars} now, {added} more asked); close sessions "
                "it no longer needs"
            )

    def _manifest(self, tool: str) -> ToolManifest:
        manifest = self.manifests.tools.get(tool)
        if manifest is None:
            raise GateError(f"no manifest describes tool {tool!r}; its risk is unknown")
        return manifest

    def _sanction(self, session: Session, findings: Sequence[Finding], evidence: list[int]) -> None:
        self.sanctioner.on_deception(
            agent=session.agent,
            session=session.id,
            findings=findings,
            evidence=evidence,
            at=math.floor(self.clock()),
            append=self._writer.append,
        )

    def _time(self, stage: str, nanoseconds: int) -> None:
        if self._timer is not None:
            self._timer.add(stage, nanoseconds)


_PLAIN_ID: Final = re.compile(r"[A-Za-z0-9._:@+=/-]+")
"""Ids written as they are in an entry's JSON (no escaping), so a byte search can pre-filter."""


def _proposes(data: bytes, claims: CapabilityClaims) -> bool:
    """Whether the log entry ``data`` is the proposal ``claims`` were minted for: its session,
    agent, tool and arguments (hashed as the token hashes them).

    A token is minted only after its proposal is durable in the log, so a genuine token whose
    proposal is missing, or whose index holds something else, was minted against another log:
    one this log was restored from a backup of (where the spent-set, in the same database, may
    have forgotten the spend), or another deployment signing with the same key. Refusing it ties
    every run to an entry anyone can check."""
    try:
        document = orjson.loads(data)
        action = document["payload"]["proposal"]["action"]
        return bool(
            document["type"] == "proposal"
            and document["session"] == claims.session
            and document["agent"] == claims.agent
            and action["tool"] == claims.tool
            and args_sha256(action["args"]) == claims.args_sha256
        )
    except (orjson.JSONDecodeError, KeyError, TypeError, InputError):
        return False


def _answer_entries(
    session: Session,
    escalation: Escalation,
    auditor: str,
    reason: str,
    approve: bool,
    decision: AuthorizationDecision | None,
    dialogue_index: int,
    error: str | None = None,
) -> list[Item]:
    """An auditor's answer to ``escalation`` and the decision it leads to (``None`` with the
    ``error`` that prevents one), the answer at ``dialogue_index``."""
    p = escalation.proposal_index
    return [
        log_entries.answer_entry(
            session.id,
            session.agent,
            escalation.handle,
            p,
            auditor=auditor,
            reason=reason,
            approve=approve,
        ),
        log_entries.decision_entry(
            session.id,
            session.agent,
            p,
            escalation.verdict_index,
            decision,
            error=error,
            handle=escalation.handle,
            dialogue_index=dialogue_index,
        ),
    ]


def _gaps(start: int, stop: int, own: Sequence[range]) -> list[tuple[int, int]]:
    """The stretches of ``start <= index < stop`` that none of the ranges in ``own`` covers,
    in order."""
    gaps: list[tuple[int, int]] = []
    position = start
    for mine in sorted(own, key=lambda mine: mine.start):
        if mine.stop <= position or not len(mine):
            continue
        if mine.start >= stop:
            break
        if mine.start > position:
            gaps.append((position, mine.start))
        position = mine.stop
    if position < stop:
        gaps.append((position, stop))
    return gaps


@dataclass(frozen=True)
class _Cited:
    """A charter by its hash and, when known, its version (what orders charters)."""

    sha256: str
    version: str | None
    """None: a charter thirdway never shipped, known by its hash alone."""

    @property
    def order(self) -> tuple[int, ...] | None:
        return None if self.version is None else version_order(self.version)

    def __str__(self) -> str:
        if self.version is None:
            return f"{self.sha256[:16]}… (version unknown)"
        return f"{self.version} ({self.sha256[:16]}…)"


def _charter_version(sha256: str, given: str | None) -> str | None:
    """The version of the charter a gatekeeper runs under: the registry's for a shipped one
    (``given``, if any, must agree), else ``given`` (None: known by its hash alone)."""
    if given is not None and (not isinstance(given, str) or not given):
        raise InputError(f"charter_version must be a charter's version string, not {given!r}")
    shipped = packaged_entry(sha256)
    if shipped is None:
        return given
    if given is not None and given != shipped.version:
        raise InputError(
            f"charter {sha256[:16]}… is thirdway's charter {shipped.version}, not {given!r}"
        )
    return shipped.version


def _charter_rollback(running: _Cited, cited: Iterable[str]) -> str | None:
    """Why a gatekeeper under ``running`` may not open over a log citing ``cited`` (the
    charters its verdicts and trust events cite), or None when it may.

    Charters only move forward: once a log cites a charter, a gatekeeper under an older one
    would stamp trust events that replay refuses as a downgrade (and its sanctions would fail
    after their batch was logged). So it opens only if it can show its charter is not older
    than any the log cites (:func:`~thirdway.charter.registry.version_order`; the same charter
    always may). It cannot for a cited charter thirdway never shipped that is not its own (the
    log holds only the hash; it may be a later release's), nor for its own charter given by its
    hash alone, or with a version starting with no number, once the log cites another: all
    refused (fail closed)."""
    others = {sha: _Cited(sha, _shipped_version(sha)) for sha in cited if sha != running.sha256}
    if not others:
        return None
    unknown = sorted(sha for sha, charter in others.items() if charter.order is None)
    if unknown:
        return (
            f"the log cites charter {others[unknown[0]]}, which this thirdway never shipped "
            "(a later release's, or another charter file's), so the gatekeeper's charter "
            f"{running} cannot be shown not to be older: {_FORWARD}"
        )
    newest = max(others.values(), key=lambda charter: (charter.order or (), charter.sha256))
    mine, theirs = running.order, newest.order
    if mine is None:
        why = (
            "is one thirdway never shipped, given by its hash alone (pass its version as "
            "charter_version)"
            if running.version is None
            else "has a version that starts with no number"
        )
        return (
            f"the gatekeeper's charter {running} {why}, so it cannot be ordered after charter "
            f"{newest} that its log already cites: {_FORWARD}"
        )
    if theirs is not None and mine < theirs:
        return (
            f"the gatekeeper's charter {running} is older than charter {newest} that its log "
            f"already cites: {_FORWARD}"
        )
    return None


_FORWARD: Final = "charters only move forward (publish a new version instead)"


def _shipped_version(sha256: str) -> str | None:
    shipped = packaged_entry(sha256)
    return None if shipped is None else shipped.version


def _parse(index: int, data: bytes) -> LogEntry:
    try:
        return LogEntry.model_validate_json(data)
    except ValidationError as exc:
        raise LogError(f"log entry {index}: {describe(exc, 'thirdway/1 log entry')}") from None


def _check_produced_by(session: Session, produced_by: int) -> None:
    if produced_by >= len(session.observations):
        raise GateError(f"produced_by {produced_by} names no observation of this session")
    channel = session.observations[produced_by].channel
    if channel != "call":
        raise GateError(
            f"produced_by {produced_by} names a {channel} observation; "
            "it must name the call that produced the data"
        )


def _limit(value: int, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InputError(f"{name} must be a positive integer")
    return value


def _check_room(session: Session, new: Sequence[Observation]) -> None:
    if len(session.observations) + len(new) > MAX_OBSERVATIONS:
        raise GateError(f"session {session.id!r} holds the most observations allowed")
    added = sum(len(o.content or "") for o in new)
    if session.chars + added > MAX_SESSION_CHARS:
        raise GateError(
            f"session {session.id!r} would hold more than {MAX_SESSION_CHARS} characters of "
            "observations; start a new session"
        )


def _record(session: Session, observations: Sequence[Observation]) -> None:
    """Add what was just logged to the session, and do now the verifier's per-observation work
    (normalised text, instruction spans, hash: :func:`thirdway.verify.prepare`, memoised per
    object), so a proposal citing these observations does not pay for it on its own path."""
    for recorded in observations:
        prepare(recorded)
    session.add(observations)
