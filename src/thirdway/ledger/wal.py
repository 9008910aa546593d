"""WAL checkpoints off the append path, for a log that serves requests.

In WAL mode SQLite copies the write-ahead log back into the database file ("checkpoints") from
inside whichever commit takes the WAL past ``wal_autocheckpoint`` pages (1000 by default). That
commit then writes and syncs some four megabytes before it returns: on a gateway, one action in
every eighty or so took 2–3 ms longer, which was most of ``thirdway bench gate``'s p99.

A :class:`BackgroundCheckpointer` runs those checkpoints in a thread of its own, on a connection
of its own, every :data:`COMMITS_PER_CHECKPOINT` commits or :data:`BYTES_PER_CHECKPOINT` bytes
appended, whichever comes first (and after a second of quiet).
``PRAGMA wal_checkpoint(PASSIVE)`` takes no lock a writer waits for, and Python's ``sqlite3``
releases the GIL while SQLite works, so the copy runs beside the appends, on another core where
there is one. It then copies what was committed meanwhile until it has caught up (at most
:data:`CATCH_UP_TRIES` times), and once more while holding the writer's lock: only a write that
starts on a WAL whose every frame was copied starts it over from its beginning, and without the
locked step commits during each checkpoint kept the WAL growing to the fallback size, every
fsync extending the file. Having caught up, the locked step usually finds nothing to copy, and
then it syncs nothing either, so appends rarely wait for it. Durability does not change: a
commit is durable once its WAL frames are synced, as before; the checkpoint only moves them.

The writers' connections keep an automatic checkpoint, raised to :data:`FALLBACK_PAGES`: should
the thread die or fall behind, the WAL still cannot grow without bound.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from pathlib import Path
from typing import Final

COMMITS_PER_CHECKPOINT: Final = 400
"""About 130 gated actions of one agent (three commits each): a checkpoint writes and syncs the
database file, and the commits that meet it wait longer for their own fsync, so they must stay
well under one action in a hundred for the p99 not to be made of them (with a checkpoint every
24 commits, one action in eight, ``thirdway bench gate``'s p99 was higher in 6 of 8
interleaved pairs against one every 300).
The WAL, restarted after each checkpoint, still stays far below :data:`FALLBACK_PAGES` (its file
is overwritten, not extended, which keeps every later fsync cheap)."""
BYTES_PER_CHECKPOINT: Final = 1 << 20
"""Under load, group commits carry many requests each: this bounds a checkpoint's copy (about
a megabyte of entries, a few hundred pages with the tree's nodes and index pages) so the WAL
stays far below :data:`FALLBACK_PAGES` however large the commits."""
IDLE_CHECKPOINT_S: Final = 1.0
CATCH_UP_TRIES: Final = 4
"""Checkpoints in a row, each copying what was committed during the one before, before the
thread takes the writer's lock for the rest (see the module docstring)."""
FALLBACK_PAGES: Final = 4000
"""``wal_autocheckpoint`` for the writers' connections while a checkpointer runs."""

_log = logging.getLogger(__name__)


class BackgroundCheckpointer:
    """Checkpoints the WAL of the database at ``path`` in a daemon thread.

    The writer calls :meth:`committed` after each commit; :meth:`close` stops the thread after
    one last checkpoint. Errors are logged and retried at the next round: a checkpoint is
    housekeeping, and a missed one leaves the data where it already was, in the synced WAL."""

    def __init__(
        self,
        path: Path,
        *,
        every: int = COMMITS_PER_CHECKPOINT,
        every_bytes: int = BYTES_PER_CHECKPOINT,
        writer_lock: threading.RLock | threading.Lock | None = None,
    ) -> None:
        self.path = path
        self.every = every
        self.every_bytes = every_bytes
        self.writer_lock = writer_lock
        self.checkpoints = 0
        self._pending = 0
        self._pending_bytes = 0
        self._dirty = False
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stopping = False
        self._thread = threading.Thread(
            target=self._run, name=f"wal-checkpoint:{path.name}", daemon=True
        )
        self._thread.start()

    def committed(self, nbytes: int = 0) -> None:
        """One more commit of ``nbytes`` is in the WAL; wake the thread every :attr:`every`
        commits or :attr:`every_bytes` bytes."""
        with self._lock:
            self._pending += 1
            self._pending_bytes += nbytes
            self._dirty = True
            due = self._pending >= self.every or self._pending_bytes >= self.every_bytes
        if due:
            self._wake.set()

    def close(self) -> None:
        """Stop the thread (it checkpoints once more on its way out) and wait for it."""
        self._stopping = True
        self._wake.set()
        self._thread.join(timeout=30)

    def _run(self) -> None:
        connection = self._connect()
        if connection is None:
            return
        try:
            while not self._stopping:
                self._wake.wait(IDLE_CHECKPOINT_S)
                self._wake.clear()
                if self._take_dirty():
                    self._checkpoint(connection)
            self._checkpoint(connection)
        finally:
            connection.close()

    def _take_dirty(self) -> bool:
        """Whether anything was committed since the last round (an idle log is left alone)."""
        with self._lock:
            dirty, self._dirty, self._pending, self._pending_bytes = self._dirty, False, 0, 0
        return dirty

    def _connect(self) -> sqlite3.Connection | None:
        try:
            connection = sqlite3.connect(
                f"{self.path.resolve().as_uri()}?mode=rw", uri=True, isolation_level=None
            )
            connection.execute("PRAGMA synchronous=FULL")
        except sqlite3.Error as exc:
            _log.warning("no background WAL checkpoints for %s: %s", self.path, exc)
            return None
        return connection

    def _checkpoint(self, connection: sqlite3.Connection) -> None:
        try:
            for _ in range(CATCH_UP_TRIES):
                _, frames, copied = connection.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
                if copied == frames:
                    break
            if self.writer_lock is not None:
                with self.writer_lock:  # usually nothing left to copy, then nothing to sync
                    connection.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
        except sqlite3.Error as exc:
            _log.warning("WAL checkpoint of %s failed (retried later): %s", self.path, exc)
            return
        self.checkpoints += 1
