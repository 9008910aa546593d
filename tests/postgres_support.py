"""Shared pieces of the PostgreSQL tests: a fresh database per test on the local server, and the
functions worker processes run (module level, so that ``spawn`` can import them).

The tests need the local PostgreSQL (``.ci/run`` starts it). When it cannot be reached they fail
with a message saying how to start it: a skipped multi-worker test would hide a broken sequencer.
"""

from __future__ import annotations

import os
import secrets
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

ADMIN_DSN = os.environ.get("THIRDWAY_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
START_HINT = (
    "PostgreSQL is not reachable at {dsn} ({error}); start it with "
    "`pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start` "
    "(or set THIRDWAY_TEST_PG to a maintenance-database URL)"
)


def _admin() -> psycopg.Connection:
    try:
        return psycopg.connect(ADMIN_DSN, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as exc:
        pytest.fail(START_HINT.format(dsn=ADMIN_DSN, error=str(exc).strip()), pytrace=False)


def _url_for(database: str) -> str:
    base, _, _ = ADMIN_DSN.rpartition("/")
    return f"{base}/{database}"


@pytest.fixture
def pg_url() -> Iterator[str]:
    """The URL of a new, empty database, dropped after the test."""
    name = "thirdway_test_" + secrets.token_hex(6)
    with _admin() as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield _url_for(name)
    finally:
        with _admin() as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


# --- worker processes -------------------------------------------------------------------------


def append_worker(url: str, key_path: str, worker: int, batches: int, batch_size: int) -> None:
    """Append ``batches`` batches of distinct entries, each naming this worker and its batch."""
    from thirdway.ledger.open import open_log

    with open_log(url, key_path=key_path, create=False) as log:
        for batch in range(batches):
            items = [f"w{worker}-b{batch}-e{n}".encode() for n in range(batch_size)]
            indices = log.append_batch(items)
            assert len(indices) == batch_size


def spend_worker(url: str, nonces: list[str], start_at: float, out_path: str) -> None:
    """Spend every nonce (after a common start time) and record which ones this process won."""
    from thirdway.capability.spent_pg import PostgresSpentSet
    from thirdway.errors import CapabilityError

    spent = PostgresSpentSet(url)
    won = []
    time.sleep(max(0.0, start_at - time.time()))
    try:
        for nonce in nonces:
            try:
                spent.spend(nonce, int(time.time()) + 600, time.time())
                won.append(nonce)
            except CapabilityError as exc:
                assert exc.reason == "spent", exc
    finally:
        spent.close()
    Path(out_path).write_text("\n".join(won))


def leader_worker(url: str, key_path: str, record_path: str, interval_s: float) -> None:
    """Run a checkpoint leader candidate until killed; append ``pid size`` to ``record_path`` for
    every checkpoint this process signs."""
    from thirdway.errors import LogError
    from thirdway.ledger.leader import CheckpointLeader
    from thirdway.ledger.open import open_log

    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    with open_log(url, key_path=key_path, create=False) as log:
        leader = CheckpointLeader(url, log, interval_s=interval_s)
        while True:
            try:
                note = leader.step()
            except LogError:
                note = None
            if note is not None:
                size = note.splitlines()[1]
                with open(record_path, "a", encoding="ascii") as handle:
                    handle.write(f"{os.getpid()} {size}\n")
            time.sleep(interval_s)
