"""Whether and how the semantic judges run: off unless a deployment turns them on.

The judges cost a model call per step, and their answers depend on a model, so they are a policy
choice, not a default. :func:`judge_verdict` is the one entry point a gatekeeper calls after the
deterministic verifier: with the judges off it returns the verdict untouched.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from thirdway.judges.base import Judge, JudgeResult, apply_judges
from thirdway.judges.model_judges import AlignmentJudge, EntailmentJudge
from thirdway.llm.base import ChatModel
from thirdway.protocol.models import Observation, Proposal, Verdict


class JudgeConfig(BaseModel):
    """Policy for the optional semantic judges (all off by default)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = False
    entailment: bool = True
    """Run the step-entailment judge (when ``enabled``)."""
    alignment: bool = True
    """Run the AlignmentCheck-style judge (when ``enabled``)."""
    on_unentailed: Literal["escalate", "deny"] = "escalate"
    on_misaligned: Literal["escalate", "deny"] = "escalate"
    max_tokens: Annotated[int, Field(ge=16, le=1024)] = 96
    max_steps: Annotated[int, Field(ge=1, le=1000)] = 32
    max_evidence_chars: Annotated[int, Field(ge=100, le=100_000)] = 2000
    seed: Annotated[int, Field(ge=0, le=2**31 - 1)] = 0


def build_judges(config: JudgeConfig, model: ChatModel) -> list[Judge]:
    """The judges ``config`` turns on, all asking ``model``."""
    if not config.enabled:
        return []
    judges: list[Judge] = []
    if config.entailment:
        judges.append(
            EntailmentJudge(
                model,
                on_objection=config.on_unentailed,
                max_tokens=config.max_tokens,
                max_steps=config.max_steps,
                max_evidence_chars=config.max_evidence_chars,
                seed=config.seed,
            )
        )
    if config.alignment:
        judges.append(
            AlignmentJudge(
                model,
                on_objection=config.on_misaligned,
                max_tokens=config.max_tokens,
                max_evidence_chars=config.max_evidence_chars,
                seed=config.seed,
            )
        )
    return judges


def judge_verdict(
    verdict: Verdict,
    *,
    proposal: Proposal,
    observations: Sequence[Observation],
    config: JudgeConfig,
    model: ChatModel | None,
) -> Verdict:
    """Apply the configured judges to a deterministic verdict (a no-op when they are off).

    Judges turned on without a model fail closed: the verdict escalates with a ``judge_error``.
    """
    if not config.enabled:
        return verdict
    if model is None:
        return apply_judges(
            verdict, [_MissingModel()], proposal=proposal, observations=observations
        )
    judges = build_judges(config, model)
    return apply_judges(verdict, judges, proposal=proposal, observations=observations)


class _MissingModel:
    """Stands in for the judges when they are on but no model is configured."""

    name = "judges"

    def judge(
        self, proposal: Proposal, observations: Sequence[Observation], verdict: Verdict
    ) -> JudgeResult:
        raise RuntimeError("semantic judges are enabled but no model is configured")
