"""The spent-set on PostgreSQL: single use of a capability token across every gateway worker.

Spending is one statement, ``INSERT … ON CONFLICT (nonce) DO NOTHING``, and the row count says
who won: of any number of workers racing on one nonce, PostgreSQL's unique index lets exactly one
insert a row (1 row) and every other one finds the conflict (0 rows) and is refused. No read
precedes the write, so there is no check-then-act window. The commit is durable
(``synchronous_commit`` on, PostgreSQL's default) before the spend returns.
"""

from __future__ import annotations

import math
import threading

from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from thirdway.capability.spent import (
    PRUNE_EVERY,
    PRUNE_GRACE_SECONDS,
    _check_spend,
    _spent_error,
)
from thirdway.errors import CapabilityError, InputError, LogError

__all__ = ["PostgresSpentSet"]

_SPEND = text(
    "INSERT INTO capability_spent (nonce, expires_at, spent_at) VALUES (:nonce, :expires, :now) "
    "ON CONFLICT (nonce) DO NOTHING"
)


class PostgresSpentSet:
    """A :class:`~thirdway.capability.spent.SpentSet` in a PostgreSQL database shared by every
    worker. The table comes from the migrations (run here if it is missing)."""

    def __init__(self, url: str, *, pool_size: int = 5, prune_every: int = PRUNE_EVERY) -> None:
        from thirdway.ledger.postgres import create_pg_engine, redact_url

        self._url = redact_url(url)
        try:
            self._engine = create_pg_engine(url, pool_size=pool_size, max_overflow=pool_size)
        except InputError as exc:
            raise CapabilityError("unavailable", str(exc)) from None
        self._prune_every = prune_every
        self._since_prune = 0
        self._counter_lock = threading.Lock()
        self._closed = False
        self._ensure_schema(url)

    def _ensure_schema(self, url: str) -> None:
        from sqlalchemy import inspect

        try:
            with self._engine.connect() as connection:
                present = inspect(connection).has_table("capability_spent")
            if not present:
                from thirdway.migrations import upgrade

                upgrade(url)
        except (SQLAlchemyError, LogError) as exc:
            self._engine.dispose()
            raise self._unavailable("open", exc) from None

    def _unavailable(self, action: str, exc: BaseException) -> CapabilityError:
        original = getattr(exc, "orig", None) or exc
        lines = str(original).strip().splitlines()
        reason = lines[0] if lines else type(exc).__name__
        return CapabilityError(
            "unavailable", f"cannot {action} the spent-set at {self._url}: {reason}"
        )

    def spend(self, nonce: str, expires_at: int, now: float) -> None:
        _check_spend(nonce, expires_at, now)
        if self._closed:
            raise CapabilityError("unavailable", f"the spent-set at {self._url} is closed")
        try:
            with self._engine.begin() as connection:
                inserted = connection.execute(
                    _SPEND, {"nonce": nonce, "expires": expires_at, "now": now}
                ).rowcount
        except SQLAlchemyError as exc:
            raise self._unavailable("record the token in", exc) from None
        if inserted != 1:
            raise _spent_error(nonce)
        if self._due_for_pruning():
            self.prune(now)

    def prune(self, now: float) -> int:
        """Delete nonces that expired more than :data:`PRUNE_GRACE_SECONDS` ago; return how many."""
        try:
            with self._engine.begin() as connection:
                return connection.execute(
                    text("DELETE FROM capability_spent WHERE expires_at < :horizon"),
                    {"horizon": math.floor(now) - PRUNE_GRACE_SECONDS},
                ).rowcount
        except SQLAlchemyError:
            return 0  # housekeeping; the next prune tries again

    def is_spent(self, nonce: str) -> bool:
        with self._engine.connect() as connection:
            row = connection.execute(
                text("SELECT 1 FROM capability_spent WHERE nonce = :nonce"), {"nonce": nonce}
            ).first()
        return row is not None

    def __len__(self) -> int:
        with self._engine.connect() as connection:
            return int(
                connection.execute(text("SELECT count(*) FROM capability_spent")).scalar_one()
            )

    def _due_for_pruning(self) -> bool:
        with self._counter_lock:
            self._since_prune += 1
            if self._since_prune < self._prune_every:
                return False
            self._since_prune = 0
            return True

    def close(self) -> None:
        """Release the connection pool."""
        self._closed = True
        self._engine.dispose()
