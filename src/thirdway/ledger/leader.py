"""Checkpoint signing by one elected worker, with fail-over.

Every gateway worker appends, but only one should sign checkpoints: a single signer keeps the
checkpoint sequence in order and the signing cadence even. Workers elect it with a PostgreSQL
*session* advisory lock (``pg_try_advisory_lock``) held on a connection of its own, outside any
pool: whoever holds the lock leads. When the leader dies, its connection closes, PostgreSQL ends
the session and releases the lock, and the next worker whose :meth:`CheckpointLeader.step` runs
takes it. A leader that loses its connection steps down before signing again.

Safety does not rest on the lock alone: :meth:`~thirdway.ledger.postgres.PostgresLogStore.
add_checkpoint` refuses a checkpoint smaller than the newest stored one, so even two workers that
both briefly think they lead cannot store checkpoints that go backwards, and every checkpoint signs
a root the stored entries produce.
"""

from __future__ import annotations

import contextlib
import hashlib
import threading

import psycopg

from thirdway.errors import LogError
from thirdway.ledger.log import TransparencyLog

__all__ = ["CheckpointLeader", "leader_lock_key"]

_LOCK_DOMAIN = b"thirdway/checkpoint-leader\x00"


def leader_lock_key(origin: str) -> int:
    """The advisory lock key for ``origin``'s leader: 64 bits of a hash, as a signed bigint, so
    that logs in the same PostgreSQL cluster elect separately."""
    raw = int.from_bytes(hashlib.sha256(_LOCK_DOMAIN + origin.encode()).digest()[:8], "big")
    return raw - (1 << 64) if raw >= 1 << 63 else raw


def _libpq_url(url: str) -> str:
    """A URL libpq understands (without SQLAlchemy's ``+psycopg`` driver suffix)."""
    scheme, sep, rest = url.partition("://")
    return ("postgresql" + sep + rest) if scheme.lower().startswith("postgres") else url


def _note_size(note: str) -> int:
    """The tree size a checkpoint note signs (its second line)."""
    return int(note.splitlines()[1])


class CheckpointLeader:
    """One worker's candidacy for checkpoint signer of ``log`` (a log on the database at
    ``url``). Call :meth:`step` periodically, or :meth:`start` a background thread."""

    def __init__(self, url: str, log: TransparencyLog, *, interval_s: float = 1.0) -> None:
        if not interval_s > 0:
            raise LogError(f"checkpoint interval must be positive, not {interval_s}")
        self._url = _libpq_url(url)
        self._log = log
        self._interval_s = interval_s
        self._key = leader_lock_key(log.origin)
        self._connection: psycopg.Connection[tuple[object, ...]] | None = None
        self._signed_size: int | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def is_leader(self) -> bool:
        """Whether this worker holds the lock now (checked on the server)."""
        with self._lock:
            return self._still_leading()

    def _still_leading(self) -> bool:
        connection = self._connection
        if connection is None:
            return False
        try:
            connection.execute("SELECT 1")
        except psycopg.Error:
            self._drop_connection()  # lost the session, so lost the lock
            return False
        return True

    def _try_acquire(self) -> bool:
        try:
            connection = psycopg.connect(self._url, autocommit=True, connect_timeout=5)
        except psycopg.Error:
            return False  # database unreachable: nobody can lead from here; try next step
        try:
            row = connection.execute("SELECT pg_try_advisory_lock(%s)", (self._key,)).fetchone()
        except psycopg.Error:
            connection.close()
            return False
        if not row or row[0] is not True:
            connection.close()
            return False
        self._connection = connection
        return True

    def _drop_connection(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            with contextlib.suppress(psycopg.Error):
                connection.close()

    def step(self) -> str | None:
        """Lead if possible; as leader, sign a checkpoint when the log grew since the last one.
        Returns the new checkpoint note, or ``None`` (not leading, or nothing new to sign)."""
        with self._lock:
            if not self._still_leading() and not self._try_acquire():
                return None
            if self._signed_size is None:
                notes = self._log.checkpoints()
                self._signed_size = _note_size(notes[-1]) if notes else 0  # not the empty log
            if self._log.size() <= self._signed_size:
                return None
            try:
                note = self._log.checkpoint()
            except LogError:
                # Refused (someone else stored a newer checkpoint: we were not the only leader)
                # or the database failed: step down and start afresh on the next step.
                self._drop_connection()
                self._signed_size = None
                raise
            self._signed_size = _note_size(note)
            return note

    def start(self) -> None:
        """Run :meth:`step` every ``interval_s`` seconds on a daemon thread until :meth:`stop`."""
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="checkpoint-leader", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            with contextlib.suppress(LogError):  # retried on the next tick; appends go on
                self.step()
            self._stop.wait(self._interval_s)

    def stop(self) -> None:
        """Stop the thread and give up the leadership (the lock goes with the connection)."""
        self._stop.set()
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.join()
        with self._lock:
            self._drop_connection()
