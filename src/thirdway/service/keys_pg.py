"""API keys in the service's PostgreSQL database, when ``db`` is a ``postgresql://`` URL.

Keys are made by one admin command and read by every worker process on every request, so they
belong where every worker already looks: the shared database (a ``keys.db`` file would have to
be on every worker's machine). The table comes with thirdway's migrations (revision
``0002_service_api_keys``); a database without it is brought to the newest schema on open.
"""

from __future__ import annotations

from sqlalchemy import Engine, text
from sqlalchemy.exc import SQLAlchemyError

from thirdway.errors import InputError
from thirdway.service.auth import KeyInfo, KeyStore, Role, _role_conflict, _Row

TABLE = "service_api_keys"
_ROW = text(f"SELECT name, role, digest FROM {TABLE} WHERE id = :id AND revoked_at IS NULL")


class PostgresKeyStore(KeyStore):
    """The API keys of every worker sharing one PostgreSQL database."""

    def __init__(self, url: str, *, pool_size: int = 4) -> None:
        from thirdway.ledger.postgres import create_pg_engine, redact_url

        super().__init__()
        self._where = redact_url(url)
        self._engine: Engine = create_pg_engine(url, pool_size=pool_size, max_overflow=pool_size)
        try:
            self._migrate(url)
        except SQLAlchemyError as exc:
            self._engine.dispose()
            raise InputError(f"cannot open the API keys in {self._where}: {_first(exc)}") from None

    def _migrate(self, url: str) -> None:
        """Keys may be made before the service first runs, or on a database an older thirdway
        created: bring it to the newest schema (the upgrade holds an advisory lock, so workers
        starting together run it once; on an up-to-date database it does nothing)."""
        from sqlalchemy import inspect

        with self._engine.connect() as connection:
            present = inspect(connection).has_table(TABLE)
        if not present:
            from thirdway.migrations import upgrade

            upgrade(url)

    def close(self) -> None:
        self._engine.dispose()

    def _insert(self, key_id: str, name: str, role: Role, digest: bytes, now: int) -> None:
        with self._engine.begin() as connection:
            # one key maker at a time, so "a name keeps one role" holds between processes
            connection.execute(text(f"LOCK TABLE {TABLE} IN SHARE ROW EXCLUSIVE MODE"))
            held = connection.execute(
                text(f"SELECT role FROM {TABLE} WHERE name = :name LIMIT 1"), {"name": name}
            ).first()
            if held is not None and held[0] != role:
                raise _role_conflict(name, held[0])
            connection.execute(
                text(
                    f"INSERT INTO {TABLE} (id, name, role, digest, created_at) "
                    "VALUES (:id, :name, :role, :digest, :now)"
                ),
                {"id": key_id, "name": name, "role": role, "digest": digest, "now": now},
            )

    def _row(self, key_id: str) -> _Row | None:
        with self._engine.connect() as connection:
            found = connection.execute(_ROW, {"id": key_id}).first()
        if found is None:
            return None
        return _Row(found[0], found[1], bytes(found[2]))

    def _revoke(self, key_id: str, now: int) -> int:
        with self._engine.begin() as connection:
            result = connection.execute(
                text(f"UPDATE {TABLE} SET revoked_at = :now WHERE id = :id AND revoked_at IS NULL"),
                {"now": now, "id": key_id},
            )
            return int(result.rowcount)

    def listing(self) -> list[KeyInfo]:
        with self._engine.connect() as connection:
            rows = connection.execute(
                text(
                    f"SELECT id, name, role, created_at, revoked_at FROM {TABLE} "
                    "ORDER BY created_at, id"
                )
            ).all()
        return [KeyInfo(row[0], row[1], row[2], int(row[3]), row[4]) for row in rows]


def _first(exc: BaseException) -> str:
    original = getattr(exc, "orig", None)
    message = str(original if original is not None else exc).strip()
    return message.splitlines()[0] if message else type(exc).__name__
