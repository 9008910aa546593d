"""The PostgreSQL :class:`~thirdway.ledger.store.LogStore`, shared by several gateway workers.

Sequencer. Several processes append to one log, so indices cannot come from any one process's
memory. :meth:`PostgresLogStore.append_sequenced` does what Trillian's and Tessera's sequencers
do: in one transaction it locks the single ``log_state`` row (``SELECT … FOR UPDATE``), reads
the size, loads the right border of the tree (the O(log n) perfect-subtree hashes that
:class:`~thirdway.ledger.merkle.Frontier` needs), gives the batch the next indices, inserts the
entries and the interior nodes they complete, moves the size on and commits. Writers queue on the
row lock, so the indices have no gaps and no duplicates and every interior node is computed from
the nodes committed before it; a writer that crashes mid-batch rolls back and leaves nothing.
Each process keeps the border it last committed and reuses it when nobody appended in between.

Immutability: PL/pgSQL triggers refuse UPDATE, DELETE and TRUNCATE on the log's tables; the
``log_state`` row may only grow. Checkpoints are stored under a table lock that refuses a size
smaller than the last stored one, so successive checkpoints stay consistent even if two workers
briefly both believe they lead.

The schema comes from the Alembic migrations (:mod:`thirdway.migrations`); opening an empty
database with ``create=True`` runs them.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Generator, Iterator, Mapping, Sequence
from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    Connection,
    Engine,
    LargeBinary,
    MetaData,
    SmallInteger,
    Table,
    Text,
    create_engine,
    inspect,
    select,
    text,
)
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, SQLAlchemyError

from thirdway.errors import InputError, LogError
from thirdway.ledger.merkle import Frontier, NodeId, stored_index
from thirdway.ledger.store import NewEntry, StaleSizeError, StoredCheckpoint

__all__ = [
    "APPEND_ONLY_MESSAGE",
    "PostgresLogStore",
    "create_pg_engine",
    "redact_url",
]

APPEND_ONLY_MESSAGE = "thirdway log is append-only"
_FETCH_ROWS = 4096
_LOG_TABLES = ("meta", "entries", "nodes", "checkpoints", "log_state")

# The hot statements, as driver SQL (no SQLAlchemy compilation per call; psycopg prepares them
# server-side after a few executions).
_SIZE = "SELECT size FROM log_state"
_LOCK_SIZE = "SELECT size FROM log_state FOR UPDATE"
_INSERT_BATCH = """\
WITH new_entries AS (
    INSERT INTO entries (idx, data, leaf_hash)
    SELECT %(first)s::bigint + number - 1, data, leaf_hash
    FROM unnest(%(data)s::bytea[], %(leaves)s::bytea[])
        WITH ORDINALITY AS t(data, leaf_hash, number)
), new_nodes AS (
    INSERT INTO nodes (id, hash)
    SELECT id, hash FROM unnest(%(ids)s::bigint[], %(hashes)s::bytea[]) AS t(id, hash)
)
UPDATE log_state SET size = %(size)s"""
_READ_NODES = """\
SELECT 0, idx, leaf_hash FROM entries WHERE idx = ANY(%(leaves)s::bigint[])
UNION ALL
SELECT 1, id, hash FROM nodes WHERE id = ANY(%(interior)s::bigint[])"""
_READ_RANGE = "SELECT idx, data FROM entries WHERE idx >= %(start)s AND idx < %(stop)s ORDER BY idx"

_metadata = MetaData()
meta_table = Table("meta", _metadata, Column("key", Text, primary_key=True), Column("value", Text))
entries_table = Table(
    "entries",
    _metadata,
    Column("idx", BigInteger, primary_key=True),
    Column("data", LargeBinary),
    Column("leaf_hash", LargeBinary),
)
nodes_table = Table(
    "nodes", _metadata, Column("id", BigInteger, primary_key=True), Column("hash", LargeBinary)
)
checkpoints_table = Table(
    "checkpoints",
    _metadata,
    Column("seq", BigInteger, primary_key=True),
    Column("size", BigInteger),
    Column("note", Text),
)
log_state_table = Table(
    "log_state",
    _metadata,
    Column("id", SmallInteger, primary_key=True),
    Column("size", BigInteger),
)


def redact_url(url: str) -> str:
    """``url`` with any password masked, for error messages."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return "<unparseable database URL>"


def create_pg_engine(url: str, **options: Any) -> Engine:
    """An engine on the psycopg 3 driver for a ``postgresql://`` (or ``+psycopg``) URL."""
    from thirdway.migrations import database_url

    normalized = database_url(url)
    if not normalized.startswith("postgresql+psycopg://"):
        raise InputError(f"{redact_url(url)} is not a postgresql:// URL")
    try:
        return create_engine(normalized, pool_pre_ping=True, **options)
    except (ArgumentError, SQLAlchemyError) as exc:
        raise InputError(f"invalid PostgreSQL URL {redact_url(url)}: {_first_line(exc)}") from None


def _first_line(exc: BaseException) -> str:
    """The driver's own message, first line only (SQLAlchemy appends SQL and a help link)."""
    original = getattr(exc, "orig", None)
    message = str(original if original is not None else exc).strip()
    return message.splitlines()[0] if message else type(exc).__name__


class _ConnectionReader:
    """Reads stored hashes through one connection (inside the sequencer's transaction)."""

    def __init__(self, store: PostgresLogStore, connection: Connection) -> None:
        self._store = store
        self._connection = connection

    def read_nodes(self, nodes: Sequence[NodeId]) -> list[bytes]:
        return self._store._read_nodes(self._connection, nodes)


class PostgresLogStore:
    """One log in one PostgreSQL database, through a SQLAlchemy connection pool.

    Safe to share between threads and between processes (each process opens its own store)."""

    def __init__(self, engine: Engine, url: str) -> None:
        self._engine: Engine | None = engine
        self._url = redact_url(url)
        self._frontier_lock = threading.Lock()
        self._frontier: Frontier | None = None
        self._local = threading.local()

    @classmethod
    def open(cls, url: str, *, create: bool, pool_size: int = 5) -> PostgresLogStore:
        """Open the log in the database at ``url``; with ``create``, run the migrations if the
        database has no log schema yet.

        Raises :class:`LogError` if the database cannot be reached or holds something else.
        """
        engine = create_pg_engine(url, pool_size=pool_size, max_overflow=pool_size)
        store = cls(engine, url)
        try:
            store._check_schema(url, create=create)
        except BaseException:
            engine.dispose()
            raise
        return store

    def _check_schema(self, url: str, *, create: bool) -> None:
        with self._guard("open"), self._connect() as connection:
            tables = set(inspect(connection).get_table_names())
        missing = [table for table in _LOG_TABLES if table not in tables]
        if not missing:
            return
        if tables - {"alembic_version"} or not create:
            raise LogError(
                f"{self._url} is not a thirdway log (no {missing[0]} table); "
                "run `thirdway db upgrade --url URL` first"
            )
        from thirdway.migrations import upgrade

        try:
            upgrade(url)
        except SQLAlchemyError as exc:
            raise LogError(
                f"cannot create the log schema in {self._url}: {_first_line(exc)}"
            ) from None

    # --- plumbing -----------------------------------------------------------------------------

    def _engine_or_fail(self) -> Engine:
        if self._engine is None:
            raise LogError(f"log {self._url} is closed")
        return self._engine

    def _connect(self) -> Connection:
        return self._engine_or_fail().connect()

    @contextlib.contextmanager
    def _guard(self, action: str) -> Iterator[None]:
        """Turn database errors into one-line :class:`LogError` messages."""
        try:
            yield
        except DBAPIError as exc:
            message = _first_line(exc)
            if APPEND_ONLY_MESSAGE in message:
                raise LogError(f"cannot {action} in log {self._url}: {message}") from None
            if exc.connection_invalidated or "connection" in message.lower():
                raise LogError(f"cannot reach log database {self._url}: {message}") from None
            raise LogError(f"cannot {action} in log {self._url}: {message}") from None
        except SQLAlchemyError as exc:
            raise LogError(f"cannot {action} in log {self._url}: {_first_line(exc)}") from None

    @contextlib.contextmanager
    def _reading(self, *, single: bool = True) -> Iterator[Connection]:
        """The snapshot's connection inside :meth:`snapshot` on this thread, else a fresh one.

        A ``single`` statement outside a snapshot runs in autocommit: the statement is its own
        snapshot as before, without the BEGIN and ROLLBACK round trips around it."""
        held: Connection | None = getattr(self._local, "snapshot", None)
        if held is not None:
            yield held
            return
        with self._connect() as connection:
            if single:
                connection = connection.execution_options(isolation_level="AUTOCOMMIT")
            yield connection

    # --- metadata -----------------------------------------------------------------------------

    def initialize(self, metadata: Mapping[str, str]) -> None:
        with self._guard("initialise"), self._engine_or_fail().begin() as connection:
            # The state row lock makes concurrent initialisers queue; the first one writes.
            connection.execute(select(log_state_table.c.size).with_for_update())
            if connection.execute(select(meta_table.c.key).limit(1)).first() is None:
                connection.execute(
                    meta_table.insert(),
                    [{"key": key, "value": value} for key, value in sorted(metadata.items())],
                )

    def metadata(self, key: str) -> str | None:
        with self._guard("read metadata"), self._reading() as connection:
            value = connection.execute(
                select(meta_table.c.value).where(meta_table.c.key == key)
            ).scalar()
        return None if value is None else str(value)

    # --- entries and nodes --------------------------------------------------------------------

    def size(self) -> int:
        with self._guard("read the size"), self._reading() as connection:
            return int(connection.exec_driver_sql(_SIZE).scalar_one())

    def _lock_size(self, connection: Connection) -> int:
        """Lock the state row for this transaction and return the size it records."""
        return int(connection.exec_driver_sql(_LOCK_SIZE).scalar_one())

    def _insert(
        self,
        connection: Connection,
        first_index: int,
        entries: Sequence[NewEntry],
        nodes: Sequence[tuple[NodeId, bytes]],
    ) -> None:
        """Entries, interior nodes and the new size in one statement (one round trip, one
        query shape for every batch: the rows travel as arrays)."""
        connection.exec_driver_sql(
            _INSERT_BATCH,
            {
                "first": first_index,
                "data": [entry.data for entry in entries],
                "leaves": [entry.leaf_hash for entry in entries],
                "ids": [stored_index(node) for node, _ in nodes],
                "hashes": [digest for _, digest in nodes],
                "size": first_index + len(entries),
            },
        )

    def append(
        self,
        first_index: int,
        entries: Sequence[NewEntry],
        nodes: Sequence[tuple[NodeId, bytes]],
        *,
        sync: bool = True,
    ) -> None:
        """Store a batch prepared by the caller for ``first_index`` (the :class:`LogStore`
        contract); prefer :meth:`append_sequenced`, which cannot go stale. Every commit is
        as durable as the server's ``synchronous_commit`` makes it (``sync`` is not used)."""
        if not entries:
            return
        with self._guard("append"), self._engine_or_fail().begin() as connection:
            actual = self._lock_size(connection)
            if actual != first_index:
                raise StaleSizeError(first_index, actual)
            self._insert(connection, first_index, entries, nodes)

    def append_sequenced(self, entries: Sequence[NewEntry]) -> range:
        """Give ``entries`` the next indices and store them with the interior nodes they
        complete, in one transaction under the state row lock; returns their indices."""
        return self.append_built(lambda _start: entries)

    def append_built(
        self, build: Callable[[int], Sequence[NewEntry]], *, sync: bool = True
    ) -> range:
        """Like :meth:`append_sequenced`, but the entries are made by ``build(first_index)``
        while the state row is locked, so they may refer to their own indices (a capability
        token bound to its proposal's index) with no other worker able to take those indices.
        Anything ``build`` raises rolls the transaction back and propagates. Every commit is
        as durable as the server's ``synchronous_commit`` (``sync`` is not used)."""
        with self._guard("append"), self._engine_or_fail().begin() as connection:
            start = self._lock_size(connection)
            entries = build(start)
            if not entries:
                return range(start, start)
            frontier = self._frontier_at(start, connection)
            nodes = [node for entry in entries for node in frontier.append(entry.leaf_hash)]
            self._insert(connection, start, entries, nodes)
        with self._frontier_lock:
            if self._frontier is None or self._frontier.size < frontier.size:
                self._frontier = frontier
        return range(start, start + len(entries))

    def _frontier_at(self, size: int, connection: Connection) -> Frontier:
        """A private copy of the tree's right border at ``size``: this process's cached one if
        nobody appended since, else read in the current transaction."""
        with self._frontier_lock:
            cached = self._frontier
            if cached is not None and cached.size == size:
                return cached.copy()
        return Frontier.load(size, _ConnectionReader(self, connection))

    def read_nodes(self, nodes: Sequence[NodeId]) -> list[bytes]:
        with self._guard("read nodes"), self._reading() as connection:
            return self._read_nodes(connection, nodes)

    def _read_nodes(self, connection: Connection, nodes: Sequence[NodeId]) -> list[bytes]:
        """Leaf and interior hashes in one query (arrays: one query shape for any count)."""
        leaves = [index for level, index in nodes if level == 0]
        interior = [stored_index(node) for node in nodes if node[0] > 0]
        rows = connection.exec_driver_sql(_READ_NODES, {"leaves": leaves, "interior": interior})
        found = {(int(level), int(key)): bytes(value) for level, key, value in rows}
        hashes = []
        for node in nodes:
            level, index = node
            digest = found.get((0, index) if level == 0 else (1, stored_index(node)))
            if digest is None:
                raise LogError(
                    f"log {self._url} is damaged: stored hash of node (level {level}, "
                    f"index {index}) is missing"
                )
            hashes.append(digest)
        return hashes

    def entry(self, index: int) -> bytes:
        with self._guard("read an entry"), self._reading() as connection:
            data = connection.execute(
                select(entries_table.c.data).where(entries_table.c.idx == index)
            ).scalar()
        if data is None:
            raise LogError(f"log {self._url} has no entry {index}")
        return bytes(data)

    def read_range(self, start: int, stop: int) -> list[tuple[int, bytes]]:
        """The committed entries with ``start <= idx < stop``, in index order, in one query (how
        a gateway worker reads what the others appended since it last looked)."""
        if stop <= start:
            return []
        with self._guard("read entries"), self._reading() as connection:
            rows = connection.exec_driver_sql(_READ_RANGE, {"start": start, "stop": stop})
            return [(index, bytes(data)) for index, data in rows]

    @contextlib.contextmanager
    def snapshot(self) -> Iterator[None]:
        """One REPEATABLE READ transaction on this thread: every read inside sees the same log,
        however many workers append meanwhile."""
        if getattr(self._local, "snapshot", None) is not None:
            yield
            return
        with self._guard("read"), self._connect() as connection:
            connection = connection.execution_options(isolation_level="REPEATABLE READ")
            with connection.begin():
                self._local.snapshot = connection
                try:
                    yield
                finally:
                    self._local.snapshot = None

    def iter_entries(self) -> Generator[tuple[int, bytes, bytes], None, None]:
        query = select(entries_table.c.idx, entries_table.c.data, entries_table.c.leaf_hash)
        for index, data, digest in self._stream(query.order_by(entries_table.c.idx), "entries"):
            yield int(index), bytes(data), bytes(digest)

    def iter_nodes(self) -> Generator[tuple[int, bytes], None, None]:
        query = select(nodes_table.c.id, nodes_table.c.hash).order_by(nodes_table.c.id)
        for key, digest in self._stream(query, "nodes"):
            yield int(key), bytes(digest)

    def _stream(self, query: Any, what: str) -> Generator[tuple[Any, ...], None, None]:
        """Rows of ``query`` through a server-side cursor, a few thousand at a time."""
        with self._guard(f"read {what}"), self._reading(single=False) as connection:
            result = connection.execution_options(yield_per=_FETCH_ROWS).execute(query)
            for row in result:
                yield tuple(row)

    # --- checkpoints --------------------------------------------------------------------------

    def add_checkpoint(self, size: int, note: str) -> None:
        """Store a checkpoint; refuses one for a smaller size than the newest stored one, so
        that a deposed leader's late checkpoint cannot follow its successor's."""
        with self._guard("store a checkpoint"), self._engine_or_fail().begin() as connection:
            connection.execute(text("LOCK TABLE checkpoints IN EXCLUSIVE MODE"))
            last = connection.execute(
                select(checkpoints_table.c.seq, checkpoints_table.c.size)
                .order_by(checkpoints_table.c.seq.desc())
                .limit(1)
            ).first()
            if last is not None and size < int(last.size):
                raise LogError(
                    f"checkpoint for size {size} refused: checkpoint #{last.seq} already signs "
                    f"size {last.size}"
                )
            seq = 1 if last is None else int(last.seq) + 1
            connection.execute(checkpoints_table.insert().values(seq=seq, size=size, note=note))

    def checkpoints(self) -> list[StoredCheckpoint]:
        with self._guard("read checkpoints"), self._reading() as connection:
            rows = connection.execute(
                select(
                    checkpoints_table.c.seq, checkpoints_table.c.size, checkpoints_table.c.note
                ).order_by(checkpoints_table.c.seq)
            ).all()
        return [StoredCheckpoint(int(seq), int(size), str(note)) for seq, size, note in rows]

    def close(self) -> None:
        engine, self._engine = self._engine, None
        if engine is not None:
            engine.dispose()
