"""The log page's checks: every stored checkpoint opened (signature, origin, root recomputed
from the entries), consistency between successive checkpoints, and the inclusion of one entry
in the latest checkpoint. The proofs are also handed to the browser, which checks them again
with WebCrypto (``static/verify.js``) so the auditor need not trust this server's word."""

from __future__ import annotations

import base64
from dataclasses import dataclass, field

from thirdway.errors import LogError, ProofError
from thirdway.ledger import merkle
from thirdway.ledger.checkpoint import Checkpoint
from thirdway.ledger.log import TransparencyLog

MAX_SHOWN_CHECKPOINTS = 50


def b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


@dataclass(frozen=True)
class CheckpointRow:
    number: int
    size: int | None
    root: str | None
    ok: bool
    message: str
    consistency: str | None = None
    """From the previous checkpoint: the server's result."""
    proof: list[str] = field(default_factory=list)
    previous_size: int | None = None
    previous_root: str | None = None


@dataclass(frozen=True)
class Inclusion:
    index: int
    size: int
    entry: str
    """The entry's bytes, base64 (the browser hashes them into the leaf itself)."""
    proof: list[str]
    root: str
    ok: bool
    message: str


@dataclass(frozen=True)
class LogView:
    origin: str
    size: int
    vkey: str
    checkpoints: list[CheckpointRow]
    inclusion: Inclusion | None
    entry_text: str | None
    error: str | None = None


def checkpoint_rows(log: TransparencyLog) -> tuple[list[CheckpointRow], Checkpoint | None]:
    """The latest :data:`MAX_SHOWN_CHECKPOINTS` checkpoints, each verified, and the newest
    valid checkpoint."""
    notes = log.checkpoints()
    first = max(0, len(notes) - MAX_SHOWN_CHECKPOINTS)
    rows: list[CheckpointRow] = []
    previous: Checkpoint | None = None
    latest: Checkpoint | None = None
    for number, note in enumerate(notes[first:], start=first + 1):
        try:
            checkpoint = log.open_checkpoint(note)
        except (ProofError, LogError) as exc:
            rows.append(CheckpointRow(number, None, None, False, str(exc)))
            continue
        consistency, proof = _consistency(log, previous, checkpoint)
        rows.append(
            CheckpointRow(
                number,
                checkpoint.size,
                b64(checkpoint.root_hash),
                True,
                "signature and root verified",
                consistency=consistency,
                proof=proof,
                previous_size=previous.size if previous else None,
                previous_root=b64(previous.root_hash) if previous else None,
            )
        )
        previous = latest = checkpoint
    return rows, latest


def _consistency(
    log: TransparencyLog, before: Checkpoint | None, after: Checkpoint
) -> tuple[str | None, list[str]]:
    if before is None or before.size == 0 or before.size >= after.size:
        return None, []
    try:
        proof = log.consistency_proof(before.size, after.size)
        merkle.verify_consistency(before.size, after.size, proof, before.root_hash, after.root_hash)
    except (ProofError, LogError) as exc:
        return f"not consistent: {exc}", []
    return f"consistent with checkpoint of size {before.size}", [b64(p) for p in proof]


def inclusion(log: TransparencyLog, index: int, checkpoint: Checkpoint) -> Inclusion:
    """Entry ``index`` proved into ``checkpoint``'s tree, checked here."""
    data = log.entry(index)
    proof = log.inclusion_proof(index, checkpoint.size)
    try:
        merkle.verify_inclusion(
            merkle.leaf_hash(data), index, checkpoint.size, proof, checkpoint.root_hash
        )
        ok, message = True, f"entry {index} is in the checkpointed tree of {checkpoint.size}"
    except ProofError as exc:
        ok, message = False, str(exc)
    return Inclusion(
        index, checkpoint.size, b64(data), [b64(p) for p in proof], b64(checkpoint.root_hash),
        ok, message,
    )  # fmt: skip


def log_view(log: TransparencyLog, entry: int | None) -> LogView:
    """Everything the log page shows; ``entry`` is the entry to prove (default: the newest
    entry the latest checkpoint covers)."""
    rows, latest = checkpoint_rows(log)
    size = log.size()
    shown: Inclusion | None = None
    text: str | None = None
    error: str | None = None
    if latest is not None and latest.size > 0:
        wanted = latest.size - 1 if entry is None else entry
        if 0 <= wanted < latest.size:
            shown = inclusion(log, wanted, latest)
            raw = log.entry(wanted)
            text = raw[:20_000].decode("utf-8", "replace")
        else:
            error = (
                f"entry {wanted} is not covered by the latest checkpoint "
                f"(entries 0..{latest.size - 1}); sign a new checkpoint first"
            )
    return LogView(log.origin, size, log.verifier().vkey(), rows, shown, text, error)
