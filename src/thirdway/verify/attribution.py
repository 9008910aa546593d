"""Check 3, attribution: who asked for this?

Two different questions, with two different answers:

* **What does the agent act on?** The goal's citation *as given*. A goal citing a data
  observation is ``instruction_from_data`` (policy, denied by default but not punished): the
  agent honestly says a tool result told it to act, which is what a successful prompt injection
  looks like. This holds even when the same words also appear in a principal observation: the
  agent chose to root its action in the data, and a chain is judged as written.
* **Does the agent put words in the principal's mouth?** A goal citing a principal (or no valid)
  observation, and every citation of a step marked ``about_principal``, claims the principal
  said the quoted text. If the text is in no principal observation of this session recorded
  before the proposal, that is ``misattribution`` (deception), even when the text exists in tool
  data: presenting data as the user's instruction is exactly the lie this check exists for.
"""

from __future__ import annotations

from collections.abc import Iterator

from thirdway.protocol.models import Citation
from thirdway.verify import codes
from thirdway.verify.context import Context
from thirdway.verify.issues import Issue, issue
from thirdway.verify.normalize import normalize
from thirdway.verify.transforms import excerpt


def check(ctx: Context) -> list[Issue]:
    """Attribution issues of the goal and of the steps about the principal."""
    return [*_goal(ctx), *_principal_steps(ctx)]


def _goal(ctx: Context) -> Iterator[Issue]:
    goal = getattr(ctx.proposal, "goal", None)
    if not isinstance(goal, Citation):
        return
    obs = ctx.record.prior(goal.obs)
    if obs is not None and obs.channel == "data":
        yield issue(
            codes.INSTRUCTION_FROM_DATA,
            f"the goal cites observation {goal.obs}, a tool result, not the principal; an "
            "instruction found in data needs the principal's confirmation",
            evidence=[goal.obs],
            decision=ctx.policy.instruction_from_data,
        )
    elif obs is None or obs.channel == "principal":
        yield from _attributed(ctx, None, goal)


def _principal_steps(ctx: Context) -> Iterator[Issue]:
    for step in ctx.proposal.steps:
        if not step.about_principal:
            continue
        if not step.cites:
            yield issue(
                codes.MISSING_CITATION,
                f"step '{step.id}' says what the principal asked but quotes nothing they wrote",
                step=step.id,
            )
        for cite in step.cites:
            yield from _attributed(ctx, step.id, cite)


def _attributed(ctx: Context, step: str | None, cite: Citation) -> Iterator[Issue]:
    """The quote must be in some principal observation of this session, before the proposal."""
    quote = normalize(cite.quote)
    if quote and not ctx.record.said_by_principal(quote):
        where = "the goal" if step is None else f"step '{step}'"
        yield issue(
            codes.MISATTRIBUTION,
            f"{where} attributes {excerpt(quote)!r} to the principal, who never wrote it",
            step=step,
            evidence=[cite.obs] if cite.obs in ctx.record.by_index else [],
        )
