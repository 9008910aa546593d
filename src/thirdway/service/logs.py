"""Structured logs: one JSON object per line on stderr, one line per request.

uvicorn's own access log is switched off (``thirdway serve`` passes ``access_log=False``) and
its loggers share this handler without propagating, so nothing is logged twice.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

_logger = logging.getLogger("thirdway.service")
_STANDARD = set(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {
    "message",
    "color_message",  # uvicorn's copy of the message with terminal colours
}


class JsonFormatter(logging.Formatter):
    """``{"ts", "level", "logger", "msg", …extra fields}``."""

    def format(self, record: logging.LogRecord) -> str:
        payload: dict[str, Any] = {
            "ts": round(record.created, 3),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD and not key.startswith("_"):
                payload[key] = value
        if record.exc_info:
            payload["exc"] = self.formatException(record.exc_info)
        return json.dumps(payload, default=str)


def configure(level: str = "info") -> None:
    """Route thirdway's and uvicorn's loggers to one JSON handler on stderr."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    for name in ("thirdway", "uvicorn", "uvicorn.error", "uvicorn.access"):
        logger = logging.getLogger(name)
        logger.handlers = [handler]
        logger.setLevel(level.upper())
        logger.propagate = False


def now_ms() -> float:
    return time.perf_counter() * 1000


class RequestLog:
    """One log line per request, after its answer: method, path, status, time, principal.
    A pure ASGI middleware (cheaper per request than ``@app.middleware("http")``)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not _logger.isEnabledFor(logging.INFO):
            # nothing would be written (log_level warning or above): no wrapper to pay for
            await self.app(scope, receive, send)
            return
        started = now_ms()
        status = 500

        async def record(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, record)
        finally:
            state = scope.get("state") or {}
            _logger.info(
                "request",
                extra={
                    "method": scope["method"],
                    "path": scope["path"],
                    "status": status,
                    "ms": round(now_ms() - started, 2),
                    "principal": state.get("principal"),
                },
            )
