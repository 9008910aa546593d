"""The SQLite :class:`~thirdway.ledger.store.LogStore`: one file, WAL mode, append-only.

Durability: ``journal_mode=WAL`` with ``synchronous=FULL`` fsyncs the write-ahead log at every
commit, so an append that returned survives a crash of the process or of the machine. Each batch
is one ``BEGIN IMMEDIATE`` transaction, which also serialises writers in other processes.
``append(..., sync=False)`` commits one batch at ``synchronous=NORMAL``: committed, atomic and
visible at once, and safe from the process dying, but on the disk only with the next synced
commit (fsyncing the write-ahead log takes every frame written before along), so a power cut may
lose it. Only a caller that can account for that loss may ask for it (the gatekeeper, for
observations: see :mod:`thirdway.gateway.restart`); a checkpoint is always a synced commit, so
no signed checkpoint covers an entry that is not on the disk.

Immutability: triggers abort every UPDATE and DELETE (``recursive_triggers`` is on so that
``INSERT OR REPLACE`` cannot delete behind their back). Someone who edits the file directly can
still change it; that is what ``thirdway log verify`` and the signed checkpoints are for.

Layout: ``entries(idx, data, leaf_hash)``; ``nodes(id, hash)`` holds interior perfect-subtree
hashes keyed by :func:`~thirdway.ledger.merkle.stored_index` (level 0 lives in
``entries.leaf_hash``), so new nodes are appended at the end of the B-tree and a proof's hashes
come back from one query; ``checkpoints(seq, size, note)``; ``meta(key, value)``.
"""

from __future__ import annotations

import contextlib
import functools
import sqlite3
import threading
from collections.abc import Generator, Iterator, Mapping, Sequence
from pathlib import Path

from thirdway.errors import LogError
from thirdway.ledger.merkle import NodeId, stored_index
from thirdway.ledger.store import NewEntry, StaleSizeError, StoredCheckpoint
from thirdway.ledger.wal import FALLBACK_PAGES, BackgroundCheckpointer

__all__ = ["APPEND_ONLY_MESSAGE", "SQLiteLogStore"]

APPEND_ONLY_MESSAGE = "thirdway log is append-only"
_TABLES = ("meta", "entries", "nodes", "checkpoints")
_SCHEMA = [
    "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID",
    "CREATE TABLE IF NOT EXISTS entries ("
    " idx INTEGER PRIMARY KEY, data BLOB NOT NULL, leaf_hash BLOB NOT NULL)",
    "CREATE TABLE IF NOT EXISTS nodes (id INTEGER PRIMARY KEY, hash BLOB NOT NULL)",
    "CREATE TABLE IF NOT EXISTS checkpoints ("
    " seq INTEGER PRIMARY KEY, size INTEGER NOT NULL, note TEXT NOT NULL)",
] + [
    f"CREATE TRIGGER IF NOT EXISTS {table}_no_{action.lower()} BEFORE {action} ON {table} "
    f"BEGIN SELECT RAISE(ABORT, '{APPEND_ONLY_MESSAGE}'); END"
    for table in _TABLES
    for action in ("UPDATE", "DELETE")
]
_INSERT_ENTRIES = "INSERT INTO entries (idx, data, leaf_hash)"
_INSERT_NODES = "INSERT INTO nodes (id, hash)"
#: Most rows per INSERT statement of a batch append. One multi-row ``VALUES`` statement costs
#: SQLite far less per row than ``executemany`` (one step and one reset per row): 32 rows take
#: about a third less CPU per row, and longer statements gain little more while their prepared
#: programs (kept in the statement cache) grow with them.
_ROWS_PER_INSERT = 32
#: Most leaf and most interior hashes one query reads (a proof of a tree of 2^20 entries needs
#: about 20 of each); more are read in several queries (SQLite allows 500 terms in a compound
#: query).
_LOOKUPS_PER_QUERY = 64
_FETCH_ROWS = 4096
#: SQLite's own page cache, per connection. The operating system's page cache already holds the
#: file, so this one only saves a ``pread`` per page: proofs took as long with 512 KiB as with
#: 16 MiB even at 10^6 entries (``thirdway bench log``), while 16 MiB filled up and stayed resident
#: as the tree grew. 512 KiB (128 pages) holds what one append or proof touches several times over.
_CACHE_KIB = 512


def _blob(value: object) -> bytes:
    """A column value as bytes. Only a tampered file holds anything but a blob; turning that into
    bytes (rather than failing) lets verification name the entry whose hash then mismatches."""
    if isinstance(value, bytes):
        return value
    return str(value).encode("utf-8", "surrogateescape")


class SQLiteLogStore:
    """One SQLite connection guarded by a lock; safe to share between threads."""

    def __init__(self, path: Path, connection: sqlite3.Connection) -> None:
        self._path = path
        self._conn: sqlite3.Connection | None = connection
        self._lock = threading.RLock()
        self._checkpointer: BackgroundCheckpointer | None = None

    @classmethod
    def open(
        cls, path: Path, *, create: bool, background_checkpoints: bool = False
    ) -> SQLiteLogStore:
        """Open the log database at ``path``; with ``create``, make it (and its schema) if needed.
        ``background_checkpoints`` moves WAL checkpoints off the append path, for a log that
        serves requests (:mod:`thirdway.ledger.wal`).

        Raises :class:`LogError` if there is no log there (and ``create`` is false), the file is not
        a SQLite database, or it is a database that is not a thirdway log.
        """
        path = Path(path)
        if path.is_dir():
            raise LogError(f"{path} is a directory, not a log database")
        exists = path.exists()
        if not exists and not create:
            raise LogError(f"no log at {path}")
        if not exists and not path.parent.is_dir():
            raise LogError(f"cannot create a log at {path}: directory {path.parent} does not exist")
        mode = "rw" if exists else "rwc"
        try:
            connection = sqlite3.connect(
                f"{path.resolve().as_uri()}?mode={mode}",
                uri=True,
                isolation_level=None,
                check_same_thread=False,
                timeout=10.0,
                cached_statements=256,
            )
        except sqlite3.Error as exc:
            raise LogError(f"cannot open log {path}: {exc}") from None
        store = cls(path, connection)
        try:
            store._configure(create=create)
            if background_checkpoints:
                connection.execute(f"PRAGMA wal_autocheckpoint={FALLBACK_PAGES}")
                store._checkpointer = BackgroundCheckpointer(path, writer_lock=store._lock)
        except sqlite3.Error as exc:
            connection.close()
            raise LogError(f"cannot open log {path}: {exc}") from None
        except BaseException:
            connection.close()
            raise
        return store

    def _configure(self, *, create: bool) -> None:
        with self._guard("open"):
            conn = self._connection()
            tables = {
                row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")
            }
            missing = [table for table in _TABLES if table not in tables]
            if missing and (tables or not create):
                raise LogError(f"{self._path} is not a thirdway log (no {missing[0]} table)")
            mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise LogError(f"cannot put log {self._path} in WAL mode (got {mode})")
            conn.execute("PRAGMA synchronous=FULL")
            conn.execute("PRAGMA recursive_triggers=ON")
            conn.execute(f"PRAGMA cache_size=-{_CACHE_KIB}")  # small on purpose, see _CACHE_KIB
            if missing:
                conn.execute("BEGIN IMMEDIATE")
                try:
                    for statement in _SCHEMA:
                        conn.execute(statement)
                    conn.execute("COMMIT")
                except BaseException:
                    self._rollback()
                    raise

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            raise LogError(f"log {self._path} is closed")
        return self._conn

    @contextlib.contextmanager
    def _guard(self, action: str) -> Iterator[None]:
        """Hold the lock and turn SQLite errors into one-line :class:`LogError` messages."""
        with self._lock:
            try:
                yield
            except sqlite3.IntegrityError as exc:
                raise LogError(f"cannot {action} in log {self._path}: {exc}") from None
            except sqlite3.OperationalError as exc:
                if "locked" in str(exc) or "busy" in str(exc):
                    raise LogError(
                        f"log {self._path} is locked by another writer; try again"
                    ) from None
                raise LogError(f"cannot {action} in log {self._path}: {exc}") from None
            except sqlite3.DatabaseError as exc:
                raise LogError(f"log {self._path} is unreadable ({exc})") from None
            except sqlite3.Error as exc:
                raise LogError(f"cannot {action} in log {self._path}: {exc}") from None

    def _rollback(self) -> None:
        conn = self._conn
        if conn is not None and conn.in_transaction:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")

    # --- metadata ---------------------------------------------------------------------------

    def initialize(self, metadata: Mapping[str, str]) -> None:
        with self._guard("initialise"):
            conn = self._connection()
            conn.execute("BEGIN IMMEDIATE")
            try:
                if conn.execute("SELECT 1 FROM meta LIMIT 1").fetchone() is None:
                    conn.executemany(
                        "INSERT INTO meta (key, value) VALUES (?, ?)", sorted(metadata.items())
                    )
                conn.execute("COMMIT")
            except BaseException:
                self._rollback()
                raise

    def metadata(self, key: str) -> str | None:
        with self._guard("read metadata"):
            row = self._connection().execute("SELECT value FROM meta WHERE key = ?", (key,))
            found = row.fetchone()
        return None if found is None else str(found[0])

    # --- entries and nodes ------------------------------------------------------------------

    def size(self) -> int:
        with self._guard("read the size"):
            return self._size()

    def _size(self) -> int:
        last = self._connection().execute("SELECT MAX(idx) FROM entries").fetchone()[0]
        return 0 if last is None else int(last) + 1

    def append(
        self,
        first_index: int,
        entries: Sequence[NewEntry],
        nodes: Sequence[tuple[NodeId, bytes]],
        *,
        sync: bool = True,
    ) -> None:
        with self._guard("append"):
            conn = self._connection()
            if not sync:
                conn.execute("PRAGMA synchronous=NORMAL")  # this commit only (module docstring)
            try:
                conn.execute("BEGIN IMMEDIATE")
                try:
                    actual = self._size()
                    if actual != first_index:
                        raise StaleSizeError(first_index, actual)
                    insert_batch(conn, first_index, entries, nodes)
                    conn.execute("COMMIT")
                except BaseException:
                    self._rollback()
                    raise
            finally:
                if not sync:
                    conn.execute("PRAGMA synchronous=FULL")
        if self._checkpointer is not None:
            self._checkpointer.committed(sum(len(entry.data) for entry in entries))

    def read_nodes(self, nodes: Sequence[NodeId]) -> list[bytes]:
        leaves = [index for level, index in nodes if level == 0]
        interior = [stored_index(node) for node in nodes if node[0] > 0]
        if not leaves and not interior:
            return []
        rows = []
        with self._guard("read nodes"):
            conn = self._connection()
            for start in range(0, max(len(leaves), len(interior)), _LOOKUPS_PER_QUERY):
                some_leaves = _padded(leaves[start : start + _LOOKUPS_PER_QUERY], power=True)
                some_nodes = _padded(interior[start : start + _LOOKUPS_PER_QUERY], power=False)
                query = _read_sql(len(some_leaves), len(some_nodes))
                rows += conn.execute(query, some_leaves + some_nodes).fetchall()
        found = {(kind, int(key)): _blob(value) for kind, key, value in rows}
        hashes = []
        for node in nodes:
            level, index = node
            key = (0, index) if level == 0 else (1, stored_index(node))
            digest = found.get(key)
            if digest is None:
                raise LogError(
                    f"log {self._path} is damaged: stored hash of node (level {level}, "
                    f"index {index}) is missing"
                )
            hashes.append(digest)
        return hashes

    def entry(self, index: int) -> bytes:
        with self._guard("read an entry"):
            row = self._connection().execute("SELECT data FROM entries WHERE idx = ?", (index,))
            found = row.fetchone()
        if found is None:
            raise LogError(f"log {self._path} has no entry {index}")
        return _blob(found[0])

    def read_range(self, start: int, stop: int) -> list[tuple[int, bytes]]:
        """The stored entries with ``start <= idx < stop``, in index order, in one query: how a
        gatekeeper reads its log back when it opens (one query per entry took about a third
        longer: 28 000 entries, 1.9 against 1.4 s here)."""
        if stop <= start:
            return []
        with self._guard("read entries"):
            rows = (
                self._connection()
                .execute("SELECT idx, data FROM entries WHERE idx >= ? AND idx < ? ORDER BY idx",
                         (start, stop))
                .fetchall()
            )  # fmt: skip
        return [(int(index), _blob(data)) for index, data in rows]

    @contextlib.contextmanager
    def snapshot(self) -> Iterator[None]:
        with self._guard("read"):
            conn = self._connection()
            conn.execute("BEGIN")
            try:
                yield
            finally:
                self._rollback()

    def iter_entries(self) -> Generator[tuple[int, bytes, bytes], None, None]:
        with self._guard("read entries"):
            cursor = self._connection().execute(
                "SELECT idx, data, leaf_hash FROM entries ORDER BY idx"
            )
            while rows := cursor.fetchmany(_FETCH_ROWS):
                for index, data, digest in rows:
                    yield int(index), _blob(data), _blob(digest)

    def iter_nodes(self) -> Generator[tuple[int, bytes], None, None]:
        with self._guard("read nodes"):
            cursor = self._connection().execute("SELECT id, hash FROM nodes ORDER BY id")
            while rows := cursor.fetchmany(_FETCH_ROWS):
                for key, digest in rows:
                    yield int(key), _blob(digest)

    # --- checkpoints ------------------------------------------------------------------------

    def add_checkpoint(self, size: int, note: str) -> None:
        with self._guard("store a checkpoint"):
            conn = self._connection()
            conn.execute("BEGIN IMMEDIATE")
            try:
                conn.execute("INSERT INTO checkpoints (size, note) VALUES (?, ?)", (size, note))
                conn.execute("COMMIT")
            except BaseException:
                self._rollback()
                raise

    def checkpoints(self) -> list[StoredCheckpoint]:
        with self._guard("read checkpoints"):
            rows = (
                self._connection()
                .execute("SELECT seq, size, note FROM checkpoints ORDER BY seq")
                .fetchall()
            )
        return [StoredCheckpoint(int(seq), int(size), str(note)) for seq, size, note in rows]

    def close(self) -> None:
        checkpointer, self._checkpointer = self._checkpointer, None
        if checkpointer is not None:
            checkpointer.close()
        with self._lock:
            if self._conn is not None:
                with contextlib.suppress(sqlite3.Error):
                    self._conn.close()
                self._conn = None


def insert_batch(
    conn: sqlite3.Connection,
    first_index: int,
    entries: Sequence[NewEntry],
    nodes: Sequence[tuple[NodeId, bytes]],
) -> None:
    """Insert a batch's entries from ``first_index`` and the interior nodes they complete (the
    caller's transaction; for the shared store too, :mod:`thirdway.ledger.sqlite_shared`)."""
    if entries:
        _insert(conn, _INSERT_ENTRIES, 3, _entry_values(first_index, entries))
    if nodes:
        _insert(conn, _INSERT_NODES, 2, _node_values(nodes))


def _insert(conn: sqlite3.Connection, head: str, width: int, values: list[object]) -> None:
    """Insert rows of ``width`` columns given as one flat list of ``values``:
    :data:`_ROWS_PER_INSERT` rows per statement, then the rest in power-of-two statements
    (so a table has only a handful of statement shapes, each prepared once and cached)."""
    start, total = 0, len(values)
    rows = _ROWS_PER_INSERT
    while start < total:
        while rows * width > total - start:
            rows >>= 1
        end = start + rows * width
        conn.execute(_insert_sql(head, width, rows), values[start:end])
        start = end


@functools.cache
def _insert_sql(head: str, width: int, rows: int) -> str:
    """``head VALUES (?, …), …`` for ``rows`` rows; the same text for the same shape, so the
    connection's statement cache keeps each shape prepared."""
    row = "(" + ", ".join("?" * width) + ")"
    return f"{head} VALUES {', '.join([row] * rows)}"


def _entry_values(first_index: int, entries: Sequence[NewEntry]) -> list[object]:
    """``idx, data, leaf_hash`` of each entry, flattened (filled by slice, without a Python step
    per value)."""
    values: list[object] = [None] * (3 * len(entries))
    values[0::3] = range(first_index, first_index + len(entries))
    values[1::3], values[2::3] = zip(*entries, strict=True)
    return values


def _node_values(nodes: Sequence[tuple[NodeId, bytes]]) -> list[object]:
    """``id, hash`` of each node, flattened, ``id`` being :func:`stored_index` (inlined: this runs
    for every node of every batch append)."""
    values: list[object] = []
    add = values.extend
    for (level, index), digest in nodes:
        last = ((index + 1) << level) - 1
        add((2 * last - last.bit_count() + level, digest))
    return values


def _padded(keys: list[int], *, power: bool) -> list[int]:
    """``keys`` with its last key repeated up to the next power of two (``power``) or multiple
    of 8 (a repeated lookup changes nothing), so that proofs of every shape use a few dozen
    distinct queries, each prepared once: otherwise nearly every proof had its own query text,
    and the statement cache kept up to 256 of them."""
    if not keys:
        return keys
    count = len(keys)
    target = 1 << (count - 1).bit_length() if power else -(-count // 8) * 8
    return keys + [keys[-1]] * (target - count)


@functools.cache
def _read_sql(leaves: int, interior: int) -> str:
    """The query reading ``leaves`` leaf hashes and then ``interior`` node hashes, one primary-key
    lookup each, joined by ``UNION ALL``. Not ``IN (…)`` lists: SQLite builds an in-memory index
    for each list, with a page cache whose first allocation is about 100 KiB, so every proof
    briefly took 200 KiB more than its answer needs (and the process kept it as its peak); the
    lookups are also faster."""
    return " UNION ALL ".join(
        ["SELECT 0, idx, leaf_hash FROM entries WHERE idx = ?"] * leaves
        + ["SELECT 1, id, hash FROM nodes WHERE id = ?"] * interior
    )
