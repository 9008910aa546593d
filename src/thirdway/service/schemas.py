"""Request and response bodies of the HTTP API (the wire models of the protocol are reused
where they exist: Observation, Proposal, ToolCall, Granted/Denied/Escalated, Executed, …)."""

from __future__ import annotations

from typing import Annotated, Any, Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from thirdway.dialogue import Dialogue
from thirdway.dialogue.challenges import ChallengeKind
from thirdway.enclave.attestation import Attestation
from thirdway.gateway import Denied, Escalated, Granted
from thirdway.protocol.models import Channel, Id, Index, ToolCall
from thirdway.trust.model import TrustState

T = TypeVar("T")

OutcomeBody = Annotated[Granted | Denied | Escalated, Field(discriminator="outcome")]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Page(BaseModel, Generic[T]):
    items: list[T]
    next_cursor: str | None = None
    """Pass as ``cursor`` for the next page; absent on the last page."""


class KeyRequest(Strict):
    name: Id
    role: Literal["agent", "auditor", "admin"]


class KeyCreated(BaseModel):
    name: str
    role: str
    key: str
    """The API key. Shown once: only its digest is stored."""


class KeyInfoBody(BaseModel):
    key_id: str
    name: str
    role: str
    created_at: int
    revoked_at: int | None = None


class WhoAmI(BaseModel):
    name: str
    role: str


SessionId = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_:@-][A-Za-z0-9._:@-]{0,127}$")]
"""A chosen session id: every route names the session as one URL path segment, so an id with
``/``, ``?``, ``#``, ``%``, spaces, or one that is ``.`` or ``..`` (which clients normalise
away) would open a session no request could reach."""


class SessionRequest(Strict):
    instruction: str = Field(min_length=1, max_length=100_000)
    """The principal's instruction (observation 0)."""
    agent: Id | None = None
    """Defaults to the calling agent; any other agent is refused."""
    session: SessionId | None = None
    """A chosen session id (default: a random one)."""


class SessionOpened(BaseModel):
    session: str
    agent: str


class SessionClosed(BaseModel):
    session: str
    closed: bool = True


class ObservationRequest(Strict):
    channel: Channel
    content: str | None = Field(default=None, max_length=1_000_000)
    call: ToolCall | None = None
    produced_by: Index | None = None


class ObservationRecorded(BaseModel):
    index: int


class ToolResultRequest(Strict):
    call: ToolCall
    content: str = Field(max_length=1_000_000)


class ToolResultRecorded(BaseModel):
    call_index: int
    result_index: int


class ExecuteRequest(Strict):
    token: str = Field(min_length=1, max_length=20_000)
    call: ToolCall


class ChallengeRequest(Strict):
    kind: ChallengeKind
    obs: Index | None = None
    text: str = Field(default="", max_length=10_000)


class ReasonRequest(Strict):
    reason: str = Field(min_length=1, max_length=10_000)


class AnswerRequest(Strict):
    answer: dict[str, Any]
    """The agent's answer: a small chain (see ``thirdway.dialogue.Answer``)."""


class Resolution(BaseModel):
    status: Literal["pending", "granted", "denied", "expired", "approved"]
    reason: str
    token: str | None = None
    capability_index: int | None = None


class TierPointBody(BaseModel):
    index: int
    at: int
    kind: str
    tier: int


class TrustBody(BaseModel):
    state: TrustState
    tiers: list[TierPointBody]


class CheckpointBody(BaseModel):
    size: int
    root: str
    """Hex SHA-256 Merkle root at ``size``."""
    checkpoint: str
    """C2SP signed note text."""


class LogEntryBody(BaseModel):
    index: int
    entry: dict[str, Any] | None
    """The entry; ``None`` when ``redacted``."""
    leaf_hash: str
    redacted: bool = False
    """An agent sees other agents' entries only as leaf hashes: enough to check every proof
    and checkpoint, nothing of what another agent saw or did."""


class InclusionProofBody(BaseModel):
    index: int
    size: int
    leaf_hash: str
    root: str
    proof: list[str]


class ConsistencyProofBody(BaseModel):
    first: int
    second: int
    first_root: str
    second_root: str
    proof: list[str]


class AttestationBody(BaseModel):
    verifier: str
    attested: bool
    attestation: Attestation | None = None
    note: str


class Health(BaseModel):
    status: Literal["ok"] = "ok"
    log_size: int
    worker: int | None = None
    """The process id of the worker that answered (with several workers, which one)."""


DialoguePage = Page[Dialogue]
