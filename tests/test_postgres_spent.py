"""Single use across worker processes: the PostgreSQL spent-set."""

from __future__ import annotations

import multiprocessing
import secrets
import time
from pathlib import Path

import pytest

from postgres_support import pg_url, spend_worker
from thirdway.capability.spent_pg import PostgresSpentSet
from thirdway.errors import CapabilityError

__all__ = ["pg_url"]

PROCESSES = 4
NONCES = 60


def test_each_nonce_is_won_by_exactly_one_process(pg_url: str, tmp_path: Path) -> None:
    PostgresSpentSet(pg_url).close()  # schema in place before the race
    nonces = [secrets.token_hex(16) for _ in range(NONCES)]
    start_at = time.time() + 3.0
    context = multiprocessing.get_context("spawn")
    outputs = [tmp_path / f"won-{n}" for n in range(PROCESSES)]
    workers = [
        context.Process(target=spend_worker, args=(pg_url, nonces, start_at, str(out)))
        for out in outputs
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(120)
        assert worker.exitcode == 0
    won = [line for out in outputs for line in out.read_text().split("\n") if line]
    assert sorted(won) == sorted(nonces)  # every nonce spent once, none twice
    spent = PostgresSpentSet(pg_url)
    try:
        assert len(spent) == NONCES
        for nonce in nonces:
            with pytest.raises(CapabilityError) as caught:
                spent.spend(nonce, int(time.time()) + 600, time.time())
            assert caught.value.reason == "spent"
    finally:
        spent.close()


def test_a_token_spent_on_one_worker_is_refused_on_another(pg_url: str) -> None:
    first, second = PostgresSpentSet(pg_url), PostgresSpentSet(pg_url)
    try:
        nonce = secrets.token_hex(16)
        now = time.time()
        first.spend(nonce, int(now) + 60, now)
        assert second.is_spent(nonce)
        with pytest.raises(CapabilityError, match="already used"):
            second.spend(nonce, int(now) + 60, now)
        with pytest.raises(CapabilityError, match="already used"):
            first.spend(nonce, int(now) + 60, now)
    finally:
        first.close()
        second.close()


def test_bad_arguments_and_expired_tokens_are_refused_before_the_database(pg_url: str) -> None:
    spent = PostgresSpentSet(pg_url)
    try:
        now = time.time()
        for bad in ("", "XYZ", "0" * 31, "g" * 32):
            with pytest.raises(CapabilityError) as caught:
                spent.spend(bad, int(now) + 60, now)
            assert caught.value.reason == "malformed"
        with pytest.raises(CapabilityError) as caught:
            spent.spend(secrets.token_hex(16), int(now) - 1, now)
        assert caught.value.reason == "expired"
        assert len(spent) == 0
    finally:
        spent.close()


def test_pruning_keeps_unexpired_and_recent_nonces(pg_url: str) -> None:
    spent = PostgresSpentSet(pg_url, prune_every=3)
    try:
        now = 1_000_000.0
        old, fresh = secrets.token_hex(16), secrets.token_hex(16)
        spent.spend(old, int(now) + 10, now)
        spent.spend(fresh, int(now) + 10_000, now)
        assert spent.prune(now + 10 + 301) == 1
        assert not spent.is_spent(old) and spent.is_spent(fresh)
    finally:
        spent.close()


def test_unreachable_database_is_unavailable_not_a_crash() -> None:
    with pytest.raises(CapabilityError) as caught:
        PostgresSpentSet("postgresql://nobody:hunter2@127.0.0.1:1/none")
    assert caught.value.reason == "unavailable"
    assert "hunter2" not in str(caught.value)


def test_closed_set_refuses(pg_url: str) -> None:
    spent = PostgresSpentSet(pg_url)
    spent.close()
    with pytest.raises(CapabilityError, match="closed"):
        spent.spend(secrets.token_hex(16), int(time.time()) + 60, time.time())
