"""The PostgreSQL log store: the sequencer under several writer processes, append-only triggers,
and agreement with the SQLite store on the same entries."""

from __future__ import annotations

import multiprocessing
import random
from pathlib import Path

import psycopg
import pytest

from postgres_support import append_worker, pg_url
from thirdway.errors import InputError, LogError
from thirdway.ledger import merkle
from thirdway.ledger.log import TransparencyLog
from thirdway.ledger.open import open_log, open_store, sqlite_path
from thirdway.ledger.postgres import PostgresLogStore
from thirdway.ledger.sqlite import SQLiteLogStore
from thirdway.ledger.store import NewEntry, StaleSizeError

__all__ = ["pg_url"]

WORKERS = 4
BATCHES = 15
BATCH_SIZE = 7


def _sqlite_twin(tmp_path: Path, entries: list[bytes]) -> TransparencyLog:
    log = TransparencyLog.open(tmp_path / "twin.db")
    log.append_batch(entries)
    return log


def test_concurrent_worker_processes_make_one_gapless_log(pg_url: str, tmp_path: Path) -> None:
    key = str(tmp_path / "log.key")
    with open_log(pg_url, key_path=key) as log:
        log.append(b"genesis")
    context = multiprocessing.get_context("spawn")
    workers = [
        context.Process(target=append_worker, args=(pg_url, key, n, BATCHES, BATCH_SIZE))
        for n in range(WORKERS)
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(120)
        assert worker.exitcode == 0, f"worker {worker.pid} exited with {worker.exitcode}"
    with open_log(pg_url, key_path=key, create=False) as log:
        expected = 1 + WORKERS * BATCHES * BATCH_SIZE
        assert log.size() == expected
        report = log.verify()
        assert report.ok, report.problems
        entries = [log.entry(index) for index in range(expected)]
        # every entry exactly once, each batch contiguous (one transaction, one index range)
        assert len(set(entries)) == expected
        for worker in range(WORKERS):
            for batch in range(BATCHES):
                first = entries.index(f"w{worker}-b{batch}-e0".encode())
                run = [f"w{worker}-b{batch}-e{n}".encode() for n in range(BATCH_SIZE)]
                assert entries[first : first + BATCH_SIZE] == run
        with _sqlite_twin(tmp_path, entries) as twin:
            assert twin.root() == log.root() == report.root
            for size in (1, 17, expected // 2, expected):
                assert twin.root(size) == log.root(size)
                assert twin.consistency_proof(1, size) == log.consistency_proof(1, size)
            assert twin.inclusion_proof(123) == log.inclusion_proof(123)


def test_any_batching_gives_the_in_memory_tree(pg_url: str) -> None:
    """Roots and inclusion proofs agree with a tree built in memory, at every batch boundary."""
    rng = random.Random(6962)
    store = PostgresLogStore.open(pg_url, create=True)
    try:
        leaves: list[bytes] = []
        for _ in range(25):
            count = rng.choice([1, 1, 2, 3, 5, 8, 16, 31])
            data = [rng.randbytes(rng.randint(0, 40)) for _ in range(count)]
            entries = [NewEntry(item, merkle.leaf_hash(item)) for item in data]
            assert store.append_sequenced(entries) == range(len(leaves), len(leaves) + count)
            leaves += [entry.leaf_hash for entry in entries]
            size = len(leaves)
            root = merkle.root_from_leaf_hashes(leaves)
            assert merkle.tree_hash(0, size, store) == root
            index = rng.randrange(size)
            proof = merkle.inclusion_proof(index, size, store)
            merkle.verify_inclusion(leaves[index], index, size, proof, root)
        assert store.size() == len(leaves)
    finally:
        store.close()


def test_stale_append_is_refused_and_stores_nothing(pg_url: str) -> None:
    store = PostgresLogStore.open(pg_url, create=True)
    try:
        entry = NewEntry(b"x", merkle.leaf_hash(b"x"))
        store.append(0, [entry], [])
        with pytest.raises(StaleSizeError, match="expected 0, found 1"):
            store.append(0, [entry], [])
        assert store.size() == 1
    finally:
        store.close()


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE entries SET data = 'evil'",
        "DELETE FROM entries",
        "TRUNCATE entries",
        "UPDATE nodes SET hash = hash",
        "DELETE FROM nodes",
        "UPDATE checkpoints SET size = 0",
        "DELETE FROM checkpoints",
        "TRUNCATE checkpoints",
        "UPDATE meta SET value = 'x'",
        "DELETE FROM meta",
        "UPDATE log_state SET size = 0",
        "DELETE FROM log_state",
        "TRUNCATE log_state",
    ],
)
def test_append_only_triggers_refuse_changes(pg_url: str, tmp_path: Path, statement: str) -> None:
    with open_log(pg_url, key_path=tmp_path / "k") as log:
        log.append_batch([b"a", b"b", b"c"])
        log.checkpoint()
        before = log.verify()
    with (
        psycopg.connect(pg_url, autocommit=True) as connection,
        pytest.raises(psycopg.errors.RaiseException, match="append-only"),
    ):
        connection.execute(statement)
    with open_log(pg_url, key_path=tmp_path / "k", create=False) as log:
        after = log.verify()
        assert after.ok and after.root == before.root and after.size == 3


def test_checkpoints_never_go_backwards(pg_url: str, tmp_path: Path) -> None:
    with open_log(pg_url, key_path=tmp_path / "k") as log:
        log.append_batch([b"a", b"b"])
        old = log.checkpoint()
        log.append(b"c")
        log.checkpoint()
        store = log._store
        with pytest.raises(LogError, match="checkpoint for size 2 refused"):
            store.add_checkpoint(2, old)
        assert [stored.size for stored in store.checkpoints()] == [2, 3]
        assert [stored.seq for stored in store.checkpoints()] == [1, 2]
        assert log.verify().ok


def test_unreachable_database_is_a_clear_log_error() -> None:
    with pytest.raises(LogError, match="cannot reach log database postgresql"):
        PostgresLogStore.open("postgresql://nobody:secret@127.0.0.1:1/none", create=True)


def test_password_never_shows_in_errors() -> None:
    with pytest.raises(LogError) as caught:
        PostgresLogStore.open("postgresql://nobody:hunter2@127.0.0.1:1/none", create=True)
    assert "hunter2" not in str(caught.value)


def test_a_database_that_is_not_a_log_is_refused(pg_url: str) -> None:
    with psycopg.connect(pg_url, autocommit=True) as connection:
        connection.execute("CREATE TABLE unrelated (x int)")
    with pytest.raises(LogError, match="is not a thirdway log"):
        PostgresLogStore.open(pg_url, create=True)


def test_empty_database_without_create_is_refused(pg_url: str) -> None:
    with pytest.raises(LogError, match="thirdway db upgrade"):
        PostgresLogStore.open(pg_url, create=False)


def test_closed_store_refuses(pg_url: str) -> None:
    store = PostgresLogStore.open(pg_url, create=True)
    store.close()
    with pytest.raises(LogError, match="closed"):
        store.size()


def test_open_log_picks_the_backend_by_url(pg_url: str, tmp_path: Path) -> None:
    assert isinstance(open_store(pg_url), PostgresLogStore)
    for location in (tmp_path / "a.db", f"sqlite:///{tmp_path / 'b.db'}"):
        store = open_store(location)
        assert isinstance(store, SQLiteLogStore)
        store.close()
    with open_log(f"sqlite:///{tmp_path / 'c.db'}") as log:
        log.append(b"x")
    assert (tmp_path / "c.db.key").exists()
    with pytest.raises(InputError, match="needs its key file named"):
        open_log(pg_url)


@pytest.mark.parametrize(
    ("location", "message"),
    [
        ("", "empty"),
        ("mysql://root@localhost/db", "unsupported log URL scheme 'mysql'"),
        ("sqlite:///:memory:", "in-memory"),
        ("sqlite:///", "in-memory"),
    ],
)
def test_bad_locations_are_refused(location: str, message: str) -> None:
    with pytest.raises(InputError, match=message):
        sqlite_path(location)


def test_entries_built_under_the_lock_know_their_index(pg_url: str) -> None:
    store = PostgresLogStore.open(pg_url, create=True)
    other = PostgresLogStore.open(pg_url, create=False)
    try:
        other.append_sequenced([NewEntry(b"first", merkle.leaf_hash(b"first"))])

        def build(start: int) -> list[NewEntry]:
            data = [b"proposal at %d" % start, b"token for %d" % start]
            return [NewEntry(item, merkle.leaf_hash(item)) for item in data]

        assert store.append_built(build) == range(1, 3)
        assert store.entry(2) == b"token for 1"

        def failing(start: int) -> list[NewEntry]:
            raise ValueError("mint failed")

        with pytest.raises(ValueError, match="mint failed"):
            store.append_built(failing)
        assert store.append_built(lambda start: []) == range(3, 3)
        assert store.size() == other.size() == 3
    finally:
        store.close()
        other.close()
