"""Running the service: one uvicorn worker in this process, or several worker processes.

With several workers uvicorn's supervisor binds the socket once and starts
``workers`` processes that accept connections from it; each builds its app with
:func:`worker_app`, opening its own services over the shared database. The configuration
reaches them as JSON in an environment variable (the processes are spawned, not forked, so
nothing else of the parent's state could reach them anyway).

Shutdown: SIGTERM (or SIGINT) to the supervisor is passed to every worker; each stops
accepting, lets the requests in flight finish (at most ``shutdown_seconds``), then closes its
log and spent-set. Every answer a client got was durable before it was sent, so nothing
answered is lost. The supervisor exits when every worker has.

Each serving process tunes its garbage collector once its services are open (see
:mod:`thirdway.gateway.collector`). Before any worker starts, the supervisor opens the
services once and closes them: the schema, the signing keys and the API key table are created
there, by one process, and a wrong URL or a broken log is reported once, before the port is
bound.
"""

from __future__ import annotations

import logging
import os
import secrets

from fastapi import FastAPI

from thirdway.errors import InputError
from thirdway.gateway.collector import tune_collector
from thirdway.gateway.gatekeeper import LOG_NAME
from thirdway.gateway.restart import end_shared
from thirdway.service.config import ServiceConfig

CONFIG_ENV = "THIRDWAY_WORKER_CONFIG_JSON"
"""Where a worker process finds its configuration (not a ``ServiceConfig`` field, so
``load_config`` ignores it)."""


def worker_app() -> FastAPI:
    """The app of one worker process (uvicorn's ``factory``)."""
    from thirdway.service import create_app
    from thirdway.service import logs as service_logs

    raw = os.environ.get(CONFIG_ENV)
    if raw is None:
        raise InputError(f"{CONFIG_ENV} is not set: start workers with `thirdway serve`")
    config = ServiceConfig.model_validate_json(raw)
    service_logs.configure(config.log_level)
    # uvicorn's own access line would repeat the service's request line
    logging.getLogger("uvicorn.access").setLevel(logging.WARNING)
    app = create_app(config)
    tune_collector()
    return app


def for_workers(config: ServiceConfig) -> ServiceConfig:
    """``config`` as every worker gets it: a console secret shared by all of them (a console
    session signed by one worker must be accepted by the others)."""
    if config.console and config.console_secret is None:
        return config.model_copy(update={"console_secret": secrets.token_urlsafe(32)})
    return config


def _http_protocol() -> str:
    """httptools with one write per response when httptools is installed, else uvicorn's own
    choice (h11)."""
    try:
        import httptools  # noqa: F401
    except ImportError:  # pragma: no cover - httptools comes with uvicorn[standard]
        return "auto"
    from thirdway.service.http import PROTOCOL

    return PROTOCOL


def run(config: ServiceConfig) -> None:
    """Serve until SIGTERM/SIGINT (see the module docstring)."""
    import uvicorn

    from thirdway.service import create_app
    from thirdway.service import logs as service_logs
    from thirdway.service.state import Services

    config.check_supported()
    service_logs.configure(config.log_level)
    common = {
        "host": config.host,
        "port": config.port,
        "log_config": None,
        "access_log": False,
        "timeout_graceful_shutdown": max(1, round(config.shutdown_seconds)),
        "log_level": config.log_level,
        "http": _http_protocol(),
    }
    if config.workers == 1:
        app = create_app(config)
        tune_collector()
        uvicorn.run(app, **common)  # type: ignore[arg-type]
        return
    # Alone, before any worker: on SQLite this is also the single gatekeeper that recovers
    # from an unclean stop, which the workers cannot do while others run, and hands the
    # folder over to them (thirdway.gateway.restart.shared_floor).
    alone = Services.open(config.model_copy(update={"workers": 1}))
    try:
        if not config.postgres:
            alone.gate.hand_over()
    finally:
        alone.close()
    os.environ[CONFIG_ENV] = for_workers(config).model_dump_json()
    try:
        uvicorn.run(
            "thirdway.service.worker:worker_app",
            factory=True,
            workers=config.workers,
            **common,  # type: ignore[arg-type]
        )
    finally:
        if not config.postgres:
            end_shared(config.data_dir, config.data_dir / LOG_NAME)
