"""API keys in PostgreSQL: made by one admin command, read by every worker process.

Two ``PostgresKeyStore`` instances on one database stand for the admin command and a worker
(separate connection pools, as separate processes have). The CLI test runs ``thirdway keys``
against the database the way an operator does before the first ``thirdway serve``.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from postgres_support import pg_url
from thirdway.cli.main import app as cli
from thirdway.errors import InputError
from thirdway.ledger.open import open_log
from thirdway.service import ServiceConfig
from thirdway.service.errors import Unauthorized
from thirdway.service.keys_pg import PostgresKeyStore
from thirdway.service.state import Services, open_keys

__all__ = ["pg_url"]  # the fixture

runner = CliRunner()


def test_a_key_made_by_one_process_works_and_is_revoked_in_another(pg_url: str) -> None:
    admin, worker = PostgresKeyStore(pg_url), PostgresKeyStore(pg_url)
    try:
        key = admin.create("agent-1", "agent")
        who = worker.authenticate(key)
        assert (who.name, who.role) == ("agent-1", "agent")
        with pytest.raises(Unauthorized):
            worker.authenticate(key[:-1] + ("A" if key[-1] != "A" else "B"))
        with pytest.raises(InputError, match="keeps one role"):
            worker.create("agent-1", "admin")
        admin.revoke(who.key_id)
        with pytest.raises(Unauthorized):  # at once, on the other instance: no cache
            worker.authenticate(key)
        with pytest.raises(InputError, match="no active key"):
            worker.revoke(who.key_id)
        [info] = worker.listing()
        assert (info.key_id, info.name, info.role) == (who.key_id, "agent-1", "agent")
        assert info.revoked_at is not None
    finally:
        admin.close()
        worker.close()


def test_keys_first_then_the_service_opens_the_same_database(pg_url: str, tmp_path: Path) -> None:
    """An operator makes keys before the first serve: the keys table must not stop the log
    from adopting the database."""
    made = runner.invoke(
        cli, ["keys", "create", "--role", "agent", "--name", "agent-9", "--db", pg_url,
              "--data-dir", str(tmp_path)],
    )  # fmt: skip
    assert made.exit_code == 0, made.output
    key = made.output.strip()
    listed = runner.invoke(cli, ["keys", "list", "--db", pg_url, "--data-dir", str(tmp_path)])
    assert listed.exit_code == 0 and "agent-9" in listed.output
    assert not (tmp_path / "keys.db").exists()  # the keys are in the database, not the folder
    config = ServiceConfig(data_dir=tmp_path, db=pg_url, workers=2, console=False)
    services = Services.open(config)
    try:
        assert services.keys.authenticate(key).name == "agent-9"
        sid = services.gate.open_session("agent-9", "pay the bill")
        assert sid.startswith("s-")
    finally:
        services.close()
    with open_log(pg_url, key_path=tmp_path / "log.key", create=False) as log:
        assert log.size() == 1 and log.verify().ok


def test_sqlite_keys_stay_in_the_data_folder(tmp_path: Path) -> None:
    keys = open_keys(ServiceConfig(data_dir=tmp_path))
    try:
        assert not keys.blocking
        keys.create("agent-1", "agent")
    finally:
        keys.close()
    assert (tmp_path / "keys.db").exists()
