"""The continuous verification dialogue (DESIGN, "Continuous verification dialogue").

Opened by an escalation, a spot audit or an appeal; auditors challenge, the agent answers with
small chains that are verified and compared with the original chain, and the required number
of auditors approve or one denies, always with a reason. Every event is a ``dialogue`` log
entry, and the state is the fold of those entries.

- :mod:`.machine` — the pure state machine (opened → challenged ⇄ answered → approved | denied
  | expired) and :mod:`.model`, its events and state;
- :mod:`.challenges`, :mod:`.answers` — the questions, and how answers are checked;
- :mod:`.spot` — spot audits selected by a committed epoch secret, and their verification;
- :mod:`.auditors` — who may decide, m of n, the automatic auditor;
- :mod:`.store` — the log, folded; :mod:`.service` — :class:`DialogueService`, which acts;
- :mod:`.sink` — the Protocol the gatekeeper's approval hooks satisfy.
"""

from thirdway.dialogue.answers import Answer, AnswerCheck, check_answer
from thirdway.dialogue.auditors import AuditorRegistry, AutoAuditorConfig, auto_config
from thirdway.dialogue.challenges import KINDS as CHALLENGE_KINDS
from thirdway.dialogue.challenges import Challenge, make_challenge
from thirdway.dialogue.errors import DialogueError, TransitionRefused
from thirdway.dialogue.machine import TRANSITIONS, apply, refusal
from thirdway.dialogue.model import EVENTS, STATES, Dialogue, Turn, Vote
from thirdway.dialogue.service import (
    DialogueMoved,
    DialogueService,
    Resolution,
    Review,
    parse_answer,
)
from thirdway.dialogue.sink import EscalationSink
from thirdway.dialogue.spot import EpochKeeper, EpochReport, is_selected, verify_epochs

__all__ = [
    "CHALLENGE_KINDS",
    "EVENTS",
    "STATES",
    "TRANSITIONS",
    "Answer",
    "AnswerCheck",
    "AuditorRegistry",
    "AutoAuditorConfig",
    "Challenge",
    "Dialogue",
    "DialogueError",
    "DialogueMoved",
    "DialogueService",
    "EpochKeeper",
    "EpochReport",
    "EscalationSink",
    "Resolution",
    "Review",
    "TransitionRefused",
    "Turn",
    "Vote",
    "apply",
    "auto_config",
    "check_answer",
    "is_selected",
    "make_challenge",
    "parse_answer",
    "refusal",
    "verify_epochs",
]
