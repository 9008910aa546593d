"""The spent-set: what makes a capability token single-use.

Spending a token records its nonce with one atomic ``INSERT`` into a table whose primary key is the
nonce. The database, not Python, decides who was first: of any number of threads or processes
racing to spend the same nonce, exactly one insert succeeds and every other one violates the key
and is refused. A nonce is kept until well after its token expired (expired tokens are refused
before they reach the spent-set), then pruned so the table stays small.
"""

from __future__ import annotations

import contextlib
import fcntl
import math
import os
import re
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Final, Protocol

from thirdway.errors import CapabilityError, InputError

PRUNE_GRACE_SECONDS: Final = 300
"""Rows are pruned only this long after expiry, so a verifier whose clock lags the pruner's by
less than this can never see an expired-and-pruned token as fresh."""
PRUNE_EVERY: Final = 1024
"""Prune after this many successful spends (per SpentSet object)."""

_NONCE = re.compile(r"^[0-9a-f]{32}$")

_SCHEMA: Final = (
    "CREATE TABLE IF NOT EXISTS capability_spent ("
    " nonce TEXT PRIMARY KEY NOT NULL,"
    " expires_at INTEGER NOT NULL,"
    " spent_at REAL NOT NULL"
    ") WITHOUT ROWID",
    "CREATE INDEX IF NOT EXISTS capability_spent_expiry ON capability_spent (expires_at)",
)


class SpentSet(Protocol):
    """Where spent nonces are recorded."""

    def spend(self, nonce: str, expires_at: int, now: float) -> None:
        """Record ``nonce`` as spent; raise CapabilityError ``spent`` if it already was, and
        ``expired`` if ``now >= expires_at``."""
        ...

    def is_spent(self, nonce: str) -> bool:
        """Whether ``nonce`` is recorded (for diagnostics; never use it to decide a spend)."""
        ...

    def close(self) -> None:
        """Release the store."""
        ...


def _check_spend(nonce: str, expires_at: int, now: float) -> None:
    """Arguments every spent-set refuses alike, before touching its store."""
    if not isinstance(nonce, str) or not _NONCE.fullmatch(nonce):
        raise CapabilityError("malformed", "a nonce is 32 lower-case hex digits")
    if isinstance(expires_at, bool) or not isinstance(expires_at, int):
        raise InputError("expires_at must be an integer number of unix seconds")
    if not math.isfinite(now):
        raise InputError("'now' must be a finite number of unix seconds")
    if now >= expires_at:
        raise CapabilityError("expired", f"token expired at {expires_at} (now {math.floor(now)})")


def _spent_error(nonce: str) -> CapabilityError:
    return CapabilityError(
        "spent", f"token {nonce[:8]}… was already used; every capability is good for one call"
    )


class MemorySpentSet:
    """An in-process spent-set (tests, single-process tools). A lock makes check-and-record one
    step."""

    def __init__(self, *, prune_every: int = PRUNE_EVERY) -> None:
        self._spent: dict[str, int] = {}
        self._lock = threading.Lock()
        self._prune_every = prune_every
        self._since_prune = 0

    def spend(self, nonce: str, expires_at: int, now: float) -> None:
        _check_spend(nonce, expires_at, now)
        with self._lock:
            if nonce in self._spent:
                raise _spent_error(nonce)
            self._spent[nonce] = expires_at
            self._since_prune += 1
            if self._since_prune >= self._prune_every:
                self._prune(now)

    def _prune(self, now: float) -> None:
        horizon = now - PRUNE_GRACE_SECONDS
        self._spent = {n: e for n, e in self._spent.items() if e > horizon}
        self._since_prune = 0

    def is_spent(self, nonce: str) -> bool:
        with self._lock:
            return nonce in self._spent

    def __len__(self) -> int:
        with self._lock:
            return len(self._spent)

    def close(self) -> None:
        """Nothing to release."""


class SQLiteSpentSet:
    """A spent-set in a SQLite file (WAL), shared by every thread and process that opens it.

    Each thread uses its own connection, so concurrent spends really are concurrent and the
    primary key alone settles every race. ``durable=True`` (the default) syncs each spend to disk
    (``synchronous=FULL``), so a token spent just before a power cut stays spent after it.
    ``wal_autocheckpoint`` sets SQLite's pragma of that name on each connection (for a database
    whose checkpoints another component runs, see :mod:`thirdway.ledger.wal`)."""

    def __init__(
        self,
        path: str | Path,
        *,
        durable: bool = True,
        busy_timeout_s: float = 5.0,
        prune_every: int = PRUNE_EVERY,
        wal_autocheckpoint: int | None = None,
        writer_lock: bool = False,
    ) -> None:
        self.path = Path(path)
        self._writer_fd: int | None = None
        self._writer_lock = threading.Lock()
        if writer_lock:  # the log's writer lock, see thirdway.ledger.sqlite_shared
            try:
                self._writer_fd = os.open(f"{self.path}.writer", os.O_RDWR | os.O_CREAT, 0o600)
            except OSError as exc:
                raise CapabilityError(
                    "unavailable", f"cannot open the writer lock of {self.path}: {exc}"
                ) from None
        self._durable = durable
        self._busy_timeout_s = busy_timeout_s
        self._prune_every = prune_every
        self._wal_autocheckpoint = wal_autocheckpoint
        self._since_prune = 0
        self._counter_lock = threading.Lock()
        self._local = threading.local()
        self._connections: list[sqlite3.Connection] = []
        self._connections_lock = threading.Lock()
        self._closed = False
        self._connection()  # create the file and schema now, so errors show at start-up

    def spend(self, nonce: str, expires_at: int, now: float) -> None:
        _check_spend(nonce, expires_at, now)
        try:
            with self._writing():
                self._connection().execute(
                    "INSERT INTO capability_spent (nonce, expires_at, spent_at) VALUES (?, ?, ?)",
                    (nonce, expires_at, now),
                )
        except sqlite3.IntegrityError:
            raise _spent_error(nonce) from None
        except sqlite3.Error as exc:
            raise CapabilityError(
                "unavailable", f"the spent-set {self.path} could not record the token: {exc}"
            ) from None
        if self._due_for_pruning():
            self.prune(now)

    def prune(self, now: float) -> int:
        """Delete nonces that expired more than :data:`PRUNE_GRACE_SECONDS` ago; return how many."""
        try:
            cursor = self._connection().execute(
                "DELETE FROM capability_spent WHERE expires_at < ?",
                (math.floor(now) - PRUNE_GRACE_SECONDS,),
            )
        except sqlite3.Error:
            return 0  # pruning is housekeeping; the next spend tries again
        return cursor.rowcount

    def is_spent(self, nonce: str) -> bool:
        row = (
            self._connection()
            .execute("SELECT 1 FROM capability_spent WHERE nonce = ?", (nonce,))
            .fetchone()
        )
        return row is not None

    def __len__(self) -> int:
        row = self._connection().execute("SELECT count(*) FROM capability_spent").fetchone()
        return int(row[0])

    def close(self) -> None:
        """Close every thread's connection."""
        with self._connections_lock:
            self._closed = True
            for connection in self._connections:
                connection.close()
            self._connections.clear()
            fd, self._writer_fd = self._writer_fd, None
        if fd is not None:
            os.close(fd)

    @contextlib.contextmanager
    def _writing(self) -> Iterator[None]:
        """With ``writer_lock``: hold the log's cross-process writer lock (a kernel lock whose
        waiters wake at once, instead of sleeping in SQLite's busy handler) for one write."""
        fd = self._writer_fd
        if fd is None:
            yield
            return
        with self._writer_lock:
            fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)

    def _due_for_pruning(self) -> bool:
        with self._counter_lock:
            self._since_prune += 1
            if self._since_prune < self._prune_every:
                return False
            self._since_prune = 0
            return True

    def _connection(self) -> sqlite3.Connection:
        connection: sqlite3.Connection | None = getattr(self._local, "connection", None)
        if connection is not None:
            return connection
        with self._connections_lock:
            if self._closed:
                raise CapabilityError("unavailable", f"the spent-set {self.path} is closed")
            connection = self._open()
            self._connections.append(connection)
        self._local.connection = connection
        return connection

    def _open(self) -> sqlite3.Connection:
        try:
            connection = sqlite3.connect(
                self.path,
                timeout=self._busy_timeout_s,
                isolation_level=None,  # autocommit: each INSERT is its own atomic transaction
                check_same_thread=False,  # only so that close() may close it from any thread
            )
            connection.execute("PRAGMA journal_mode=WAL")
            synchronous = "FULL" if self._durable else "NORMAL"
            connection.execute(f"PRAGMA synchronous={synchronous}")
            if self._wal_autocheckpoint is not None:
                connection.execute(f"PRAGMA wal_autocheckpoint={int(self._wal_autocheckpoint)}")
            for statement in _SCHEMA:
                connection.execute(statement)
        except sqlite3.Error as exc:
            raise CapabilityError(
                "unavailable", f"cannot open the spent-set {self.path}: {exc}"
            ) from None
        return connection
