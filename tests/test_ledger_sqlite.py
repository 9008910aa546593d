"""The SQLite-backed transparency log: durability, immutability, tamper evidence, fail-closed
errors. Roots and proofs are checked against an independent RFC 6962 computation."""

from __future__ import annotations

import hashlib
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from thirdway.cli.main import app
from thirdway.errors import InputError, LogError, ProofError
from thirdway.ledger import merkle
from thirdway.ledger.checkpoint import Checkpoint, open_checkpoint, sign_checkpoint
from thirdway.ledger.log import DEFAULT_ORIGIN_PREFIX, TransparencyLog, key_path_for
from thirdway.ledger.note import NoteSigner
from thirdway.ledger.store import NewEntry, StaleSizeError


def reference_root(entries: list[bytes]) -> bytes:
    """MTH of RFC 6962 section 2.1, straight from the definition."""
    if not entries:
        return hashlib.sha256(b"").digest()
    if len(entries) == 1:
        return hashlib.sha256(b"\x00" + entries[0]).digest()
    k = 1
    while k * 2 < len(entries):
        k *= 2
    left, right = reference_root(entries[:k]), reference_root(entries[k:])
    return hashlib.sha256(b"\x01" + left + right).digest()


def entry(i: int) -> bytes:
    return b"entry-%05d" % i


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "log.sqlite"


def raw(db: Path) -> sqlite3.Connection:
    """A plain connection, as someone editing the file by hand would open it."""
    return sqlite3.connect(db, isolation_level=None)


def drop_triggers(connection: sqlite3.Connection) -> None:
    names = connection.execute("SELECT name FROM sqlite_master WHERE type='trigger'").fetchall()
    for (name,) in names:
        connection.execute(f"DROP TRIGGER {name}")


def verify_cli(db: Path) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["log", "verify", "--db", str(db)])
    return result.exit_code, result.output


# --- basic behaviour ---------------------------------------------------------------------------


def test_append_read_prove_and_reopen(db: Path) -> None:
    data = [entry(i) for i in range(300)]
    with TransparencyLog.open(db) as log:
        assert log.size() == 0
        assert log.root() == hashlib.sha256(b"").digest()
        assert log.append(data[0]) == 0
        assert log.append_batch(data[1:256]) == range(1, 256)
        assert log.append_batch(data[256:]) == range(256, 300)
        assert log.size() == 300
        origin = log.origin
    assert origin.startswith(DEFAULT_ORIGIN_PREFIX)
    with TransparencyLog.open(db, create=False) as log:
        assert log.origin == origin
        assert log.size() == 300
        assert log.entry(123) == data[123]
        assert log.leaf_hash_at(7) == merkle.leaf_hash(data[7])
        for size in (1, 2, 3, 100, 255, 256, 257, 300):
            assert log.root(size) == reference_root(data[:size])
        root = log.root()
        for index in (0, 1, 150, 298, 299):
            proof = log.inclusion_proof(index)
            merkle.verify_inclusion(merkle.leaf_hash(data[index]), index, 300, proof, root)
        for size1 in (1, 2, 17, 256, 299, 300):
            proof = log.consistency_proof(size1)
            merkle.verify_consistency(size1, 300, proof, reference_root(data[:size1]), root)
        assert log.verify().ok


def test_durability_settings_and_key_file(db: Path) -> None:
    with TransparencyLog.open(db) as log:
        log.append(b"x")
        connection = log._store._conn  # type: ignore[attr-defined]
        assert connection.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert connection.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
        vkey = log.verifier().vkey()
    key = key_path_for(db)
    assert key.name == "log.sqlite.key"
    assert key.stat().st_mode & 0o777 == 0o600
    signer = NoteSigner.from_private_key_string(key.read_text().strip())
    assert signer.verifier().vkey() == vkey


def test_checkpoints_are_signed_stored_and_checked(db: Path) -> None:
    with TransparencyLog.open(db, origin="example.org/log") as log:
        log.append_batch([entry(i) for i in range(10)])
        note = log.checkpoint()
        checkpoint = open_checkpoint(note, log.verifier(), origin="example.org/log")
        assert (checkpoint.size, checkpoint.root_hash) == (10, reference_root(
            [entry(i) for i in range(10)]
        ))  # fmt: skip
        log.append(entry(10))
        log.checkpoint()
        assert len(log.checkpoints()) == 2
        assert log.open_checkpoint(note).size == 10
        report = log.verify()
        assert report.ok and report.checkpoints_checked == 2
        other = NoteSigner.generate("example.org/log")
        with pytest.raises(ProofError):
            open_checkpoint(note, other.verifier())


def test_triggers_refuse_update_and_delete(db: Path) -> None:
    with TransparencyLog.open(db) as log:
        log.append_batch([entry(i) for i in range(4)])
        log.checkpoint()
    connection = raw(db)
    connection.execute("PRAGMA recursive_triggers=ON")
    statements = [
        "UPDATE entries SET data = x'00' WHERE idx = 1",
        "DELETE FROM entries WHERE idx = 3",
        "UPDATE nodes SET hash = x'00'",
        "DELETE FROM nodes",
        "UPDATE checkpoints SET size = 0",
        "DELETE FROM checkpoints",
        "UPDATE meta SET value = 'x' WHERE key = 'origin'",
        "DELETE FROM meta",
        "INSERT OR REPLACE INTO entries (idx, data, leaf_hash) VALUES (0, x'01', x'02')",
    ]
    for statement in statements:
        with pytest.raises(sqlite3.IntegrityError, match="thirdway log is append-only"):
            connection.execute(statement)
    with pytest.raises(sqlite3.IntegrityError):
        connection.execute("INSERT INTO entries (idx, data, leaf_hash) VALUES (2, x'01', x'02')")
    connection.close()
    with TransparencyLog.open(db) as log:
        assert [log.entry(i) for i in range(4)] == [entry(i) for i in range(4)]
        assert log.verify().ok


# --- tampering -----------------------------------------------------------------------------


def test_one_byte_changed_in_the_file_is_caught_and_named(db: Path) -> None:
    with TransparencyLog.open(db) as log:
        log.append_batch([b"MARK-%04d-payload" % i for i in range(100)])
        log.checkpoint()
    assert not db.with_name(db.name + "-wal").exists()  # everything is in the main file
    raw_bytes = bytearray(db.read_bytes())
    target = b"MARK-0042-payload"
    assert raw_bytes.count(target) == 1
    position = raw_bytes.index(target) + len(b"MARK-0042-")
    raw_bytes[position] ^= 0x20  # "payload" -> "Payload"
    db.write_bytes(bytes(raw_bytes))

    code, output = verify_cli(db)
    assert code == 1
    assert "first bad entry: 42" in output
    assert "entry 42 does not match its stored leaf hash" in output
    assert "Traceback" not in output
    with TransparencyLog.open(db, create=False) as log:
        report = log.verify()
    assert not report.ok and report.first_bad_entry == 42
    assert any("checkpoint #1" in problem for problem in report.problems)


def test_a_rewritten_history_is_caught_by_the_checkpoint(db: Path, tmp_path: Path) -> None:
    data = [entry(i) for i in range(37)]
    with TransparencyLog.open(db) as log:
        log.append_batch(data)
        note = log.checkpoint()
    (tmp_path / "cp.txt").write_text(note)
    # Rewrite entry 5 and make every stored hash agree with the new history.
    data[5] = b"something else"
    leaves = [merkle.leaf_hash(item) for item in data]
    connection = raw(db)
    drop_triggers(connection)
    connection.execute(
        "UPDATE entries SET data = ?, leaf_hash = ? WHERE idx = 5", (data[5], leaves[5])
    )
    frontier = merkle.Frontier()
    for leaf in leaves:
        for node, digest in frontier.append(leaf):
            connection.execute(
                "UPDATE nodes SET hash = ? WHERE id = ?", (digest, merkle.stored_index(node))
            )
    connection.close()

    with TransparencyLog.open(db, create=False) as log:
        report = log.verify()
        assert not report.ok
        assert "checkpoint #1" in report.problems[0] and "rewritten" in report.problems[0]
        with pytest.raises(ProofError, match="rewritten"):
            log.open_checkpoint(note)
    code, output = verify_cli(db)
    assert code == 1 and "checkpoint #1" in output
    result = CliRunner().invoke(
        app, ["log", "verify-checkpoint", str(tmp_path / "cp.txt"), "--db", str(db)]
    )
    assert result.exit_code != 0 and "rewritten" in result.output


def test_changed_leaf_hash_node_and_truncation_are_caught(db: Path) -> None:
    with TransparencyLog.open(db) as log:
        log.append_batch([entry(i) for i in range(20)])
        log.checkpoint()
    connection = raw(db)
    drop_triggers(connection)
    connection.execute("UPDATE entries SET leaf_hash = zeroblob(32) WHERE idx = 9")
    with TransparencyLog.open(db) as log:
        assert log.verify().first_bad_entry == 9
    connection.execute(
        "UPDATE entries SET leaf_hash = ? WHERE idx = 9", (merkle.leaf_hash(entry(9)),)
    )
    node = (2, 3)  # the subtree over entries 12..15
    connection.execute(
        "UPDATE nodes SET hash = zeroblob(32) WHERE id = ?", (merkle.stored_index(node),)
    )
    with TransparencyLog.open(db) as log:
        report = log.verify()
    assert not report.ok and report.first_bad_entry is None
    assert "subtree over entries 12..15 does not match" in report.problems[0]
    connection.execute("DELETE FROM nodes WHERE id = ?", (merkle.stored_index(node),))
    with TransparencyLog.open(db) as log:
        assert "12..15 is missing" in log.verify().problems[0]
    connection.execute(
        "INSERT INTO nodes (id, hash) VALUES (?, zeroblob(32))", (merkle.stored_index(node),)
    )
    connection.execute("UPDATE nodes SET hash = ? WHERE id = ?", (
        merkle.root_from_leaf_hashes([merkle.leaf_hash(entry(i)) for i in range(12, 16)]),
        merkle.stored_index(node),
    ))  # fmt: skip
    with TransparencyLog.open(db) as log:
        assert log.verify().ok
    connection.execute("DELETE FROM entries WHERE idx >= 18")
    connection.execute("DELETE FROM nodes WHERE id >= ?", (merkle.stored_index((0, 18)),))
    connection.close()
    with TransparencyLog.open(db) as log:
        report = log.verify()
    assert any("signs size 20 but the log has only 18" in problem for problem in report.problems)


def test_forged_and_rolled_back_checkpoints_are_caught(db: Path) -> None:
    with TransparencyLog.open(db, origin="example.org/log") as log:
        log.append_batch([entry(i) for i in range(8)])
        first = log.checkpoint()
        log.append_batch([entry(i) for i in range(8, 12)])
        log.checkpoint()
    forger = NoteSigner.generate("example.org/log")
    forged = sign_checkpoint(Checkpoint("example.org/log", 12, b"\x07" * 32), forger)
    connection = raw(db)
    connection.execute("INSERT INTO checkpoints (size, note) VALUES (12, ?)", (forged,))
    connection.execute("INSERT INTO checkpoints (size, note) VALUES (8, ?)", (first,))
    connection.close()
    with TransparencyLog.open(db) as log:
        problems = log.verify().problems
    assert any("checkpoint #3 does not verify" in problem for problem in problems)
    assert any("checkpoint #4 has size 8, smaller" in problem for problem in problems)


# --- crashes and concurrency ----------------------------------------------------------------

CHILD = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from thirdway.ledger.log import TransparencyLog

    log = TransparencyLog.open(Path(sys.argv[1]))
    next_index = log.size()
    round = 0
    while True:
        round += 1
        if round % 3:
            done = log.append_batch([b"crash-%d" % (next_index + k) for k in range(16)])
        else:
            done = range(log.append(b"crash-%d" % next_index), next_index + 1)
        next_index = done.stop
        if round % 7 == 0:
            log.checkpoint()
        print(done.stop - 1, flush=True)
    """
)


def test_appends_that_returned_survive_sigkill(db: Path, tmp_path: Path) -> None:
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    with TransparencyLog.open(db):
        pass  # create the log (and its key) first
    child = subprocess.Popen(
        [sys.executable, str(script), str(db)], stdout=subprocess.PIPE, text=True
    )
    assert child.stdout is not None
    reported = -1
    deadline = time.monotonic() + 60
    while reported < 400 and time.monotonic() < deadline:
        line = child.stdout.readline()
        assert line, "the appending child died on its own"
        reported = int(line)
    time.sleep(0.003)  # let it get into the middle of another append
    child.send_signal(signal.SIGKILL)
    child.wait(timeout=30)
    for line in child.stdout:  # anything it printed before dying also returned
        reported = int(line)
    assert child.returncode == -signal.SIGKILL
    assert reported >= 400

    with TransparencyLog.open(db, create=False) as log:
        size = log.size()
        assert size >= reported + 1
        assert size - (reported + 1) in (0, 1, 16)  # at most one whole batch not yet printed
        for index in range(size):
            assert log.entry(index) == b"crash-%d" % index
        report = log.verify()
        assert report.ok, report.problems
        assert report.checkpoints_checked >= 1


def test_two_handles_and_threads_append_without_losing_anything(db: Path) -> None:
    with TransparencyLog.open(db) as first, TransparencyLog.open(db) as second:
        first.append(b"a0")
        second.append(b"b0")  # second's view was stale: it must catch up, not overwrite
        first.append_batch([b"a1", b"a2"])
        second.append(b"b1")

        def worker(log: TransparencyLog, name: bytes) -> None:
            for i in range(25):
                log.append(name + b"%d" % i)

        threads = [
            threading.Thread(target=worker, args=(log, b"t%d-" % n))
            for n, log in enumerate([first, second, first, second])
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert first.size() == second.size() == 105
        entries = [first.entry(i) for i in range(105)]
        assert entries[:5] == [b"a0", b"b0", b"a1", b"a2", b"b1"]
        assert len(set(entries)) == 105
        assert first.root() == second.root() == reference_root(entries)
        assert first.verify().ok


# --- refusing bad input ---------------------------------------------------------------------


def test_opening_errors_are_clear(tmp_path: Path) -> None:
    with pytest.raises(LogError, match="no log at"):
        TransparencyLog.open(tmp_path / "missing.sqlite", create=False)
    assert not (tmp_path / "missing.sqlite").exists()
    with pytest.raises(LogError, match="does not exist"):
        TransparencyLog.open(tmp_path / "no" / "dir.sqlite")
    with pytest.raises(LogError, match="is a directory"):
        TransparencyLog.open(tmp_path)
    text = tmp_path / "notes.txt"
    text.write_text("hello, this is not a database at all, just some text\n" * 100)
    with pytest.raises(LogError):
        TransparencyLog.open(text)
    other = tmp_path / "other.sqlite"
    connection = sqlite3.connect(other)
    connection.execute("CREATE TABLE things (x)")
    connection.commit()
    connection.close()
    with pytest.raises(LogError, match="not a thirdway log"):
        TransparencyLog.open(other)
    with pytest.raises(LogError, match="invalid log origin"):
        TransparencyLog.open(tmp_path / "bad-origin.sqlite", origin="has space")


def test_origin_mismatch_and_key_problems(db: Path) -> None:
    with TransparencyLog.open(db, origin="example.org/a") as log:
        log.append(b"x")
    with pytest.raises(LogError, match=r"has origin 'example\.org/a'"):
        TransparencyLog.open(db, origin="example.org/b")
    key = key_path_for(db)
    key.unlink()
    with TransparencyLog.open(db, create=False) as log:
        assert log.entry(0) == b"x" and log.verify().ok  # reading needs no secret
        with pytest.raises(LogError, match="is missing"):
            log.checkpoint()
    key.write_text(NoteSigner.generate("example.org/a").private_key_string() + "\n")
    key.chmod(0o600)
    with (
        TransparencyLog.open(db, create=False) as log,
        pytest.raises(LogError, match="not the key"),
    ):
        log.checkpoint()


def test_bad_appends_and_indices_are_refused(db: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with TransparencyLog.open(db) as log:
        with pytest.raises(InputError, match="must be bytes"):
            log.append("text")  # type: ignore[arg-type]
        with pytest.raises(InputError, match="not one entry"):
            log.append_batch(b"abc")
        monkeypatch.setattr("thirdway.ledger.log.MAX_ENTRY_BYTES", 8)
        with pytest.raises(InputError, match="limit is 8 bytes"):
            log.append_batch([b"ok", b"far too long"])
        assert log.size() == 0  # nothing of a refused batch is stored
        log.append(b"ok")
        with pytest.raises(LogError, match="past the end"):
            log.entry(1)
        with pytest.raises(LogError, match="past the end"):
            log.entry(2**70)  # beyond any SQLite integer: still a LogError, not an overflow
        with pytest.raises(LogError, match="negative"):
            log.entry(-1)
        with pytest.raises(InputError, match="must be an integer"):
            log.entry(True)
        assert log.entry(0) == b"ok"
        with pytest.raises(LogError, match="past the end"):
            log.inclusion_proof(5)
        with pytest.raises(LogError, match="out of range"):
            log.root(2)
        with pytest.raises(LogError, match="empty tree"):
            log.consistency_proof(0)
    with pytest.raises(LogError, match="closed"):
        log.size()


def test_large_log_proofs_read_few_rows(db: Path) -> None:
    with TransparencyLog.open(db) as log:
        for start in range(0, 5000, 500):
            log.append_batch([entry(i) for i in range(start, start + 500)])
        store = log._store  # type: ignore[attr-defined]
        calls: list[int] = []
        original = store.read_nodes

        def counting(nodes: list[merkle.NodeId]) -> list[bytes]:
            calls.append(len(nodes))
            return original(nodes)

        store.read_nodes = counting
        proof = log.inclusion_proof(4321)
        assert len(calls) == 1 and calls[0] <= 2 * 13 + 2
        merkle.verify_inclusion(merkle.leaf_hash(entry(4321)), 4321, 5000, proof, log.root())


@pytest.mark.skipif(os.name != "posix", reason="POSIX file modes")
def test_a_world_readable_key_is_refused(db: Path) -> None:
    with TransparencyLog.open(db) as log:
        log.append(b"x")
    key_path_for(db).chmod(0o644)
    with TransparencyLog.open(db) as log, pytest.raises(LogError, match="other users"):
        log.checkpoint()


def test_a_swapped_log_key_is_caught_only_with_the_published_key(db: Path) -> None:
    with TransparencyLog.open(db, origin="example.org/log") as log:
        log.append_batch([entry(i) for i in range(6)])
        log.checkpoint()
        published = log.verifier()
    # Whoever can edit the file can replace the recorded key and re-sign every checkpoint...
    impostor = NoteSigner.generate("example.org/log")
    connection = raw(db)
    drop_triggers(connection)
    connection.execute(
        "UPDATE meta SET value = ? WHERE key = 'vkey'", (impostor.verifier().vkey(),)
    )
    with TransparencyLog.open(db) as log:
        root = log.root()
    note = sign_checkpoint(Checkpoint("example.org/log", 6, root), impostor)
    connection.execute("UPDATE checkpoints SET note = ?", (note,))
    connection.close()
    with TransparencyLog.open(db) as log:
        assert log.verify().ok  # ...so the recorded key alone proves nothing,
        report = log.verify(trusted_key=published)  # but the published key does.
        with pytest.raises(ProofError, match="not signed by any known key"):
            log.open_checkpoint(note, trusted_key=published)
    assert not report.ok
    assert "not the trusted" in report.problems[0]
    assert any("checkpoint #1 does not verify" in problem for problem in report.problems)
    code = (
        CliRunner()
        .invoke(app, ["log", "verify", "--db", str(db), "--vkey", published.vkey()])
        .exit_code
    )
    assert code == 1


def test_a_damaged_log_still_opens_for_verification(db: Path) -> None:
    with TransparencyLog.open(db) as log:
        log.append_batch([entry(i) for i in range(20)])
    connection = raw(db)
    drop_triggers(connection)
    connection.execute("DELETE FROM nodes WHERE id = ?", (merkle.stored_index((4, 0)),))
    connection.close()
    with TransparencyLog.open(db, create=False) as log:
        report = log.verify()
        assert "subtree over entries 0..15 is missing" in report.problems[0]
        with pytest.raises(LogError, match="damaged"):
            log.append(b"more")
        with pytest.raises(LogError, match="damaged"):
            log.inclusion_proof(17)  # its path needs the subtree over 0..15


def test_batches_of_every_shape_store_every_row(db: Path) -> None:
    """Batches are written several rows per INSERT statement: sizes around that chunk size, and
    items given as bytearray, memoryview or a bytes subclass, store exactly the rows (and interior
    nodes) that single appends would."""

    class Tagged(bytes):
        pass

    data = [entry(i) for i in range(1000)]
    kinds = [bytes, bytearray, memoryview, Tagged]
    position = 0
    with TransparencyLog.open(db) as log:
        for number, size in enumerate((1, 63, 64, 65, 127, 128, 129, 200, 1, 142)):
            kind = kinds[number % len(kinds)]
            batch = [kind(item) for item in data[position : position + size]]
            assert log.append_batch(batch) == range(position, position + size)  # type: ignore[arg-type]
            position += size
        assert position == 920
        assert log.verify().ok
        assert log.root() == reference_root(data[:920])
        assert [log.entry(i) for i in (0, 63, 64, 127, 128, 919)] == [
            data[i] for i in (0, 63, 64, 127, 128, 919)
        ]
    connection = raw(db)
    stored = connection.execute("SELECT idx, data, leaf_hash FROM entries ORDER BY idx").fetchall()
    assert stored == [(i, data[i], merkle.leaf_hash(data[i])) for i in range(920)]
    keys = [row[0] for row in connection.execute("SELECT id FROM nodes ORDER BY id")]
    expected = [
        merkle.stored_index(node)
        for node, _ in merkle.Frontier().extend([merkle.leaf_hash(item) for item in data[:920]])
    ]
    assert keys == sorted(expected)
    connection.close()


def test_read_nodes_in_several_queries_and_a_missing_one(db: Path) -> None:
    """More hashes than one query reads come back complete and in the order asked (repeats
    included); a node that is not stored is named."""
    data = [entry(i) for i in range(600)]
    with TransparencyLog.open(db) as log:
        log.append_batch(data)
        expected = {(0, i): merkle.leaf_hash(item) for i, item in enumerate(data)}
        frontier = merkle.Frontier()
        expected.update(frontier.extend([expected[(0, i)] for i in range(600)]))
        wanted = sorted(expected, key=lambda node: (node[1] * 7919 + node[0]) % 601)[:300]
        wanted += wanted[:5]
        store = log._store  # type: ignore[attr-defined]
        assert store.read_nodes(wanted) == [expected[node] for node in wanted]
        with pytest.raises(LogError, match=r"node \(level 3, index 75\) is missing"):
            store.read_nodes([(0, 1), (3, 75)])


def test_entries_between_reads_a_range_in_one_query_like_entry_by_entry(db: Path) -> None:
    """What a gatekeeper reads when it rebuilds its sessions at open: the same entries, in
    order, as reading them one by one, clipped to the log; nothing for an empty range."""
    with TransparencyLog.open(db) as log:
        data = [f"entry {n}".encode() * (n % 5 + 1) for n in range(300)]
        log.append_batch(data[:120])
        log.append_batch(data[120:])
        one_by_one = [(n, log.entry(n)) for n in range(300)]
        assert log.entries_between(0, 300) == one_by_one
        assert log.entries_between(17, 254) == one_by_one[17:254]
        assert log.entries_between(290, 400) == one_by_one[290:]  # past the end: what exists
        assert log.entries_between(50, 50) == [] and log.entries_between(60, 40) == []
        assert log._store.read_range(0, 300) == one_by_one  # the store's one-query path


UNSYNCED_CHILD = """
import os, signal, sys
from thirdway.ledger.log import TransparencyLog
log = TransparencyLog.open(sys.argv[1])
for n in range(40):
    log.append_batch([b"unsynced-%d" % n], sync=False)
print(log.size(), flush=True)
os.kill(os.getpid(), signal.SIGKILL)
"""


def test_unsynced_appends_commit_and_the_connection_syncs_again(db: Path, tmp_path: Path) -> None:
    """``sync=False`` commits at ``synchronous=NORMAL`` for that batch only: the entries are
    committed (a killed process keeps them, they are in the WAL file) and every later commit,
    checkpoints included, is synced again, also after a refused batch."""
    with TransparencyLog.open(db) as log:
        connection = log._store._conn  # type: ignore[attr-defined]
        log.append_batch([b"a", b"b"], sync=False)
        assert connection.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL again
        stale = log._store._size() - 1  # type: ignore[attr-defined]
        with pytest.raises(StaleSizeError):
            log._store.append(stale, [NewEntry(b"c", b"\0" * 32)], [], sync=False)  # type: ignore[attr-defined]
        assert connection.execute("PRAGMA synchronous").fetchone()[0] == 2
        assert [log.entry(i) for i in range(log.size())] == [b"a", b"b"]
    script = tmp_path / "unsynced.py"
    script.write_text(UNSYNCED_CHILD)
    child = subprocess.run(
        [sys.executable, str(script), str(db)], capture_output=True, text=True, timeout=120
    )
    assert child.returncode == -signal.SIGKILL, child.stderr
    with TransparencyLog.open(db, create=False) as log:
        assert log.size() == int(child.stdout) == 42
        assert log.entry(41) == b"unsynced-39"
        assert log.verify().ok
