"""The storage interface behind :class:`~thirdway.ledger.log.TransparencyLog`.

A store keeps four things and never changes or removes any of them: entries (index, bytes, leaf
hash), the hashes of completed perfect subtrees (see :mod:`thirdway.ledger.merkle`), signed
checkpoints, and a little metadata (the log's origin and public key). All Merkle logic lives in the
log; a store only has to make a batch of new rows durable atomically and refuse a batch that does
not start at its current size. That is all a PostgreSQL (or any other) backend has to implement.
"""

from __future__ import annotations

from collections.abc import Generator, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import NamedTuple, Protocol, runtime_checkable

from thirdway.errors import LogError
from thirdway.ledger.merkle import NodeId

__all__ = ["LogStore", "NewEntry", "SequencingLogStore", "StaleSizeError", "StoredCheckpoint"]


class StaleSizeError(LogError):
    """An append was prepared for a size the log no longer has (another writer got there first)."""

    def __init__(self, expected: int, actual: int) -> None:
        super().__init__(f"log size changed during append: expected {expected}, found {actual}")
        self.expected = expected
        self.actual = actual


class NewEntry(NamedTuple):
    """An entry about to be stored: its bytes and ``SHA-256(0x00 || data)``.

    A named tuple rather than a frozen dataclass: a batch append makes one per entry, and a tuple
    is made (and unpacked by the store) in a fraction of the time.
    """

    data: bytes
    leaf_hash: bytes


@dataclass(frozen=True)
class StoredCheckpoint:
    """A signed checkpoint as stored: its sequence number, the size it claims, the signed note."""

    seq: int
    size: int
    note: str


class LogStore(Protocol):
    """Durable, append-only storage for one log. Implementations must be safe to share between
    threads and must turn their own errors into :class:`~thirdway.errors.LogError`."""

    def initialize(self, metadata: Mapping[str, str]) -> None:
        """Write the metadata of a new log, unless another writer already did (then keep theirs)."""
        ...

    def metadata(self, key: str) -> str | None:
        """A metadata value written when the log was created, or ``None``."""
        ...

    def size(self) -> int:
        """How many entries are stored."""
        ...

    def append(
        self,
        first_index: int,
        entries: Sequence[NewEntry],
        nodes: Sequence[tuple[NodeId, bytes]],
        *,
        sync: bool = True,
    ) -> None:
        """Store ``entries`` at ``first_index, first_index + 1, …`` and the interior ``nodes``
        (level >= 1) they complete, in one transaction that is durable when this returns.
        ``sync=False`` allows the store to commit without waiting for the disk, the batch
        reaching it with the next synced commit (a store may sync anyway).

        Raises :class:`StaleSizeError` (storing nothing) if the store's size is not
        ``first_index``.
        """
        ...

    def read_nodes(self, nodes: Sequence[NodeId]) -> list[bytes]:
        """The stored hashes of ``nodes`` (level 0 = leaf hashes), in the order asked."""
        ...

    def entry(self, index: int) -> bytes:
        """The bytes of entry ``index``."""
        ...

    def snapshot(self) -> AbstractContextManager[None]:
        """Hold one consistent read view (and this store's lock) while the caller iterates."""
        ...

    def iter_entries(self) -> Generator[tuple[int, bytes, bytes], None, None]:
        """Every ``(index, data, stored leaf hash)`` in index order (for full verification; use
        inside :meth:`snapshot`)."""
        ...

    def iter_nodes(self) -> Generator[tuple[int, bytes], None, None]:
        """Every stored interior node as ``(merkle.stored_index(node), hash)`` in key order, which
        is the order an append-only log creates them (use inside :meth:`snapshot`)."""
        ...

    def add_checkpoint(self, size: int, note: str) -> None:
        """Store a signed checkpoint note for ``size`` (durable when this returns)."""
        ...

    def checkpoints(self) -> list[StoredCheckpoint]:
        """Every stored checkpoint, oldest first."""
        ...

    def close(self) -> None:
        """Release the store; further calls raise :class:`~thirdway.errors.LogError`."""
        ...


@runtime_checkable
class SequencingLogStore(LogStore, Protocol):
    """A store that several processes append to at once (PostgreSQL): it assigns the indices
    itself, under its own lock, instead of trusting a size the caller read earlier."""

    def append_sequenced(self, entries: Sequence[NewEntry]) -> range:
        """Store ``entries`` at the next free indices together with the interior nodes they
        complete, in one durable transaction; return the indices they got."""
        ...
