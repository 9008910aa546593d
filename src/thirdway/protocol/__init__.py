"""The ``thirdway/1`` wire protocol: models, canonical bytes, parsing and JSON Schemas."""

from thirdway.protocol.canonical import canonical_json, canonical_sha256, sha256_hex
from thirdway.protocol.models import (
    FORMAT,
    Binding,
    Citation,
    ComposedBinding,
    Effects,
    FieldsBinding,
    Finding,
    ItemsBinding,
    LogEntry,
    Observation,
    Proposal,
    QuoteBinding,
    Step,
    ToolCall,
    TrustEvent,
    TypedClaim,
    Verdict,
)
from thirdway.protocol.parse import parse_model, parse_observations, parse_proposal

__all__ = [
    "FORMAT",
    "Binding",
    "Citation",
    "ComposedBinding",
    "Effects",
    "FieldsBinding",
    "Finding",
    "ItemsBinding",
    "LogEntry",
    "Observation",
    "Proposal",
    "QuoteBinding",
    "Step",
    "ToolCall",
    "TrustEvent",
    "TypedClaim",
    "Verdict",
    "canonical_json",
    "canonical_sha256",
    "parse_model",
    "parse_observations",
    "parse_proposal",
    "sha256_hex",
]
