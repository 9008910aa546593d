"""The gatekeeper's log writer: predicted indices are exact, groups share one transaction, and a
failure stays with the caller it belongs to (or fails the whole group closed)."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest

from thirdway.errors import LogError
from thirdway.gateway.entries import entry
from thirdway.gateway.writer import LogWriter
from thirdway.ledger.log import TransparencyLog
from thirdway.protocol.models import LogEntry


def _note(text: str, at: int) -> LogEntry:
    return entry("note", None, None, {"text": text, "built_for": at})


class CountingLog:
    """A log whose appends are counted (and can be made to fail)."""

    def __init__(self, log: TransparencyLog) -> None:
        self.inner = log
        self.batches = 0
        self.synced: list[bool] = []
        self.fail: Exception | None = None

    def size(self) -> int:
        return self.inner.size()

    def append(self, data: bytes) -> int:
        return self.inner.append(data)

    def append_batch(self, items: Any, *, sync: bool = True) -> range:
        if self.fail is not None:
            raise self.fail
        self.batches += 1
        self.synced.append(sync)
        return self.inner.append_batch(items, sync=sync)


@pytest.fixture
def log(tmp_path: Path) -> Any:
    with TransparencyLog.open(tmp_path / "log.db") as opened:
        yield CountingLog(opened)


def _entries(log: CountingLog) -> list[LogEntry]:
    return [LogEntry.model_validate_json(log.inner.entry(i)) for i in range(log.size())]


def test_each_builder_gets_the_index_its_entries_land_at(log: CountingLog) -> None:
    writer = LogWriter(log, lambda stage, ns: None)  # type: ignore[arg-type]
    results: dict[int, range] = {}
    barrier = threading.Barrier(16)

    def work(n: int) -> None:
        barrier.wait()
        for round_ in range(5):
            label = f"{n}/{round_}"
            results[n * 10 + round_] = writer.append_at(
                lambda start, label=label: [_note(label, start), _note(label, start + 1)]
            )

    threads = [threading.Thread(target=work, args=(n,)) for n in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    logged = _entries(log)
    assert len(logged) == 16 * 5 * 2
    for written in results.values():
        first, second = logged[written.start], logged[written.start + 1]
        assert first.payload["built_for"] == written.start
        assert second.payload["built_for"] == written.start + 1
        assert first.payload["text"] == second.payload["text"]
    assert sorted(i for r in results.values() for i in r) == list(range(160))
    assert log.batches < 80  # some requests shared a transaction
    assert log.inner.verify().ok


def test_a_failing_builder_fails_alone(log: CountingLog) -> None:
    writer = LogWriter(log, lambda stage, ns: None)  # type: ignore[arg-type]
    gate = threading.Event()
    outcomes: dict[str, object] = {}

    building = threading.Event()

    def slow(start: int) -> list[LogEntry]:
        building.set()  # its group is fixed now
        gate.wait(5)  # hold the commit lock while the others queue up
        return [_note("slow", start)]

    def broken(start: int) -> list[LogEntry]:
        raise ValueError("cannot build")

    def run(name: str, build: Any) -> None:
        try:
            outcomes[name] = writer.append_at(build)
        except ValueError as exc:
            outcomes[name] = exc

    first = threading.Thread(target=run, args=("slow", slow))
    first.start()
    assert building.wait(5)
    others = [
        threading.Thread(target=run, args=("broken", broken)),
        threading.Thread(target=run, args=("fine", lambda start: [_note("fine", start)])),
    ]
    for thread in others:
        thread.start()
    while len(writer._queue) < 2:  # both queued behind the slow one
        pass
    gate.set()
    for thread in (first, *others):
        thread.join()
    assert isinstance(outcomes["broken"], ValueError)
    assert isinstance(outcomes["fine"], range) and isinstance(outcomes["slow"], range)
    assert [e.payload["text"] for e in _entries(log)] == ["slow", "fine"]
    assert log.batches == 2  # slow alone, then broken + fine as one group (fine only written)


def test_a_failed_transaction_fails_its_callers_and_writes_nothing(log: CountingLog) -> None:
    writer = LogWriter(log, lambda stage, ns: None)  # type: ignore[arg-type]
    writer.append([_note("before", 0)])
    log.fail = LogError("disk full")
    with pytest.raises(LogError, match="disk full"):
        writer.append_at(lambda start: [_note("lost", start)])
    log.fail = None
    assert [e.payload["text"] for e in _entries(log)] == ["before"]
    assert writer.append([_note("after", 1)]) == range(1, 2)


def test_another_process_appending_voids_the_batch(tmp_path: Path) -> None:
    path = tmp_path / "log.db"
    with TransparencyLog.open(path) as mine, TransparencyLog.open(path) as theirs:
        writer = LogWriter(mine, lambda stage, ns: None)
        writer.append([_note("mine", 0)])

        def build(start: int) -> list[LogEntry]:
            theirs.append(b'{"someone": "else"}')  # lands at ``start`` first
            return [_note("predicted", start)]

        with pytest.raises(LogError, match="void and nothing was granted"):
            writer.append_at(build)
        void = LogEntry.model_validate_json(mine.entry(mine.size() - 1))
        assert void.type == "note" and void.payload["event"] == "void"
        assert void.payload["entries"] == [2, 2]
        assert mine.verify().ok


def test_log_time_excludes_the_callers_build(log: CountingLog) -> None:
    times: list[tuple[str, int]] = []
    writer = LogWriter(log, lambda stage, ns: times.append((stage, ns)))  # type: ignore[arg-type]

    def build(start: int) -> list[LogEntry]:
        threading.Event().wait(0.05)
        return [_note("x", start)]

    writer.append_at(build)
    ((stage, ns),) = times
    assert stage == "log" and 0 < ns < 50_000_000


def test_a_group_is_synced_when_any_of_its_requests_asks(log: CountingLog) -> None:
    writer = LogWriter(log, lambda stage, ns: None)  # type: ignore[arg-type]
    writer.append([_note("alone, unsynced", 0)], sync=False)
    writer.append([_note("alone, synced", 1)])
    assert log.synced == [False, True]

    # Two callers queue behind a third that holds the commit: they commit as one group.
    entered, release = threading.Event(), threading.Event()

    def blocking(first: int) -> list[LogEntry]:
        entered.set()
        release.wait(10)
        return [_note("holder", first)]

    holder = threading.Thread(target=writer.append_at, args=(blocking,), kwargs={"sync": False})
    holder.start()
    assert entered.wait(10)
    queued = [
        threading.Thread(target=writer.append, args=([_note(name, 0)],), kwargs={"sync": sync})
        for name, sync in (("unsynced", False), ("synced", True))
    ]
    for thread in queued:
        thread.start()
    while len(writer._queue) < 2:  # both waiting for the holder's commit
        threading.Event().wait(0.001)
    release.set()
    for thread in [holder, *queued]:
        thread.join(10)
    assert log.synced[2:] == [False, True]  # the holder alone, then the group of two, synced
    assert log.size() == 5
