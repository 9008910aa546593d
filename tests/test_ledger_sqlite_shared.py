"""A SQLite log that several processes append to (``thirdway serve --workers`` on SQLite)."""

from __future__ import annotations

import json
import multiprocessing
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

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


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    data=st.lists(
        st.lists(st.sampled_from(b"ab\x00{}"), min_size=1, max_size=12).map(bytes),
        min_size=1,
        max_size=20,
    ),
    needle=st.lists(st.sampled_from(b"ab\x00"), max_size=3).map(bytes),
    bounds=st.tuples(st.integers(0, 22), st.integers(0, 22)),
)
def test_entries_containing_is_entries_between_filtered(
    tmp_path_factory: pytest.TempPathFactory,
    data: list[bytes],
    needle: bytes,
    bounds: tuple[int, int],
) -> None:
    """The search SQLite makes (a shared store) and the filter the log makes otherwise agree
    with reading every entry and keeping those that contain the needle."""
    folder = tmp_path_factory.mktemp("containing")
    start, stop = bounds
    with (
        TransparencyLog.open(folder / "shared.db", shared=True) as shared,
        TransparencyLog.open(folder / "plain.db") as plain,
    ):
        for log in (shared, plain):
            log.append_batch(data)
            stop_at = min(stop, log.size())
            expected = [(i, d) for i, d in log.entries_between(start, stop_at) if needle in d]
            assert log.entries_containing(start, stop_at, needle) == expected


@pytest.mark.parametrize("gap", [0, 1, 7, 300])
def test_an_appender_catches_its_merkle_border_up_with_what_others_appended(
    tmp_path: Path, gap: int
) -> None:
    """A worker's cached border is extended by the others' leaves (or read again after a long
    gap): the tree it then writes is the right one."""
    path = tmp_path / "log.db"
    with (
        TransparencyLog.open(path, shared=True) as one,
        TransparencyLog.open(path, create=False, shared=True) as other,
    ):
        one.append(b"first")
        for n in range(gap):
            other.append(f"other {n}".encode())
        one.append_batch([b"then", b"more"])
        other.append(b"last")
        assert one.size() == other.size() == gap + 4
        assert one.verify().ok and other.verify().ok
        assert one.root() == other.root()
