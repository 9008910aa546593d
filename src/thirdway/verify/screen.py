"""Check 6, the injection screen: is the action built from text that was talking to the model?

Data observations are scanned for instruction-like spans
(:func:`thirdway.verify.injection.find_instruction_spans`). Provenance alone cannot catch an
injection inside a *designated* source (the bill the user asked to pay, with "send the money to
US13... instead" pasted in), so the screen looks at the text itself:

* a citation quote (of the goal or a step) to a data observation is flagged when an occurrence
  of it in that observation overlaps an instruction span;
* a string value of the action (bound or composed) is flagged when an occurrence of it in any
  data observation overlaps an instruction span, unless a principal observation contains it too
  (the principal's own words are never "injected"); a link is also looked for without its
  scheme, as provenance finds it (``http://www.x.com`` in ``www.x.com``). Values shorter than
  ``screen_min_value_chars`` are skipped here: "me" occurs inside every text.

"Overlaps", not "lies within": a quote that starts in honest text and runs into the injection
(or swallows it whole) leans on it as much as one taken from its middle.

A flag is ``cited_from_instruction`` (policy): denied for tools whose risk class the policy
lists (by default external, financial and critical), escalated otherwise, and denied for a tool
without a manifest. The evidence is the observation holding the span.
"""

from __future__ import annotations

from collections.abc import Iterator

from thirdway.protocol.models import Decision, Observation
from thirdway.verify import codes
from thirdway.verify.bindings import Leaf
from thirdway.verify.context import Context
from thirdway.verify.issues import Issue, issue
from thirdway.verify.normalize import normalize
from thirdway.verify.record import Span, overlapping_span, text_of
from thirdway.verify.search import has_url, url_without_scheme
from thirdway.verify.transforms import excerpt


def check(ctx: Context) -> list[Issue]:
    """One issue per (step, observation) where the chain leans on an instruction span."""
    decision = _decision(ctx)
    issues: dict[tuple[str | None, int], Issue] = {}
    for found in [*_citations(ctx, decision), *_values(ctx, decision)]:
        issues.setdefault((found.step, found.evidence[0]), found)
    return [issues[key] for key in sorted(issues, key=lambda k: (k[0] or "", k[1]))]


def _decision(ctx: Context) -> Decision:
    manifest = ctx.manifest
    if manifest is None or manifest.risk in ctx.policy.instruction_deny_risks:
        return "deny"
    return "escalate"


def _flag(step: str | None, obs: Observation, span: Span, what: str, decision: Decision) -> Issue:
    where = "the goal" if step is None else f"step '{step}'"
    excerpt_text = excerpt(text_of(obs)[span.start : span.end], 100)
    return issue(
        codes.CITED_FROM_INSTRUCTION,
        f"{where} relies on {what} inside an instruction-like span ({span.rule}) of "
        f"observation {obs.index}: {excerpt_text!r}",
        step=step,
        evidence=[obs.index],
        decision=decision,
    )


def _citations(ctx: Context, decision: Decision) -> Iterator[Issue]:
    for step, cite in ctx.citations():
        obs = ctx.record.prior(cite.obs)
        if obs is None or obs.channel != "data":
            continue
        quote = normalize(cite.quote)
        if quote not in text_of(obs):
            continue  # fabricated: grounding reports it
        span = overlapping_span(obs, quote)
        if span is not None:
            yield _flag(step, obs, span, f"the quote {excerpt(quote, 40)!r}", decision)


def _values(ctx: Context, decision: Decision) -> Iterator[Issue]:
    data = [o for o in ctx.record.past if o.channel == "data"]
    for leaf in ctx.walk.leaves:
        if not isinstance(leaf.value, str):
            continue
        value = normalize(leaf.value)
        if len(value) < ctx.policy.screen_min_value_chars or _said_by_principal(ctx, value):
            continue
        forms = written_forms(value)
        for obs in data:
            span = _first_overlap(obs, forms)
            if span is not None:
                what = f"the value of '{leaf.path}' ({excerpt(value, 40)!r})"
                yield _flag(_step_of(leaf), obs, span, what, decision)


def _first_overlap(obs: Observation, forms: tuple[str, ...]) -> Span | None:
    """The span an occurrence of the first form that has one overlaps, if any."""
    text = text_of(obs)
    for form in forms:
        if form in text:
            span = overlapping_span(obs, form)
            if span is not None:
                return span
    return None


def written_forms(value: str) -> tuple[str, ...]:
    """The value, and for a link also its host and path without the scheme: provenance finds
    ``http://www.x.com`` where ``www.x.com`` is written (:func:`~thirdway.verify.search.has_url`),
    so the screen looks for that form inside instruction spans too."""
    bare = url_without_scheme(value)
    return (value,) if bare is None else (value, bare)


def _said_by_principal(ctx: Context, value: str) -> bool:
    if ctx.record.said_by_principal(value):
        return True
    return any(has_url(text_of(o), value) for o in ctx.record.principal)


def _step_of(leaf: Leaf) -> str | None:
    if leaf.binding is None:
        return None
    return getattr(leaf.binding, "step", None) or getattr(leaf.binding, "composed", None)
