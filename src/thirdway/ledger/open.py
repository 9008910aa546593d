"""Open a log by database URL, so one setting picks the backend.

- a plain path or ``sqlite:///path`` → :class:`~thirdway.ledger.sqlite.SQLiteLogStore` (one
  machine, one writer process at a time; the key lives next to the file as ``<path>.key``);
- ``postgresql://…`` or ``postgresql+psycopg://…`` → :class:`~thirdway.ledger.postgres.
  PostgresLogStore` (several worker processes on one log; the key file must be named, since a
  database has no folder to keep it in, and every worker that signs checkpoints needs a copy).
"""

from __future__ import annotations

from pathlib import Path

from thirdway.errors import InputError
from thirdway.ledger.log import TransparencyLog, key_path_for
from thirdway.ledger.store import LogStore

__all__ = ["is_postgres_url", "open_log", "open_store", "sqlite_path"]

_SQLITE_PREFIX = "sqlite:///"


def is_postgres_url(url_or_path: str | Path) -> bool:
    """Whether ``url_or_path`` names a PostgreSQL database."""
    text = str(url_or_path).strip().lower()
    return text.startswith(("postgresql://", "postgres://", "postgresql+psycopg://"))


def sqlite_path(url_or_path: str | Path) -> Path:
    """The file a SQLite URL or plain path names; refuses any other URL."""
    text = str(url_or_path).strip()
    if not text:
        raise InputError("log location is empty; give a file path or a database URL")
    if text.startswith(_SQLITE_PREFIX):
        rest = text[len(_SQLITE_PREFIX) :]
        if not rest or rest.startswith(":memory:"):
            raise InputError("a log needs a file: sqlite:///PATH, not an in-memory database")
        return Path(rest)
    if "://" in text:
        scheme = text.split("://", 1)[0]
        raise InputError(
            f"unsupported log URL scheme {scheme!r}: use a file path, sqlite:///PATH or "
            "postgresql://…"
        )
    return Path(text)


def open_store(url_or_path: str | Path, *, create: bool = True) -> LogStore:
    """The log store at ``url_or_path``, on the backend its URL names."""
    if is_postgres_url(url_or_path):
        from thirdway.ledger.postgres import PostgresLogStore

        return PostgresLogStore.open(str(url_or_path), create=create)
    from thirdway.ledger.sqlite import SQLiteLogStore

    return SQLiteLogStore.open(sqlite_path(url_or_path), create=create)


def open_log(
    url_or_path: str | Path,
    *,
    key_path: str | Path | None = None,
    create: bool = True,
    origin: str | None = None,
) -> TransparencyLog:
    """The :class:`TransparencyLog` at ``url_or_path``, signing with ``key_path``.

    For SQLite ``key_path`` defaults to ``<file>.key``; for PostgreSQL it is required.
    """
    if is_postgres_url(url_or_path):
        if key_path is None:
            raise InputError(
                "a PostgreSQL log needs its key file named (key_path / --key): the database "
                "has no folder to keep it in"
            )
        from thirdway.ledger.postgres import PostgresLogStore, redact_url

        store: LogStore = PostgresLogStore.open(str(url_or_path), create=create)
        name = redact_url(str(url_or_path))
    else:
        path = sqlite_path(url_or_path)
        from thirdway.ledger.sqlite import SQLiteLogStore

        store = SQLiteLogStore.open(path, create=create)
        name = str(path)
        key_path = key_path if key_path is not None else key_path_for(path)
    return TransparencyLog.from_store(
        store, key_path=Path(key_path), create=create, origin=origin, name=name
    )
