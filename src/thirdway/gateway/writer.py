"""The gatekeeper's only way into the log: one lock, one durable batch per step.

:meth:`LogWriter.append_at` exists for the capability token: a token is bound to the log index
of the proposal it answers, so that index must be known before the token is minted, and the
token may leave the gatekeeper only once proposal, verdict, decision and capability entries are
durable. Serialising the gatekeeper's appends lets it read the size, mint for the index the
batch will start at, and write everything in one transaction (one fsync instead of two). If
another process appended to the same log in between, the batch landed elsewhere: its
references are wrong, so it is voided by a note and the step fails closed.
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


class LogWriter:
    """Appends for one gatekeeper. ``on_time(stage, ns)`` receives the time spent in the log."""

    def __init__(self, log: TransparencyLog, on_time: Callable[[str, int], None]) -> None:
        self.log = log
        self._lock = threading.Lock()
        self._on_time = on_time

    def append(self, items: Sequence[Item]) -> range:
        """Append ``items`` in one durable transaction; returns their indices."""
        started = time.perf_counter_ns()
        data = _bytes(items)
        with self._lock:
            written = self.log.append_batch(data)
        self._on_time("log", time.perf_counter_ns() - started)
        return written

    def append_at(self, build: Callable[[int], Sequence[Item]]) -> range:
        """Append what ``build(first)`` returns, ``first`` being the index the batch will start
        at. ``build`` runs under the lock (it may mint for those indices); its own time is not
        counted as log time."""
        with self._lock:
            start = self.log.size()
            items = build(start)
            started = time.perf_counter_ns()
            written = self.log.append_batch(_bytes(items))
            self._on_time("log", time.perf_counter_ns() - started)
            if written.start != start:
                self.log.append(entry_bytes(void_entry(written.start, written.stop - 1)))
                raise LogError(
                    f"another process appended to the log at index {start}; entries "
                    f"{written.start}..{written.stop - 1} are void and nothing was granted "
                    "(give each gatekeeper its own log, then retry)"
                )
        return written


def _bytes(items: Sequence[Item]) -> list[bytes]:
    return [item if isinstance(item, bytes) else entry_bytes(item) for item in items]
