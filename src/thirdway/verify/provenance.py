"""Check 5, provenance: where did each argument value come from, according to the gateway?

This check ignores what the chain says about origins and asks the record instead, so an honest
chain and a lying one get the same answer. For every scalar in the action's arguments it finds
the observations (of this session, before the proposal) that contain it — normalised text, and
numbers and dates by value (``98.7`` is found as ``"98.70"``, ``2024-05-15`` as
``"May 15, 2024"``), links also without their scheme (``http://www.x.com`` is found as the whole
link ``www.x.com``: see :mod:`thirdway.verify.search`) — and classifies the value by the most
trusted of them:

* ``principal`` — an instruction contains it;
* ``designated`` — a tool result contains it, and the call producing that result was itself
  designated: each of the call's *designating* arguments is principal or designated (computed in
  index order, so designation flows transitively from the principal through the tools it pointed
  at). An argument whose manifest rule says ``designates: false`` (a count or page size: it
  chooses how much, not which data) and a boolean or null leaf
  (``VerifyPolicy.designation_neutral_kinds``) do not take part;
* ``undesignated`` — only other tool results contain it;
* ``unknown`` — no observation contains it (a transformed or invented value);
* ``composed`` — a value the chain says the agent wrote itself, or a boolean/null (which the
  manifest rules then skip: a null or a flag carries no data to trace).

A composed value inherits from its justification: if the record finds it verbatim in principal
(or designated) text it is that; otherwise, if it, or anything its justifying step and that
step's ``from`` ancestors cite, is undesignated data, it is ``undesignated`` (a message that
repeats an injection is treated like the injection); otherwise ``composed``.

Manifest :class:`~thirdway.protocol.manifest.ArgumentRule` s then decide what an argument accepts;
a violation is a ``policy`` finding that escalates or denies as the rule says.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from functools import cached_property

from thirdway.protocol.manifest import ManifestSet, Provenance, ProvenanceRule
from thirdway.protocol.models import ComposedBinding, Observation, ToolCall
from thirdway.verify import codes
from thirdway.verify.bindings import Leaf, Scalar, scalars
from thirdway.verify.context import Context
from thirdway.verify.issues import Issue, issue
from thirdway.verify.normalize import normalize
from thirdway.verify.policy import JsonKind
from thirdway.verify.record import Record, text_of
from thirdway.verify.search import has_date, has_number, has_url
from thirdway.verify.transforms import number_value, parse_date, show

ACCEPTS: dict[ProvenanceRule, frozenset[Provenance]] = {
    "any": frozenset({"principal", "designated", "undesignated", "composed", "unknown"}),
    "principal": frozenset({"principal"}),
    "principal-or-designated": frozenset({"principal", "designated"}),
    "not-undesignated": frozenset({"principal", "designated", "composed", "unknown"}),
}
"""The classes each manifest rule admits."""


def kind_of(value: Scalar) -> JsonKind:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "bool"
    return "string" if isinstance(value, str) else "number"


def contains(obs: Observation, value: Scalar) -> bool:
    """Does the observation hold the value (normalised text, or numbers/dates by value)?"""
    if isinstance(value, str):
        text = normalize(value)
        if text in text_of(obs) or has_url(text_of(obs), text):
            return True
        day = parse_date(text)
        return day is not None and has_date(text_of(obs), day)
    number = number_value(value)
    return number is not None and has_number(text_of(obs), number)


@dataclass(frozen=True)
class Origin:
    """A value's class and the observations that gave it that class."""

    kind: Provenance
    evidence: tuple[int, ...] = ()


class Sources:
    """Classifies values against one session's record."""

    def __init__(
        self,
        record: Record,
        neutral: Iterable[JsonKind],
        manifests: ManifestSet | None = None,
    ) -> None:
        self.record = record
        self.neutral = frozenset(neutral)
        self.manifests = manifests or ManifestSet()

    @cached_property
    def designated(self) -> frozenset[int]:
        """Indices of designated data observations, computed once in index order."""
        calls: set[int] = set()
        data: set[int] = set()
        for obs in self.record.past:
            if obs.channel == "call" and obs.call is not None:
                if self._call_is_designated(obs.index, obs.call, frozenset(data)):
                    calls.add(obs.index)
            elif obs.channel == "data" and obs.produced_by in calls:
                data.add(obs.index)
        return frozenset(data)

    def designates(self, tool: str, argument: str) -> bool:
        """Does this argument of this tool choose which data the call returns? Yes unless the
        tool's manifest says otherwise (an unknown tool or argument: yes, the cautious answer)."""
        manifest = self.manifests.tools.get(tool)
        rule = manifest.args.get(argument) if manifest is not None else None
        return rule is None or rule.designates

    def _call_is_designated(self, index: int, call: ToolCall, data: frozenset[int]) -> bool:
        chosen_by = {k: v for k, v in call.args.items() if self.designates(call.tool, k)}
        for _, value in scalars(chosen_by, "args"):
            if kind_of(value) in self.neutral:
                continue
            if isinstance(value, str) and not normalize(value):
                continue  # an empty string chooses nothing
            if self._find(value, index, data, stop_at_designated=True).kind not in (
                "principal",
                "designated",
            ):
                return False
        return True

    def classify(self, value: Scalar, before: int | None = None) -> Origin:
        """The most trusted class among observations (before ``before``) holding ``value``."""
        if value is None or isinstance(value, bool):
            return Origin("composed")
        if isinstance(value, str) and not normalize(value):
            return Origin("composed")
        limit = self.record.boundary if before is None else before
        return self._find(value, limit, self.designated, stop_at_designated=False)

    def _find(
        self, value: Scalar, before: int, data: frozenset[int], *, stop_at_designated: bool
    ) -> Origin:
        tiers: list[tuple[Provenance, list[Observation]]] = [
            ("principal", [o for o in self.record.principal if o.index < before]),
            ("designated", [o for o in self._data(before) if o.index in data]),
        ]
        if not stop_at_designated:
            tiers.append(("undesignated", [o for o in self._data(before) if o.index not in data]))
        for kind, observations in tiers:
            found = tuple(o.index for o in observations if contains(o, value))
            if found:
                return Origin(kind, found)
        return Origin("unknown")

    def _data(self, before: int) -> Iterator[Observation]:
        return (o for o in self.record.past if o.channel == "data" and o.index < before)

    def cited_kinds(self, ctx: Context, step_id: str) -> Origin:
        """The least trusted class among observations a step and its ancestors cite."""
        worst: Origin | None = None
        for step in ctx.ancestors(step_id):
            for cite in step.cites:
                obs = self.record.prior(cite.obs)
                if obs is None or obs.channel == "call":
                    continue
                kind: Provenance = (
                    "principal"
                    if obs.channel == "principal"
                    else "designated"
                    if obs.index in self.designated
                    else "undesignated"
                )
                if worst is None or RANK[kind] < RANK[worst.kind]:
                    worst = Origin(kind, (obs.index,))
        return worst or Origin("composed")

    def origin(self, ctx: Context, leaf: Leaf) -> Origin:
        """The class of one leaf of the action, composed values included."""
        found = self.classify(leaf.value)
        if not isinstance(leaf.binding, ComposedBinding) or found.kind in (
            "principal",
            "undesignated",
        ):
            return found
        cited = self.cited_kinds(ctx, leaf.binding.composed)
        if cited.kind == "undesignated":
            return cited
        return found if found.kind == "designated" else Origin("composed", found.evidence)


RANK: dict[Provenance, int] = {
    "undesignated": 0,
    "unknown": 1,
    "composed": 2,
    "designated": 3,
    "principal": 4,
}


def carries_no_data(value: Scalar) -> bool:
    """A null (``cc: null``: no copy) or a boolean (a flag) names no recipient, account or text,
    so no provenance rule applies to it: an argument is judged by the data it carries. (An
    empty list has no leaves at all.) Whether a flag's *effect* is wanted is for the manifest's
    risk and the authorization policy, as for designation (``designation_neutral_kinds``)."""
    return value is None or isinstance(value, bool)


def check(ctx: Context) -> list[Issue]:
    """One ``provenance_violation`` per argument whose value breaks its manifest rule; leaves
    that carry no data (:func:`carries_no_data`) are not judged."""
    manifest = ctx.manifest
    if manifest is None:
        return []
    sources = Sources(ctx.record, ctx.policy.designation_neutral_kinds, ctx.manifests)
    issues: list[Issue] = []
    for name in sorted(manifest.args):
        rule = manifest.args[name]
        if rule.provenance == "any" or name not in ctx.proposal.action.args:
            continue
        for leaf in ctx.walk.by_argument.get(name, []):
            if carries_no_data(leaf.value):
                continue
            origin = sources.origin(ctx, leaf)
            if origin.kind not in ACCEPTS[rule.provenance]:
                issues.append(_violation(leaf, origin, rule.provenance, rule.on_violation))
                break
    return issues


def _violation(leaf: Leaf, origin: Origin, rule: ProvenanceRule, decision: str) -> Issue:
    plural = "s" if len(origin.evidence) > 1 else ""
    where = (
        f" (observation{plural} {', '.join(map(str, origin.evidence))})" if origin.evidence else ""
    )
    step = None
    if leaf.binding is not None:
        step = (
            leaf.binding.composed
            if isinstance(leaf.binding, ComposedBinding)
            else leaf.binding.step
        )
    return issue(
        codes.PROVENANCE_VIOLATION,
        f"argument '{leaf.path}' ({show(leaf.value)}) is {origin.kind}{where}; "
        f"the tool's manifest accepts only {rule} values here",
        step=step,
        evidence=origin.evidence,
        decision="deny" if decision == "deny" else "escalate",
    )
