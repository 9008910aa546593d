"""The FastAPI app: API routes under ``/v1``, the auditor console under ``/console``.

Sync route functions run in the threadpool: the gatekeeper blocks on durable appends, and its
group commit lets concurrent requests share one transaction.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from typing import Any

import anyio.to_thread
from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from thirdway import __version__
from thirdway.gateway import ToolRegistry
from thirdway.service.auth import ConsoleAuth
from thirdway.service.config import ServiceConfig
from thirdway.service.errors import CatchAll, install_error_handlers
from thirdway.service.hot import HotRoutes
from thirdway.service.limits import BodyLimit
from thirdway.service.logs import RequestLog
from thirdway.service.routes import ROUTERS
from thirdway.service.state import Services

logger = logging.getLogger("thirdway.service")
CONSOLE_PATH = "/console"


def create_app(
    config: ServiceConfig,
    *,
    services: Services | None = None,
    tools: ToolRegistry | None = None,
    fast_path: bool = True,
) -> FastAPI:
    """The service over ``config.data_dir``, or over ``services`` that the caller opened and
    will close. What the app opens itself it closes when it shuts down (uvicorn does that on
    SIGTERM after the requests in flight have finished, so nothing answered is lost).
    ``fast_path``: answer the hot routes' plain requests in raw ASGI
    (:mod:`thirdway.service.hot`; the same answers, less CPU)."""
    owned = services is None
    svc = services or Services.open(config, tools=tools)

    def gate_threads() -> ThreadPoolExecutor:
        # the hot routes hand their gate calls to these threads (see deps.in_thread); threads
        # start on first use
        return ThreadPoolExecutor(config.gate_threads, thread_name_prefix="gate")

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        anyio.to_thread.current_default_thread_limiter().total_tokens = config.gate_threads
        logger.info("serving", extra={"data_dir": str(config.data_dir)})
        try:
            yield
        finally:
            # uvicorn runs this after the requests in flight have been answered; a gate call
            # still running on a thread (its request timed out) finishes before the log closes
            app.state.executor.shutdown(wait=True)
            app.state.executor = gate_threads()
            if owned:
                svc.close()
                logger.info("stopped; log and spent-set closed")

    app = FastAPI(
        title="thirdway gateway",
        version=__version__,
        description=(
            "Agents' actions behind verified reasoning chains, capability tokens and a "
            "transparency log. Authenticate with 'Authorization: Bearer <API key>'. Errors are "
            '{"error": {"code", "message"}}; a denied proposal is a 200 with outcome "denied".'
        ),
        lifespan=lifespan,
    )
    app.state.services = svc
    app.state.executor = gate_threads()
    install_error_handlers(app)
    for router in ROUTERS:
        app.include_router(router)
    app.openapi = lambda: _openapi(app)  # type: ignore[method-assign]
    if config.console:
        _mount_console(app, svc, config)
    if fast_path:
        app.add_middleware(HotRoutes)  # innermost: inside the catch-all, limit and request log
    app.add_middleware(CatchAll)
    app.add_middleware(BodyLimit, max_bytes=config.max_body_bytes)
    app.add_middleware(RequestLog)
    return app


def _mount_console(app: FastAPI, svc: Services, config: ServiceConfig) -> None:
    from thirdway.console import create_console_app

    console = create_console_app(
        svc.dialogues,
        auth=ConsoleAuth(svc.keys),
        secret_key=config.console_secret,
        log=svc.gate.log,
    )
    app.mount(CONSOLE_PATH, _PrefixRedirects(console, CONSOLE_PATH))


class _PrefixRedirects:
    """The console was written to sit at the root: its links use ``url_for`` (correct under a
    mount) but a few redirects name absolute paths (``/login``, ``/log``). This adapter puts
    the mount prefix in front of such ``Location`` headers, and lets ``url_for`` resolve names
    in the console's own router, so the console works under ``/console`` unchanged."""

    def __init__(self, app: ASGIApp, prefix: str) -> None:
        self.app = app
        self.prefix = prefix.encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def prefixed(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [
                    (name, self._fix(value) if name.lower() == b"location" else value)
                    for name, value in message.get("headers", [])
                ]
            await send(message)

        # url_for must resolve the console's route names in the console's own router
        # (and build URLs under the mount)
        inner = {key: value for key, value in scope.items() if key != "router"}
        inner["app_root_path"] = scope.get("root_path", "")
        await self.app(inner, receive, prefixed)

    def _fix(self, location: bytes) -> bytes:
        absolute = location.startswith(b"/") and not location.startswith(b"//")
        inside = location == self.prefix or location.startswith(self.prefix + b"/")
        return self.prefix + location if absolute and not inside else location


def _openapi(app: FastAPI) -> dict[str, Any]:
    """The schema, without FastAPI's default 422 responses: validation errors are 400s here."""
    if app.openapi_schema:
        return app.openapi_schema
    schema = get_openapi(
        title=app.title, version=app.version, description=app.description, routes=app.routes
    )
    for path in schema.get("paths", {}).values():
        for operation in path.values():
            operation.get("responses", {}).pop("422", None)
    components = schema.get("components", {}).get("schemas", {})
    components.pop("HTTPValidationError", None)
    components.pop("ValidationError", None)
    app.openapi_schema = schema
    return schema
