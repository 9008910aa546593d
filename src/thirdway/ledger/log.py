"""``TransparencyLog``: an append-only RFC 6962 log with signed C2SP checkpoints.

The log turns entries into leaf hashes, keeps the right border of the tree in memory
(:class:`~thirdway.ledger.merkle.Frontier`) so that an append computes the interior nodes it
completes without reading anything, and hands entries plus nodes to its :class:`LogStore` in one
durable transaction. Proofs read O(log n) stored hashes. Checkpoints are signed with the log key
``<database>.key`` (created with the log, mode 0600); the public key is recorded in the log itself,
so verifying needs no secret.

:meth:`TransparencyLog.verify` trusts nothing that is stored: it rehashes every entry, rebuilds
every interior node, recomputes the root of every stored checkpoint, checks its signature, and
checks consistency between successive checkpoints, naming the first entry that is wrong.
"""

from __future__ import annotations

import base64
import contextlib
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING

from thirdway.errors import InputError, LogError, ProofError
from thirdway.ledger import merkle
from thirdway.ledger.note import NoteSigner, NoteVerifier
from thirdway.ledger.sqlite import SQLiteLogStore
from thirdway.ledger.store import (
    LogStore,
    NewEntry,
    SequencingLogStore,
    StaleSizeError,
    StoredCheckpoint,
)

if TYPE_CHECKING:
    # Imported where checkpoints are signed, opened or verified, and where a key is made: a
    # process that opens a log, appends and serves proofs (a gateway worker, the benchmark)
    # never needs them, and every module loaded costs resident memory.
    from thirdway.ledger.checkpoint import Checkpoint

__all__ = [
    "DEFAULT_ORIGIN_PREFIX",
    "FORMAT",
    "MAX_BATCH",
    "MAX_ENTRY_BYTES",
    "MAX_LOG_SIZE",
    "TransparencyLog",
    "VerifyReport",
    "key_path_for",
]

FORMAT = "thirdway-log/1"
DEFAULT_ORIGIN_PREFIX = "thirdway.local/log/"
#: One entry is one event (an observation, a proposal, a verdict…): 16 MiB is far above any.
MAX_ENTRY_BYTES = 16 * 1024 * 1024
#: Entries per ``append_batch`` call, so that one call cannot hold the write lock for long.
MAX_BATCH = 100_000
#: Node keys must fit SQLite's signed 64-bit integers; 2^62 entries is beyond any real log.
MAX_LOG_SIZE = 1 << 62
_APPEND_RETRIES = 5
_MAX_REPORTED_PROBLEMS = 20


def key_path_for(db_path: Path) -> Path:
    """Where the signing key of the log at ``db_path`` lives: ``<db_path>.key``."""
    return db_path.with_name(db_path.name + ".key")


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


def _count(number: int, singular: str, plural: str | None = None) -> str:
    return f"{number} {singular if number == 1 else plural or singular + 's'}"


@dataclass(frozen=True)
class VerifyReport:
    """The outcome of :meth:`TransparencyLog.verify`. ``ok`` means no problem was found."""

    size: int
    root: bytes
    entries_checked: int
    nodes_checked: int
    checkpoints_checked: int
    problems: tuple[str, ...] = ()
    first_bad_entry: int | None = None
    problems_truncated: bool = False

    @property
    def ok(self) -> bool:
        return not self.problems

    def summary(self) -> str:
        """One line: either what was verified, or the first problem."""
        if self.ok:
            return (
                f"verified {_count(self.entries_checked, 'entry', 'entries')}, "
                f"{_count(self.nodes_checked, 'interior node')} and "
                f"{_count(self.checkpoints_checked, 'checkpoint')}; root {_b64(self.root)}"
            )
        return self.problems[0]


@dataclass
class _Verification:
    """Mutable state of one :meth:`TransparencyLog.verify` run."""

    problems: list[str] = field(default_factory=list)
    truncated: bool = False
    first_bad_entry: int | None = None

    def problem(self, message: str, entry: int | None = None) -> None:
        if entry is not None and (self.first_bad_entry is None or entry < self.first_bad_entry):
            self.first_bad_entry = entry
        if len(self.problems) < _MAX_REPORTED_PROBLEMS:
            self.problems.append(message)
        else:
            self.truncated = True


class TransparencyLog:
    """An append-only Merkle log. Thread-safe; use as a context manager or call :meth:`close`."""

    def __init__(self, store: LogStore, *, origin: str, verifier: NoteVerifier, key_path: Path):
        self._store = store
        self._sequencer = store if isinstance(store, SequencingLogStore) else None
        self._origin = origin
        self._verifier = verifier
        self._key_path = key_path
        self._signer: NoteSigner | None = None
        self._lock = threading.RLock()
        # Loaded on first append, so that a damaged log still opens and verify can report on it.
        self._frontier: merkle.Frontier | None = None

    # --- opening ------------------------------------------------------------------------------

    @classmethod
    def open(
        cls,
        path: Path,
        *,
        create: bool = True,
        origin: str | None = None,
        background_checkpoints: bool = False,
        shared: bool = False,
    ) -> TransparencyLog:
        """Open the log at ``path``, creating it (and its key ``<path>.key``) if allowed.

        ``origin`` names the log in its checkpoints; a new log gets ``thirdway.local/log/<random>``
        by default. Opening an existing log with a different ``origin`` is an error.
        ``background_checkpoints``: for a log that serves requests (:mod:`thirdway.ledger.wal`).
        ``shared``: several processes append to it (:mod:`thirdway.ledger.sqlite_shared`).
        """
        path = Path(path)
        opener = SQLiteLogStore.open
        if shared:
            from thirdway.ledger.sqlite_shared import SharedSQLiteLogStore

            opener = SharedSQLiteLogStore.open
        store = opener(path, create=create, background_checkpoints=background_checkpoints)
        return cls.from_store(
            store, key_path=key_path_for(path), create=create, origin=origin, name=str(path)
        )

    @classmethod
    def from_store(
        cls,
        store: LogStore,
        *,
        key_path: Path,
        create: bool = True,
        origin: str | None = None,
        name: str | None = None,
    ) -> TransparencyLog:
        """A log over an open ``store`` (any backend), signing with the key at ``key_path``.

        Initialises an empty store (creating the key if allowed) like :meth:`open`; ``name`` is
        how errors refer to the log. Closes ``store`` if the log cannot be opened.
        """
        path = name if name is not None else "the log"
        key_path = Path(key_path)
        try:
            stored_origin = store.metadata("origin")
            if stored_origin is None:
                if not create:
                    raise LogError(f"{path} is not an initialised thirdway log")
                cls._initialize(store, key_path, origin)
                stored_origin = store.metadata("origin")
            if stored_origin is None:
                raise LogError(f"{path} has no origin")
            if origin is not None and origin != stored_origin:
                raise LogError(f"log {path} has origin {stored_origin!r}, not {origin!r}")
            verifier = cls._stored_verifier(store, path)
            return cls(store, origin=stored_origin, verifier=verifier, key_path=key_path)
        except BaseException:
            store.close()
            raise

    @staticmethod
    def _initialize(store: LogStore, key_path: Path, origin: str | None) -> None:
        import secrets

        from thirdway.ledger.keys import load_or_create_log_key

        name = origin if origin is not None else DEFAULT_ORIGIN_PREFIX + secrets.token_hex(8)
        try:
            signer = load_or_create_log_key(key_path, name)
        except InputError as exc:
            raise LogError(f"invalid log origin {name!r}: {exc}") from None
        store.initialize({"format": FORMAT, "origin": name, "vkey": signer.verifier().vkey()})

    @staticmethod
    def _stored_verifier(store: LogStore, path: Path | str) -> NoteVerifier:
        if store.metadata("format") != FORMAT:
            raise LogError(f"{path} is not a {FORMAT} log")
        vkey = store.metadata("vkey")
        if vkey is None:
            raise LogError(f"log {path} has no public key recorded")
        try:
            return NoteVerifier.from_vkey(vkey)
        except InputError as exc:
            raise LogError(f"log {path} has a malformed public key: {exc}") from None

    def __enter__(self) -> TransparencyLog:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Close the storage. Every append that returned is already committed, and durable
        unless it asked for ``sync=False`` (on SQLite the last connection to close checkpoints
        the WAL into the synced database file, so even those are on the disk afterwards)."""
        with self._lock:
            self._store.close()

    @property
    def origin(self) -> str:
        return self._origin

    def verifier(self) -> NoteVerifier:
        """The public key that signs this log's checkpoints."""
        return self._verifier

    # --- appending ----------------------------------------------------------------------------

    def append(self, data: bytes) -> int:
        """Append one entry; returns its index once it is durable."""
        return self.append_batch([data]).start

    def append_batch(self, items: Sequence[bytes], *, sync: bool = True) -> range:
        """Append entries in one durable transaction; returns their indices. ``sync=False``:
        committed without waiting for the disk, durable with the next synced commit (see
        :mod:`thirdway.ledger.sqlite`; a sequencing store always syncs)."""
        if isinstance(items, bytes | bytearray | str):
            raise InputError("append_batch takes a sequence of entries, not one entry")
        if len(items) > MAX_BATCH:
            raise InputError(f"a batch holds at most {MAX_BATCH} entries; got {len(items)}")
        entries = _new_entries(items)
        if self._sequencer is not None:
            # Several processes append: the store assigns indices under its own lock.
            return self._sequencer.append_sequenced(entries)
        with self._lock:
            if self._frontier is None:
                self._frontier = merkle.Frontier.load(self._store.size(), self._store)
            for _ in range(_APPEND_RETRIES):
                start = self._frontier.size
                if start + len(entries) > MAX_LOG_SIZE:
                    raise LogError(f"the log is full ({MAX_LOG_SIZE} entries)")
                frontier = self._frontier.copy()
                nodes = frontier.extend([leaf for _, leaf in entries])
                try:
                    self._store.append(start, entries, nodes, sync=sync)
                except StaleSizeError as exc:
                    # Another process appended since we last looked: catch up and redo the batch.
                    self._frontier = merkle.Frontier.load(exc.actual, self._store)
                    continue
                self._frontier = frontier
                return range(start, start + len(entries))
        raise LogError("the log kept growing under concurrent appends; try again")

    @property
    def sequenced(self) -> bool:
        """Whether the store gives the indices itself (several processes append: PostgreSQL)."""
        return self._sequencer is not None

    def append_built(self, build: Callable[[int], Sequence[bytes]], *, sync: bool = True) -> range:
        """Append what ``build(first)`` returns, ``first`` being the index its entries start at,
        in one durable transaction of a sequencing store: ``build`` runs while the store holds
        its sequencer lock, so no other process can take those indices (a token bound to its
        proposal's index stays right). Whatever ``build`` raises rolls back and propagates.
        A store that does not sequence (SQLite) has no such lock: :class:`LogError`."""
        builder = getattr(self._sequencer, "append_built", None)
        if builder is None:
            raise LogError("this log's store does not sequence appends; use append_batch")

        def entries(first: int) -> list[NewEntry]:
            items = build(first)
            if len(items) > MAX_BATCH:
                raise InputError(f"a batch holds at most {MAX_BATCH} entries; got {len(items)}")
            return _new_entries(items)

        written: range = builder(entries, sync=sync)
        return written

    def entries_containing(self, start: int, stop: int, needle: bytes) -> list[tuple[int, bytes]]:
        """:meth:`entries_between`, only those whose bytes contain ``needle`` (a store that can
        searches itself; otherwise they are read and filtered here). An empty ``needle``
        matches every entry."""
        search = getattr(self._store, "read_range_containing", None)
        if search is not None and needle:
            found: list[tuple[int, bytes]] = search(start, stop, needle)
            return found
        return [item for item in self.entries_between(start, stop) if needle in item[1]]

    def entries_between(self, start: int, stop: int) -> list[tuple[int, bytes]]:
        """The stored entries with ``start <= index < stop`` as ``(index, bytes)``, in order
        (one query where the store can; what a worker reads to follow the others)."""
        reader = getattr(self._store, "read_range", None)
        if reader is not None:
            found: list[tuple[int, bytes]] = reader(start, stop)
            return found
        stop = min(stop, self.size())
        return [(index, self._store.entry(index)) for index in range(max(start, 0), stop)]

    # --- reading ------------------------------------------------------------------------------

    def size(self) -> int:
        """How many entries the log holds (including any another process appended)."""
        return self._store.size()

    def _check_index(self, index: int, size: int) -> None:
        if isinstance(index, bool) or not isinstance(index, int):
            raise InputError("entry index must be an integer")
        if index < 0:
            raise LogError(f"entry index {index} is negative; entries are numbered from 0")
        if index >= size:
            if size == 0:
                raise LogError(f"index {index} is past the end: the log is empty")
            raise LogError(f"index {index} is past the end: the log has entries 0..{size - 1}")

    def _resolve_size(self, size: int | None, current: int) -> int:
        if size is None:
            return current
        if isinstance(size, bool) or not isinstance(size, int):
            raise InputError("tree size must be an integer")
        if not 0 <= size <= current:
            raise LogError(f"tree size {size} is out of range: the log has {current} entries")
        return size

    def entry(self, index: int) -> bytes:
        """The bytes of entry ``index``. One read of the store: its size is read only to say
        why an index has no entry (a gatekeeper reads its proposal back at every execution)."""
        if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < MAX_LOG_SIZE:
            self._check_index(index, self.size())  # raises, naming what is wrong
        try:
            return self._store.entry(index)
        except LogError:
            self._check_index(index, self.size())  # past the end: say so
            raise

    def leaf_hash_at(self, index: int) -> bytes:
        """The stored leaf hash of entry ``index``."""
        self._check_index(index, self.size())
        return self._store.read_nodes([(0, index)])[0]

    def root(self, size: int | None = None) -> bytes:
        """The root hash of the tree of the first ``size`` entries (default: all of them)."""
        with self._lock:
            size = self._resolve_size(size, self.size())
            if self._frontier is not None and size == self._frontier.size:
                return self._frontier.root()
            return merkle.tree_hash(0, size, self._store)

    def inclusion_proof(self, index: int, size: int | None = None) -> list[bytes]:
        """The proof that entry ``index`` is in the tree of ``size`` entries (default: all)."""
        current = self.size()
        size = self._resolve_size(size, current)
        self._check_index(index, size)
        return merkle.inclusion_proof(index, size, self._store)

    def consistency_proof(self, size1: int, size2: int | None = None) -> list[bytes]:
        """The proof that the tree of ``size1`` entries is a prefix of the tree of ``size2``."""
        current = self.size()
        size2 = self._resolve_size(size2, current)
        size1 = self._resolve_size(size1, current)
        if size1 > size2:
            raise LogError(f"size1 {size1} is greater than size2 {size2}")
        if size1 == 0:
            raise LogError("a consistency proof from the empty tree proves nothing; use size1 >= 1")
        return merkle.consistency_proof(size1, size2, self._store)

    # --- checkpoints --------------------------------------------------------------------------

    def _load_signer(self) -> NoteSigner:
        if self._signer is None:
            if not self._key_path.exists():
                raise LogError(
                    f"log key {self._key_path} is missing; checkpoints cannot be signed "
                    "(a new key would fork the log's identity)"
                )
            from thirdway.ledger.keys import load_or_create_log_key

            signer = load_or_create_log_key(self._key_path, self._origin)
            if signer.verifier() != self._verifier:
                raise LogError(f"log key {self._key_path} is not the key this log was created with")
            self._signer = signer
        return self._signer

    def checkpoint(self) -> str:
        """Sign the current size and root as a C2SP checkpoint, store it, and return the note."""
        with self._lock:
            signer = self._load_signer()
            size = self.size()
            from thirdway.ledger.checkpoint import Checkpoint, sign_checkpoint

            checkpoint = Checkpoint(self._origin, size, self.root(size))
            note = sign_checkpoint(checkpoint, signer)
            self._store.add_checkpoint(size, note)
            return note

    def checkpoints(self) -> list[str]:
        """Every stored signed checkpoint note, oldest first."""
        return [stored.note for stored in self._store.checkpoints()]

    def _trusted(self, trusted_key: NoteVerifier | None) -> NoteVerifier:
        """The key checkpoints must be signed by: ``trusted_key`` (published out of band) if given,
        else the key recorded in the log, which whoever can edit the database could replace."""
        if trusted_key is None:
            return self._verifier
        if trusted_key.name != self._origin:
            raise ProofError(f"the given key is for {trusted_key.name!r}, not {self._origin!r}")
        return trusted_key

    def open_checkpoint(
        self, note: str | bytes, *, trusted_key: NoteVerifier | None = None
    ) -> Checkpoint:
        """Verify a checkpoint note (signature, origin) and that this log's entries produce it."""
        from thirdway.ledger.checkpoint import open_checkpoint

        checkpoint = open_checkpoint(note, self._trusted(trusted_key), origin=self._origin)
        size = self.size()
        if checkpoint.size > size:
            raise ProofError(
                f"checkpoint claims size {checkpoint.size} but the log has only {size} entries"
            )
        actual = self.root(checkpoint.size)
        if actual != checkpoint.root_hash:
            raise ProofError(
                f"checkpoint root at size {checkpoint.size} is {_b64(checkpoint.root_hash)}, "
                f"but the log's entries give {_b64(actual)}: the log has been rewritten"
            )
        return checkpoint

    # --- verification -------------------------------------------------------------------------

    def verify(self, *, trusted_key: NoteVerifier | None = None) -> VerifyReport:
        """Recompute everything from the stored entries and report the first problems found.

        Checkpoints are checked against ``trusted_key`` if given (the log's published key); a log
        that records a different key then fails.
        """
        state = _Verification()
        verifier = self._trusted(trusted_key)
        if verifier != self._verifier:
            state.problem(
                f"the log records key {self._verifier.vkey()}, not the trusted {verifier.vkey()}"
            )
        with self._lock, self._store.snapshot():
            stored_checkpoints = self._store.checkpoints()
            wanted_sizes = {stored.size for stored in stored_checkpoints}
            frontier, roots, nodes_checked = self._rebuild(state, wanted_sizes)
            checked = self._verify_checkpoints(
                state, verifier, stored_checkpoints, roots, frontier.size
            )
        return VerifyReport(
            size=frontier.size,
            root=frontier.root(),
            entries_checked=frontier.size,
            nodes_checked=nodes_checked,
            checkpoints_checked=checked,
            problems=tuple(state.problems),
            first_bad_entry=state.first_bad_entry,
            problems_truncated=state.truncated,
        )

    def _rebuild(
        self, state: _Verification, wanted_sizes: set[int]
    ) -> tuple[merkle.Frontier, dict[int, bytes], int]:
        """Rehash every entry and rebuild every interior node, comparing with what is stored."""
        frontier = merkle.Frontier()
        roots = {0: merkle.EMPTY_ROOT}
        nodes_checked = 0
        with (
            contextlib.closing(self._store.iter_nodes()) as node_rows,
            contextlib.closing(self._store.iter_entries()) as entry_rows,
        ):
            stored_nodes = _NodeStream(node_rows)
            for index, data, stored_leaf in entry_rows:
                if index != frontier.size:
                    state.problem(f"entry {frontier.size} is missing from the log", frontier.size)
                    break
                leaf = merkle.leaf_hash(data)
                if leaf != stored_leaf:
                    state.problem(
                        f"entry {index} does not match its stored leaf hash "
                        "(its data or its hash was changed)",
                        index,
                    )
                for node, digest in frontier.append(leaf):
                    nodes_checked += 1
                    stored = stored_nodes.take(merkle.stored_index(node))
                    if stored != digest:
                        self._node_problem(state, node, missing=stored is None)
                if frontier.size in wanted_sizes:
                    roots[frontier.size] = frontier.root()
            extra = stored_nodes.remaining()
        if extra:
            state.problem(f"the log stores {extra} subtree hashes that no entries produce")
        return frontier, roots, nodes_checked

    @staticmethod
    def _node_problem(state: _Verification, node: merkle.NodeId, *, missing: bool) -> None:
        first, end = merkle.node_coverage(node)
        bad = state.first_bad_entry
        if bad is not None and first <= bad < end:
            return  # a consequence of the bad entry already reported
        what = "is missing" if missing else "does not match the entries"
        state.problem(f"stored hash of the subtree over entries {first}..{end - 1} {what}")

    def _verify_checkpoints(
        self,
        state: _Verification,
        verifier: NoteVerifier,
        stored: list[StoredCheckpoint],
        roots: dict[int, bytes],
        size: int,
    ) -> int:
        """Check every checkpoint's signature, root, and consistency with the one before."""
        from thirdway.ledger.checkpoint import open_checkpoint

        previous: Checkpoint | None = None
        for item in stored:
            where = f"checkpoint #{item.seq}"
            try:
                checkpoint = open_checkpoint(item.note, verifier, origin=self._origin)
            except ProofError as exc:
                state.problem(f"{where} does not verify: {exc}")
                continue
            if checkpoint.size != item.size:
                state.problem(f"{where} is stored as size {item.size} but signs {checkpoint.size}")
            if checkpoint.size > size:
                state.problem(
                    f"{where} signs size {checkpoint.size} but the log has only {size} entries "
                    "(entries were removed)",
                    size,
                )
                continue
            root = roots.get(checkpoint.size)
            if root is None or root != checkpoint.root_hash:
                state.problem(
                    f"{where} (size {checkpoint.size}) signs a root that entries "
                    f"0..{checkpoint.size - 1} do not produce: the log was rewritten"
                )
                continue
            if previous is not None:
                self._check_successive(state, where, previous, checkpoint)
            previous = checkpoint
        return len(stored)

    def _check_successive(
        self, state: _Verification, where: str, before: Checkpoint, after: Checkpoint
    ) -> None:
        if after.size < before.size:
            state.problem(f"{where} has size {after.size}, smaller than the checkpoint before it")
            return
        if before.size == 0 or before.size == after.size:
            return
        try:
            proof = merkle.consistency_proof(before.size, after.size, self._store)
            merkle.verify_consistency(
                before.size, after.size, proof, before.root_hash, after.root_hash
            )
        except (ProofError, LogError) as exc:
            state.problem(f"{where} is not consistent with the checkpoint before it: {exc}")


class _NodeStream:
    """Stored interior nodes in key order, matched against the keys a rebuild produces (also in
    increasing order); stored keys that the rebuild skips are counted as unexpected."""

    def __init__(self, rows: Iterator[tuple[int, bytes]]) -> None:
        self._rows = rows
        self._pending = next(rows, None)
        self._unexpected = 0

    def take(self, key: int) -> bytes | None:
        """The stored hash under ``key``, or ``None`` if there is none."""
        while self._pending is not None and self._pending[0] < key:
            self._unexpected += 1
            self._pending = next(self._rows, None)
        if self._pending is None or self._pending[0] != key:
            return None
        digest = self._pending[1]
        self._pending = next(self._rows, None)
        return digest

    def remaining(self) -> int:
        """Unexpected stored nodes: skipped ones plus any left after the last entry."""
        left = 0 if self._pending is None else 1 + sum(1 for _ in self._rows)
        return self._unexpected + left


def _new_entries(items: Sequence[object]) -> list[NewEntry]:
    """The entries of a batch with their leaf hashes; :class:`InputError` names the first item
    that is not bytes or is too large. Plain ``bytes`` of an allowed size (nearly every item)
    are taken as they are, without a call per item."""
    payloads = list(items)
    for number, item in enumerate(payloads):
        if type(item) is not bytes or len(item) > MAX_ENTRY_BYTES:
            payloads[number] = _entry_bytes(item, number)
    data: list[bytes] = payloads  # type: ignore[assignment]  # every item checked just above
    return list(map(NewEntry, data, merkle.leaf_hashes(data)))


def _entry_bytes(item: object, number: int) -> bytes:
    if isinstance(item, bytearray | memoryview):
        item = bytes(item)
    if not isinstance(item, bytes):
        raise InputError(f"entry #{number} must be bytes, not {type(item).__name__}")
    if len(item) > MAX_ENTRY_BYTES:
        raise InputError(
            f"entry #{number} is {len(item)} bytes; the limit is {MAX_ENTRY_BYTES} bytes"
        )
    return item
