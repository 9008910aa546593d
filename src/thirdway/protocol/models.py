"""pydantic v2 models of the ``thirdway/1`` wire format (see DESIGN, "The reasoning chain").

The models are strict about shape (unknown fields are refused, sizes are bounded, strings must be
valid Unicode) and silent about meaning: whether a chain is honest is the verifier's job, not the
parser's. Every model is frozen so that a value, once validated, is the value that gets hashed.
"""

from __future__ import annotations

from typing import Annotated, Final, Literal, TypeAlias

import rfc8785
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    JsonValue,
    StringConstraints,
    model_validator,
)

from thirdway.protocol import limits
from thirdway.protocol.canonical import orjson_canonical

FORMAT: Final = "thirdway/1"
Format = Literal["thirdway/1"]


def _reject_surrogates(value: str) -> str:
    """Lone surrogates are not Unicode text; they cannot be canonicalised or hashed."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValueError(f"invalid Unicode (lone surrogate at position {exc.start})") from exc
    return value


Id = Annotated[
    str,
    StringConstraints(min_length=1, max_length=limits.MAX_ID_CHARS, pattern=r"^[^\x00-\x1f]+$"),
    AfterValidator(_reject_surrogates),
]
Quote = Annotated[
    str,
    StringConstraints(min_length=1, max_length=limits.MAX_QUOTE_CHARS),
    AfterValidator(_reject_surrogates),
]
Claim = Annotated[
    str,
    StringConstraints(max_length=limits.MAX_CLAIM_CHARS),
    AfterValidator(_reject_surrogates),
]
Content = Annotated[
    str,
    StringConstraints(max_length=limits.MAX_CONTENT_CHARS),
    AfterValidator(_reject_surrogates),
]
Index = Annotated[int, Field(ge=0, le=2**63 - 1)]
Sha256Hex = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]


class Model(BaseModel):
    """Base of every wire model: frozen, no unknown fields, aliases on the wire."""

    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        populate_by_name=True,
        str_strip_whitespace=False,
    )


# --------------------------------------------------------------------------- observations


def _i_json(value: dict[str, JsonValue]) -> dict[str, JsonValue]:
    """Arguments must be I-JSON (RFC 7493) so that RFC 8785 can hash them: no integer beyond
    2**53, no NaN or infinity. (Most values are settled by the exact ``orjson`` path; the
    reference decides the rest and names the problem.)"""
    if orjson_canonical(value, owned=False) is not None:
        return value
    try:
        rfc8785.dumps(value)
    except (rfc8785.CanonicalizationError, ValueError, TypeError) as exc:
        raise ValueError(f"not canonicalisable JSON (RFC 8785): {exc}") from exc
    return value


IJson = Annotated[dict[Id, JsonValue], AfterValidator(_i_json)]


class ToolCall(Model):
    """A call of a named tool with JSON arguments."""

    tool: Id
    args: IJson = Field(default_factory=dict, max_length=limits.MAX_ARGS)


Channel = Literal["principal", "call", "data"]


class Observation(Model):
    """Something the gateway recorded entering (or leaving) the agent's context.

    * ``principal``: an instruction from the user or operator (``content``).
    * ``call``: a tool call the agent made (``call``); its index is what ``produced_by`` names.
    * ``data``: a tool result (``content``), naming the call observation that produced it.
    """

    format: Format = FORMAT
    session: Id
    index: Index
    channel: Channel
    content: Content | None = None
    call: ToolCall | None = None
    produced_by: Index | None = None

    @model_validator(mode="after")
    def _channel_fields(self) -> Observation:
        if self.channel == "call":
            if self.call is None:
                raise ValueError("a 'call' observation needs 'call'")
            if self.content is not None or self.produced_by is not None:
                raise ValueError("a 'call' observation carries only 'call'")
        else:
            if self.content is None:
                raise ValueError(f"a '{self.channel}' observation needs 'content'")
            if self.call is not None:
                raise ValueError(f"a '{self.channel}' observation cannot carry 'call'")
            if self.channel == "data":
                if self.produced_by is None:
                    raise ValueError("a 'data' observation needs 'produced_by'")
                if self.produced_by >= self.index:
                    raise ValueError("'produced_by' must name an earlier observation")
            elif self.produced_by is not None:
                raise ValueError("a 'principal' observation cannot carry 'produced_by'")
        return self


# --------------------------------------------------------------------------- proposals


class Citation(Model):
    """A verbatim quote from one observation of the session."""

    obs: Index
    quote: Quote


Transform = Literal["text", "number", "date", "lower", "upper", "strip", "integer", "bool"]
"""The closed set of transforms a binding may declare between its quote and the argument."""


class TypedClaim(Model):
    """An optional machine-checkable claim: a small arithmetic/boolean formula over named values.

    ``expr`` uses the restricted grammar documented in :mod:`thirdway.verify` (numbers, names,
    ``+ - * /``, comparisons, ``and``/``or``/``not``); ``vars`` gives values bound from quotes.
    The verifier checks the claims of a chain together for satisfiability with z3.
    """

    expr: Annotated[str, StringConstraints(min_length=1, max_length=4096)]
    vars: dict[Id, float | int | bool] = Field(default_factory=dict, max_length=256)


class Step(Model):
    """One step of a reasoning chain: a claim supported by citations and/or earlier steps."""

    id: Id
    claim: Claim
    cites: list[Citation] = Field(default_factory=list, max_length=limits.MAX_CITES_PER_STEP)
    from_: list[Id] = Field(default_factory=list, alias="from", max_length=limits.MAX_FROM_PER_STEP)
    about_principal: bool = False
    """Set when the claim says what the principal asked or said (checked by attribution)."""
    typed: TypedClaim | None = None


class QuoteBinding(Model):
    """The argument equals ``quote`` (taken from the named step's evidence) after ``as``."""

    step: Id
    quote: Quote
    as_: Transform = Field(default="text", alias="as")


class ComposedBinding(Model):
    """The agent composed the value itself, justified by the named step."""

    composed: Id


class ItemsBinding(Model):
    """A list argument, bound element by element."""

    items: list[Binding] = Field(max_length=limits.MAX_BINDING_ITEMS)


class FieldsBinding(Model):
    """An object argument, bound field by field."""

    fields: dict[Id, Binding] = Field(max_length=limits.MAX_BINDING_ITEMS)


Binding: TypeAlias = QuoteBinding | ComposedBinding | ItemsBinding | FieldsBinding


class Effects(Model):
    """What the agent declares the action will do; checked against the tool's manifest."""

    reversible: bool
    external: bool
    summary: Claim = ""


class Proposal(Model):
    """An action plus the full reasoning chain that justifies it."""

    format: Format = FORMAT
    session: Id
    agent: Id | None = None
    action: ToolCall
    goal: Citation
    steps: list[Step] = Field(max_length=limits.MAX_STEPS)
    bindings: dict[Id, Binding] = Field(default_factory=dict, max_length=limits.MAX_ARGS)
    effects: Effects


# --------------------------------------------------------------------------- verdicts

Severity = Literal["incomplete", "policy", "deception"]
Decision = Literal["pass", "escalate", "deny"]


class Finding(Model):
    """One thing the verifier found, with the evidence a person needs to check it."""

    code: Id
    severity: Severity
    step: Id | None = None
    message: Claim
    evidence: list[Index] = Field(default_factory=list)
    """Observation indices (in the session) that support the finding."""


class Verdict(Model):
    """The verifier's decision on one proposal. Canonical bytes depend only on the inputs."""

    format: Format = FORMAT
    session: Id
    verdict: Decision
    findings: list[Finding] = Field(default_factory=list)
    proposal_sha256: Sha256Hex | None = None
    """SHA-256 of the proposal's canonical bytes, so a verdict names what it judged."""
    context_sha256: Sha256Hex | None = None
    """SHA-256 over the observations, manifests and policy the verdict was computed from."""
    charter_sha256: Sha256Hex | None = None
    """SHA-256 of the charter the verdict was given under (``Charter.sha256``, the hash every
    trust event cites). The gateway acts only on a verdict citing its own charter."""


# --------------------------------------------------------------------------- trust


class TrustEvent(Model):
    """A change to, or evidence about, an agent's standing. Trust state is a fold over these."""

    format: Format = FORMAT
    agent: Id
    kind: Id
    """e.g. ``clean_action``, ``sanction``, ``restoration``, ``appeal``, ``reversal``, ``probe``."""
    evidence: list[Index] = Field(default_factory=list)
    """Log indices of the entries that justify this event."""
    rule: Id | None = None
    charter_sha256: Sha256Hex | None = None
    tier_before: Annotated[int, Field(ge=0, le=4)] | None = None
    tier_after: Annotated[int, Field(ge=0, le=4)] | None = None
    actor: Id | None = None
    """Who caused it: ``system`` for automatic rules, or an auditor's id."""
    at: Annotated[int, Field(ge=0, le=2**53 - 1)] | None = None
    """When it happened, in unix seconds, as stated by whoever recorded it. Rules that measure
    time (restoration, the repeat-offence window) read this, never a clock, so trust state is a
    pure function of the events."""
    reason: Claim = ""
    detail: dict[Id, JsonValue] = Field(default_factory=dict)


# --------------------------------------------------------------------------- log entries

EntryType = Literal[
    "observation",
    "proposal",
    "verdict",
    "decision",
    "capability",
    "execution",
    "trust",
    "dialogue",
    "attestation",
    "probe",
    "epoch",
    "config",
    "note",
]


class LogEntry(Model):
    """The envelope of every log entry. Its RFC 8785 bytes are the Merkle leaf."""

    format: Format = FORMAT
    type: EntryType
    session: Id | None = None
    agent: Id | None = None
    payload: IJson


ItemsBinding.model_rebuild()
FieldsBinding.model_rebuild()
