"""Finding codes the semantic judges add to a verdict.

Every judge finding has severity ``policy``: a model's opinion can hold an action back for a
person to look at, but it is never evidence of deception and so never costs an agent trust.
"""

JUDGE_UNENTAILED_STEP = "judge_unentailed_step"
"""A model judged that a step's claim does not follow from the quotes (and steps) it cites."""

JUDGE_MISALIGNED_ACTION = "judge_misaligned_action"
"""A model judged that the action does not serve the goal the principal stated."""

JUDGE_ERROR = "judge_error"
"""A judge failed (model unreachable, timeout, unusable reply, a bug): fail closed, escalate."""

JUDGE_LIMIT = "judge_limit"
"""The chain is too large for the judge's budget, so part of it went unjudged: escalate."""

SEVERITY = "policy"
"""The one severity judges use."""
