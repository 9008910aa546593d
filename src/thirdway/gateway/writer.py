"""The gatekeeper's only way into the log: durable batches, committed in groups.

:meth:`LogWriter.append_at` exists for the capability token: a token is bound to the log index
of the proposal it answers, so that index must be known before the token is minted, and the
token may leave the gatekeeper only once proposal, verdict, decision and capability entries are
durable. The writer serialises the gatekeeper's appends, so it can read the size, let the caller
build (and mint) for the index its entries will get, and write everything in one transaction.
On SQLite (one writer process), if another process appended to the same log in between, the
batch landed elsewhere and its references are wrong: it is voided by a note and every caller in
it fails closed.

On a sequencing store (PostgreSQL, several gateway workers on one log) the group is built inside
:meth:`~thirdway.ledger.log.TransparencyLog.append_built`, while the store holds its sequencer
lock: each builder gets the index its entries really get, so another worker's appends never void
a batch. A builder's ``check`` (the gatekeeper's "has another worker written to this session
since I last looked?") runs there too, against everything committed before the group. The writer
remembers the ranges it committed (:meth:`LogWriter.settled`), so a worker following the log can
tell its own entries from the other workers'.

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
Check = Callable[[int], None]
"""Called with a batch's first index under the sequencer lock, before the batch is built;
raises to keep the batch out (the others of its group go on)."""


class _Request:
    """One caller's batch, waiting to be committed."""

    __slots__ = ("build", "build_ns", "done", "error", "result", "sync")

    def __init__(self, build: Build, sync: bool) -> None:
        self.build = build
        self.sync = sync
        self.build_ns = 0
        self.done = False
        self.error: BaseException | None = None
        self.result: range | None = None


class LogWriter:
    """Appends for one gatekeeper. ``on_time(stage, ns)`` receives, in the caller's thread, the
    time its append spent in the log (waiting for its group included, its own build excluded)."""

    def __init__(self, log: TransparencyLog, on_time: Callable[[str, int], None]) -> None:
        self.log = log
        self.sequenced: bool = getattr(log, "sequenced", False)
        self._own: list[range] = []
        self._own_lock = threading.Lock()
        self._pending: int | None = None
        """The first index of the sequenced group being committed, once it has one."""
        self._on_time = on_time
        self._queue: list[_Request] = []
        self._queue_lock = threading.Lock()
        self._commit_lock = threading.Lock()

    def append(
        self, items: Sequence[Item], *, check: Check | None = None, sync: bool = True
    ) -> range:
        """Append ``items`` in one durable transaction; returns their indices. ``sync=False``:
        the caller's answer may be given before its entries reach the disk (they do with the
        next synced commit); a group holding any synced request is synced."""
        started = time.perf_counter_ns()
        data = _bytes(items)  # encoded here, outside the commit lock
        self._on_time("log", time.perf_counter_ns() - started)
        return self.append_at(lambda _start: data, check=check, sync=sync)

    def append_at(self, build: Build, *, check: Check | None = None, sync: bool = True) -> range:
        """Append what ``build(first)`` returns, ``first`` being the index its entries will
        start at. ``build`` may run in another caller's thread, under the commit lock. A
        ``check`` runs first (on a sequencing store, under its lock; see the module docstring)."""
        started = time.perf_counter_ns()
        request = _Request(build if check is None else _checked(check, build), sync)
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

    def settled(self) -> tuple[int, list[range]]:
        """The log's size, and the ranges this writer committed since the last call: every
        entry below that size is either another writer's or in one of those ranges.

        A group in flight is waited for only when its commit may already be in the size read
        (its first index is below it) but not yet among the ranges: waiting for every group in
        flight made each worker's catch-up queue behind its own commit, and so behind the other
        workers' commits that one waits for."""
        size = self.log.size()
        with self._own_lock:
            pending = self._pending
            if pending is None or pending >= size:
                own, self._own = self._own, []
                return size, own
        with self._commit_lock:
            size = self.log.size()
            with self._own_lock:
                own, self._own = self._own, []
        return size, own

    def _write(self, group: list[_Request]) -> None:
        if self.sequenced:
            self._write_sequenced(group)
            return
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
            written = self.log.append_batch(data, sync=any(r.sync for r in built))
        except Exception as exc:
            _finish(built, exc)
            return
        _finish(built, None if written.start == start else self._void(start, written))

    def _write_sequenced(self, group: list[_Request]) -> None:
        """Build and write the group in one transaction under the store's sequencer lock."""
        built: list[_Request] = []

        def build(start: int) -> list[bytes]:
            with self._own_lock:
                self._pending = start
            data: list[bytes] = []
            for request in group:
                encoded = self._build(request, start + len(data))
                if encoded is not None:
                    request.result = range(start + len(data), start + len(data) + len(encoded))
                    data.extend(encoded)
                    built.append(request)
            return data

        try:
            written = self.log.append_built(build, sync=any(r.sync for r in group))
        except Exception as exc:  # nothing of the group is in the log
            with self._own_lock:
                self._pending = None
            _finish([request for request in group if not request.done], exc)
            return
        with self._own_lock:
            if len(written):
                self._own.append(written)
            self._pending = None
        _finish(built, None)

    @staticmethod
    def _build(request: _Request, first: int) -> list[bytes] | None:
        """The request's entries for ``first``, or ``None`` (and the request finished with its
        error) when its builder fails: that caller's failure only."""
        began = time.perf_counter_ns()
        try:
            return _bytes(request.build(first))
        except Exception as exc:
            request.error = exc
            request.done = True
            return None
        finally:
            request.build_ns = time.perf_counter_ns() - began

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


def _checked(check: Check, build: Build) -> Build:
    def checked(first: int) -> Sequence[Item]:
        check(first)
        return build(first)

    return checked


def _bytes(items: Sequence[Item]) -> list[bytes]:
    return [item if isinstance(item, bytes) else entry_bytes(item) for item in items]
