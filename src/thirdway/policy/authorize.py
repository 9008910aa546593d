"""The authorization decision: may this agent, at its trust tier, make this tool call now?

The decision weighs the agent's tier, the tool's risk class, reversibility and reach (from its
manifest), the verifier's verdict, the verification dialogue's outcome and auditor approvals. It
is written as Cedar policies (``policy/default/policies.cedar``, documented there) so that
operators can read, review and extend it without touching code; this module only asks Cedar two
questions (``act``, then ``open_dialogue``) and turns the answers into one of three outcomes:

* ``allow`` — mint the capability token;
* ``needs_dialogue`` — open (or continue) a verification dialogue; an approval may release it;
* ``deny`` — refuse; no dialogue can release it.

Every decision carries the request it answered, the ``@id`` of the policies that decided it and
the SHA-256 of the policy text, so that it can be logged and re-checked by anyone.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from functools import cache, lru_cache
from typing import Annotated, Any, Final, Literal

from pydantic import ConfigDict, Field, ValidationError

from thirdway.errors import InputError
from thirdway.policy.cedar import CedarPolicySet, default_policy_text, precheck
from thirdway.protocol.manifest import RiskClass, ToolManifest
from thirdway.protocol.models import Claim, Decision, Id, Model, Sha256Hex

Outcome = Literal["allow", "needs_dialogue", "deny"]
DialogueOutcome = Literal["none", "approved", "denied"]

NO_MATCHING_PERMIT: Final = "no-matching-permit"
"""The reason recorded when nothing permitted the action (Cedar's default deny)."""
EVALUATION_ERROR: Final = "cedar-evaluation-error"
"""The reason recorded when a policy could not be evaluated (the decision is then ``deny``)."""
_ACT: Final = {"type": "Action", "id": "act"}
_OPEN_DIALOGUE: Final = {"type": "Action", "id": "open_dialogue"}
MAX_AMOUNT: Final = 2**53
MAX_APPROVALS: Final = 1000
DECISIONS_REMEMBERED: Final = 4096
"""Cedar answers an :class:`Authorizer` keeps, most recently used first."""


class AuthorizationRequest(Model):
    """Everything the decision depends on. Built by the gatekeeper from the agent's trust state,
    the tool manifest, the verdict and the dialogue; logged with the decision."""

    model_config = ConfigDict(strict=True)

    agent: Id
    tier: Annotated[int, Field(ge=0, le=4)]
    tool: Id
    risk: RiskClass
    reversible: bool
    external: bool
    verdict: Decision
    provenance_clean: bool
    """True when every bound argument came from the principal or a source it designated."""
    dialogue: DialogueOutcome = "none"
    approvals: Annotated[int, Field(ge=0, le=MAX_APPROVALS)] = 0
    required_approvals: Annotated[int, Field(ge=1, le=MAX_APPROVALS)] = 2
    """m in "m-of-n auditor approval", for critical actions."""
    amount: Annotated[float, Field(ge=0, le=MAX_AMOUNT, allow_inf_nan=False)] | None = None
    """Money the call moves, if any. Cedar sees it rounded up to a whole unit, which keeps every
    comparison with a whole-unit limit exact (``amount <= 1000`` iff ``ceil(amount) <= 1000``)."""

    @classmethod
    def build(cls, **fields: Any) -> AuthorizationRequest:
        """Construct, turning validation errors into an InputError that names the field."""
        try:
            return cls(**fields)
        except ValidationError as exc:
            error = exc.errors()[0]
            where = ".".join(str(part) for part in error["loc"]) or "request"
            raise InputError(f"invalid authorization request: {where}: {error['msg']}") from None

    @classmethod
    def for_tool(cls, manifest: ToolManifest, **fields: Any) -> AuthorizationRequest:
        """A request about ``manifest``'s tool; ``fields`` supply the rest."""
        return cls.build(
            tool=manifest.tool,
            risk=manifest.risk,
            reversible=manifest.reversible,
            external=manifest.external,
            **fields,
        )


class AuthorizationDecision(Model):
    """The outcome, why (policy ``@id`` annotations), under which policy text, for which request."""

    outcome: Outcome
    reasons: list[Id]
    """allow: the permits that matched; needs_dialogue: the forbids that stopped the direct action
    (or ``no-matching-permit``); deny: the forbids that refused even a dialogue (or
    ``no-matching-permit``, or ``cedar-evaluation-error``)."""
    errors: list[Claim] = Field(default_factory=list)
    policy_set_sha256: Sha256Hex
    request: AuthorizationRequest


class Authorizer:
    """Evaluates requests against one Cedar policy set, parsed and validated once.

    ``Authorizer()`` uses the shipped defaults; ``Authorizer(policies_text=...)`` any complete
    set; :meth:`with_operator_policies` the defaults followed by an operator's own policies."""

    def __init__(self, policies_text: str | None = None) -> None:
        text = default_policy_text() if policies_text is None else policies_text
        self.policies = CedarPolicySet(text)
        self._answers = lru_cache(maxsize=DECISIONS_REMEMBERED)(self._answer)

    @classmethod
    def with_operator_policies(cls, extra: str) -> Authorizer:
        """The default policies plus ``extra`` (a ``forbid`` restricts, a ``permit`` widens)."""
        if not isinstance(extra, str):
            raise InputError(f"operator policies must be text, not {type(extra).__name__}")
        try:
            ids = precheck(extra)
        except InputError as exc:
            raise InputError(f"operator policies: {exc}") from None
        taken = sorted(set(ids.values()) & set(default_authorizer().policies.ids.values()))
        if taken:
            raise InputError(
                f"operator policies: @id({taken[0]!r}) is already a default policy's @id; give "
                "the operator's policy its own, so that the log says which one decided"
            )
        return cls(default_policy_text() + "\n" + extra)

    @property
    def policy_set_sha256(self) -> str:
        return self.policies.sha256

    def authorize(self, request: AuthorizationRequest) -> AuthorizationDecision:
        """Decide ``allow``, ``needs_dialogue`` or ``deny`` for ``request``."""
        if not isinstance(request, AuthorizationRequest):
            raise InputError("authorize() needs an AuthorizationRequest")
        outcome, reasons, errors = self._answers(request)
        return self._decision(request, outcome, reasons, errors)

    def _answer(
        self, request: AuthorizationRequest
    ) -> tuple[Outcome, tuple[str, ...], tuple[str, ...]]:
        """Cedar's answer to ``request``. Remembered per request (:data:`DECISIONS_REMEMBERED`):
        the answer depends on nothing but the request's fields and this authorizer's policies,
        both immutable, and an agent repeats the same request (its tier, the tool, the verdict)
        far more often than not."""
        base = _cedar_request(request)
        entities = _cedar_entities(request)
        (act,) = self.policies.evaluate([{**base, "action": _ACT}], entities)
        if act.allowed and not act.errors:
            # Allowed directly: whether a dialogue could be opened does not matter, so that
            # request (half of Cedar's work) is only evaluated when the action is not allowed.
            return "allow", act.policy_ids, ()
        (dialogue,) = self.policies.evaluate([{**base, "action": _OPEN_DIALOGUE}], entities)
        errors = (*act.errors, *dialogue.errors)
        if errors:
            outcome: Outcome = "deny"
            reasons: tuple[str, ...] = (EVALUATION_ERROR,)
        elif dialogue.allowed:
            outcome, reasons = "needs_dialogue", act.policy_ids or (NO_MATCHING_PERMIT,)
        else:
            outcome, reasons = "deny", dialogue.policy_ids or (NO_MATCHING_PERMIT,)
        return outcome, reasons, errors

    def _decision(
        self,
        request: AuthorizationRequest,
        outcome: Outcome,
        reasons: Sequence[str],
        errors: Sequence[str],
    ) -> AuthorizationDecision:
        return AuthorizationDecision(
            outcome=outcome,
            reasons=list(reasons),
            errors=[error[:1000] for error in errors],
            policy_set_sha256=self.policies.sha256,
            request=request,
        )


@cache
def default_authorizer() -> Authorizer:
    """The shared authorizer over the shipped default policies."""
    return Authorizer()


def authorize(
    request: AuthorizationRequest, *, authorizer: Authorizer | None = None
) -> AuthorizationDecision:
    """Decide ``request`` with ``authorizer`` (the default policies when omitted)."""
    return (authorizer or default_authorizer()).authorize(request)


def _cedar_request(request: AuthorizationRequest) -> dict[str, Any]:
    context: dict[str, Any] = {
        "verdict": request.verdict,
        "dialogue": request.dialogue,
        "approvals": request.approvals,
        "required_approvals": request.required_approvals,
        "provenance_clean": request.provenance_clean,
    }
    if request.amount is not None:
        context["amount"] = math.ceil(request.amount)
    return {
        "principal": {"type": "Agent", "id": request.agent},
        "resource": {"type": "Tool", "id": request.tool},
        "context": context,
    }


def _cedar_entities(request: AuthorizationRequest) -> list[dict[str, Any]]:
    return [
        {
            "uid": {"type": "Agent", "id": request.agent},
            "attrs": {"tier": request.tier},
            "parents": [],
        },
        {
            "uid": {"type": "Tool", "id": request.tool},
            "attrs": {
                "risk": request.risk,
                "reversible": request.reversible,
                "external": request.external,
            },
            "parents": [],
        },
    ]
