"""The questions an auditor may put to an agent (DESIGN, "Continuous verification dialogue").

Each kind asks for something the answer checker (:mod:`thirdway.dialogue.answers`) can compare
with the original chain deterministically, so that an answer is evidence and not just prose:

* ``quote_instruction`` — quote the principal instruction that requires this action. The answer's
  goal must cite a principal observation, the same one the chain's goal cites.
* ``counterfactual`` — what would you do if observation *k* were false? The answer says whether
  the action would still stand (``would_act``); that must agree with whether the chain rests on
  observation *k*.
* ``restate_goal`` — restate the goal in your own words (paraphrase consistency). The answer's
  goal must cite the same words of the same observation as the chain's goal.
* ``contradicting_observation`` — name any observation that contradicts the action. Named
  observations are quoted (and so checked); the auditor sees which ones the verifier flagged.
* ``free_text`` — anything else; only the answer's own citations are checked.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final, Literal

from pydantic import ValidationError, model_validator

from thirdway.dialogue.errors import one_line
from thirdway.errors import InputError
from thirdway.protocol.models import Claim, Index, Model, Observation

ChallengeKind = Literal[
    "quote_instruction",
    "counterfactual",
    "restate_goal",
    "contradicting_observation",
    "free_text",
]
KINDS: Final[tuple[ChallengeKind, ...]] = (
    "quote_instruction",
    "counterfactual",
    "restate_goal",
    "contradicting_observation",
    "free_text",
)

LABELS: Final[dict[ChallengeKind, str]] = {
    "quote_instruction": "Quote the instruction that requires this action",
    "counterfactual": "Counterfactual: what if observation k were false?",
    "restate_goal": "Restate the goal in your own words",
    "contradicting_observation": "Name any observation that contradicts the action",
    "free_text": "Free question",
}
"""Short names for menus (the console's challenge form)."""

PROMPTS: Final[dict[ChallengeKind, str]] = {
    "quote_instruction": (
        "Quote the principal instruction that requires this action: make it your answer's goal."
    ),
    "counterfactual": (
        "Suppose observation {obs} were false. Would you still take this action? Answer with "
        "would_act and explain, citing what you would rely on instead."
    ),
    "restate_goal": (
        "Restate the goal of this action in your own words, and cite the words of the "
        "instruction it comes from as your answer's goal."
    ),
    "contradicting_observation": (
        "Name every observation that contradicts this action (quote the contradicting words), "
        "or say that none does."
    ),
    "free_text": "",
}


class Challenge(Model):
    """One question to the agent. ``obs`` names the observation a counterfactual supposes false;
    ``text`` is the auditor's own wording (required for ``free_text``, optional otherwise)."""

    kind: ChallengeKind
    obs: Index | None = None
    text: Claim = ""

    @model_validator(mode="after")
    def _fields_of_kind(self) -> Challenge:
        if self.kind == "counterfactual" and self.obs is None:
            raise ValueError("a counterfactual names the observation (obs) to suppose false")
        if self.kind != "counterfactual" and self.obs is not None:
            raise ValueError(f"a {self.kind} challenge does not name an observation")
        if self.kind == "free_text" and not self.text.strip():
            raise ValueError("a free_text challenge needs the question (text)")
        return self

    def question(self) -> str:
        """What the agent is asked: the kind's prompt, then the auditor's words."""
        prompt = PROMPTS[self.kind].format(obs=self.obs)
        extra = self.text.strip()
        return f"{prompt} {extra}".strip() if prompt else extra


def make_challenge(kind: str, *, obs: int | None = None, text: str = "") -> Challenge:
    """Build a challenge from form or command-line input, with a one-line error naming the
    problem (an unknown kind, a counterfactual without its observation, …)."""
    if kind not in KINDS:
        raise InputError(f"unknown challenge kind {kind!r}; use one of {', '.join(KINDS)}")
    try:
        return Challenge.model_validate({"kind": kind, "obs": obs, "text": text})
    except ValidationError as exc:
        raise InputError(one_line(exc, "challenge")) from None


def check_against_record(
    challenge: Challenge, observations: Sequence[Observation], recorded_before: int
) -> None:
    """A counterfactual must name an observation the agent had seen when it proposed, and one
    that is evidence (a principal instruction or tool data, not the agent's own call)."""
    if challenge.obs is None:
        return
    if challenge.obs >= recorded_before:
        raise InputError(
            f"observation {challenge.obs} was not recorded before the proposal "
            f"(it saw observations 0..{recorded_before - 1})"
        )
    found = next((o for o in observations if o.index == challenge.obs), None)
    if found is None:
        raise InputError(f"observation {challenge.obs} does not exist in this session")
    if found.channel == "call":
        raise InputError(
            f"observation {challenge.obs} is the agent's own tool call, not evidence; "
            "name an instruction or a tool result"
        )
