"""The ledger loads ``cryptography`` only to make, sign with or verify a key.

Loading it (and the OpenSSL inside it) adds about 9 MiB to a process; one that opens an existing
log, appends and serves proofs never needs it. Each check runs in a fresh interpreter, since this
test process has long imported it.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

from thirdway.ledger.log import TransparencyLog
from thirdway.ledger.note import NoteSigner, sign_note


def run_fresh(script: str) -> str:
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script)],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_open_append_prove_without_cryptography_then_sign_and_verify(tmp_path: Path) -> None:
    db = tmp_path / "log.db"
    with TransparencyLog.open(db, origin="example.org/lazy") as log:
        log.append_batch([b"a", b"b"])
        log.checkpoint()
    out = run_fresh(
        f"""
        import sys
        from pathlib import Path
        from thirdway.ledger import merkle
        from thirdway.ledger.log import TransparencyLog

        def loaded():
            return any(name.split(".")[0] == "cryptography" for name in sys.modules)

        log = TransparencyLog.open(Path({str(db)!r}), create=False)
        log.append_batch([b"c", b"d", b"e"])
        proof = log.inclusion_proof(1, 5)
        merkle.verify_inclusion(merkle.leaf_hash(b"b"), 1, 5, proof, log.root(5))
        log.consistency_proof(2, 5)
        print("before", loaded())
        print("checkpoint modules", sorted(
            name for name in ("thirdway.ledger.checkpoint", "thirdway.ledger.keys", "secrets")
            if name in sys.modules
        ))
        note = log.checkpoint()
        print("after signing", loaded())
        assert log.open_checkpoint(note).size == 5
        assert log.verify().ok
        log.close()
        """
    )
    assert out.split("\n")[:3] == ["before False", "checkpoint modules []", "after signing True"]


def test_a_verifier_imports_cryptography_on_its_first_verify() -> None:
    signer = NoteSigner.from_seed("example.org/lazy", bytes(range(32)))
    note = sign_note("hello\n", [signer])
    out = run_fresh(
        f"""
        import sys
        from thirdway.ledger.note import NoteVerifier, open_note

        def loaded():
            return any(name.split(".")[0] == "cryptography" for name in sys.modules)

        verifier = NoteVerifier.from_vkey({signer.verifier().vkey()!r})
        print(loaded())
        print(verifier.verify("hello\\n", bytes(64)))
        print(open_note({note!r}, [verifier]).verified_by, loaded())
        """
    )
    assert out.split("\n")[:3] == ["False", "False", "('example.org/lazy',) True"]
