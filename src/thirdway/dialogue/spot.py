"""Spot audits: unpredictable, verifiable selection of actions for review.

Every action granted without a person (a gatekeeper ``decision`` entry with outcome ``allow``
that answers a proposal, not an escalation) is a *candidate*. Candidates are selected by an
epoch secret: when an epoch starts, SHA-256 of a fresh 32-byte secret is committed to the log
(an ``epoch`` entry ``{"event": "start", "epoch", "commitment", "rates", "tiers_sha256",
"at"}``), together with the spot-audit rate of each trust tier. A candidate of an agent at tier
*t* is selected when

    HMAC-SHA256(secret, SHA-256 of the proposal's RFC 8785 bytes) < rate_t × 2^256

reading the MAC as a big-endian 256-bit integer and the rate as a fraction (100 % selects
everything, 0 % nothing). The agent, not knowing the secret, cannot tell which of its actions
will be reviewed. When the epoch ends, the secret is revealed (``{"event": "end", "epoch",
"secret", "at"}``) and :func:`verify_epochs` lets anyone check, from the log alone, that the
secret matches the commitment and that exactly the selected candidates got a spot audit: none
skipped, none singled out. The tier is the agent's trust tier at the candidate's position in the
log (the fold of the trust events before it), so it too comes from the log.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Annotated, Any, Final, Literal

from pydantic import Field, StringConstraints, ValidationError

from thirdway.dialogue.errors import DialogueError, one_line
from thirdway.errors import InputError
from thirdway.protocol.canonical import canonical_sha256
from thirdway.protocol.models import Id, LogEntry, Model, Proposal, Sha256Hex, TrustEvent
from thirdway.trust.fold import apply as apply_trust
from thirdway.trust.model import TiersConfig, TrustState
from thirdway.trust.rules import Context, initial_state

SECRET_BYTES: Final = 32
SPACE: Final = 1 << 256
"""HMAC-SHA256 values are read as integers in [0, 2^256)."""
SecretHex = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]
Percent = Annotated[float, Field(ge=0, le=100, allow_inf_nan=False)]
_EPOCH_ID = re.compile(r"^epoch-[0-9a-f]{16}$")


# --------------------------------------------------------------------------- selection


def commitment(secret: bytes) -> str:
    """What is logged when the epoch starts: SHA-256 of the secret, hex."""
    return hashlib.sha256(secret).hexdigest()


def selection_value(secret: bytes, proposal_sha256: str) -> int:
    """HMAC-SHA256 keyed by the secret over the proposal hash's 32 bytes, as an integer."""
    mac = hmac.new(secret, bytes.fromhex(proposal_sha256), hashlib.sha256).digest()
    return int.from_bytes(mac, "big")


def threshold(percent: float) -> int:
    """``percent`` % of the HMAC space, exactly (the float's own binary value, no rounding up)."""
    if not 0 <= percent <= 100:
        raise InputError(f"a spot-audit rate is a percentage from 0 to 100, not {percent!r}")
    return int(Fraction(percent) * SPACE / 100)


def is_selected(secret: bytes, proposal_sha256: str, percent: float) -> bool:
    """Whether the epoch secret selects this proposal at this rate."""
    return selection_value(secret, proposal_sha256) < threshold(percent)


# --------------------------------------------------------------------------- epoch entries


class EpochStart(Model):
    event: Literal["start"] = "start"
    epoch: Id
    commitment: Sha256Hex
    rates: dict[Literal["0", "1", "2", "3", "4"], Percent]
    """Spot-audit percentage per tier for this epoch (from the tiers configuration)."""
    tiers_sha256: Sha256Hex
    at: Annotated[int, Field(ge=0, le=2**53 - 1)]


class EpochEnd(Model):
    event: Literal["end"] = "end"
    epoch: Id
    secret: SecretHex
    at: Annotated[int, Field(ge=0, le=2**53 - 1)]


def rates_of(tiers: TiersConfig) -> dict[str, float]:
    """The per-tier spot-audit rates an epoch commits to."""
    return {str(spec.tier): spec.spot_audit_percent for spec in tiers.tiers}


def start_entry(epoch: str, secret: bytes, tiers: TiersConfig, at: int) -> LogEntry:
    start = EpochStart.model_validate(
        {
            "epoch": epoch,
            "commitment": commitment(secret),
            "rates": rates_of(tiers),
            "tiers_sha256": tiers.sha256,
            "at": at,
        }
    )
    return LogEntry(type="epoch", payload=start.model_dump(mode="json"))


def end_entry(epoch: str, secret: bytes, at: int) -> LogEntry:
    end = EpochEnd(epoch=epoch, secret=secret.hex(), at=at)
    return LogEntry(type="epoch", payload=end.model_dump(mode="json"))


class EpochKeeper:
    """Keeps each epoch's secret in ``<folder>/<epoch>.secret`` (mode 0600) from its start to its
    end, so that a restarted gateway can still reveal it."""

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)

    def create(self) -> tuple[str, bytes]:
        """A new epoch id and secret, stored before anything is logged about them."""
        self.folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        epoch = "epoch-" + secrets.token_hex(8)
        secret = secrets.token_bytes(SECRET_BYTES)
        path = self._path(epoch)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(secret.hex().encode("ascii"))
            handle.flush()
            os.fsync(handle.fileno())
        return epoch, secret

    def secret(self, epoch: str) -> bytes | None:
        """The stored secret of ``epoch``, or ``None`` if this keeper never held it."""
        if not _EPOCH_ID.match(epoch):
            return None
        try:
            text = self._path(epoch).read_text("ascii").strip()
        except FileNotFoundError:
            return None
        if not re.fullmatch(r"[0-9a-f]{64}", text):
            raise DialogueError(f"the secret file of {epoch} is damaged")
        return bytes.fromhex(text)

    def _path(self, epoch: str) -> Path:
        return self.folder / f"{epoch}.secret"


# --------------------------------------------------------------------------- the log, folded


@dataclass(frozen=True)
class Candidate:
    """An action granted without a person, and what its selection depends on."""

    decision_index: int
    proposal_index: int
    agent: str
    session: str
    tier: int
    proposal_sha256: str
    epoch: str | None
    """The epoch active at the decision's position (``None``: no epoch, never selected)."""


@dataclass
class Epoch:
    """One epoch as the log records it."""

    id: str
    start_index: int
    start: EpochStart
    end_index: int | None = None
    end: EpochEnd | None = None
    candidates: list[Candidate] = field(default_factory=list)
    spot_opens: list[tuple[int, Mapping[str, Any]]] = field(default_factory=list)
    """(log index, payload) of every spot-audit ``open`` event naming this epoch."""
    problems: list[str] = field(default_factory=list)

    def rate(self, tier: int) -> float:
        return self.start.rates[str(tier)]  # type: ignore[index]

    @property
    def secret(self) -> bytes | None:
        return bytes.fromhex(self.end.secret) if self.end is not None else None


class SpotFeed:
    """Folds log entries, in order, into what spot selection depends on: the agents' trust
    tiers, the proposals' hashes, the epochs and their candidates. The live service and
    :func:`verify_epochs` both use it, so they cannot disagree about a selection."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.trust: dict[str, TrustState] = {}
        self.epochs: dict[str, Epoch] = {}
        self.active: Epoch | None = None
        self._proposals: dict[int, tuple[str, str, str]] = {}
        self.problems: list[str] = []

    def tier(self, agent: str) -> int:
        state = self.trust.get(agent)
        return state.tier if state is not None else self.ctx.rules.initial_tier

    def trust_state(self, agent: str) -> TrustState:
        return self.trust.get(agent) or initial_state(agent, self.ctx)

    def feed(self, index: int, entry: LogEntry) -> Candidate | None:
        """Take the entry at ``index``; returns it as a candidate if it is one."""
        if entry.type == "trust":
            self._trust(index, entry)
        elif entry.type == "proposal":
            self._proposal(index, entry)
        elif entry.type == "epoch":
            self._epoch(index, entry.payload)
        elif entry.type == "decision":
            return self._decision(index, entry.payload)
        elif entry.type == "dialogue" and entry.payload.get("event") == "open":
            self._spot_open(index, entry.payload)
        return None

    def _trust(self, index: int, entry: LogEntry) -> None:
        try:
            event = TrustEvent.model_validate(entry.payload)
        except ValidationError:
            self.problems.append(f"log entry {index}: a trust entry that is not a trust event")
            return
        self.trust[event.agent] = apply_trust(self.trust_state(event.agent), event, self.ctx)

    def _proposal(self, index: int, entry: LogEntry) -> None:
        try:
            proposal = Proposal.model_validate(entry.payload["proposal"])
        except (KeyError, ValidationError):
            self.problems.append(f"log entry {index}: a proposal entry without a valid proposal")
            return
        agent = entry.agent or proposal.agent or ""
        self._proposals[index] = (agent, proposal.session, canonical_sha256(proposal))

    def _epoch(self, index: int, payload: Mapping[str, Any]) -> None:
        event = payload.get("event")
        try:
            if event == "start":
                start = EpochStart.model_validate(payload)
                if self.active is not None:
                    self.problems.append(
                        f"log entry {index}: epoch {start.epoch} starts while "
                        f"{self.active.id} is still open"
                    )
                    return
                if start.epoch in self.epochs:
                    self.problems.append(f"log entry {index}: epoch {start.epoch} starts twice")
                    return
                self.active = Epoch(start.epoch, index, start)
                self.epochs[start.epoch] = self.active
            elif event == "end":
                end = EpochEnd.model_validate(payload)
                epoch = self.epochs.get(end.epoch)
                if epoch is None or epoch.end is not None:
                    self.problems.append(f"log entry {index}: end of {end.epoch}, not open")
                    return
                epoch.end, epoch.end_index = end, index
                if self.active is epoch:
                    self.active = None
            else:
                self.problems.append(f"log entry {index}: unknown epoch event {event!r}")
        except ValidationError as exc:
            self.problems.append(f"log entry {index}: {one_line(exc, 'epoch entry')}")

    def _decision(self, index: int, payload: Mapping[str, Any]) -> Candidate | None:
        """A proposal's own decision (not an escalation's) is the last entry that needs the
        proposal's hash: it is dropped here, so the feed does not grow with every proposal a
        long-running gateway ever saw. A second such decision for one proposal is a problem."""
        decision = payload.get("decision")
        if "handle" in payload or not isinstance(decision, Mapping):
            return None
        proposal_index = payload.get("proposal_index")
        found = (
            self._proposals.pop(proposal_index, None) if isinstance(proposal_index, int) else None
        )
        if decision.get("outcome") != "allow":
            return None
        if found is None:
            self.problems.append(
                f"log entry {index}: a decision for no earlier proposal (or its second one)"
            )
            return None
        agent, session, sha = found
        epoch = self.active
        candidate = Candidate(
            decision_index=index,
            proposal_index=proposal_index,  # type: ignore[arg-type]
            agent=agent,
            session=session,
            tier=self.tier(agent),
            proposal_sha256=sha,
            epoch=epoch.id if epoch is not None else None,
        )
        if epoch is not None:
            epoch.candidates.append(candidate)
        return candidate

    def _spot_open(self, index: int, payload: Mapping[str, Any]) -> None:
        if payload.get("kind") != "spot":
            return
        epoch = self.epochs.get(str(payload.get("epoch")))
        if epoch is None:
            self.problems.append(f"log entry {index}: a spot audit names no known epoch")
            return
        epoch.spot_opens.append((index, payload))


# --------------------------------------------------------------------------- verification


@dataclass(frozen=True)
class EpochReport:
    """What :func:`verify_epochs` found about one epoch."""

    epoch: str
    start_index: int
    end_index: int | None
    candidates: int
    selected: int
    audited: int
    problems: tuple[str, ...]

    @property
    def revealed(self) -> bool:
        return self.end_index is not None

    @property
    def ok(self) -> bool:
        return not self.problems


def verify_epochs(entries: Iterable[tuple[int, LogEntry]], ctx: Context) -> list[EpochReport]:
    """Check every epoch of the log: commitment, then selection of every candidate.

    An epoch not yet ended is reported with ``revealed == False`` and no selection problems (its
    secret is not known yet); problems in the log's epoch entries themselves are reported on the
    epoch they concern, or on a pseudo-epoch ``(log)``."""
    feed = SpotFeed(ctx)
    for index, entry in entries:
        feed.feed(index, entry)
    reports = [_report(epoch) for epoch in feed.epochs.values()]
    if feed.problems:
        reports.append(EpochReport("(log)", 0, None, 0, 0, 0, tuple(feed.problems)))
    return reports


def _report(epoch: Epoch) -> EpochReport:
    problems = list(epoch.problems)
    audited: dict[int, list[tuple[int, Mapping[str, Any]]]] = {}
    for index, payload in epoch.spot_opens:
        proposal_index = payload.get("proposal_index")
        if isinstance(proposal_index, int):
            audited.setdefault(proposal_index, []).append((index, payload))
    secret = epoch.secret
    if secret is None:
        return EpochReport(
            epoch.id, epoch.start_index, None, len(epoch.candidates), 0, len(audited), ()
        )
    if commitment(secret) != epoch.start.commitment:
        problems.append(
            f"the revealed secret of {epoch.id} does not match the commitment logged at entry "
            f"{epoch.start_index}: its selections cannot be trusted"
        )
    selected = 0
    candidates = {c.proposal_index: c for c in epoch.candidates}
    for candidate in epoch.candidates:
        chosen = is_selected(secret, candidate.proposal_sha256, epoch.rate(candidate.tier))
        selected += chosen
        opens = audited.get(candidate.proposal_index, [])
        if chosen and not opens:
            problems.append(
                f"proposal {candidate.proposal_index} (decision {candidate.decision_index}, "
                f"agent {candidate.agent}, tier {candidate.tier}) was selected by the secret "
                "but never spot-audited"
            )
        if not chosen and opens:
            problems.append(
                f"proposal {candidate.proposal_index} was spot-audited (entry {opens[0][0]}) "
                f"but the secret did not select it at tier {candidate.tier}: singled out"
            )
        if len(opens) > 1:
            problems.append(f"proposal {candidate.proposal_index} was spot-audited twice")
        for index, payload in opens:
            if payload.get("proposal_sha256") != candidate.proposal_sha256:
                problems.append(f"spot audit at entry {index} names another proposal hash")
    for proposal_index, opens in sorted(audited.items()):
        if proposal_index not in candidates:
            problems.append(
                f"spot audit at entry {opens[0][0]} reviews proposal {proposal_index}, which is "
                f"not an action granted during {epoch.id}"
            )
    return EpochReport(
        epoch.id,
        epoch.start_index,
        epoch.end_index,
        len(epoch.candidates),
        selected,
        len(audited),
        tuple(problems),
    )


def parse_epoch_id(value: str) -> str:
    """An epoch id as written by :class:`EpochKeeper`, or a one-line error."""
    if not isinstance(value, str) or not _EPOCH_ID.match(value):
        raise DialogueError(f"{str(value)[:80]!r} is not an epoch id (epoch-<16 hex digits>)")
    return value


def describe_start(start: EpochStart) -> str:
    rates = ", ".join(f"tier {tier}: {rate:g} %" for tier, rate in sorted(start.rates.items()))
    return f"{start.epoch}: commitment {start.commitment[:16]}…; rates {rates}"


def validation_problem(exc: ValidationError) -> str:
    return one_line(exc, "epoch entry")
