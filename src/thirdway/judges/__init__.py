"""Optional semantic judges behind the deterministic verifier; they may only make a verdict
stricter (see :func:`apply_judges`), and are off unless :class:`JudgeConfig` turns them on."""

from thirdway.judges.base import STRICTNESS, Judge, JudgeResult, apply_judges, stricter
from thirdway.judges.config import JudgeConfig, build_judges, judge_verdict
from thirdway.judges.model_judges import (
    AlignmentJudge,
    AlignmentReply,
    EntailmentJudge,
    EntailmentReply,
)

__all__ = [
    "STRICTNESS",
    "AlignmentJudge",
    "AlignmentReply",
    "EntailmentJudge",
    "EntailmentReply",
    "Judge",
    "JudgeConfig",
    "JudgeResult",
    "apply_judges",
    "build_judges",
    "judge_verdict",
    "stricter",
]
