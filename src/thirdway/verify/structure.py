"""Check 1, structure and completeness: is the chain a well-formed argument for this action?

A chain is a DAG of steps (``from`` edges point at the steps a step builds on) ending in the
bindings of the action's arguments. Holes in that shape are ``incomplete``: the chain may be
honest, but it does not justify the action yet.

"Every step is used on the way to the action" is made precise as follows. Let B be the steps the
bindings name, and D be B together with every step that builds on a step of B (the conclusions
drawn from the bound evidence, like ``s3`` in DESIGN's example). A step is used when it is in D
or D builds on it. An action without arguments has no B; then every step counts as used (there
is no value for a stray step to smuggle in).

All graph walks are iterative: a 10,000-step chain cannot exhaust the stack.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Iterator

from thirdway.protocol import limits
from thirdway.protocol.models import Citation, QuoteBinding
from thirdway.verify import codes
from thirdway.verify.bindings import binding_steps
from thirdway.verify.context import Context
from thirdway.verify.issues import Issue, issue


def check(ctx: Context) -> list[Issue]:
    """All structural issues of the chain."""
    issues = [*_goal(ctx), *_duplicates(ctx), *_dangling(ctx), *ctx.walk.issues]
    cycle = _cycle(ctx)
    if cycle:
        issues.append(cycle)
    else:
        issues.extend(_unused(ctx))
    return issues


def _goal(ctx: Context) -> Iterator[Issue]:
    """Without a goal nothing ties the action to what the principal asked."""
    if not isinstance(getattr(ctx.proposal, "goal", None), Citation):
        yield issue(codes.MISSING_GOAL, "the proposal has no goal; cite the principal's request")


def _duplicates(ctx: Context) -> Iterator[Issue]:
    counts = Counter(step.id for step in ctx.proposal.steps)
    for step_id in sorted(s for s, n in counts.items() if n > 1):
        yield issue(
            codes.DUPLICATE_STEP,
            f"{counts[step_id]} steps have the id '{step_id}'; give each step its own id",
            step=step_id,
        )


def _dangling(ctx: Context) -> Iterator[Issue]:
    """``from`` edges and bindings must name steps of this chain."""
    for step in ctx.proposal.steps:
        for target in sorted(set(step.from_)):
            if target not in ctx.steps:
                yield issue(
                    codes.DANGLING_STEP,
                    f"step '{step.id}' builds on step '{target}', which the chain lacks",
                    step=step.id,
                )
    for path, target in binding_steps(ctx.proposal.bindings):
        if target not in ctx.steps:
            yield issue(
                codes.DANGLING_STEP,
                f"the binding of '{path}' names step '{target}', which the chain lacks",
                step=target,
            )


def _cycle(ctx: Context) -> Issue | None:
    """Kahn's algorithm; if steps remain, walk back from one of them to name a cycle."""
    preds = {
        sid: [p for p in dict.fromkeys(s.from_) if p in ctx.steps] for sid, s in ctx.steps.items()
    }
    dependents: dict[str, list[str]] = {sid: [] for sid in ctx.steps}
    for sid, ps in preds.items():
        for p in ps:
            dependents[p].append(sid)
    waiting = {sid: len(ps) for sid, ps in preds.items()}
    ready = [sid for sid, n in waiting.items() if n == 0]
    while ready:
        for dependent in dependents[ready.pop()]:
            waiting[dependent] -= 1
            if waiting[dependent] == 0:
                ready.append(dependent)
    remaining = {sid for sid, n in waiting.items() if n > 0}
    if not remaining:
        return None
    cycle = _find_cycle(min(remaining), preds, remaining)
    shown = " → ".join(cycle[:10]) + (" → …" if len(cycle) > 10 else f" → {cycle[0]}")
    return issue(
        codes.CYCLE,
        f"steps build on each other in a circle ({shown}); a claim cannot support itself",
        step=min(cycle),
    )


def _find_cycle(start: str, preds: dict[str, list[str]], remaining: set[str]) -> list[str]:
    """Every remaining step has a predecessor that remains, so walking back must repeat."""
    path: list[str] = []
    position: dict[str, int] = {}
    current = start
    while current not in position:
        position[current] = len(path)
        path.append(current)
        current = min(p for p in preds[current] if p in remaining)
    return path[position[current] :]


def _unused(ctx: Context) -> Iterator[Issue]:
    bound = {target for _, target in binding_steps(ctx.proposal.bindings) if target in ctx.steps}
    if not bound:
        return
    dependents: dict[str, set[str]] = {sid: set() for sid in ctx.steps}
    for sid, step in ctx.steps.items():
        for p in step.from_:
            if p in dependents:
                dependents[p].add(sid)
    conclusions = _reach(bound, lambda sid: dependents[sid])
    used = _reach(conclusions, lambda sid: (p for p in ctx.steps[sid].from_ if p in ctx.steps))
    for sid in sorted(set(ctx.steps) - used):
        yield issue(
            codes.UNUSED_STEP,
            f"step '{sid}' does not lead to the action; link it with 'from' or remove it",
            step=sid,
        )


def _reach(start: Iterable[str], neighbours: Callable[[str], Iterable[str]]) -> set[str]:
    """All steps reachable from ``start`` (included) through ``neighbours``."""
    seen = set(start)
    stack = list(seen)
    while stack:
        for nxt in neighbours(stack.pop()):
            if nxt not in seen:
                seen.add(nxt)
                stack.append(nxt)
    return seen


def check_size(ctx: Context) -> list[Issue]:
    """Wire limits, re-checked: a proposal built without validation must not buy unbounded work.

    Validated proposals never trip this; it guards callers that use ``model_construct``.
    """
    proposal = ctx.proposal
    problems: list[str] = []
    if len(proposal.steps) > limits.MAX_STEPS:
        problems.append(f"{len(proposal.steps)} steps (limit {limits.MAX_STEPS})")
    if len(ctx.record.observations) > limits.MAX_OBSERVATIONS:
        problems.append(f"{len(ctx.record.observations)} observations")
    if len(proposal.bindings) > limits.MAX_ARGS or len(proposal.action.args) > limits.MAX_ARGS:
        problems.append(f"more than {limits.MAX_ARGS} arguments or bindings")
    for step in proposal.steps:
        if (
            len(step.cites) > limits.MAX_CITES_PER_STEP
            or len(step.from_) > limits.MAX_FROM_PER_STEP
        ):
            problems.append(f"step '{step.id}' has too many citations or 'from' edges")
            break
    quotes = [c.quote for _, c in ctx.citations()]
    quotes += [
        leaf.binding.quote for leaf in ctx.walk.leaves if isinstance(leaf.binding, QuoteBinding)
    ]
    longest = max(map(len, quotes), default=0)
    if longest > limits.MAX_QUOTE_CHARS:
        problems.append(f"a quote of {longest} characters (limit {limits.MAX_QUOTE_CHARS})")
    return [
        issue(codes.TOO_LARGE, f"input exceeds the wire limits: {p}; it was not examined further")
        for p in problems
    ]
