"""Turn untrusted bytes into wire models, or an :class:`InputError` that names field and reason."""

from __future__ import annotations

from typing import TypeVar

from pydantic import BaseModel, TypeAdapter, ValidationError

from thirdway.errors import InputError
from thirdway.protocol.models import Observation, Proposal

M = TypeVar("M", bound=BaseModel)

MAX_DOCUMENT_BYTES = 64 * 1024 * 1024
"""The largest JSON document thirdway will parse at all."""

_OBSERVATIONS = TypeAdapter(list[Observation])


def describe(error: ValidationError, what: str, limit: int = 3) -> str:
    """One line naming where each problem is and why, e.g. ``steps.2.cites.0.obs: ...``."""
    parts = []
    for item in error.errors(include_url=False)[:limit]:
        where = ".".join(str(p) for p in item["loc"]) or "(document)"
        parts.append(f"{where}: {item['msg']}")
    more = error.error_count() - limit
    tail = f" (and {more} more)" if more > 0 else ""
    return f"invalid {what}: " + "; ".join(parts) + tail


def _check_size(data: bytes | str, what: str) -> None:
    if len(data) > MAX_DOCUMENT_BYTES:
        raise InputError(f"{what} is {len(data)} bytes; the limit is {MAX_DOCUMENT_BYTES}")


def parse_model(model: type[M], data: bytes | str, what: str | None = None) -> M:
    """Validate JSON ``data`` as ``model``."""
    label = what or model.__name__.lower()
    _check_size(data, label)
    try:
        return model.model_validate_json(data)
    except ValidationError as exc:
        raise InputError(describe(exc, label)) from None


def parse_proposal(data: bytes | str) -> Proposal:
    return parse_model(Proposal, data, "proposal")


def parse_observations(data: bytes | str) -> list[Observation]:
    """A JSON list of observations."""
    _check_size(data, "observations")
    try:
        return _OBSERVATIONS.validate_json(data)
    except ValidationError as exc:
        raise InputError(describe(exc, "observations")) from None
