"""Tool manifests: what a tool may do and where each of its arguments may come from.

Manifests are data (YAML on disk), hashed into the verifier's measurement. They live in the
protocol layer because both the pure verifier and the policy layer read them.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from thirdway.protocol.models import Claim, Id, Model

RiskClass = Literal["read", "write", "external", "financial", "critical"]
RISK_ORDER: tuple[RiskClass, ...] = ("read", "write", "external", "financial", "critical")

Provenance = Literal["principal", "designated", "undesignated", "composed", "unknown"]
"""Where a value came from, as computed from the gateway's record (never from the chain):
``principal`` (an instruction), ``designated`` (a tool result the principal asked for),
``undesignated`` (any other tool data), ``composed`` (the agent's own words, which inherit the
provenance of what they cite), ``unknown`` (found in no observation)."""

ProvenanceRule = Literal["any", "principal", "principal-or-designated", "not-undesignated"]
"""What an argument accepts. ``not-undesignated`` admits composed values unless they repeat
undesignated data."""


class ArgumentRule(Model):
    """The provenance rule of one argument, and what happens when it is broken."""

    provenance: ProvenanceRule = "any"
    on_violation: Literal["escalate", "deny"] = "escalate"
    description: Claim = ""
    designates: bool = True
    """Whether this argument decides *which* data the call returns. A page size, count or
    limit (``n: 100``) does not: it says how much of data chosen otherwise, so the verifier
    ignores it when deciding whether the call's result is designated (the call is designated
    when every *designating* argument derives from the principal or designated data). The
    argument's own ``provenance`` rule still applies to it."""


class ToolManifest(Model):
    """Risk, reversibility and per-argument rules of one tool."""

    tool: Id
    description: Claim = ""
    risk: RiskClass
    reversible: bool
    external: bool = False
    args: dict[Id, ArgumentRule] = Field(default_factory=dict)
    limits: dict[Id, float] = Field(default_factory=dict)
    """Numeric upper bounds per argument (e.g. ``amount: 10000``); exceeding one escalates."""


class ManifestSet(Model):
    """All manifests a deployment knows, keyed by tool name."""

    version: Id = "1"
    tools: dict[Id, ToolManifest] = Field(default_factory=dict)
