"""The spent-set: a nonce is spent once, however many threads or processes race for it."""

from __future__ import annotations

import multiprocessing
import secrets
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from thirdway.capability import CapabilityError, MemorySpentSet, SQLiteSpentSet
from thirdway.capability.spent import PRUNE_GRACE_SECONDS, SpentSet

NOW = 1_700_000_000.0
EXPIRES = int(NOW) + 60


@pytest.fixture(params=["memory", "sqlite"])
def spent_set(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SpentSet]:
    store: SpentSet = (
        MemorySpentSet() if request.param == "memory" else SQLiteSpentSet(tmp_path / "spent.db")
    )
    yield store
    store.close()


def nonce() -> str:
    return secrets.token_hex(16)


def test_a_nonce_is_spent_once(spent_set: SpentSet):
    n = nonce()
    assert not spent_set.is_spent(n)
    spent_set.spend(n, EXPIRES, NOW)
    assert spent_set.is_spent(n)
    with pytest.raises(CapabilityError) as info:
        spent_set.spend(n, EXPIRES, NOW + 1)
    assert info.value.reason == "spent"
    spent_set.spend(nonce(), EXPIRES, NOW)  # other nonces are unaffected


def test_an_expired_token_is_refused_and_not_recorded(spent_set: SpentSet):
    n = nonce()
    with pytest.raises(CapabilityError) as info:
        spent_set.spend(n, EXPIRES, EXPIRES)
    assert info.value.reason == "expired"
    assert not spent_set.is_spent(n)


@pytest.mark.parametrize("bad", ["", "xyz", "A" * 32, "0" * 31, "0" * 33, None])
def test_malformed_nonces_are_refused(spent_set: SpentSet, bad):
    with pytest.raises(CapabilityError) as info:
        spent_set.spend(bad, EXPIRES, NOW)
    assert info.value.reason == "malformed"


def _race(spend, n: str, threads: int = 8) -> list[str]:
    """``threads`` threads spend nonce ``n`` at once; returns each thread's outcome."""
    barrier = threading.Barrier(threads)
    outcomes: list[str] = []
    lock = threading.Lock()

    def attempt() -> None:
        barrier.wait()
        try:
            spend(n, EXPIRES, NOW)
            outcome = "ok"
        except CapabilityError as exc:
            outcome = exc.reason
        with lock:
            outcomes.append(outcome)

    workers = [threading.Thread(target=attempt) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return outcomes


def test_eight_threads_racing_exactly_one_wins(spent_set: SpentSet):
    for _ in range(25):
        outcomes = _race(spent_set.spend, nonce())
        assert sorted(outcomes) == ["ok"] + ["spent"] * 7


def test_eight_threads_with_separate_handles_on_one_file(tmp_path: Path):
    """Eight independent SQLiteSpentSet objects (as eight gateway workers would hold)."""
    path = tmp_path / "spent.db"
    stores = [SQLiteSpentSet(path) for _ in range(8)]
    handles = iter(stores)
    local = threading.local()
    assign = threading.Lock()

    def spend(n: str, expires_at: int, now: float) -> None:
        if not hasattr(local, "store"):
            with assign:
                local.store = next(handles)
        local.store.spend(n, expires_at, now)

    outcomes = _race(spend, nonce())
    assert sorted(outcomes) == ["ok"] + ["spent"] * 7
    for store in stores:
        store.close()


def _spend_all(path: str, nonces: list[str], barrier, results) -> None:
    store = SQLiteSpentSet(path)
    barrier.wait()
    won = []
    for n in nonces:
        try:
            store.spend(n, EXPIRES, NOW)
            won.append(n)
        except CapabilityError as exc:
            assert exc.reason == "spent"
    results.put(won)
    store.close()


def test_two_processes_racing_on_one_file_spend_each_nonce_once(tmp_path: Path):
    path = str(tmp_path / "spent.db")
    SQLiteSpentSet(path).close()  # create the schema before the race
    nonces = [nonce() for _ in range(300)]
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(2)
    results = context.Queue()
    processes = [
        context.Process(target=_spend_all, args=(path, nonces, barrier, results)) for _ in range(2)
    ]
    for process in processes:
        process.start()
    won = [results.get(timeout=60) for _ in processes]
    for process in processes:
        process.join(timeout=60)
        assert process.exitcode == 0
    assert sorted(won[0] + won[1]) == sorted(nonces)  # every nonce won exactly once
    assert not set(won[0]) & set(won[1])


def test_spends_survive_reopening(tmp_path: Path):
    path = tmp_path / "spent.db"
    n = nonce()
    first = SQLiteSpentSet(path)
    first.spend(n, EXPIRES, NOW)
    first.close()
    again = SQLiteSpentSet(path)
    with pytest.raises(CapabilityError, match="already used"):
        again.spend(n, EXPIRES, NOW)
    assert again.is_spent(n)
    again.close()


def test_the_store_uses_wal_and_a_primary_key(tmp_path: Path):
    path = tmp_path / "spent.db"
    SQLiteSpentSet(path).close()
    connection = sqlite3.connect(path)
    assert connection.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    columns = connection.execute("PRAGMA table_info(capability_spent)").fetchall()
    assert [c[1] for c in columns if c[5]] == ["nonce"]  # the primary key column
    connection.close()


def test_pruning_drops_only_long_expired_nonces(tmp_path: Path):
    store = SQLiteSpentSet(tmp_path / "spent.db")
    old, recent, live = nonce(), nonce(), nonce()
    store.spend(old, 1000, 999)
    store.spend(recent, 2000, 1999)
    store.spend(live, 5000, 1999)
    removed = store.prune(now=2000 + PRUNE_GRACE_SECONDS - 1)
    assert removed == 1
    assert not store.is_spent(old)
    assert store.is_spent(recent) and store.is_spent(live)
    # a pruned nonce's token is long expired, so it still cannot be spent again
    with pytest.raises(CapabilityError) as info:
        store.spend(old, 1000, 2000 + PRUNE_GRACE_SECONDS)
    assert info.value.reason == "expired"
    store.close()


@pytest.mark.parametrize("kind", ["memory", "sqlite"])
def test_pruning_happens_by_itself(tmp_path: Path, kind: str):
    store: MemorySpentSet | SQLiteSpentSet = (
        MemorySpentSet(prune_every=10)
        if kind == "memory"
        else SQLiteSpentSet(tmp_path / "spent.db", prune_every=10)
    )
    for i in range(9):
        store.spend(nonce(), 100 + i, 99)
    assert len(store) == 9
    later = 100 + PRUNE_GRACE_SECONDS + 50
    store.spend(nonce(), later + 60, later)  # the tenth spend prunes the nine
    assert len(store) == 1
    store.close()


def test_an_unopenable_store_fails_closed(tmp_path: Path):
    with pytest.raises(CapabilityError) as info:
        SQLiteSpentSet(tmp_path / "missing-dir" / "spent.db")
    assert info.value.reason == "unavailable"


def test_a_closed_store_refuses(tmp_path: Path):
    store = SQLiteSpentSet(tmp_path / "spent.db")
    store.close()
    errors: list[CapabilityError] = []

    def use() -> None:  # a thread that never had a connection
        try:
            store.spend(nonce(), EXPIRES, NOW)
        except CapabilityError as exc:
            errors.append(exc)

    use()  # this thread's connection was closed
    worker = threading.Thread(target=use)
    worker.start()
    worker.join()
    assert [e.reason for e in errors] == ["unavailable", "unavailable"]
