"""``thirdway log …`` end to end: a normal session, and bad input that must give a one-line error,
a non-zero exit code and no traceback."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import Result
from typer.testing import CliRunner

from thirdway.cli.main import app
from thirdway.ledger import merkle
from thirdway.ledger.checkpoint import Checkpoint, open_checkpoint, sign_checkpoint
from thirdway.ledger.log import TransparencyLog
from thirdway.ledger.note import NoteSigner


def run(*args: str, stdin: str | None = None, env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(app, ["log", *args], input=stdin, env=env)


def assert_one_line_error(result: Result, *needles: str) -> None:
    assert result.exit_code not in (0, None), result.output
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    for needle in needles:
        assert needle in lines[0], lines[0]


@pytest.fixture
def db(tmp_path: Path) -> Path:
    """A log with entries 0..9 and one checkpoint at size 10."""
    path = tmp_path / "log.sqlite"
    assert run("append", *[f"entry {i}" for i in range(10)], "--db", str(path)).exit_code == 0
    assert run("checkpoint", "--db", str(path), "--out", str(tmp_path / "cp10.txt")).exit_code == 0
    return path


def test_append_from_arguments_file_and_stdin(tmp_path: Path) -> None:
    path = tmp_path / "new.sqlite"
    result = run("append", "first", "--db", str(path), "--origin", "example.org/cli")
    assert result.exit_code == 0 and "appended entry 0" in result.output
    blob = tmp_path / "blob.bin"
    blob.write_bytes(b"\x00\xffbinary")
    result = run("append", "--file", str(blob), "--db", str(path), "--json")
    assert json.loads(result.output) == {"first": 1, "count": 1, "size": 2}
    result = run("append", "--db", str(path), stdin="line a\nline b\n")
    assert "appended entries 2..3" in result.output
    with TransparencyLog.open(path, create=False) as log:
        assert log.origin == "example.org/cli"
        assert [log.entry(i) for i in range(4)] == [
            b"first",
            b"\x00\xffbinary",
            b"line a",
            b"line b",
        ]
    shown = json.loads(run("show", "--index", "1", "--db", str(path), "--json").output)
    assert base64.b64decode(shown["data_base64"]) == b"\x00\xffbinary"
    assert "line b" in run("show", "--index", "3", "--db", str(path)).output


def test_a_session_of_proofs(db: Path, tmp_path: Path) -> None:
    assert run("append", "entry 10", "entry 11", "--db", str(db)).exit_code == 0
    result = run("prove", "--index", "3", "--db", str(db))
    assert result.exit_code == 0
    assert "base64" in result.output and "verified against the current root" in result.output

    proof = json.loads(
        run("prove", "--index", "3", "--size", "10", "--db", str(db), "--json").output
    )
    assert proof["type"] == "inclusion" and proof["size"] == 10 and proof["verified"] is True
    leaf = merkle.leaf_hash(b"entry 3")
    assert base64.b64decode(proof["leaf_hash"]) == leaf
    hashes = [base64.b64decode(h) for h in proof["proof"]]
    merkle.verify_inclusion(leaf, 3, 10, hashes, base64.b64decode(proof["root"]))
    (tmp_path / "proof.json").write_text(json.dumps(proof))

    result = run("verify-proof", str(tmp_path / "proof.json"), "--db", str(db))
    assert result.exit_code == 0 and "included" in result.output
    cp10 = str(tmp_path / "cp10.txt")
    result = run(
        "verify-proof", str(tmp_path / "proof.json"), "--checkpoint", cp10, "--db", str(db)
    )
    assert result.exit_code == 0 and "checkpoint signs" in result.output

    consistency = run("consistency", "--from", "10", "--db", str(db), "--json").output
    document = json.loads(consistency)
    assert (document["size1"], document["size2"]) == (10, 12)
    (tmp_path / "consistency.json").write_text(consistency)
    assert run("verify-proof", str(tmp_path / "consistency.json"), "--db", str(db)).exit_code == 0
    assert "prefix" in run("consistency", "--from", "4", "--to", "9", "--db", str(db)).output

    result = run("verify-checkpoint", cp10, "--db", str(db))
    assert result.exit_code == 0 and "checkpoint verified" in result.output
    assert run("checkpoint", "--db", str(db)).output.startswith(
        json.loads(run("info", "--db", str(db), "--json").output)["origin"] + "\n12\n"
    )
    result = run("verify", "--db", str(db))
    assert result.exit_code == 0 and "verified 12 entries" in result.output
    report = json.loads(run("verify", "--db", str(db), "--json").output)
    assert report["ok"] is True and report["checkpoints_checked"] == 2


def test_the_database_comes_from_the_environment(db: Path) -> None:
    result = run("info", "--json", env={"THIRDWAY_DB": str(db)})
    assert result.exit_code == 0 and json.loads(result.output)["size"] == 10


def test_checkpoint_verification_rejects_bad_notes(db: Path, tmp_path: Path) -> None:
    note = (tmp_path / "cp10.txt").read_text()
    cases = {
        "truncated": note[: len(note) // 2],
        "garbled": note.replace("\n10\n", "\n1O\n"),
        "no-signature": note.split("\n\n")[0] + "\n",
        "empty": "",
        "binary": "\x00\x01\x02",
    }
    for name, text in cases.items():
        (tmp_path / name).write_text(text)
        assert_one_line_error(run("verify-checkpoint", str(tmp_path / name), "--db", str(db)))
    with TransparencyLog.open(db, create=False) as log:
        origin, root = log.origin, log.root()
    forged = sign_checkpoint(Checkpoint(origin, 10, root), NoteSigner.generate(origin))
    (tmp_path / "forged").write_text(forged)
    assert_one_line_error(
        run("verify-checkpoint", str(tmp_path / "forged"), "--db", str(db)), "not signed"
    )
    assert_one_line_error(
        run("verify-checkpoint", str(tmp_path / "missing.txt"), "--db", str(db)), "not found"
    )


def test_proof_verification_rejects_bad_proofs(db: Path, tmp_path: Path) -> None:
    good = json.loads(run("prove", "--index", "3", "--db", str(db), "--json").output)

    def check(name: str, document: object, *needles: str) -> None:
        path = tmp_path / f"{name}.json"
        path.write_text(document if isinstance(document, str) else json.dumps(document))
        assert_one_line_error(run("verify-proof", str(path), "--db", str(db)), *needles)

    check("short", dict(good, proof=good["proof"][:-1]), "must have 4 hashes; this one has 3")
    check("long", dict(good, proof=[*good["proof"], good["root"]]), "must have 4 hashes")
    flipped = bytearray(base64.b64decode(good["proof"][1]))
    flipped[0] ^= 1
    check("flipped", dict(good, proof=[good["proof"][0], base64.b64encode(flipped).decode(),
                                       *good["proof"][2:]]))  # fmt: skip
    check("index", dict(good, index=10), "not below the tree size")
    check("bad-base64", dict(good, root="***"), "root is not valid base64")
    check("short-hash", dict(good, leaf_hash=base64.b64encode(b"abc").decode()), "3 bytes")
    check("not-json", "{not json", "not JSON")
    check("wrong-type", dict(good, type="audit"), "type must be")
    check("negative", dict(good, index=-1), "index")
    check("extra", dict(good, extra=1), "extra")
    other = tmp_path / "other.txt"
    (tmp_path / "ok.json").write_text(json.dumps(good))
    with TransparencyLog.open(db, create=False) as log:
        other.write_text(log.checkpoints()[0])
    assert run("append", "entry 10", "--db", str(db)).exit_code == 0
    newer = json.loads(run("prove", "--index", "3", "--db", str(db), "--json").output)
    (tmp_path / "newer.json").write_text(json.dumps(newer))
    assert_one_line_error(
        run(
            "verify-proof",
            str(tmp_path / "newer.json"),
            "--checkpoint",
            str(other),
            "--db",
            str(db),
        ),
        "the checkpoint signs size 10",
    )


def test_impossible_requests_are_one_line_errors(db: Path, tmp_path: Path) -> None:
    assert_one_line_error(run("prove", "--index", "10", "--db", str(db)), "past the end")
    assert_one_line_error(run("prove", "--index", "-1", "--db", str(db)), "negative")
    assert_one_line_error(run("prove", "--index", "2", "--size", "11", "--db", str(db)), "size 11")
    assert_one_line_error(run("show", "--index", "99", "--db", str(db)), "past the end")
    assert_one_line_error(run("consistency", "--from", "0", "--db", str(db)), "empty tree")
    assert_one_line_error(
        run("consistency", "--from", "6", "--to", "3", "--db", str(db)), "greater than"
    )
    missing = str(tmp_path / "nothing.sqlite")
    for command in (["verify"], ["prove", "--index", "0"], ["checkpoint"], ["info"]):
        assert_one_line_error(run(*command, "--db", missing), f"no log at {missing}")
    assert not Path(missing).exists()
    assert_one_line_error(
        run("append", "--file", str(tmp_path / "absent.bin"), "--db", str(db)), "not found"
    )
    assert_one_line_error(run("append", "--db", str(db), stdin=""), "nothing to append")
    not_a_log = tmp_path / "text.sqlite"
    not_a_log.write_text("just text, not a database\n" * 50)
    assert_one_line_error(run("verify", "--db", str(not_a_log)))


def test_a_real_process_exits_non_zero_without_a_traceback(tmp_path: Path) -> None:
    missing = tmp_path / "nothing.sqlite"
    command = [sys.executable, "-c", "from thirdway.cli.main import main; main()"]
    result = subprocess.run(
        [*command, "log", "prove", "--index", "0", "--db", str(missing)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert result.stderr.strip() == f"error: no log at {missing}"
    assert "Traceback" not in result.stdout + result.stderr


def test_a_checkpoint_from_another_log_is_refused(db: Path, tmp_path: Path) -> None:
    other_db = tmp_path / "other.sqlite"
    assert run("append", "x", "--db", str(other_db)).exit_code == 0
    note = run("checkpoint", "--db", str(other_db)).output
    (tmp_path / "foreign.txt").write_text(note)
    assert_one_line_error(run("verify-checkpoint", str(tmp_path / "foreign.txt"), "--db", str(db)))
    with TransparencyLog.open(other_db, create=False) as log:
        assert open_checkpoint(note, log.verifier()).size == 1


def test_verification_against_a_published_key(db: Path, tmp_path: Path) -> None:
    vkey = json.loads(run("info", "--db", str(db), "--json").output)["vkey"]
    cp10 = str(tmp_path / "cp10.txt")
    assert run("verify", "--vkey", vkey, "--db", str(db)).exit_code == 0
    assert run("verify-checkpoint", cp10, "--vkey", vkey, "--db", str(db)).exit_code == 0
    stranger = NoteSigner.generate("example.org/stranger").verifier().vkey()
    assert_one_line_error(
        run("verify", "--vkey", stranger, "--db", str(db)), "the given key is for"
    )
    assert_one_line_error(run("verify", "--vkey", "garbage", "--db", str(db)), "verifier key")
    with TransparencyLog.open(db, create=False) as log:
        origin = log.origin
    same_name = NoteSigner.generate(origin).verifier().vkey()
    assert_one_line_error(
        run("verify-checkpoint", cp10, "--vkey", same_name, "--db", str(db)), "not signed"
    )
