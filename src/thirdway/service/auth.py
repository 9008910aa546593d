"""API keys and roles.

A key is ``tw_<key id>_<secret>``: the id finds the row, the secret (256 random bits) is kept
only as its SHA-256 digest and compared in constant time. A slow hash adds nothing for a
secret that high in entropy, and every request must check one. Each key belongs to one
principal (a name) with one role, and a name keeps its role for all its keys:

- ``agent``: opens its own sessions, records observations, proposes, executes, answers its own
  dialogues. It acts only as itself: the session's agent must be the key's name.
- ``auditor``: reads and reviews, challenges, approves and denies dialogues. Never proposes.
- ``admin``: creates keys and reads everything; acts neither as an agent nor as an auditor.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Literal

from thirdway.errors import InputError
from thirdway.service.errors import Forbidden, Unauthorized

Role = Literal["agent", "auditor", "admin"]
ROLES: Final[tuple[Role, ...]] = ("agent", "auditor", "admin")
PREFIX: Final = "tw_"
MAX_KEY_CHARS: Final = 200
NAME: Final = re.compile(r"[A-Za-z0-9._:@-]{1,128}")
"""Principal names: a subset of protocol ids that is safe in logs, URLs and the console."""


@dataclass(frozen=True)
class Principal:
    """Who is calling: a name and its role."""

    name: str
    role: Role
    key_id: str

    def require(self, *roles: Role) -> None:
        if self.role not in roles:
            allowed = " or ".join(roles)
            raise Forbidden(f"this needs the {allowed} role; {self.name!r} is an {self.role}")

    def require_agent(self, agent: str) -> None:
        """Only ``agent`` itself may act in ``agent``'s name."""
        self.require("agent")
        if agent != self.name:
            raise Forbidden(f"agent {self.name!r} cannot act for agent {agent!r}")


@dataclass(frozen=True)
class KeyInfo:
    key_id: str
    name: str
    role: str
    created_at: int
    revoked_at: int | None


@dataclass(frozen=True)
class _Row:
    name: str
    role: Role
    digest: bytes


def _digest(secret: str) -> bytes:
    return hashlib.sha256(secret.encode()).digest()


class KeyStore:
    """API keys: the checks every backend shares. :class:`SQLiteKeyStore` keeps them in
    ``keys.db`` in the data folder (one machine); :class:`PostgresKeyStore` in the service's
    PostgreSQL database, where every worker process reads the keys one admin command made."""

    blocking: bool = True
    """Whether a lookup may wait on the network (then the service runs it on a thread)."""

    def __init__(self) -> None:
        self._dummy = _digest(secrets.token_urlsafe(32))

    def close(self) -> None:
        raise NotImplementedError

    def _role_of(self, name: str) -> str | None:
        raise NotImplementedError

    def _insert(self, key_id: str, name: str, role: Role, digest: bytes, now: int) -> None:
        """Store the row; refuse (InputError) when ``name`` already holds another role."""
        raise NotImplementedError

    def _row(self, key_id: str) -> _Row | None:
        """Read on every request (no cache), so a revocation takes effect at once, even one
        made by ``thirdway keys revoke`` in another process."""
        raise NotImplementedError

    def _revoke(self, key_id: str, now: int) -> int:
        raise NotImplementedError

    def listing(self) -> list[KeyInfo]:
        """Every key's id, principal, role and times (never a secret or a digest)."""
        raise NotImplementedError

    def create(self, name: str, role: str) -> str:
        """A new key for ``name`` with ``role``; the only time the secret exists in clear."""
        if role not in ROLES:
            raise InputError(f"unknown role {role!r}; use one of {', '.join(ROLES)}")
        if not isinstance(name, str) or not NAME.fullmatch(name):
            raise InputError(
                f"invalid principal name {str(name)[:80]!r}: use 1 to 128 letters, digits "
                "and . _ : @ -"
            )
        key_id = secrets.token_hex(8)
        secret = secrets.token_urlsafe(32)
        self._insert(key_id, name, role, _digest(secret), int(time.time()))
        return f"{PREFIX}{key_id}_{secret}"

    def revoke(self, key_id: str) -> None:
        """Revoke a key by its id (the part after ``tw_``); the row stays, as a record."""
        if self._revoke(key_id, int(time.time())) != 1:
            raise InputError(f"no active key with id {key_id[:40]!r}")

    def authenticate(self, key: str | None) -> Principal:
        """The principal holding ``key``, or :class:`Unauthorized` (same work either way)."""
        if not key:
            raise Unauthorized("an API key is required: send 'Authorization: Bearer <key>'")
        key_id, secret = _split(key)
        row = self._row(key_id) if key_id else None
        expected = row.digest if row is not None else self._dummy
        matches = hmac.compare_digest(expected, _digest(secret))
        if row is None or not matches:
            raise Unauthorized("the API key is not valid")
        return Principal(row.name, row.role, key_id)


def _role_conflict(name: str, held: str) -> InputError:
    return InputError(f"{name!r} already is an {held}; a name keeps one role")


class SQLiteKeyStore(KeyStore):
    """API keys in SQLite (``keys.db`` in the data folder). WAL mode: other processes (the
    ``thirdway keys`` commands) write while the service reads, and a read never waits on a
    writer, so lookups are not ``blocking``."""

    blocking = False

    def __init__(self, path: Path) -> None:
        super().__init__()
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA busy_timeout=5000")
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS keys (id TEXT PRIMARY KEY, name TEXT NOT NULL, "
            "role TEXT NOT NULL, digest BLOB NOT NULL, created_at INTEGER NOT NULL, "
            "revoked_at INTEGER)"
        )
        columns = {row[1] for row in self._db.execute("PRAGMA table_info(keys)")}
        if "revoked_at" not in columns:  # a keys.db from before revocation existed
            self._db.execute("ALTER TABLE keys ADD COLUMN revoked_at INTEGER")
        self._lock = threading.Lock()

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def _insert(self, key_id: str, name: str, role: Role, digest: bytes, now: int) -> None:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                held = self._db.execute("SELECT role FROM keys WHERE name = ? LIMIT 1", (name,))
                row = held.fetchone()
                if row is not None and row[0] != role:
                    raise _role_conflict(name, row[0])
                self._db.execute(
                    "INSERT INTO keys VALUES (?, ?, ?, ?, ?, NULL)",
                    (key_id, name, role, digest, now),
                )
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def _row(self, key_id: str) -> _Row | None:
        with self._lock:
            found = self._db.execute(
                "SELECT name, role, digest FROM keys WHERE id = ? AND revoked_at IS NULL",
                (key_id,),
            ).fetchone()
        if found is None:
            return None
        return _Row(found[0], found[1], bytes(found[2]))

    def _revoke(self, key_id: str, now: int) -> int:
        with self._lock:
            changed: int = self._db.execute(
                "UPDATE keys SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL",
                (now, key_id),
            ).rowcount
        return changed

    def listing(self) -> list[KeyInfo]:
        with self._lock:
            rows = self._db.execute(
                "SELECT id, name, role, created_at, revoked_at FROM keys ORDER BY created_at, id"
            ).fetchall()
        return [KeyInfo(*row) for row in rows]


def _split(key: str) -> tuple[str, str]:
    if len(key) > MAX_KEY_CHARS or not key.startswith(PREFIX):
        return "", key[:MAX_KEY_CHARS]
    key_id, _, secret = key[len(PREFIX) :].partition("_")
    return key_id, secret


def bearer(header: str | None) -> str | None:
    """The key in an ``Authorization: Bearer <key>`` header."""
    if header is None:
        return None
    scheme, _, value = header.partition(" ")
    return value.strip() if scheme.lower() == "bearer" else None


class ConsoleAuth:
    """The console's login check (``thirdway.console.AuditorAuth``): an auditor signs in with
    their name and one of their API keys."""

    def __init__(self, keys: KeyStore) -> None:
        self._keys = keys

    def authenticate(self, auditor: str, secret: str) -> str | None:
        try:
            principal = self._keys.authenticate(secret)
        except Unauthorized:
            return None
        if principal.role != "auditor" or principal.name != auditor:
            return None
        return principal.name

    def credential_id(self, secret: str) -> str:
        """The key's id (``RevocableAuditorAuth``): the console keeps it, not the key."""
        return _split(secret)[0]

    def still_valid(self, auditor: str, credential_id: str) -> bool:
        """Whether key ``credential_id`` is still active and ``auditor``'s auditor key (read
        on every console request, so a revocation ends console sessions at once)."""
        row = self._keys._row(credential_id) if credential_id else None
        return row is not None and row.role == "auditor" and row.name == auditor
