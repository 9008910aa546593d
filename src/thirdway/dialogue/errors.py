"""The dialogue's refusals, and one-line rendering of validation errors."""

from __future__ import annotations

from pydantic import ValidationError

from thirdway.errors import InputError


class DialogueError(InputError):
    """A dialogue request that cannot be acted on: an unknown dialogue, an actor who may not do
    this (an agent approving, an auditor answering for the agent), a missing reason. Nothing
    was logged for it."""


class TransitionRefused(DialogueError):
    """The state machine refuses ``event`` in ``state``; ``reason`` says why in one line."""

    def __init__(self, state: str, event: str, reason: str) -> None:
        super().__init__(f"cannot {event} in state {state}: {reason}")
        self.state = state
        self.event = event
        self.reason = reason


def one_line(error: ValidationError, what: str) -> str:
    """``invalid <what>: <where>: <why>`` for the first problem pydantic found."""
    first = error.errors(include_url=False)[0]
    where = ".".join(str(part) for part in first["loc"])
    message = str(first["msg"]).removeprefix("Value error, ")
    more = error.error_count() - 1
    tail = f" (and {more} more)" if more > 0 else ""
    return f"invalid {what}: {where + ': ' if where else ''}{message}{tail}"
