"""Finding codes of the deterministic verifier, each with its fixed severity.

Severity decides what a finding costs: ``incomplete`` and ``deception`` always deny (deception is
also what the trust layer sanctions), ``policy`` escalates or denies as the :class:`VerifyPolicy`
and the tool manifests say. A code's severity never depends on the input, so the trust layer can
rely on it. The codes are part of the verdict's canonical bytes: never rename one.
"""

from __future__ import annotations

from typing import Final

from thirdway.protocol.models import Severity

# --------------------------------------------------------------------------- incomplete
# The chain does not (yet) justify the action. Refused without blame: fix the chain and retry.

MISSING_GOAL: Final = "missing_goal"
"""The proposal has no goal citation, so nothing ties the action to the principal."""

DUPLICATE_STEP: Final = "duplicate_step"
"""Two steps share an id; ``from`` edges and bindings naming it are ambiguous."""

DANGLING_STEP: Final = "dangling_step"
"""A ``from`` edge or a binding names a step the chain does not contain."""

CYCLE: Final = "cycle"
"""``from`` edges form a cycle: a conclusion that supports itself justifies nothing."""

UNUSED_STEP: Final = "unused_step"
"""A step does not lead to the action: padding that a reviewer would have to read for nothing."""

MISSING_BINDING: Final = "missing_binding"
"""An argument (or a list item or object field of one) has no binding: its origin is unstated."""

EXTRA_BINDING: Final = "extra_binding"
"""A binding names an argument, item or field the action does not have."""

BINDING_SHAPE: Final = "binding_shape"
"""A binding's shape does not fit the value (``items`` for a non-list, a quote for an object...)."""

BINDING_TOO_DEEP: Final = "binding_too_deep"
"""Bindings nest deeper than the wire limit; the rest of the argument is not examined."""

WRONG_TYPE: Final = "wrong_type"
"""The argument's JSON type cannot be the result of the declared transform (a string bound
``as: number``). Kept apart from ``action_mismatch`` because it is a confusion, not a lie."""

BAD_TRANSFORM: Final = "bad_transform"
"""The quote does not parse under the declared transform (``as: number`` on ``"ninety"``)."""

UNSUPPORTED_BINDING: Final = "unsupported_binding"
"""A binding quote is not among (or inside) the quotes its named step cites."""

CITES_CALL: Final = "cites_call"
"""A citation names a ``call`` observation: the agent's own call is not evidence."""

EMPTY_QUOTE: Final = "empty_quote"
"""A quote that is only whitespace matches everywhere and so supports nothing."""

MISSING_CITATION: Final = "missing_citation"
"""A step marked ``about_principal`` cites nothing, so what the principal said is unsupported."""

BAD_TYPED_CLAIM: Final = "bad_typed_claim"
"""A typed claim is outside the restricted grammar or mixes booleans and numbers."""

UNDECIDED_CLAIMS: Final = "undecided_claims"
"""z3 could not decide the typed claims within its deterministic resource limit."""

TOO_LARGE: Final = "too_large"
"""The input exceeds a wire-format limit (only reachable when validation was bypassed)."""

INCONSISTENT_RECORD: Final = "inconsistent_record"
"""The gateway's record itself is malformed (two observations with one index)."""

VERIFIER_ERROR: Final = "verifier_error"
"""The verifier failed on this input. It fails closed: the action is denied, nobody blamed."""

# --------------------------------------------------------------------------- deception
# The chain says something the record shows to be false. Denied, and sanctioned by trust.

FABRICATED_QUOTE: Final = "fabricated_quote"
"""A quote does not occur in the observation it cites (or that observation does not exist)."""

FUTURE_OBSERVATION: Final = "future_observation"
"""A citation names an observation recorded after the proposal was made."""

FOREIGN_SESSION: Final = "foreign_session"
"""A citation's quote comes from another session's observation, not this session's."""

MISATTRIBUTION: Final = "misattribution"
"""The goal, or a step about the principal, quotes text the principal never wrote."""

ACTION_MISMATCH: Final = "action_mismatch"
"""An argument differs from the value its binding produces: the action is not the one justified."""

UNDERSTATED_RISK: Final = "understated_risk"
"""The declared effects are milder than the manifest (``reversible`` for an irreversible tool)."""

CONTRADICTION: Final = "contradiction"
"""The chain's typed claims contradict the agent's earlier verified claims in this session."""

UNSATISFIABLE_CLAIMS: Final = "unsatisfiable_claims"
"""The chain's own typed claims cannot all be true at once."""

# --------------------------------------------------------------------------- policy
# The chain may be honest but the action needs a person (escalate) or is not allowed (deny).

INSTRUCTION_FROM_DATA: Final = "instruction_from_data"
"""The goal cites tool data, not the principal: the honest face of a prompt injection."""

PROVENANCE_VIOLATION: Final = "provenance_violation"
"""An argument's value comes from a source its manifest rule does not accept."""

CITED_FROM_INSTRUCTION: Final = "cited_from_instruction"
"""A quote or bound value lies inside an instruction-like span of tool data."""

UNKNOWN_TOOL: Final = "unknown_tool"
"""No manifest describes the tool, so its risk is unknown."""

LIMIT_EXCEEDED: Final = "limit_exceeded"
"""A numeric argument exceeds the manifest's limit for it."""

SEVERITY: Final[dict[str, Severity]] = {
    **dict.fromkeys(
        (
            MISSING_GOAL,
            DUPLICATE_STEP,
            DANGLING_STEP,
            CYCLE,
            UNUSED_STEP,
            MISSING_BINDING,
            EXTRA_BINDING,
            BINDING_SHAPE,
            BINDING_TOO_DEEP,
            WRONG_TYPE,
            BAD_TRANSFORM,
            UNSUPPORTED_BINDING,
            CITES_CALL,
            EMPTY_QUOTE,
            MISSING_CITATION,
            BAD_TYPED_CLAIM,
            UNDECIDED_CLAIMS,
            TOO_LARGE,
            INCONSISTENT_RECORD,
            VERIFIER_ERROR,
        ),
        "incomplete",
    ),
    **dict.fromkeys(
        (
            FABRICATED_QUOTE,
            FUTURE_OBSERVATION,
            FOREIGN_SESSION,
            MISATTRIBUTION,
            ACTION_MISMATCH,
            UNDERSTATED_RISK,
            CONTRADICTION,
            UNSATISFIABLE_CLAIMS,
        ),
        "deception",
    ),
    **dict.fromkeys(
        (
            INSTRUCTION_FROM_DATA,
            PROVENANCE_VIOLATION,
            CITED_FROM_INSTRUCTION,
            UNKNOWN_TOOL,
            LIMIT_EXCEEDED,
        ),
        "policy",
    ),
}
"""Every code the verifier emits, and its severity."""
