"""Alembic migrations: the same history creates the schema on SQLite and on PostgreSQL, and
``thirdway db upgrade`` runs it."""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

import psycopg
import pytest
from typer.testing import CliRunner

from postgres_support import pg_url
from thirdway.capability.spent import SQLiteSpentSet
from thirdway.cli.main import app
from thirdway.errors import InputError
from thirdway.ledger.log import TransparencyLog
from thirdway.ledger.open import open_log
from thirdway.migrations import HEAD, database_url, upgrade

__all__ = ["pg_url"]

LOG_TABLES = {"meta", "entries", "nodes", "checkpoints"}


def _revision_sqlite(path: Path) -> str:
    with sqlite3.connect(path) as connection:
        return str(connection.execute("SELECT version_num FROM alembic_version").fetchone()[0])


def test_upgrade_creates_a_working_sqlite_log(tmp_path: Path) -> None:
    path = tmp_path / "fresh.db"
    upgrade(path)
    upgrade(f"sqlite:///{path}")  # again: nothing to do
    assert _revision_sqlite(path) == HEAD
    with TransparencyLog.open(path) as log:
        log.append_batch([b"a", b"b", b"c"])
        log.checkpoint()
        assert log.verify().ok
    with sqlite3.connect(path) as connection:
        tables = {row[0] for row in connection.execute("SELECT name FROM sqlite_master")}
        assert LOG_TABLES | {"capability_spent"} <= tables
        with pytest.raises(sqlite3.DatabaseError, match="append-only"):
            connection.execute("UPDATE entries SET data = x'00'")
        with pytest.raises(sqlite3.DatabaseError, match="append-only"):
            connection.execute("DELETE FROM checkpoints")
    spent = SQLiteSpentSet(path)
    spent.spend("a" * 32, int(time.time()) + 60, time.time())
    assert spent.is_spent("a" * 32)
    spent.close()


def test_upgrade_creates_a_working_postgres_log(pg_url: str, tmp_path: Path) -> None:
    upgrade(pg_url)
    with psycopg.connect(pg_url) as connection:
        assert connection.execute("SELECT version_num FROM alembic_version").fetchone() == (HEAD,)
        triggers = {
            row[0]
            for row in connection.execute(
                "SELECT tgname FROM pg_trigger WHERE NOT tgisinternal"
            ).fetchall()
        }
    assert {f"{table}_append_only" for table in LOG_TABLES} <= triggers
    assert {f"{table}_no_truncate" for table in LOG_TABLES} <= triggers
    with open_log(pg_url, key_path=tmp_path / "k", create=True) as log:
        log.append_batch([b"a", b"b", b"c"])
        log.checkpoint()
        assert log.verify().ok


def test_concurrent_upgrades_of_one_database_all_succeed(pg_url: str) -> None:
    errors: list[BaseException] = []

    def run() -> None:
        try:
            upgrade(pg_url)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == []
    with psycopg.connect(pg_url) as connection:
        assert connection.execute("SELECT count(*) FROM log_state").fetchone() == (1,)


def test_database_url_pins_the_driver_and_refuses_others(tmp_path: Path) -> None:
    assert database_url("postgresql://u@h/db") == "postgresql+psycopg://u@h/db"
    assert database_url("postgres://u@h/db") == "postgresql+psycopg://u@h/db"
    assert database_url(tmp_path / "x.db") == f"sqlite:///{tmp_path / 'x.db'}"
    for bad in ("", "   ", "mysql://root@h/db", "redis://h"):
        with pytest.raises(InputError):
            database_url(bad)


def test_cli_db_upgrade(pg_url: str, tmp_path: Path) -> None:
    runner = CliRunner()
    path = tmp_path / "cli.db"
    result = runner.invoke(app, ["db", "upgrade", "--url", str(path)])
    assert result.exit_code == 0, result.output
    assert _revision_sqlite(path) == HEAD
    result = runner.invoke(app, ["db", "upgrade", "--url", pg_url])
    assert result.exit_code == 0, result.output
    assert "schema at head" in result.output


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("mysql://root@localhost/db", "unsupported database URL scheme"),
        ("postgresql://nobody:hunter2@127.0.0.1:1/none", "cannot upgrade postgresql"),
    ],
)
def test_cli_db_upgrade_fails_with_one_line(url: str, message: str) -> None:
    result = CliRunner().invoke(app, ["db", "upgrade", "--url", url])
    assert result.exit_code == 2
    assert message in result.output
    assert "Traceback" not in result.output and "hunter2" not in result.output


def test_cli_db_upgrade_unknown_revision(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        app, ["db", "upgrade", "--url", str(tmp_path / "r.db"), "--revision", "nope"]
    )
    assert result.exit_code == 2
    assert "cannot upgrade" in result.output and "Traceback" not in result.output


def test_keys_on_a_database_an_older_thirdway_made_bring_it_to_head(pg_url: str) -> None:
    from thirdway.service.keys_pg import PostgresKeyStore

    upgrade(pg_url, "0001_initial")
    with psycopg.connect(pg_url) as connection:
        assert connection.execute("SELECT to_regclass('service_api_keys')").fetchone() == (None,)
    store = PostgresKeyStore(pg_url)
    try:
        key = store.create("agent-7", "agent")
        assert store.authenticate(key).name == "agent-7"
    finally:
        store.close()
    with psycopg.connect(pg_url) as connection:
        assert connection.execute("SELECT version_num FROM alembic_version").fetchone() == (HEAD,)
        # the schema itself refuses what the store would never write
        for role, digest in [("root", b"\0" * 32), ("agent", b"short")]:
            with pytest.raises(psycopg.errors.CheckViolation):
                connection.execute(
                    "INSERT INTO service_api_keys (id, name, role, digest, created_at)"
                    " VALUES ('x', 'n', %s, %s, 0)",
                    (role, digest),
                )
            connection.rollback()


def test_the_sqlite_log_file_gets_no_keys_table(tmp_path: Path) -> None:
    path = tmp_path / "log.db"
    upgrade(path)
    assert _revision_sqlite(path) == HEAD
    with sqlite3.connect(path) as connection:
        tables = {row[0] for row in connection.execute("SELECT name FROM sqlite_master")}
    assert "service_api_keys" not in tables  # SQLite keys live in the data folder's keys.db
