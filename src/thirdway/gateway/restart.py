"""Clean and unclean stops of a SQLite gatekeeper, and the tokens an unclean stop voids.

The spent-set lives in the log's own database. A spend is committed there without waiting for
the disk (``synchronous=NORMAL``): it is atomic at once (the nonce's primary key settles every
race), and it reaches the disk with the gatekeeper's next synced log commit, which fsyncs the
same write-ahead log. The execution record written when the tool returns is committed the same
way. That is two fsyncs per action less than syncing each on its own (the proposal's commit is
the action's one fsync), and it leaves one window: a machine that loses power after a tool ran
may lose the spend of its token and the record of the run, while the proposal, the verdict and
the capability that allowed the run stay on the disk.

This module closes that window. :func:`mark_clean` is the last thing a gatekeeper does when it
closes (a synced commit, so every spend before it is on disk too). :func:`open_floor`, the first
thing it records when it opens (once it has read its log, before any token exists), reads and
clears that mark: after a clean stop the token floor
stays where it was; after any other stop (a crash, a kill, a power cut, or a folder written by
an older version) the floor rises to the log's size, and every token minted before it is
refused as ``voided`` whether or not its spend survived. Every token the gatekeeper ever handed
out was minted for a proposal whose entries were durable before the token left, so all of them
lie below that size. An agent holding one proposes again; a restart after a clean stop voids
nothing.

Session steps that decide nothing (opening a session, recording an observation, closing a
session) are committed the same way, without an fsync of their own: each reaches the disk with
the next synced commit, at the latest that of the proposal verified against it. A power cut may
therefore lose an observation the agent was told was recorded, and a session could then go on
with a hole in its record, where the agent's honest citation of the lost observation would look
like fabricated evidence. So the ``restart`` note of an unclean stop also closes every session
that was open (the rebuild applies it the same way): the agent opens a new one. A session with
an open escalation is only frozen: its auditors can still answer (the escalated proposal was
verified on a durable record), though an approval mints nothing since nothing can run in the
session, and its agent can close it once they have. That is one
fsync less for each of those steps; a verdict, a token and a tool run still rest only on
entries that are on the disk.

All of this assumes one gatekeeper per folder, so :class:`Tenancy` makes it a rule: a second
gatekeeper opening a folder in use is refused at once instead of voiding the first one's tokens
or batches. The kernel drops the lock when the process dies, so a crash never leaves the folder
locked. The one exception is several workers of one ``thirdway serve --workers`` (they share
the log through :mod:`thirdway.ledger.sqlite_shared`): a single gatekeeper opens the folder
first, recovers from an unclean stop if there was one, and hands the folder over
(:meth:`Tenancy.hand_over`); the workers then hold the lock shared, and the clean stop is
recorded only once all of them have stopped (:func:`end_shared`). Until then the folder is not
clean, so a power cut while they run is recovered from like any other unclean stop.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from thirdway.errors import GateError, LogError

LOCK_NAME = "gate.lock"

_CLEAN = 1
"""``gate_restart.clean`` after a clean stop (0: a gatekeeper is running, or stopped uncleanly)."""
_WORKERS = 2
"""``gate_restart.clean`` while several workers share the folder (:func:`shared_floor`): not a
clean stop, so a power cut meanwhile is recovered from like any unclean stop."""

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS gate_restart ("
    " id INTEGER PRIMARY KEY CHECK (id = 1),"
    " token_floor INTEGER NOT NULL,"
    " clean INTEGER NOT NULL"
    ")"
)


@dataclass(frozen=True)
class Opening:
    """What :func:`open_floor` found: the token floor now in force, and whether the previous
    stop was clean (``None``: this database was never opened by a gatekeeper before)."""

    token_floor: int
    clean: bool | None
    raised: bool
    """Whether this opening raised the floor (the previous stop was not clean and tokens may
    have been handed out below the log's size)."""


def open_floor(path: Path, log_size: int) -> Opening:
    """Record that a gatekeeper is running on ``path`` and return the token floor it must
    enforce (see the module docstring)."""
    with _connect(path) as conn:
        conn.execute("BEGIN IMMEDIATE")
        try:
            row = conn.execute("SELECT token_floor, clean FROM gate_restart").fetchone()
            clean = None if row is None else row[1] == _CLEAN
            previous = 0 if row is None else int(row[0])
            floor = previous if clean else max(previous, log_size)
            conn.execute(
                "INSERT INTO gate_restart (id, token_floor, clean) VALUES (1, ?, 0) "
                "ON CONFLICT (id) DO UPDATE SET token_floor = excluded.token_floor, clean = 0",
                (floor,),
            )
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
    return Opening(token_floor=floor, clean=clean, raised=floor > previous)


def shared_floor(path: Path) -> int:
    """The token floor for a worker of several on ``path`` (:meth:`Gatekeeper.open` with
    ``shared``). Workers commit spends and session steps the way a single gatekeeper does
    (reaching the disk with the next synced commit), but none of them can recover from an
    unclean stop (close the interrupted sessions, raise the floor) while others run. So the
    folder is handed over to workers by a single gatekeeper that opened it first, did that
    recovery and closed with :meth:`Tenancy.hand_over` (``thirdway serve --workers`` does this
    before it starts them), and :func:`end_shared` records the clean stop once every worker has
    stopped; a power cut in between leaves the folder not clean, and the next single opening
    recovers as from any unclean stop."""
    row = None
    if path.is_file():
        with _connect(path) as conn:
            row = conn.execute("SELECT token_floor, clean FROM gate_restart").fetchone()
    if row is None or row[1] != _WORKERS:
        raise GateError(
            f"the gatekeeper folder of {path} was not handed over to workers: several workers "
            "start from `thirdway serve --workers N`, which first opens the folder alone"
        )
    return int(row[0])


def end_shared(folder: Path, path: Path) -> bool:
    """Record the clean stop of a folder's workers once they have all stopped (a single
    gatekeeper's lock is taken to be sure); False, recording nothing, when some process still
    holds the folder or it was not handed over to workers."""
    try:
        tenancy = Tenancy(folder, path)
    except GateError:
        return False
    try:
        with _connect(path) as conn:
            updated = conn.execute(
                "UPDATE gate_restart SET clean = ? WHERE clean = ?", (_CLEAN, _WORKERS)
            ).rowcount
    finally:
        tenancy.release()
    return updated == 1


def mark_clean(path: Path, state: int = _CLEAN) -> None:
    """Record a clean stop (or, ``state`` :data:`_WORKERS`, the hand-over to workers). Synced, so
    every spend committed before it is on disk as well."""
    with _connect(path) as conn:
        conn.execute("UPDATE gate_restart SET clean = ?", (state,))


@contextlib.contextmanager
def _connect(path: Path) -> Iterator[sqlite3.Connection]:
    """A synced connection to the log's database; SQLite errors become one-line LogErrors."""
    conn: sqlite3.Connection | None = None
    try:
        conn = sqlite3.connect(path, isolation_level=None, timeout=10.0)
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute(_SCHEMA)
        yield conn
    except sqlite3.Error as exc:
        raise LogError(f"cannot record the gatekeeper's start or stop in {path}: {exc}") from None
    finally:
        if conn is not None:
            conn.close()


class Tenancy:
    """A gatekeeper's hold on its folder, from open to close: an exclusive, non-blocking
    ``flock`` on ``folder/gate.lock``, and, on a clean close, the clean-stop record in
    ``database`` (see the module docstring)."""

    def __init__(self, folder: Path, database: Path, *, shared: bool = False) -> None:
        self.path = folder / LOCK_NAME
        self.database = database
        self._opened = False
        self._state = _CLEAN
        try:
            self._fd: int | None = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            raise GateError(f"cannot create the lock file {self.path}: {exc.strerror}") from None
        try:
            fcntl.flock(self._fd, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
        except OSError:
            self.release()
            raise GateError(
                f"another gatekeeper is running on {folder} (it holds {self.path}); a folder "
                "serves one gatekeeper process at a time, or several workers of one "
                "`thirdway serve --workers`"
            ) from None

    def open_floor(self, log_size: int) -> Opening:
        """:func:`open_floor` for this folder's database; from now on a clean close records a
        clean stop."""
        opening = open_floor(self.database, log_size)
        self._opened = True
        return opening

    def hand_over(self) -> None:
        """Close for workers: :meth:`close` records the hand-over (:func:`shared_floor`)
        instead of a clean stop."""
        self._state = _WORKERS

    def close(self) -> None:
        """A clean stop: record it (synced), then release the folder."""
        try:
            if self._opened:
                mark_clean(self.database, self._state)
        finally:
            self.release()

    def release(self) -> None:
        """Release the folder without recording a clean stop (an opening that failed)."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
