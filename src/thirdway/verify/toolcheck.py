"""Tool-level policy: the tool must have a manifest, and arguments must respect its limits.

A tool without a manifest has no stated risk, reversibility or provenance rules, so nothing
downstream can weigh it: ``unknown_tool`` (denied by default). A numeric argument above the
manifest's ``limits`` for it is ``limit_exceeded`` (escalated by default: a person may approve a
large payment; the agent may not make it alone). A limited argument given as a string is read
with the ``number`` grammar, so ``"5000"`` cannot slip past a limit of 1000; one that is no
number at all is over any limit (fail closed).
"""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal

from thirdway.verify import codes
from thirdway.verify.context import Context
from thirdway.verify.issues import Issue, issue
from thirdway.verify.normalize import normalize
from thirdway.verify.transforms import excerpt, number_value, parse_number, show


def check(ctx: Context) -> list[Issue]:
    """``unknown_tool``, or one ``limit_exceeded`` per argument over its limit."""
    return list(_manifest(ctx))


def _manifest(ctx: Context) -> Iterator[Issue]:
    manifest = ctx.manifest
    tool = ctx.proposal.action.tool
    if manifest is None:
        yield issue(
            codes.UNKNOWN_TOOL,
            f"no manifest describes the tool '{excerpt(tool, 80)}'; its risk is unknown",
            decision=ctx.policy.unknown_tool,
        )
        return
    args = ctx.proposal.action.args
    for name in sorted(manifest.limits):
        if name not in args:
            continue
        limit = Decimal(repr(manifest.limits[name]))
        value = args[name]
        amount = parse_number(normalize(value)) if isinstance(value, str) else number_value(value)
        if amount is None or amount > limit:
            why = "not a number, so it cannot be held to" if amount is None else "above"
            yield issue(
                codes.LIMIT_EXCEEDED,
                f"argument '{name}' is {show(value, 40)}, {why} the manifest's limit of "
                f"{limit:f} for '{tool}'",
                decision=ctx.policy.limit_exceeded,
            )
