"""The service's JSON errors as ``thirdway.errors`` types, carrying the server's message.

Each class is both an :class:`ApiError` (``status``, ``code``) and the matching library error,
so ``except InputError`` works the same against the service as in-process.
"""

from __future__ import annotations

from typing import Any

from thirdway.errors import CapabilityError, EnclaveError, GateError, InputError, ThirdwayError


class ApiError(ThirdwayError):
    """An error answer from the service."""

    def __init__(self, status: int, code: str, message: str) -> None:
        Exception.__init__(self, message)
        self.status = status
        self.code = code


class BadRequest(ApiError, InputError):
    """400 or 413: the request was malformed or invalid (the message names the field)."""


class Unauthorized(ApiError):
    """401: no API key, or an unknown one."""


class Forbidden(ApiError, GateError):
    """403: this principal may not do this (another agent's session, the wrong role)."""


class NotFound(ApiError, GateError):
    """404: unknown session, dialogue or agent."""


class Conflict(ApiError, InputError):
    """409: an illegal dialogue transition or an already taken id."""


class CapabilityRefused(ApiError, CapabilityError):
    """403/409 with code ``capability_refused``: the token does not allow this call."""

    def __init__(self, status: int, code: str, message: str, reason: str) -> None:
        ApiError.__init__(self, status, code, message)  # the server's message, as it is
        self.reason = reason


class ServiceUnavailable(ApiError, EnclaveError):
    """503: the service has no trustworthy verifier right now."""


class ServerError(ApiError):
    """5xx: the service failed (a bug worth reporting)."""


_BY_STATUS: dict[int, type[ApiError]] = {
    400: BadRequest,
    401: Unauthorized,
    403: Forbidden,
    404: NotFound,
    409: Conflict,
    413: BadRequest,
    503: ServiceUnavailable,
}


def error_for(status: int, body: Any, fallback: str) -> ApiError:
    """The error for an answer with ``status`` and JSON ``body`` (``fallback``: its text)."""
    detail = body.get("error") if isinstance(body, dict) else None
    if not isinstance(detail, dict):
        detail = {}
    code = str(detail.get("code", "http_error"))
    message = str(detail.get("message") or fallback or f"HTTP {status}")
    if code == "capability_refused":
        return CapabilityRefused(status, code, message, str(detail.get("reason", "unknown")))
    kind = _BY_STATUS.get(status, ServerError if status >= 500 else BadRequest)
    return kind(status, code, message)
