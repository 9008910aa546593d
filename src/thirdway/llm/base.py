"""The one interface every language model sits behind, and JSON replies checked against a type.

Everything in thirdway that asks a model something (semantic judges, behavioural probes) talks
to a :class:`ChatModel`: a remote OpenAI-compatible endpoint and the bundled local model look the
same, and a cache can wrap either. Decoding is always greedy (temperature 0) with a fixed seed,
so a recorded answer can be reproduced.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, Literal, Protocol, TypedDict, TypeVar, runtime_checkable

from pydantic import BaseModel, ValidationError

from thirdway.errors import ThirdwayError

Role = Literal["system", "user", "assistant"]


class Message(TypedDict):
    """One chat message, in the shape every chat-completion API accepts."""

    role: Role
    content: str


class ModelError(ThirdwayError):
    """The model could not be loaded or reached, or its reply was unusable."""


@runtime_checkable
class ChatModel(Protocol):
    """A chat model decoding greedily (temperature 0).

    ``json_schema``, when given, asks the backend to constrain decoding to that JSON Schema
    (a grammar locally, ``response_format`` remotely). Backends raise :class:`ModelError` with a
    one-line message for every failure a caller can meet.
    """

    @property
    def model_id(self) -> str:
        """A stable name of the model and its decoding setup; part of every cache key."""
        ...

    def complete(
        self,
        messages: Sequence[Message],
        *,
        json_schema: dict[str, Any] | None = None,
        max_tokens: int,
        seed: int = 0,
    ) -> str:
        """Return the assistant's reply text."""
        ...


ReplyT = TypeVar("ReplyT", bound=BaseModel)

_RETRY_NOTE = (
    "Your previous reply was not valid JSON matching the schema. "
    "Reply again with only one JSON object matching the schema, nothing else."
)


def reply_schema(reply_type: type[BaseModel]) -> dict[str, Any]:
    """The JSON Schema a backend constrains decoding to for ``reply_type``."""
    schema = reply_type.model_json_schema()
    schema.pop("title", None)
    return schema


def parse_reply(text: str, reply_type: type[ReplyT]) -> ReplyT:
    """Parse ``text`` as one JSON object of ``reply_type``; raise ModelError naming the fault."""
    stripped = text.strip()
    try:
        value = json.loads(stripped)
    except json.JSONDecodeError as exc:
        raise ModelError(f"model reply is not JSON ({exc.msg} at char {exc.pos})") from None
    try:
        return reply_type.model_validate(value)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "reply"
        raise ModelError(
            f"model reply does not match the schema: {where}: {first['msg']}"
        ) from None


def complete_json(
    model: ChatModel,
    messages: Sequence[Message],
    reply_type: type[ReplyT],
    *,
    max_tokens: int,
    seed: int = 0,
) -> ReplyT:
    """Ask for a reply of ``reply_type`` under a JSON-Schema constraint, retrying once.

    Constrained decoding can still produce an unusable reply (a token budget cut the object
    short, a server ignored ``response_format``), so one retry is made with a corrective note
    and the next seed; a second bad reply raises :class:`ModelError` with both causes.
    """
    schema = reply_schema(reply_type)
    first = model.complete(messages, json_schema=schema, max_tokens=max_tokens, seed=seed)
    try:
        return parse_reply(first, reply_type)
    except ModelError as first_error:
        retry: list[Message] = [
            *messages,
            {"role": "assistant", "content": first},
            {"role": "user", "content": _RETRY_NOTE},
        ]
        second = model.complete(retry, json_schema=schema, max_tokens=max_tokens, seed=seed + 1)
        try:
            return parse_reply(second, reply_type)
        except ModelError as second_error:
            raise ModelError(
                f"{model.model_id}: no valid JSON reply after one retry "
                f"(first: {first_error}; retry: {second_error})"
            ) from None
