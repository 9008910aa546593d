"""Check 4, binding: the action is exactly what the chain justifies.

Each quote-bound value must equal its quote after the declared transform
(:mod:`~thirdway.verify.transforms`), and the quote must lie inside a quote its step cites (so
it is grounded through that citation). A value that differs is ``action_mismatch``: the chain
argues for one action and the agent proposes another — the core lie a capability token must never
honour. Composed values are the agent's own words; they have nothing to equal, and their
provenance is judged by :mod:`~thirdway.verify.provenance`.
"""

from __future__ import annotations

from collections.abc import Iterator

from thirdway.protocol.models import QuoteBinding
from thirdway.verify import codes
from thirdway.verify.bindings import Leaf
from thirdway.verify.context import Context
from thirdway.verify.issues import Issue, issue
from thirdway.verify.normalize import normalize
from thirdway.verify.transforms import compare, excerpt, show

_OUTCOME_CODES = {
    "mismatch": codes.ACTION_MISMATCH,
    "wrong_type": codes.WRONG_TYPE,
    "bad_transform": codes.BAD_TRANSFORM,
}


def check(ctx: Context) -> list[Issue]:
    """Binding issues of every quote-bound value in the action."""
    return [
        found
        for leaf in ctx.walk.leaves
        if isinstance(leaf.binding, QuoteBinding)
        for found in _quote_bound(ctx, leaf, leaf.binding)
    ]


def _quote_bound(ctx: Context, leaf: Leaf, binding: QuoteBinding) -> Iterator[Issue]:
    step = ctx.steps.get(binding.step)
    if step is None:
        return  # dangling_step, reported by the structure check
    quote = normalize(binding.quote)
    if not quote:
        yield issue(
            codes.EMPTY_QUOTE, f"the binding of '{leaf.path}' quotes only whitespace", step=step.id
        )
        return
    if not any(quote in normalize(cite.quote) for cite in step.cites):
        yield issue(
            codes.UNSUPPORTED_BINDING,
            f"the binding of '{leaf.path}' quotes {excerpt(quote)!r}, which step '{step.id}' "
            "does not cite; bind to the step whose evidence holds it",
            step=step.id,
        )
    result = compare(binding.as_, binding.quote, leaf.value)
    if result.outcome == "match":
        return
    yield issue(
        _OUTCOME_CODES[result.outcome],
        f"argument '{leaf.path}' is {show(leaf.value)} but is bound to {excerpt(binding.quote)!r} "
        f"as {binding.as_}: {result.detail}",
        step=step.id,
        evidence=[c.obs for c in step.cites if quote in normalize(c.quote)],
    )
