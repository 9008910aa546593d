"""WAL checkpoints off the append path (thirdway.ledger.wal): they happen, in their own thread,
the appends never wait for one below the fallback size, and nothing is lost or changed."""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from pathlib import Path

import pytest

from thirdway.gateway.gatekeeper import Gatekeeper
from thirdway.ledger.log import TransparencyLog
from thirdway.ledger.wal import FALLBACK_PAGES, BackgroundCheckpointer

EVERY = 24
"""Commits per checkpoint in these tests (the default is larger, and slower to reach)."""


def _wait_for(condition, timeout_s: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.01)
    return condition()


def _pragma(connection: sqlite3.Connection, name: str) -> int:
    return int(connection.execute(f"PRAGMA {name}").fetchone()[0])


def _db_pages(path: Path) -> int:
    """Pages in the database file itself (not the WAL): what checkpoints have copied there."""
    return path.stat().st_size // 4096


def test_commits_are_checkpointed_by_the_thread_not_by_the_writer(tmp_path: Path) -> None:
    path = tmp_path / "log.db"
    with TransparencyLog.open(path, background_checkpoints=True) as log:
        store = log._store
        assert _pragma(store._conn, "wal_autocheckpoint") == FALLBACK_PAGES
        checkpointer = store._checkpointer
        assert checkpointer is not None
        checkpointer.every = EVERY
        before = _db_pages(path)
        for n in range(3 * EVERY):
            log.append_batch([f"entry {n} ".encode() * 40, b"second"])
        # Far below the writer's own threshold, so only the thread can have moved the pages.
        assert _wait_for(lambda: checkpointer.checkpoints >= 2)
        assert _wait_for(lambda: _db_pages(path) > before)
        assert log.size() == 6 * EVERY
        assert log.verify().ok
    assert not checkpointer._thread.is_alive()


def test_the_wal_restarts_from_its_beginning_instead_of_growing(tmp_path: Path) -> None:
    """Each checkpoint ends with what was committed meanwhile, under the writer's lock, so the
    next commit starts the WAL over: it stays a few checkpoints long, however long the log runs
    (without that, commits during a checkpoint kept it from ever restarting, and the WAL grew to
    the writer's fallback of 4000 pages)."""
    path = tmp_path / "log.db"
    wal = Path(f"{path}-wal")
    commits = 40 * EVERY
    with TransparencyLog.open(path, background_checkpoints=True) as log:
        log._store._checkpointer.every = EVERY
        for n in range(commits):
            log.append_batch([f"entry {n} ".encode() * 100, b"x" * 3000])  # about 3 pages
        assert _wait_for(lambda: log._store._checkpointer.checkpoints >= 10)
        pages = wal.stat().st_size // 4096
    assert pages < commits  # 3 pages per commit without restarts
    assert pages < FALLBACK_PAGES / 4


def test_without_background_checkpoints_the_writer_keeps_sqlites_default(tmp_path: Path) -> None:
    with TransparencyLog.open(tmp_path / "log.db") as log:
        assert log._store._checkpointer is None
        assert _pragma(log._store._conn, "wal_autocheckpoint") == 1000


def test_appends_racing_checkpoints_lose_nothing(tmp_path: Path) -> None:
    path = tmp_path / "log.db"
    with TransparencyLog.open(path, background_checkpoints=True) as log:
        log._store._checkpointer.every = 1  # a checkpoint after every commit

        def writer(n: int) -> None:
            for i in range(60):
                log.append(f"thread {n} entry {i}".encode())

        threads = [threading.Thread(target=writer, args=(n,)) for n in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert log.size() == 240
    with TransparencyLog.open(path, create=False) as reopened:
        assert reopened.size() == 240
        assert reopened.verify().ok
        entries = {reopened.entry(i) for i in range(240)}
    assert entries == {f"thread {n} entry {i}".encode() for n in range(4) for i in range(60)}


def test_a_checkpointer_that_cannot_open_its_database_logs_and_stops(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="thirdway.ledger.wal"):
        checkpointer = BackgroundCheckpointer(tmp_path / "missing" / "log.db")
        checkpointer._thread.join(timeout=10)
    assert not checkpointer._thread.is_alive()
    assert "no background WAL checkpoints" in caplog.text
    checkpointer.committed()  # harmless once stopped
    checkpointer.close()


def test_the_gatekeeper_checkpoints_in_the_background(tmp_path: Path) -> None:
    with Gatekeeper.open(tmp_path / "gate") as gate:
        checkpointer = gate.log._store._checkpointer
        assert checkpointer is not None
        spent_connection = gate.spent_set._connection()
        assert _pragma(spent_connection, "wal_autocheckpoint") == FALLBACK_PAGES


def test_an_idle_log_is_left_alone(tmp_path: Path) -> None:
    with TransparencyLog.open(tmp_path / "log.db"):
        pass  # the database exists now
    checkpointer = BackgroundCheckpointer(tmp_path / "log.db", every=1)
    try:
        time.sleep(1.5)  # past one idle round, nothing committed
        assert checkpointer.checkpoints == 0
        checkpointer.committed()
        assert _wait_for(lambda: checkpointer.checkpoints == 1)
    finally:
        checkpointer.close()


def test_a_checkpoint_comes_after_enough_bytes_before_enough_commits(tmp_path: Path) -> None:
    """Under load one group commit carries many requests: the bytes bound the WAL too."""
    with TransparencyLog.open(tmp_path / "log.db") as log:
        log.append(b"x")
    checkpointer = BackgroundCheckpointer(tmp_path / "log.db", every=10**6, every_bytes=10_000)
    try:
        checkpointer.committed(6_000)
        time.sleep(0.2)
        assert checkpointer.checkpoints == 0  # neither enough commits nor bytes, nor idle yet
        checkpointer.committed(6_000)
        assert _wait_for(lambda: checkpointer.checkpoints == 1, timeout_s=0.9)  # before idle
    finally:
        checkpointer.close()


def test_the_store_reports_the_bytes_of_each_commit(tmp_path: Path) -> None:
    with TransparencyLog.open(tmp_path / "log.db", background_checkpoints=True) as log:
        checkpointer = log._store._checkpointer
        reported: list[int] = []
        real = checkpointer.committed
        checkpointer.committed = lambda nbytes=0: (reported.append(nbytes), real(nbytes))
        log.append_batch([b"y" * 10_000])
        log.append_batch([b"a" * 300, b"b" * 700, b"c"])
        assert reported == [10_000, 1_001]
