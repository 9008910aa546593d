"""A SQLite log that several processes on one machine append to: `thirdway serve --workers N`.

A plain :class:`~thirdway.ledger.sqlite.SQLiteLogStore` trusts the size its one writer read
before appending; here every worker process appends, so the store gives the indices itself
(:class:`~thirdway.ledger.store.SequencingLogStore`), as the PostgreSQL store does: a batch is
built, hashed into the Merkle tree and written inside one ``BEGIN IMMEDIATE`` transaction, and
SQLite's write lock is what no two processes hold at once. ``build(first)`` runs under that lock,
so a capability token bound to its proposal's index can never point at another worker's entry.

Two things keep the workers from waiting on one another more than they must:

- **A kernel lock before SQLite's.** A writer that finds SQLite's lock taken would sleep in
  SQLite's busy handler (1, 2, 5, 10 … 100 ms) however soon the lock is freed. So each append
  first takes an exclusive ``flock`` on ``<log>.writer``, which the kernel hands to the next
  waiter the moment it is released; SQLite's own lock is then free at once.
- **Reads beside the appends.** Each thread reads (the size, an entry, a range of entries)
  through its own connection, which WAL lets read the last committed state while another
  connection writes, instead of queueing behind this process's append (which may be waiting for
  another process's).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import sqlite3
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path

from thirdway.errors import LogError
from thirdway.ledger.merkle import Frontier, NodeId
from thirdway.ledger.sqlite import SQLiteLogStore, _blob, insert_batch
from thirdway.ledger.store import NewEntry, StaleSizeError

__all__ = ["SharedSQLiteLogStore"]

_ENTRIES_FROM = "SELECT idx, data FROM entries WHERE idx >= ? AND idx < ? ORDER BY idx"
_ENTRIES_CONTAINING = (
    "SELECT idx, data FROM entries WHERE idx >= ? AND idx < ? AND instr(data, ?) > 0 ORDER BY idx"
)
_FRONTIER_GAP = 256
"""Most entries of other processes a cached Merkle border is extended by, rather than read."""


class SharedSQLiteLogStore(SQLiteLogStore):
    """A SQLite log store that sequences appends from several processes (see the module)."""

    def __init__(self, path: Path, connection: sqlite3.Connection) -> None:
        super().__init__(path, connection)
        self._appending = threading.Lock()
        self._writer_fd: int | None = None
        self._readers = threading.local()
        self._reader_connections: list[sqlite3.Connection] = []
        self._frontier: Frontier | None = None
        self._wal_lock = threading.Lock()
        self._wal_fd: int | None = None

    @classmethod
    def open(
        cls, path: Path, *, create: bool, background_checkpoints: bool = False
    ) -> SharedSQLiteLogStore:
        store = super().open(path, create=create, background_checkpoints=background_checkpoints)
        assert isinstance(store, SharedSQLiteLogStore)
        try:
            with store._guard("open"):
                store._connection().execute("PRAGMA synchronous=NORMAL")  # see _sync_wal
            store._writer_fd = os.open(f"{path}.writer", os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            store.close()
            raise LogError(f"cannot open the writer lock of log {path}: {exc}") from None
        return store

    # --- appending -------------------------------------------------------------------------

    def append_sequenced(self, entries: Sequence[NewEntry]) -> range:
        return self.append_built(lambda _start: entries)

    def append(
        self,
        first_index: int,
        entries: Sequence[NewEntry],
        nodes: Sequence[tuple[NodeId, bytes]],
        *,
        sync: bool = True,
    ) -> None:
        """An append at ``first_index`` exactly (:class:`StaleSizeError` if another process took
        it), under every process's write lock; the interior nodes are computed again here."""

        def at_first(start: int) -> Sequence[NewEntry]:
            if start != first_index:
                raise StaleSizeError(first_index, start)
            return entries

        self.append_built(at_first, sync=sync)

    def initialize(self, metadata: Mapping[str, str]) -> None:
        with self._appending, self._writer_locked():
            super().initialize(metadata)
        self._sync_wal()

    def add_checkpoint(self, size: int, note: str) -> None:
        """Store a checkpoint; refuses one for a smaller size than the newest stored one, so
        that a worker's late checkpoint cannot follow another's larger one (as on PostgreSQL).
        """
        with self._appending, self._writer_locked(), self._guard("store a checkpoint"):
            conn = self._connection()
            conn.execute("BEGIN IMMEDIATE")
            try:
                last = conn.execute(
                    "SELECT seq, size FROM checkpoints ORDER BY seq DESC LIMIT 1"
                ).fetchone()
                if last is not None and size < int(last[1]):
                    raise LogError(
                        f"checkpoint for size {size} refused: checkpoint #{last[0]} already "
                        f"signs size {last[1]}"
                    )
                conn.execute("INSERT INTO checkpoints (size, note) VALUES (?, ?)", (size, note))
                conn.execute("COMMIT")
            except BaseException:
                self._rollback()
                raise
        self._sync_wal()

    def append_built(
        self, build: Callable[[int], Sequence[NewEntry]], *, sync: bool = True
    ) -> range:
        """Give the entries ``build(first)`` returns the next indices and store them with the
        interior nodes they complete, in one transaction under the write lock of every process
        (``sync=False``: committed without its own fsync, see :mod:`thirdway.ledger.sqlite`).
        Whatever ``build`` raises rolls back and propagates."""
        with self._appending, self._writer_locked(), self._guard("append"):
            written = self._append_built(self._connection(), build)
        if sync and len(written):
            self._sync_wal()
        return written

    def _sync_wal(self) -> None:
        """Put every committed frame of the write-ahead log on the disk: ``fdatasync`` of the
        WAL file, which takes whatever any connection of any process wrote to it. Commits are
        made at ``synchronous=NORMAL`` (no fsync while the write lock is held, so the other
        workers need not wait for the disk) and synced here, after the lock is released and
        before the caller answers; a frame a checkpoint has already moved to the database file
        is on the disk too, as SQLite syncs that file when it checkpoints."""
        wal = Path(f"{self._path}-wal")
        with self._wal_lock:
            fd = self._wal_fd
            try:
                if fd is None or os.fstat(fd).st_ino != os.stat(wal).st_ino:
                    if fd is not None:
                        os.close(fd)
                    fd = self._wal_fd = None
                    fd = self._wal_fd = os.open(wal, os.O_RDONLY)
                os.fdatasync(fd)
            except OSError as exc:
                raise LogError(f"cannot sync the write-ahead log of {self._path}: {exc}") from None

    def _append_built(
        self, conn: sqlite3.Connection, build: Callable[[int], Sequence[NewEntry]]
    ) -> range:
        """One append transaction (the caller holds every lock)."""
        conn.execute("BEGIN IMMEDIATE")
        try:
            start = self._size()
            entries = build(start)
            if not entries:
                self._rollback()
                return range(start, start)
            frontier = self._frontier_at(start)
            nodes = frontier.extend([entry.leaf_hash for entry in entries])
            insert_batch(conn, start, entries, nodes)
            conn.execute("COMMIT")
        except BaseException:
            self._rollback()
            raise
        self._frontier = frontier
        if self._checkpointer is not None:
            self._checkpointer.committed(sum(len(entry.data) for entry in entries))
        return range(start, start + len(entries))

    def _frontier_at(self, size: int) -> Frontier:
        """A private copy of the tree's right border at ``size``: the cached one, extended by
        the leaves other processes appended since this one last did (one read of a few leaf
        hashes, where loading the border reads a node per level), or, after a long gap, read
        in the current transaction."""
        cached = self._frontier
        if cached is None or not 0 <= size - cached.size <= _FRONTIER_GAP:
            return Frontier.load(size, self)
        frontier = cached.copy()
        if size > cached.size:
            rows = (
                self._connection()
                .execute(
                    "SELECT leaf_hash FROM entries WHERE idx >= ? AND idx < ? ORDER BY idx",
                    (cached.size, size),
                )
                .fetchall()
            )
            if len(rows) != size - cached.size:
                raise LogError(f"log {self._path} is missing entries below {size}")
            frontier.extend([_blob(row[0]) for row in rows])
        return frontier

    @contextlib.contextmanager
    def _writer_locked(self) -> Iterator[None]:
        fd = self._writer_fd
        if fd is None:
            raise LogError(f"log {self._path} is closed")
        fcntl.flock(fd, fcntl.LOCK_EX)  # blocks in the kernel, without the GIL
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)

    # --- reading beside the appends ----------------------------------------------------------

    def size(self) -> int:
        with self._reading("read the size") as conn:
            last = conn.execute("SELECT MAX(idx) FROM entries").fetchone()[0]
        return 0 if last is None else int(last) + 1

    def entry(self, index: int) -> bytes:
        with self._reading("read an entry") as conn:
            found = conn.execute("SELECT data FROM entries WHERE idx = ?", (index,)).fetchone()
        if found is None:
            raise LogError(f"log {self._path} has no entry {index}")
        return _blob(found[0])

    def read_range(self, start: int, stop: int) -> list[tuple[int, bytes]]:
        if stop <= start:
            return []
        with self._reading("read entries") as conn:
            rows = conn.execute(_ENTRIES_FROM, (start, stop)).fetchall()
        return [(int(index), _blob(data)) for index, data in rows]

    def read_range_containing(
        self, start: int, stop: int, needle: bytes
    ) -> list[tuple[int, bytes]]:
        """:meth:`read_range`, only the entries whose bytes contain ``needle`` (searched by
        SQLite, so a worker checking whether another one wrote to a session reads none of the
        entries that do not name it)."""
        if stop <= start:
            return []
        with self._reading("read entries") as conn:
            rows = conn.execute(_ENTRIES_CONTAINING, (start, stop, needle)).fetchall()
        return [(int(index), _blob(data)) for index, data in rows]

    @contextlib.contextmanager
    def _reading(self, action: str) -> Iterator[sqlite3.Connection]:
        """This thread's read connection (made at its first read), SQLite errors made one-line
        :class:`LogError` messages."""
        if self._conn is None:
            raise LogError(f"log {self._path} is closed")
        conn: sqlite3.Connection | None = getattr(self._readers, "connection", None)
        try:
            if conn is None:
                conn = self._reader()
            yield conn
        except sqlite3.Error as exc:
            raise LogError(f"cannot {action} in log {self._path}: {exc}") from None

    def _reader(self) -> sqlite3.Connection:
        conn = sqlite3.connect(
            f"{self._path.resolve().as_uri()}?mode=rw",
            uri=True,
            isolation_level=None,
            check_same_thread=False,
            timeout=10.0,
        )
        conn.execute("PRAGMA query_only=ON")
        with self._lock:
            if self._conn is None:
                conn.close()
                raise LogError(f"log {self._path} is closed")
            self._reader_connections.append(conn)
        self._readers.connection = conn
        return conn

    def close(self) -> None:
        super().close()
        with self._lock:
            readers, self._reader_connections = self._reader_connections, []
            fd, self._writer_fd = self._writer_fd, None
        with self._wal_lock:
            wal_fd, self._wal_fd = self._wal_fd, None
        if wal_fd is not None:
            os.close(wal_fd)
        for conn in readers:
            with contextlib.suppress(sqlite3.Error):
                conn.close()
        if fd is not None:
            os.close(fd)
