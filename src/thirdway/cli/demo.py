"""``thirdway demo``: the main job on the embedded default (a SQLite log in a temporary folder).

Until the gateway demo lands, the main job exercises the transparency log end to end: it records
a short agent session as ``thirdway/1`` log entries, signs a checkpoint, proves one entry's
inclusion and the consistency between two checkpoints, verifies the whole log, and finally shows
that a single flipped byte in the database is caught and named.
"""

from __future__ import annotations

import sqlite3
import tempfile
from pathlib import Path
from typing import Annotated

import typer

from thirdway.cli.common import console, friendly_errors
from thirdway.ledger import merkle
from thirdway.ledger.checkpoint import open_checkpoint
from thirdway.ledger.log import TransparencyLog
from thirdway.protocol import LogEntry, Observation, ToolCall, canonical_json

SESSION = "s-demo"
BILL = "Bill for the month of December 2023\nCar Rental  98.70\nPay to IBAN UK12345678901234567890"


def _session_entries() -> list[bytes]:
    observations = [
        Observation(
            session=SESSION,
            index=0,
            channel="principal",
            content="Can you please pay the bill 'bill-december-2023.txt' for me?",
        ),
        Observation(
            session=SESSION,
            index=1,
            channel="call",
            call=ToolCall(tool="read_file", args={"file_path": "bill-december-2023.txt"}),
        ),
        Observation(session=SESSION, index=2, channel="data", produced_by=1, content=BILL),
    ]
    return [
        canonical_json(
            LogEntry(
                type="observation",
                session=SESSION,
                agent="agent-demo",
                payload=obs.model_dump(mode="json", by_alias=True),
            )
        )
        for obs in observations
    ]


def _flip_one_byte(db: Path, index: int) -> None:
    """Tamper with a stored entry the way an attacker with file access would: triggers dropped."""
    with sqlite3.connect(db) as conn:
        triggers = conn.execute("SELECT name FROM sqlite_master WHERE type='trigger'").fetchall()
        for (name,) in triggers:
            conn.execute(f'DROP TRIGGER "{name}"')
        (data,) = conn.execute("SELECT data FROM entries WHERE idx=?", (index,)).fetchone()
        changed = bytes([data[0] ^ 0x01]) + bytes(data[1:])
        conn.execute("UPDATE entries SET data=? WHERE idx=?", (changed, index))


@friendly_errors
def demo(
    keep: Annotated[
        Path | None, typer.Option("--keep", help="Keep the demo database in this folder.")
    ] = None,
) -> None:
    """Record a session in a transparency log, prove it, verify it, and catch tampering."""
    with tempfile.TemporaryDirectory(prefix="thirdway-demo-") as tmp:
        folder = keep or Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        db = folder / "demo.sqlite"
        with TransparencyLog.open(db) as log:
            first = log.append_batch(_session_entries())
            note1 = log.checkpoint()
            more = log.append_batch([f"entry {i}".encode() for i in range(1000)])
            note2 = log.checkpoint()
            console.print(
                f"[bold]1.[/] appended {len(first)} session entries and {len(more)} more; "
                f"log size {log.size()}"
            )
            console.print("[bold]2.[/] signed checkpoint (C2SP signed note):")
            console.print(note2.rstrip(), soft_wrap=True, highlight=False, markup=False)

            cp1 = open_checkpoint(note1, log.verifier())
            cp2 = open_checkpoint(note2, log.verifier())
            proof = log.inclusion_proof(2, cp2.size)
            merkle.verify_inclusion(log.leaf_hash_at(2), 2, cp2.size, proof, cp2.root_hash)
            console.print(
                f"[bold]3.[/] entry 2 (the bill) is included in the tree of size {cp2.size}: "
                f"{len(proof)}-hash proof verified against the checkpoint"
            )
            consistency = log.consistency_proof(cp1.size, cp2.size)
            merkle.verify_consistency(cp1.size, cp2.size, consistency, cp1.root_hash, cp2.root_hash)
            console.print(
                f"[bold]4.[/] checkpoint {cp1.size} → {cp2.size} is an append-only extension: "
                f"{len(consistency)}-hash consistency proof verified"
            )
            report = log.verify()
            console.print(f"[bold]5.[/] log verify: {report.summary()}")
            if not report.ok:
                raise typer.Exit(1)

        _flip_one_byte(db, 2)
        with TransparencyLog.open(db, create=False) as log:
            report = log.verify()
        console.print(f"[bold]6.[/] after flipping one byte of entry 2 on disk: {report.summary()}")
        if report.ok:
            raise typer.Exit(1)
        console.print("[green]demo finished: the log proved what it holds and caught tampering[/]")
