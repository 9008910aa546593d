"""Check 2, grounding: every quote occurs in the observation it cites.

The only looseness is :func:`~thirdway.verify.normalize.normalize` (NFC and whitespace runs).
A quote spliced from two places fails like any other: each part may occur, the whole does not.

Evidence has to be something the agent saw *in this session before proposing*. So a citation is
checked in order: the observation must exist in this session (else the quote is fabricated, or
``foreign_session`` when another session's observation of that index holds it), must precede
the proposal (else ``future_observation``), must not be the agent's own ``call`` (not evidence),
and must contain the quote (else ``fabricated_quote``, or ``foreign_session`` as above).
Binding quotes are checked by :mod:`~thirdway.verify.binding`: they must lie inside the named
step's citations, which are checked here.
"""

from __future__ import annotations

from collections.abc import Iterator

from thirdway.protocol.models import Citation
from thirdway.verify import codes
from thirdway.verify.context import Context
from thirdway.verify.issues import Issue, issue
from thirdway.verify.normalize import normalize
from thirdway.verify.record import text_of
from thirdway.verify.transforms import excerpt


def check(ctx: Context) -> list[Issue]:
    """Grounding issues of the goal and of every step's citations."""
    return [found for step, cite in ctx.citations() for found in _citation(ctx, step, cite)]


def _where(step: str | None) -> str:
    return "the goal" if step is None else f"step '{step}'"


def _citation(ctx: Context, step: str | None, cite: Citation) -> Iterator[Issue]:
    quote = normalize(cite.quote)
    shown = excerpt(quote)
    if not quote:
        yield issue(codes.EMPTY_QUOTE, f"{_where(step)} quotes only whitespace", step=step)
        return
    obs = ctx.record.by_index.get(cite.obs)
    if obs is not None and cite.obs >= ctx.record.boundary:
        yield issue(
            codes.FUTURE_OBSERVATION,
            f"{_where(step)} cites observation {cite.obs}, recorded after the proposal "
            f"(only observations before {ctx.record.boundary} were seen)",
            step=step,
            evidence=[cite.obs],
        )
    elif obs is not None and obs.channel == "call":
        yield issue(
            codes.CITES_CALL,
            f"{_where(step)} cites observation {cite.obs}, the agent's own tool call; cite the "
            "instruction or the tool result instead",
            step=step,
            evidence=[cite.obs],
        )
    elif obs is None or quote not in text_of(obs):
        yield _absent(ctx, step, cite, quote, shown, exists=obs is not None)


def _absent(
    ctx: Context, step: str | None, cite: Citation, quote: str, shown: str, *, exists: bool
) -> Issue:
    """The quote is not where the citation says: fabricated, or taken from another session."""
    elsewhere = sorted(
        o.session for o in ctx.record.foreign.get(cite.obs, ()) if quote in text_of(o)
    )
    if elsewhere:
        return issue(
            codes.FOREIGN_SESSION,
            f"{_where(step)} quotes {shown!r} from observation {cite.obs} of session "
            f"'{excerpt(elsewhere[0], 60)}', not of this session "
            f"'{excerpt(ctx.record.session, 60)}'",
            step=step,
            evidence=[cite.obs],
        )
    where = (
        f"observation {cite.obs}"
        if exists
        else f"observation {cite.obs}, which does not exist in this session"
    )
    return issue(
        codes.FABRICATED_QUOTE,
        f"{_where(step)} quotes {shown!r}, which does not occur in {where}",
        step=step,
        evidence=[cite.obs] if exists else [],
    )
