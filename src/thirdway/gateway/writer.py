"""The gatekeeper's only way into the log: durable batches, committed in groups.

:meth:`LogWriter.append_at` exists for the capability token: a token is bound to the log index
of the proposal it answers, so that index must be known before the token is minted, and the
token may leave the gatekeeper only once proposal, verdict, decision and capability entries are
durable. The writer serialises the gatekeeper's appends, so it can read the size, let the caller
build (and mint) for the index its entries will get, and write everything in one transaction.
If another process appended to the same log in between, the batch landed elsewhere and its
references are wrong: it is voided by a note and every caller in it fails closed.

Group commit: while one thread is committing, the requests of other threads queue up; the next
committer takes the whole queue, builds each request at its own index and writes them all in
one transaction (one fsync for many agents). Each caller still returns only once its own
entries are durable, and a request whose builder fails is left out without harming the others.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence

from thirdway.errors import LogError
from thirdway.gateway.entries import entry_bytes, void_entry
from thirdway.ledger.log import TransparencyLog
from thirdway.protocol.models import LogEntry

Item = LogEntry | bytes
"""An entry, or its canonical bytes computed ahead (outside the lock)."""
Build = Callable[[int], Sequence[Item]]


class _Request:
    """One caller's batch, waiting to be committed."""

    __slots__ = ("build", "build_ns", "done", "error", "result")

    def __init__(self, build: Build) -> None:
        self.build = build
        self.build_ns = 0
        self.done = False
        self.error: BaseException | None = None
        self.result: range | None = None


class LogWriter:
    """Appends for one gatekeeper. ``on_time(stage, ns)`` receives, in the caller's thread, the
    time its append spent in the log (waiting for its group included, its own build excluded)."""

    def __init__(self, log: TransparencyLog, on_time: Callable[[str, int], None]) -> None:
        self.log = log
        self._on_time = on_time
        self._queue: list[_Request] = []
        self._queue_lock = threading.Lock()
        self._commit_lock = threading.Lock()

    def append(self, items: Sequence[Item]) -> range:
        """Append ``items`` in one durable transaction; returns their indices."""
        started = time.perf_counter_ns()
        data = _bytes(items)  # encoded here, outside the commit lock
        self._on_time("log", time.perf_counter_ns() - started)
        return self.append_at(lambda _start: data)

    def append_at(self, build: Build) -> range:
        """Append what ``build(first)`` returns, ``first`` being the index its entries will
        start at. ``build`` may run in another caller's thread, under the commit lock."""
        started = time.perf_counter_ns()
        request = _Request(build)
        with self._queue_lock:
            self._queue.append(request)
        with self._commit_lock:
            if not request.done:
                with self._queue_lock:
                    group, self._queue = self._queue, []
                self._commit(group)
        self._on_time("log", time.perf_counter_ns() - started - request.build_ns)
        if request.error is not None:
            raise request.error
        assert request.result is not None
        return request.result

    def _commit(self, group: list[_Request]) -> None:
        """Build every request of ``group`` at its index and write them in one transaction.
        Whatever happens, every request of the group is finished (its caller must not wait for
        a commit that will never come)."""
        try:
            self._write(group)
        except BaseException as exc:
            _finish([request for request in group if not request.done], exc)
            raise

    def _write(self, group: list[_Request]) -> None:
        start = self.log.size()
        data: list[bytes] = []
        built: list[_Request] = []
        for request in group:
            began = time.perf_counter_ns()
            try:
                items = request.build(start + len(data))
            except Exception as exc:  # this caller's failure only; the group goes on
                request.error = exc
                request.done = True
                continue
            finally:
                request.build_ns = time.perf_counter_ns() - began
            encoded = _bytes(items)
            request.result = range(start + len(data), start + len(data) + len(encoded))
            data.extend(encoded)
            built.append(request)
        if not data:
            _finish(built, None)
            return
        try:
            written = self.log.append_batch(data)
        except Exception as exc:
            _finish(built, exc)
            return
        _finish(built, None if written.start == start else self._void(start, written))

    def _void(self, start: int, written: range) -> LogError:
        error = LogError(
            f"another process appended to the log at index {start}; entries "
            f"{written.start}..{written.stop - 1} are void and nothing was granted "
            "(give each gatekeeper its own log, then retry)"
        )
        try:
            self.log.append(entry_bytes(void_entry(written.start, written.stop - 1)))
        except LogError as exc:
            return LogError(f"{error} (the void note could not be written either: {exc})")
        return error


def _finish(requests: list[_Request], error: BaseException | None) -> None:
    for request in requests:
        if error is not None:
            request.error = error
            request.result = None
        request.done = True


def _bytes(items: Sequence[Item]) -> list[bytes]:
    return [item if isinstance(item, bytes) else entry_bytes(item) for item in items]
