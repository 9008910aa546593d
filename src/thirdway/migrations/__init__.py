"""Alembic migrations for thirdway's databases, shipped inside the package so that an installed
``thirdway`` can create or upgrade its schema (``thirdway db upgrade --url URL``).

One migration history serves both backends: each revision branches on the dialect where SQLite
and PostgreSQL differ (append-only triggers are SQL triggers on SQLite and PL/pgSQL functions on
PostgreSQL). The revisions carry their own frozen DDL rather than importing it from the stores,
because a migration must keep meaning what it meant when it was released.

Several workers may start at once against one PostgreSQL database; :func:`upgrade` takes a
session advisory lock around the upgrade so that exactly one of them runs it and the others then
find the schema at ``head``.
"""

from __future__ import annotations

from pathlib import Path

from thirdway.errors import InputError

__all__ = ["HEAD", "database_url", "upgrade"]

HEAD = "0002_service_api_keys"
_HERE = Path(__file__).resolve().parent
#: Arbitrary but fixed: the advisory lock key that serialises concurrent upgrades.
_UPGRADE_LOCK_KEY = 0x7468697264776179  # "thirdway"


def database_url(url_or_path: str | Path) -> str:
    """A SQLAlchemy URL for a database URL or a plain SQLite file path.

    ``postgresql://`` is pinned to the psycopg 3 driver (SQLAlchemy would otherwise pick
    psycopg2, which thirdway does not install); ``sqlite:///path`` and plain paths stay SQLite.
    Anything else is refused by name.
    """
    text = str(url_or_path).strip()
    if not text:
        raise InputError("database URL is empty; give a file path or a postgresql:// URL")
    if "://" not in text:
        return "sqlite:///" + str(Path(text).resolve())
    scheme = text.split("://", 1)[0].lower()
    if scheme in ("postgresql", "postgres"):
        return "postgresql+psycopg://" + text.split("://", 1)[1]
    if scheme == "postgresql+psycopg":
        return text
    if scheme == "sqlite":
        return text
    raise InputError(
        f"unsupported database URL scheme {scheme!r}: use a file path, sqlite:///PATH "
        "or postgresql://…"
    )


def upgrade(url_or_path: str | Path, revision: str = "head") -> None:
    """Bring the database at ``url_or_path`` up to ``revision`` (default: the newest)."""
    from alembic import command
    from alembic.config import Config
    from sqlalchemy import create_engine, text
    from sqlalchemy.pool import NullPool

    url = database_url(url_or_path)
    config = Config()
    config.set_main_option("script_location", str(_HERE))
    engine = create_engine(url, poolclass=NullPool)
    try:
        with engine.connect() as connection:
            postgres = connection.dialect.name == "postgresql"
            if postgres:
                connection.execute(text("SELECT pg_advisory_lock(:key)"), {"key": _key()})
                connection.commit()
            try:
                config.attributes["connection"] = connection
                command.upgrade(config, revision)
                connection.commit()
            finally:
                if postgres:
                    connection.rollback()
                    connection.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": _key()})
                    connection.commit()
    finally:
        engine.dispose()


def _key() -> int:
    """The upgrade lock key as a signed 64-bit integer (PostgreSQL's ``bigint``)."""
    return _UPGRADE_LOCK_KEY - (1 << 64) if _UPGRADE_LOCK_KEY >= 1 << 63 else _UPGRADE_LOCK_KEY
