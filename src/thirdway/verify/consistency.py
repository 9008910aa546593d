"""Check 7, consistency: does the chain agree with the manifest and with the agent's past?

* **Declared effects** versus the tool's manifest. Declaring an irreversible tool reversible, or an
  external one internal, is ``understated_risk`` (deception): the declaration is what a reviewer
  and the authorisation step read, and understating it can only serve to slip past them.
  Overstating (calling a reversible action irreversible) is harmless caution.
* **Typed claims** (:mod:`~thirdway.verify.claims`): the chain's own claims must be jointly
  satisfiable (else ``unsatisfiable_claims``), and jointly satisfiable with the typed claims of
  the agent's earlier passing proposals in the same session (else ``contradiction``). A typed
  name is a session-wide fact, so "the same fact bound to a different value" — ``balance`` pinned
  to 1000 before and to 900 now — is exactly such a contradiction. Free-text claims are not
  compared: no deterministic check can tell two sentences contradict.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import z3

from thirdway.protocol.models import Proposal
from thirdway.verify import codes
from thirdway.verify.claims import Claim, ClaimError, Outcome, Term, Translator, booleans_of, solve
from thirdway.verify.context import Context
from thirdway.verify.issues import Issue, issue


def check(ctx: Context) -> list[Issue]:
    """Effects issues and typed-claim issues."""
    return [*_effects(ctx), *_claims(ctx)]


def _effects(ctx: Context) -> Iterator[Issue]:
    manifest, effects = ctx.manifest, ctx.proposal.effects
    if manifest is None:
        return
    tool = ctx.proposal.action.tool
    if effects.reversible and not manifest.reversible:
        yield issue(
            codes.UNDERSTATED_RISK,
            f"the proposal declares the action reversible, but '{tool}' cannot be undone",
        )
    if manifest.external and not effects.external:
        yield issue(
            codes.UNDERSTATED_RISK,
            f"the proposal declares the action internal, but '{tool}' reaches outside parties",
        )


def current_claims(proposal: Proposal) -> list[Claim]:
    """The chain's typed claims in step-id order, so that the order of the steps (which carries
    no meaning) cannot change which conflicting claims z3 names."""
    claims = [
        Claim(s.id, s.typed.expr, s.typed.vars) for s in proposal.steps if s.typed is not None
    ]
    return sorted(claims, key=lambda c: c.label)


def earlier_claims(session: str, history: Sequence[Proposal]) -> list[Claim]:
    """Typed claims of earlier passing proposals of the same session, labelled for messages."""
    return [
        Claim(f"earlier proposal {i} step '{step.id}'", step.typed.expr, step.typed.vars)
        for i, earlier in enumerate(history)
        if earlier.session == session
        for step in earlier.steps
        if step.typed is not None
    ]


def _claims(ctx: Context) -> list[Issue]:
    """The chain's typed claims alone, then together with the session's earlier ones."""
    current = current_claims(ctx.proposal)
    if not current:
        return []
    earlier = earlier_claims(ctx.proposal.session, ctx.history)
    if len(current) + len(earlier) > ctx.policy.max_typed_claims:
        return [
            issue(
                codes.UNDECIDED_CLAIMS,
                f"{len(current) + len(earlier)} typed claims in this session exceed the limit of "
                f"{ctx.policy.max_typed_claims}; state fewer",
            )
        ]
    mixed = _mixed_kinds(current)
    if mixed:
        return mixed
    translator = Translator(z3.Context(), _booleans(current, earlier))
    formulas, bad = _translate(translator, current)
    if bad:
        return bad
    alone = solve(formulas, translator.ctx, ctx.policy.claims_rlimit)
    if alone.result != "sat":
        return [_unsolved(ctx, alone, codes.UNSATISFIABLE_CLAIMS, "cannot all be true together")]
    return _against_history(ctx, current, earlier, translator, formulas)


def _mixed_kinds(current: list[Claim]) -> list[Issue]:
    """A name pinned to a boolean in one claim and a number in another has no single meaning."""
    return [
        _bad(
            next(c for c in current if name in c.vars),
            f"'{name}' is pinned to a boolean in one claim and to a number in another",
        )
        for name, kinds in sorted(booleans_of(current).items())
        if len(kinds) > 1
    ]


def _booleans(current: list[Claim], earlier: list[Claim]) -> frozenset[str]:
    """Names that are booleans: pinned so now, or (if not pinned now) pinned so earlier."""
    kinds = {**booleans_of(earlier), **booleans_of(current)}
    return frozenset(name for name, pinned in kinds.items() if True in pinned)


def _translate(
    translator: Translator, claims: list[Claim]
) -> tuple[list[tuple[str, Term]], list[Issue]]:
    formulas: list[tuple[str, Term]] = []
    bad: list[Issue] = []
    for claim in claims:
        try:
            formulas.append((claim.label, translator.claim(claim)))
        except ClaimError as exc:
            bad.append(_bad(claim, str(exc)))
    return formulas, bad


def _against_history(
    ctx: Context,
    current: list[Claim],
    earlier: list[Claim],
    translator: Translator,
    formulas: list[tuple[str, Term]],
) -> list[Issue]:
    """A fact pinned to the other kind before (number, now boolean) is a contradiction of kind;
    otherwise the earlier claims are solved together with the current ones."""
    pinned_now = booleans_of(current)
    issues = [
        issue(
            codes.CONTRADICTION,
            f"'{name}' was a {'boolean' if True in kinds else 'number'} in earlier claims of "
            "this session and is pinned to the other kind now",
            step=min(c.label for c in current if name in c.vars),
        )
        for name, kinds in sorted(booleans_of(earlier).items())
        if pinned_now.get(name, kinds) != kinds
    ]
    if issues:
        return issues
    together = [*formulas, *_translate(translator, earlier)[0]]
    if len(together) == len(formulas):
        return []
    joint = solve(together, translator.ctx, ctx.policy.claims_rlimit)
    if joint.result == "sat":
        return []
    return [_unsolved(ctx, joint, codes.CONTRADICTION, "contradict earlier claims")]


def _bad(claim: Claim, why: str) -> Issue:
    return issue(
        codes.BAD_TYPED_CLAIM, f"typed claim of step '{claim.label}': {why}", step=claim.label
    )


def _unsolved(ctx: Context, outcome: Outcome, code: str, what: str) -> Issue:
    if outcome.result == "unknown":
        return issue(
            codes.UNDECIDED_CLAIMS,
            "z3 could not decide the typed claims within its resource limit; simplify them",
        )
    steps = [label for label in outcome.core if label in ctx.steps]
    others = [label for label in outcome.core if label not in ctx.steps]
    evidence = [c.obs for s in steps for c in ctx.steps[s].cites]
    named = ", ".join([f"step '{s}'" for s in steps] + others)
    return issue(
        code,
        f"typed claims {what}: {named}",
        step=steps[0] if steps else None,
        evidence=evidence,
    )
