"""The service's error contract: every error is ``{"error": {"code", "message"}}``.

Status codes: 400 malformed or invalid input (the field named), 401 no or unknown key, 403 a
role or principal that may not do this (or a token that does not allow this call), 404 an
unknown session, dialogue or agent, 409 a spent token, an illegal dialogue transition, a
resolved escalation, or a record another worker changed meanwhile (``record_moved``: nothing
was written; send the request again), 413 a body over the limit, 503 no trustworthy verifier.
A proposal the verifier denies is not an error: it is a 200 carrying the ``denied`` outcome.
"""

from __future__ import annotations

import logging
from typing import Any, Final

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from thirdway.dialogue.errors import TransitionRefused
from thirdway.dialogue.service import DialogueMoved
from thirdway.errors import (
    CapabilityError,
    EnclaveError,
    LogError,
    ProofError,
    QuotaExceeded,
    ThirdwayError,
)
from thirdway.gateway.sessions import StaleRecordError

logger = logging.getLogger("thirdway.service")


class ErrorDetail(BaseModel):
    code: str
    message: str
    reason: str | None = None
    """For refused capabilities: the stable reason code (``spent``, ``wrong_args``, …)."""


class ErrorBody(BaseModel):
    error: ErrorDetail


class ServiceError(ThirdwayError):
    """An error the service answers with ``status`` and ``code``."""

    status: int = 400
    code: str = "bad_request"

    def __init__(self, message: str) -> None:
        super().__init__(message)


class Unauthorized(ServiceError):
    status, code = 401, "unauthorized"


class Forbidden(ServiceError):
    status, code = 403, "forbidden"


class NotFound(ServiceError):
    status, code = 404, "not_found"


class Conflict(ServiceError):
    status, code = 409, "conflict"


ERROR_RESPONSES: Final[dict[int | str, dict[str, Any]]] = {
    status: {"model": ErrorBody, "description": text}
    for status, text in {
        400: "Malformed or invalid input; the message names the field",
        401: "No API key, or an unknown one",
        403: "This principal or role may not do this",
        404: "Unknown session, dialogue or agent",
        409: "Spent token, illegal dialogue transition, already resolved, or record_moved "
        "(another worker changed the record meanwhile; nothing was written: retry)",
        413: "Request body over the limit",
        429: "quota_exceeded: the agent holds too many open sessions, or too much observation "
        "text across them; close sessions it no longer needs",
    }.items()
}


def error_response(status: int, code: str, message: str, reason: str | None = None) -> JSONResponse:
    detail = ErrorDetail(code=code, message=message[:2000], reason=reason)
    return JSONResponse(
        status_code=status, content=ErrorBody(error=detail).model_dump(exclude_none=True)
    )


def classify(exc: ThirdwayError) -> tuple[int, str, str | None]:
    """(status, code, reason) for an error raised by thirdway code."""
    if isinstance(exc, ServiceError):
        return exc.status, exc.code, None
    if isinstance(exc, CapabilityError):
        status = 409 if exc.reason in ("spent", "voided", "unlogged") else 403
        return status, "capability_refused", exc.reason
    if isinstance(exc, TransitionRefused):
        return 409, "illegal_transition", None
    if isinstance(exc, QuotaExceeded):
        return 429, "quota_exceeded", None
    if isinstance(exc, StaleRecordError | DialogueMoved):
        return 409, "record_moved", None
    if isinstance(exc, EnclaveError):
        return 503, "verifier_unavailable", None
    if isinstance(exc, LogError | ProofError):
        return 400, "log_request", None
    return 400, "invalid_input", None


def _validation_message(exc: RequestValidationError) -> str:
    errors = exc.errors()
    if not errors:
        return "invalid request"
    first = errors[0]
    loc = [str(p) for p in first.get("loc", ())]
    if first.get("type") == "json_invalid":
        return "the request body is not valid JSON"
    where = ".".join(loc[1:] if loc and loc[0] in {"body", "query", "path"} else loc)
    place = loc[0] if loc else "request"
    more = len(errors) - 1
    tail = f" (and {more} more)" if more else ""
    return f"invalid {place} field {where or '(whole body)'}: {first.get('msg')}{tail}"


_FASTAPI_BODY_ERROR: Final = "There was an error parsing the body"
"""FastAPI's 400 for a JSON body that fails to parse other than as a ``JSONDecodeError``."""
_NOT_JSON_TYPE: Final = (
    "the request body must be a JSON object sent with 'Content-Type: application/json'"
)


def _body_parse_message(cause: BaseException | None) -> str:
    """Name why FastAPI could not parse the body (it says only that it could not)."""
    if isinstance(cause, UnicodeDecodeError):
        return f"the request body is not valid JSON: not UTF-8 text (byte {cause.start})"
    if isinstance(cause, RecursionError):
        return "the request body is not valid JSON: nested too deeply"
    return "the request body is not valid JSON"


def _whole_body_refused(exc: RequestValidationError) -> bool:
    """Whether the first error is the whole body's type (not one field of it)."""
    errors = exc.errors()
    return bool(errors) and tuple(errors[0].get("loc", ())) == ("body",)


def _json_content_type(request: Request) -> bool:
    """FastAPI parses a body as JSON only without a Content-Type or with a JSON one."""
    value = request.headers.get("content-type")
    if value is None:
        return True
    media = value.partition(";")[0].strip().lower()
    return media == "application/json" or (
        media.startswith("application/") and media.endswith("+json")
    )


def install_error_handlers(app: FastAPI) -> None:
    """Map every failure to the error contract (and log unexpected ones once, here)."""

    @app.exception_handler(ThirdwayError)
    async def thirdway_error(request: Request, exc: ThirdwayError) -> JSONResponse:
        status, code, reason = classify(exc)
        return error_response(status, code, str(exc), reason)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        if _whole_body_refused(exc) and not _json_content_type(request):
            return error_response(400, "invalid_input", _NOT_JSON_TYPE)
        return error_response(400, "invalid_input", _validation_message(exc))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 400 and exc.detail == _FASTAPI_BODY_ERROR:
            return error_response(400, "invalid_input", _body_parse_message(exc.__cause__))
        codes = {404: "not_found", 405: "method_not_allowed", 401: "unauthorized"}
        code = codes.get(exc.status_code, "http_error")
        return error_response(exc.status_code, code, str(exc.detail))


class CatchAll:
    """The last line: an unexpected exception is logged once, here, with its traceback, and
    answered with the JSON 500; it does not propagate (Starlette's own handler would re-raise
    it for the server to log a second time)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracked(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, tracked)
        except Exception:
            logger.exception("unexpected error on %s %s", scope["method"], scope["path"])
            if not started:
                answer = error_response(
                    500, "internal", "internal error; the request was not completed"
                )
                await answer(scope, receive, send)
