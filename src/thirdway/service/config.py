"""The service's configuration: a TOML file, then ``THIRDWAY_*`` environment variables on top.

Plain pydantic, so a wrong value is refused with the field named, before anything starts.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from thirdway.errors import InputError

ENV_PREFIX = "THIRDWAY_"
DEFAULT_MAX_BODY_BYTES = 1 << 20
MAX_PAGE = 1000
"""The most items one list request returns (``limit`` above it is refused, not trimmed)."""


SHARED_SQLITE_THREADS = 6
"""Gate threads per worker when several workers share a SQLite log (see ``gate_threads``)."""


class ServiceConfig(BaseModel):
    """What ``thirdway serve`` needs. ``db`` picks the storage: ``sqlite`` (the default: log and
    spent-set as SQLite files in ``data_dir``, one or several worker processes on one machine)
    or a ``postgresql://`` URL (log, spent-set and API keys in that database, any number of
    workers; ``data_dir`` still holds the signing keys, which every worker reads)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    data_dir: Path = Path("thirdway-data")
    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=0, le=65535)
    db: str = "sqlite"
    workers: int = Field(default=1, ge=1, le=64)
    max_body_bytes: int = Field(default=DEFAULT_MAX_BODY_BYTES, ge=1024, le=64 << 20)
    tools: Literal["banking", "none"] = "banking"
    """Gateway-hosted tools: the AgentDojo-style banking toolset, or none."""
    console: bool = True
    """Mount the auditor console under ``/console`` (auditors sign in with their API key)."""
    console_secret: str | None = None
    """Signs console session cookies; random per process when unset (so with several workers
    a console session lasts only while requests reach the worker that signed it: set one)."""
    auto_auditor: bool = False
    """Let the automatic auditor approve escalated actions of the ``auto_auditor_risks`` classes
    whose chain the verifier passed without a finding (never financial or critical ones)."""
    auto_auditor_risks: tuple[Literal["read", "write", "external"], ...] = ("read", "write")
    """The risk classes the automatic auditor may approve when ``auto_auditor`` is on."""
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    threads: int | None = Field(default=None, ge=1, le=256)
    """Worker threads for the blocking gate calls in each worker process (the log's group
    commit batches across them; more threads than cores mostly adds GIL contention); unset:
    :attr:`gate_threads`."""
    checkpoint_seconds: float = Field(default=10.0, gt=0, le=86400)
    """With PostgreSQL: how often the elected worker signs a checkpoint of the shared log."""
    sessions_per_agent: int = Field(default=4096, ge=1, le=1_000_000)
    """The most sessions one agent may hold open at once (more: 429 ``quota_exceeded``); the
    gatekeeper's own default (``SESSIONS_PER_AGENT``)."""
    chars_per_agent: int = Field(default=256 * 1024 * 1024, ge=1, le=1 << 40)
    """The most observation characters one agent's open sessions may hold together (a bound
    on the memory any one agent can make the gateway hold); the gatekeeper's default, one
    session's ``MAX_SESSION_CHARS``."""
    shutdown_seconds: float = Field(default=30.0, gt=0, le=3600)
    """How long a worker waits, after SIGTERM, for the requests in flight to finish."""

    @property
    def postgres(self) -> bool:
        """Whether ``db`` names a PostgreSQL database."""
        return is_postgres_db(self.db)

    @property
    def gate_threads(self) -> int:
        """``threads``, or by default 40 for one process and :data:`SHARED_SQLITE_THREADS` for
        each of several workers on SQLite: there a worker holds the log's write lock, which
        every worker needs, while its Python runs, and with 40 threads each waiting its turn
        for the GIL it held that lock twice as long (bench serve, 2 workers: 463 actions/s with
        40 threads, 499-536 with 4 to 8)."""
        if self.threads is not None:
            return self.threads
        if self.workers > 1 and not self.postgres:
            return SHARED_SQLITE_THREADS
        return 40

    def check_supported(self) -> None:
        """Refuse storage and worker combinations that cannot work, naming why."""
        if self.postgres:
            return
        if self.db != "sqlite" and not self.db.startswith("sqlite:"):
            raise InputError(
                f"--db {_shown(self.db)!r} is not a storage thirdway knows: use 'sqlite' (the "
                "default, files in --data-dir) or a postgresql:// URL"
            )


def is_postgres_db(db: str) -> bool:
    text = db.strip().lower()
    return text.startswith(("postgresql://", "postgres://", "postgresql+psycopg://"))


def _shown(db: str) -> str:
    """``db`` with any password masked (it appears in error messages)."""
    if "://" not in db or "@" not in db:
        return db[:200]
    scheme, _, rest = db.partition("://")
    credentials, _, host = rest.rpartition("@")
    user = credentials.split(":", 1)[0]
    return f"{scheme}://{user}:***@{host}"[:200] if ":" in credentials else db[:200]


def _env_values(environ: Mapping[str, str]) -> dict[str, Any]:
    fields = ServiceConfig.model_fields
    found: dict[str, Any] = {}
    for key, value in environ.items():
        if key.startswith(ENV_PREFIX):
            name = key[len(ENV_PREFIX) :].lower()
            if name in fields:
                found[name] = value
    return found


def load_config(
    path: Path | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> ServiceConfig:
    """File, then environment, then ``overrides`` (the command line), each over the last."""
    values: dict[str, Any] = {}
    if path is not None:
        try:
            with path.open("rb") as handle:
                values.update(tomllib.load(handle))
        except OSError as exc:
            raise InputError(f"cannot read config file {path}: {exc.strerror}") from None
        except tomllib.TOMLDecodeError as exc:
            raise InputError(f"config file {path} is not valid TOML: {exc}") from None
    values.update(_env_values(os.environ if environ is None else environ))
    values.update({k: v for k, v in (overrides or {}).items() if v is not None})
    try:
        return ServiceConfig.model_validate(values)
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        where = ".".join(str(p) for p in first["loc"])
        raise InputError(f"invalid service config: {where}: {first['msg']}") from None
