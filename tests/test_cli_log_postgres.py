"""``thirdway log …`` on a PostgreSQL log, given ``--db postgresql://…`` (the SQLite case is
tests/test_cli_log.py).

``--db`` was a :class:`Path`, which folded the URL's ``//`` and looked for a missing file, so the
log several gateway workers share could not be inspected, proved, verified or checkpointed from
the command line. Reading commands must open it read-only with no key; ``checkpoint`` (which
signs) and ``append`` (which may create the log and its key) must be refused without ``--key``;
an entry changed behind the append-only triggers must be named; and no message may print the
URL's password.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
from click.testing import Result
from typer.testing import CliRunner

from postgres_support import fresh_database
from thirdway.cli.main import app
from thirdway.ledger.checkpoint import open_checkpoint
from thirdway.ledger.keys import load_or_create_log_key
from thirdway.ledger.open import open_log

ORIGIN = "thirdway.test/log/cli-postgres"
ENTRIES = [f"entry {i}" for i in range(6)]


@dataclass(frozen=True)
class PgLog:
    """The log the CLI created: its URL, its key file and the first checkpoint it signed."""

    url: str
    key: Path
    checkpoint: Path


def run(*args: str, env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(app, ["log", *args], env=env)


def assert_one_line_error(result: Result, *needles: str) -> str:
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


@pytest.fixture(scope="module")
def database() -> Iterator[str]:
    """A database of this module's own on the local server, dropped afterwards."""
    with fresh_database() as url:
        yield url


@pytest.fixture(scope="module")
def pg_log(database: str, tmp_path_factory: pytest.TempPathFactory) -> PgLog:
    """The log created through the CLI: six entries appended, one checkpoint signed."""
    folder = tmp_path_factory.mktemp("gateway")
    key, checkpoint = folder / "log.key", folder / "cp6.txt"
    created = run("append", *ENTRIES, "--db", database, "--key", str(key), "--origin", ORIGIN)
    assert created.exit_code == 0, created.output
    signed = run("checkpoint", "--db", database, "--key", str(key), "--out", str(checkpoint))
    assert signed.exit_code == 0, signed.output
    return PgLog(url=database, key=key, checkpoint=checkpoint)


def _stored(url: str) -> tuple[int, list[str]]:
    """The log's size and checkpoints, read through the library."""
    with open_log(url, key_path=Path("unused"), create=False) as log:
        return log.size(), log.checkpoints()


# --------------------------------------------------------------------------- reading


def test_the_cli_created_the_log_in_postgresql_with_its_key(pg_log: PgLog) -> None:
    size, checkpoints = _stored(pg_log.url)
    assert size == len(ENTRIES) and len(checkpoints) >= 1
    assert pg_log.key.is_file() and not Path("postgresql:").exists()
    with open_log(pg_log.url, key_path=pg_log.key, create=False) as log:
        opened = open_checkpoint(pg_log.checkpoint.read_text(), log.verifier(), origin=ORIGIN)
    assert opened.size == len(ENTRIES)


def test_info_reads_the_url_and_the_environment(pg_log: PgLog) -> None:
    result = run("info", "--db", pg_log.url, "--json")
    assert result.exit_code == 0, result.output
    info = json.loads(result.stdout)
    with open_log(pg_log.url, key_path=pg_log.key, create=False) as log:
        assert info["vkey"] == log.verifier().vkey()
        assert info["root"] and info["size"] == log.size()
    assert info["origin"] == ORIGIN and info["checkpoints"] >= 1
    from_env = run("info", "--json", env={"THIRDWAY_DB": pg_log.url})
    assert from_env.exit_code == 0, from_env.output
    assert json.loads(from_env.stdout) == info


def test_verify_passes_and_checks_the_checkpoints(pg_log: PgLog) -> None:
    result = run("verify", "--db", pg_log.url, "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["ok"] is True and report["problems"] == []
    assert report["entries_checked"] == report["size"] >= len(ENTRIES)
    assert report["checkpoints_checked"] >= 1
    text = run("verify", "--db", pg_log.url)
    assert text.exit_code == 0 and "✓ log postgresql://" in text.stdout, text.output


def test_show_prove_and_consistency(pg_log: PgLog, tmp_path: Path) -> None:
    shown = run("show", "--index", "2", "--db", pg_log.url)
    assert shown.exit_code == 0, shown.output
    assert "entry 2:" in shown.stdout and ENTRIES[2] in shown.stdout
    proved = run("prove", "--index", "1", "--size", "6", "--db", pg_log.url, "--json")
    assert proved.exit_code == 0, proved.output
    inclusion = json.loads(proved.stdout)
    assert inclusion["verified"] is True and inclusion["origin"] == ORIGIN
    proof_file = tmp_path / "inclusion.json"
    proof_file.write_text(proved.stdout)
    # --checkpoint without --vkey: the checkpoint key is the one recorded in the --db log.
    anchored = run(
        "verify-proof", str(proof_file), "--checkpoint", str(pg_log.checkpoint), "--db", pg_log.url
    )
    assert anchored.exit_code == 0, anchored.output
    assert "whose root the checkpoint signs" in anchored.stdout
    consistent = run("consistency", "--from", "2", "--to", "6", "--db", pg_log.url, "--json")
    assert consistent.exit_code == 0, consistent.output
    assert json.loads(consistent.stdout)["verified"] is True
    checked = run("verify-checkpoint", str(pg_log.checkpoint), "--db", pg_log.url)
    assert checked.exit_code == 0, checked.output
    assert "checkpoint verified" in checked.stdout


# --------------------------------------------------------------------------- signing


def test_checkpoint_signs_with_the_key_and_is_refused_without_it(pg_log: PgLog) -> None:
    size, before = _stored(pg_log.url)
    refused = run("checkpoint", "--db", pg_log.url)
    assert_one_line_error(refused, "needs --key PATH", "log.key", "signed")
    assert _stored(pg_log.url)[1] == before  # nothing stored
    signed = run("checkpoint", "--db", pg_log.url, "--key", str(pg_log.key), "--json")
    assert signed.exit_code == 0, signed.output
    note = json.loads(signed.stdout)
    assert note["size"] == size and note["origin"] == ORIGIN
    with open_log(pg_log.url, key_path=pg_log.key, create=False) as log:
        assert open_checkpoint(note["note"], log.verifier(), origin=ORIGIN).size == size
    assert _stored(pg_log.url)[1] == [*before, note["note"]]


def test_checkpoint_refuses_a_missing_or_foreign_key(pg_log: PgLog, tmp_path: Path) -> None:
    _, before = _stored(pg_log.url)
    missing = run("checkpoint", "--db", pg_log.url, "--key", str(tmp_path / "log.key"))
    assert_one_line_error(missing, "is missing")
    assert not (tmp_path / "log.key").exists()  # no new key forks the log's identity
    foreign = tmp_path / "foreign.key"
    load_or_create_log_key(foreign, ORIGIN)
    refused = run("checkpoint", "--db", pg_log.url, "--key", str(foreign))
    assert_one_line_error(refused, "not the key this log was created with")
    assert _stored(pg_log.url)[1] == before


def test_append_needs_the_key_on_postgresql(pg_log: PgLog) -> None:
    size, _ = _stored(pg_log.url)
    assert_one_line_error(run("append", "more", "--db", pg_log.url), "needs --key PATH")
    assert _stored(pg_log.url)[0] == size
    appended = run("append", "more", "--db", pg_log.url, "--key", str(pg_log.key), "--json")
    assert appended.exit_code == 0, appended.output
    assert json.loads(appended.stdout) == {"first": size, "count": 1, "size": size + 1}


# --------------------------------------------------------------------------- failures


@contextmanager
def _tampered(url: str, index: int, data: bytes) -> Iterator[None]:
    """Entry ``index``'s bytes replaced for the block, as a database superuser can (append-only
    triggers off for this connection), and put back afterwards."""
    with psycopg.connect(url, autocommit=True) as connection:
        connection.execute("SET session_replication_role = replica")
        row = connection.execute("SELECT data FROM entries WHERE idx = %s", (index,)).fetchone()
        assert row is not None, index
        connection.execute("UPDATE entries SET data = %s WHERE idx = %s", (data, index))
        try:
            yield
        finally:
            connection.execute("UPDATE entries SET data = %s WHERE idx = %s", (row[0], index))
            connection.execute("SET session_replication_role = origin")


def test_a_tampered_entry_fails_verify_naming_it(pg_log: PgLog) -> None:
    with _tampered(pg_log.url, 3, b"entry 3, rewritten"):
        result = run("verify", "--db", pg_log.url)
        as_json = run("verify", "--db", pg_log.url, "--json")
    assert result.exit_code == 1, result.output
    assert "first bad entry: 3" in result.stderr and "Traceback" not in result.output
    assert as_json.exit_code == 1 and json.loads(as_json.stdout)["first_bad_entry"] == 3
    assert run("verify", "--db", pg_log.url).exit_code == 0  # the honest log is back


@pytest.mark.parametrize(
    "command",
    [
        ["info"],
        ["verify"],
        ["show", "--index", "0"],
        ["prove", "--index", "0"],
        ["consistency", "--from", "1"],
        ["checkpoint", "--key", "{key}"],
        ["append", "x", "--key", "{key}"],
    ],
)
def test_an_unreadable_database_is_one_line_without_the_password(
    pg_log: PgLog, command: list[str]
) -> None:
    base, _, _ = pg_log.url.rpartition("/")
    missing = base.replace("postgres@", "postgres:hunter2@") + "/thirdway_no_such_db"
    assert "hunter2" in missing
    result = run(*[part.replace("{key}", str(pg_log.key)) for part in command], "--db", missing)
    line = assert_one_line_error(result, "thirdway_no_such_db")
    assert "hunter2" not in result.output and "***" in line


def test_a_sqlite_url_still_opens_the_file_log(tmp_path: Path) -> None:
    path = tmp_path / "log.sqlite"
    assert run("append", "one", "two", "--db", f"sqlite:///{path}").exit_code == 0
    assert run("checkpoint", "--db", f"sqlite:///{path}").exit_code == 0  # key beside the file
    result = run("info", "--db", str(path), "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["size"] == 2 and Path(f"{path}.key").is_file()
