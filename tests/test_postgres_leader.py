"""Checkpoint leader election on PostgreSQL: one signer at a time, fail-over when it dies."""

from __future__ import annotations

import itertools
import multiprocessing
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from postgres_support import leader_worker, pg_url
from thirdway.errors import LogError
from thirdway.ledger import merkle
from thirdway.ledger.checkpoint import open_checkpoint
from thirdway.ledger.leader import CheckpointLeader, leader_lock_key
from thirdway.ledger.log import TransparencyLog
from thirdway.ledger.open import open_log

__all__ = ["pg_url"]


def _records(path: Path) -> list[tuple[int, int]]:
    if not path.exists():
        return []
    return [
        (int(pid), int(size))
        for pid, size in (line.split() for line in path.read_text().splitlines() if line)
    ]


def _wait_for(condition: Callable[[], bool], log: TransparencyLog, seconds: float) -> None:
    """Keep appending until ``condition`` holds; fail after ``seconds``."""
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting for a checkpoint"
        log.append(b"tick %d" % log.size())
        time.sleep(0.05)


def _assert_checkpoints_consistent(log: TransparencyLog) -> None:
    notes = log.checkpoints()
    checkpoints = [open_checkpoint(note, log.verifier(), origin=log.origin) for note in notes]
    sizes = [checkpoint.size for checkpoint in checkpoints]
    assert sizes == sorted(sizes) and len(set(sizes)) == len(sizes)
    for before, after in itertools.pairwise(checkpoints):
        proof = log.consistency_proof(before.size, after.size)
        merkle.verify_consistency(before.size, after.size, proof, before.root_hash, after.root_hash)
    report = log.verify()
    assert report.ok, report.problems
    assert report.checkpoints_checked == len(notes)


def test_killing_the_leader_hands_signing_to_another_worker(pg_url: str, tmp_path: Path) -> None:
    key = str(tmp_path / "log.key")
    record = tmp_path / "signed"
    with open_log(pg_url, key_path=key) as log:
        log.append(b"genesis")
        context = multiprocessing.get_context("spawn")
        workers = {}
        for _ in range(2):
            process = context.Process(target=leader_worker, args=(pg_url, key, str(record), 0.1))
            process.start()
            workers[process.pid] = process
        try:
            _wait_for(lambda: len(_records(record)) >= 2, log, 60)
            first = _records(record)[0][0]
            assert {pid for pid, _ in _records(record)} == {first}  # one signer at a time
            os.kill(first, signal.SIGKILL)
            workers[first].join(10)
            killed_at = len(_records(record))
            (second,) = set(workers) - {first}
            _wait_for(
                lambda: any(pid == second for pid, _ in _records(record)[killed_at:]), log, 60
            )
            _wait_for(lambda: len(_records(record)) >= killed_at + 2, log, 60)
        finally:
            for process in workers.values():
                if process.is_alive():
                    process.kill()
                process.join(10)
        signers = [pid for pid, _ in _records(record)]
        assert signers[:killed_at] == [first] * killed_at
        assert set(signers[killed_at:]) == {second}
        assert len(log.checkpoints()) == len(signers)
        _assert_checkpoints_consistent(log)


def test_only_one_candidate_leads_until_it_stops(pg_url: str, tmp_path: Path) -> None:
    with (
        open_log(pg_url, key_path=tmp_path / "k") as log_a,
        open_log(pg_url, key_path=tmp_path / "k", create=False) as log_b,
    ):
        log_a.append_batch([b"a", b"b"])
        a = CheckpointLeader(pg_url, log_a, interval_s=0.1)
        b = CheckpointLeader(pg_url, log_b, interval_s=0.1)
        try:
            assert a.step() is not None and a.is_leader
            assert b.step() is None and not b.is_leader
            assert a.step() is None  # nothing new to sign
            log_b.append(b"c")
            assert b.step() is None
            note = a.step()
            assert note is not None and note.splitlines()[1] == "3"
            a.stop()
            assert not a.is_leader
            log_a.append(b"d")
            note = b.step()
            assert note is not None and note.splitlines()[1] == "4" and b.is_leader
            assert b.step() is None
        finally:
            a.stop()
            b.stop()
        assert len(log_a.checkpoints()) == 3
        _assert_checkpoints_consistent(log_a)


def test_background_thread_signs_as_the_log_grows(pg_url: str, tmp_path: Path) -> None:
    with open_log(pg_url, key_path=tmp_path / "k") as log:
        leader = CheckpointLeader(pg_url, log, interval_s=0.05)
        leader.start()
        try:
            _wait_for(lambda: len(log.checkpoints()) >= 3, log, 30)
        finally:
            leader.stop()
        _assert_checkpoints_consistent(log)


def test_a_leader_that_loses_its_session_steps_down(pg_url: str, tmp_path: Path) -> None:
    import psycopg

    with open_log(pg_url, key_path=tmp_path / "k") as log:
        log.append(b"a")
        leader = CheckpointLeader(pg_url, log, interval_s=0.1)
        try:
            assert leader.step() is not None
            with psycopg.connect(pg_url, autocommit=True) as admin:
                admin.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_locks "
                    "WHERE locktype = 'advisory' AND pid <> pg_backend_pid() AND database = "
                    "(SELECT oid FROM pg_database WHERE datname = current_database())"
                )
            assert not leader.is_leader
            log.append(b"b")
            assert leader.step() is not None  # re-elected on a fresh session
        finally:
            leader.stop()


def test_lock_keys_differ_per_log_and_fit_bigint() -> None:
    keys = {leader_lock_key(f"example.com/log/{n}") for n in range(100)}
    assert len(keys) == 100
    assert all(-(1 << 63) <= key < 1 << 63 for key in keys)


def test_bad_interval_is_refused(pg_url: str, tmp_path: Path) -> None:
    with open_log(pg_url, key_path=tmp_path / "k") as log:
        for bad in (0, -1.0, float("nan")):
            with pytest.raises(LogError, match="interval"):
                CheckpointLeader(pg_url, log, interval_s=bad)
