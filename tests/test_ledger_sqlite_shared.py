"""A SQLite log that several processes append to (``thirdway serve --workers`` on SQLite)."""

from __future__ import annotations

import json
import multiprocessing
from pathlib import Path

import pytest

from thirdway.errors import LogError
from thirdway.ledger.log import TransparencyLog
from thirdway.ledger.store import StaleSizeError

BATCHES = 60


def _append_own_indices(path: str, worker: int) -> None:
    """In a child process: batches of 1-3 entries, each naming the index it was given."""
    with TransparencyLog.open(Path(path), create=False, shared=True) as log:
        for batch in range(BATCHES):
            count = 1 + batch % 3
            log.append_built(
                lambda first, count=count: [
                    json.dumps({"worker": worker, "index": first + n}).encode()
                    for n in range(count)
                ],
                sync=batch % 2 == 0,
            )


def test_two_processes_append_at_once_and_every_entry_gets_the_index_it_was_built_for(
    tmp_path: Path,
) -> None:
    path = tmp_path / "log.db"
    TransparencyLog.open(path).close()  # created alone, as thirdway serve does
    context = multiprocessing.get_context("spawn")
    children = [context.Process(target=_append_own_indices, args=(str(path), n)) for n in range(2)]
    for child in children:
        child.start()
    for child in children:
        child.join(timeout=120)
        assert child.exitcode == 0
    per_worker = sum(1 + batch % 3 for batch in range(BATCHES))
    with TransparencyLog.open(path, create=False, shared=True) as log:
        assert log.size() == 2 * per_worker
        assert log.verify().ok
        seen = [json.loads(log.entry(i)) for i in range(log.size())]
    assert [entry["index"] for entry in seen] == list(range(2 * per_worker))
    assert {entry["worker"] for entry in seen} == {0, 1}


def test_a_failed_build_writes_nothing_and_appends_go_on(tmp_path: Path) -> None:
    path = tmp_path / "log.db"
    with TransparencyLog.open(path, shared=True) as log:
        log.append(b"first")

        def broken(_first: int) -> list[bytes]:
            raise ValueError("the builder failed")

        with pytest.raises(ValueError, match="builder failed"):
            log.append_built(broken)
        assert log.size() == 1
        assert log.append_built(lambda first: [f"at {first}".encode()]) == range(1, 2)
        assert log.append_built(lambda _first: []) == range(2, 2)
        assert log.entry(1) == b"at 1" and log.verify().ok
        store = log._store
        with pytest.raises(StaleSizeError):
            store.append(5, [], [])  # an exact index another process already took
        log.checkpoint()
        assert log.verify().ok
        with pytest.raises(LogError, match="refused"):
            store.add_checkpoint(1, "a late checkpoint of a smaller tree")
        assert [c.size for c in store.checkpoints()] == [log.size()]
    with pytest.raises(LogError, match="no log"):
        TransparencyLog.open(tmp_path / "none.db", create=False, shared=True)
