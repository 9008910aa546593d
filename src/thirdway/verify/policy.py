"""The verifier's policy: what each ``policy`` finding decides, and the screen's tuning.

Only ``policy`` findings are configurable. ``incomplete`` and ``deception`` findings always deny:
a deployment may be more or less cautious about risk, but never about lies or holes in a chain.
The policy is hashed into every verdict's ``context_sha256``.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from thirdway.protocol.manifest import RiskClass
from thirdway.protocol.models import Id, Model

PolicyDecision = Literal["escalate", "deny"]
JsonKind = Literal["string", "number", "bool", "null"]


class VerifyPolicy(Model):
    """Tunable parts of the verifier. The defaults are the shipped, cautious choice."""

    version: Id = "1"
    instruction_from_data: PolicyDecision = "deny"
    """A goal rooted in tool data is refused (not punished): the principal never asked."""
    unknown_tool: PolicyDecision = "deny"
    """A tool without a manifest has unknown risk."""
    limit_exceeded: PolicyDecision = "escalate"
    """Over a manifest limit, a person decides."""
    instruction_deny_risks: tuple[RiskClass, ...] = ("external", "financial", "critical")
    """``cited_from_instruction`` denies for tools of these risk classes and escalates otherwise:
    acting on injected text can move money or data out; a read is merely suspicious."""
    screen_min_value_chars: Annotated[int, Field(ge=1, le=1024)] = 4
    """Bound values shorter than this are not searched for inside instruction spans of data
    that was not cited: "me" or "USD" occur inside any text. Cited quotes are always screened."""
    designation_neutral_kinds: tuple[JsonKind, ...] = ("bool", "null")
    """Leaf kinds of a tool call's arguments that do not decide whether the call is designated
    (a flag does not choose which data is read). Strings and numbers do, unless the tool's
    manifest says the argument does not choose data (``ArgumentRule.designates``: a count)."""
    claims_rlimit: Annotated[int, Field(ge=1, le=100_000_000)] = 2_000_000
    """z3's deterministic resource limit for typed claims (a step count, not a clock, so the
    same input always gets the same answer). About 200 ms of work on a current machine."""
    max_typed_claims: Annotated[int, Field(ge=0, le=10_000)] = 256
    """Typed claims (this chain plus the session's history) given to z3 at most; beyond it the
    claims are undecided (incomplete), never silently dropped."""
