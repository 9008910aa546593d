"""Turning what callers hand the gatekeeper into validated values, or one-line errors.

Every public entry point accepts the wire models themselves, plain dicts or JSON text; all of
them end up validated by the ``thirdway/1`` models, and every failure is an
:class:`~thirdway.errors.InputError` naming the field and the reason.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from thirdway.capability.tokens import MAX_TTL_SECONDS
from thirdway.errors import InputError
from thirdway.protocol.manifest import ToolManifest
from thirdway.protocol.models import Id, Model, Observation, Proposal, ToolCall
from thirdway.protocol.parse import describe, parse_model

M = TypeVar("M", bound=BaseModel)


class _WireId(Model):
    value: Id


def valid_id(value: object, what: str) -> str:
    """``value`` if it is a wire ``Id`` (1 to 256 characters, no control characters)."""
    try:
        return _WireId(value=value).value
    except ValidationError as exc:
        raise InputError(f"invalid {what}: {exc.errors()[0]['msg']}") from None


def model_input(model: type[M], value: object, what: str) -> M:
    """``value`` (a ``model``, a mapping, or JSON text) validated as ``model``."""
    if isinstance(value, model):
        return value
    if isinstance(value, str | bytes):
        return parse_model(model, value, what)
    if isinstance(value, Mapping):
        try:
            return model.model_validate(dict(value))
        except ValidationError as exc:
            raise InputError(describe(exc, what)) from None
    raise InputError(f"a {what} is a JSON object, not {type(value).__name__}")


def proposal_input(value: object) -> Proposal:
    return model_input(Proposal, value, "proposal")


def call_input(value: object) -> ToolCall:
    return model_input(ToolCall, value, "tool call")


def observation(**fields: Any) -> Observation:
    """A validated observation, or an InputError naming the field. Strict: what enters the
    record is exactly what was given (bytes are not decoded, ``"3"`` is not an index)."""
    try:
        return Observation.model_validate(fields, strict=True)
    except ValidationError as exc:
        raise InputError(describe(exc, "observation")) from None


def amount_of(manifest: ToolManifest, args: Mapping[str, Any]) -> float | None:
    """The money a financial call moves (its ``amount`` argument), for Cedar's limits. A
    negative or non-finite amount is passed on, so the request refuses it (fail closed).

    An ``amount`` that is there but is not a number (``"25000"``, ``true``, a list) is refused
    here: Cedar would see no amount at all, and the schema makes every amount rule say
    ``context has amount && ...``, so each operator limit would silently not apply to a call
    whose tool may well read ``"25000"`` as 25000. A missing or ``null`` amount is no amount."""
    if manifest.risk not in ("financial", "critical"):
        return None
    value = args.get("amount")
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InputError(
            f"argument 'amount' of {manifest.risk} tool {manifest.tool!r} is a "
            f"{type(value).__name__}, not a number, so no amount limit could be applied to it"
        )
    return float(value)


def check_ttl(ttl_seconds: object) -> int:
    if (
        isinstance(ttl_seconds, bool)
        or not isinstance(ttl_seconds, int)
        or not 1 <= ttl_seconds <= MAX_TTL_SECONDS
    ):
        raise InputError(f"ttl_seconds must be an integer from 1 to {MAX_TTL_SECONDS}")
    return ttl_seconds


def check_reason(reason: object, limit: int) -> str:
    """An auditor's reason: required (due process), bounded."""
    if not isinstance(reason, str) or not reason.strip():
        raise InputError("an auditor's decision needs a reason (the charter's due process)")
    if len(reason) > limit:
        raise InputError(f"the reason is {len(reason)} characters; the limit is {limit}")
    try:
        reason.encode("utf-8")
    except UnicodeEncodeError:
        raise InputError("the reason is not valid Unicode") from None
    return reason
