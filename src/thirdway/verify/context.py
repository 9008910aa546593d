"""Everything one verification reads, with the derived views the checks share.

Checks are functions of a :class:`Context`; views that several checks need (the step map, the
argument walk, the manifest of the tool) are computed once here.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import cached_property

from thirdway.protocol.manifest import ManifestSet, ToolManifest
from thirdway.protocol.models import Citation, Proposal, Step
from thirdway.verify.bindings import Walk, walk
from thirdway.verify.policy import VerifyPolicy
from thirdway.verify.record import Record


@dataclass
class Context:
    """One verification's inputs."""

    proposal: Proposal
    record: Record
    manifests: ManifestSet
    policy: VerifyPolicy
    history: Sequence[Proposal]

    @cached_property
    def steps(self) -> dict[str, Step]:
        """Steps by id; with duplicate ids (an ``incomplete`` finding) the first one counts."""
        by_id: dict[str, Step] = {}
        for step in self.proposal.steps:
            by_id.setdefault(step.id, step)
        return by_id

    @cached_property
    def manifest(self) -> ToolManifest | None:
        return self.manifests.tools.get(self.proposal.action.tool)

    @cached_property
    def walk(self) -> Walk:
        return walk(self.proposal.action.args, self.proposal.bindings)

    def citations(self) -> Iterator[tuple[str | None, Citation]]:
        """Every citation with the id of its step (``None`` for the goal)."""
        goal = getattr(self.proposal, "goal", None)
        if isinstance(goal, Citation):
            yield None, goal
        for step in self.proposal.steps:
            for cite in step.cites:
                yield step.id, cite

    def ancestors(self, step_id: str) -> list[Step]:
        """The step and every step it builds on (via ``from``), iteratively; cycle-safe."""
        seen: set[str] = set()
        order: list[Step] = []
        stack = [step_id]
        while stack:
            current = stack.pop()
            step = self.steps.get(current)
            if current in seen or step is None:
                continue
            seen.add(current)
            order.append(step)
            stack.extend(step.from_)
        return order
