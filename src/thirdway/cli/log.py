"""``thirdway log …``: the transparency log, on a SQLite file or in the PostgreSQL database that
several gateway workers share (and ``bench log``).

``--db`` is kept a string (a :class:`Path` would fold ``postgresql://`` into ``postgresql:/``):
a file path or ``sqlite:///PATH`` opens the SQLite log, whose key lives beside it as
``<file>.key``; a ``postgresql://`` URL opens the shared log, whose key is a file of its own
(``--key``; the gateway keeps it as ``log.key`` in its data folder). Only ``checkpoint`` signs
and only ``append`` may create a log, so only they need that key on PostgreSQL; every other
command opens the log read-only. Messages name a URL without its password.

Hashes are printed in standard base64 (as in C2SP checkpoints); ``--json`` gives the same in a
machine-readable form, and a proof written with ``prove --json`` / ``consistency --json`` can be
checked later, without the database, by ``verify-proof``.
"""

from __future__ import annotations

import base64
import json
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, Literal

import typer
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from rich.table import Table
from rich.text import Text

from thirdway.cli.common import console, fail, friendly_errors, read_input, shown_location
from thirdway.errors import InputError, ProofError
from thirdway.ledger import merkle
from thirdway.ledger.checkpoint import Checkpoint, open_checkpoint
from thirdway.ledger.log import MAX_ENTRY_BYTES, TransparencyLog, VerifyReport
from thirdway.ledger.note import NoteVerifier, decode_base64

app = typer.Typer(
    help="The transparency log: append, checkpoint, prove, verify.", no_args_is_help=True
)

DEFAULT_DB = "thirdway.sqlite"
#: Entries appended per transaction when ``append`` reads many lines.
APPEND_CHUNK = 10_000
#: A proof file is a few kilobytes; refuse anything much bigger before parsing it.
MAX_PROOF_FILE_BYTES = 1 << 20

DbOption = Annotated[
    str,
    typer.Option(
        "--db",
        envvar="THIRDWAY_DB",
        help="The log: a file path, sqlite:///PATH or a postgresql:// URL (env THIRDWAY_DB).",
        show_default=True,
    ),
]
KeyOption = Annotated[
    Path | None,
    typer.Option(
        "--key",
        help="The log key file (needed for a postgresql:// log: the gateway keeps it as log.key "
        "in its data folder; a SQLite log's key is <file>.key beside it).",
    ),
]
READ_ONLY_KEY = Path("<no key: this command reads the log and signs nothing>")
"""The key path a PostgreSQL log is opened with by the commands that never sign: were anything
to try, the log would refuse naming this (missing) key rather than create one."""
JsonOption = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")]
VkeyOption = Annotated[
    str | None,
    typer.Option(
        "--vkey",
        help="The log's published verifier key (default: the key recorded in the database).",
    ),
]


def register_bench(bench_app: typer.Typer) -> None:
    """Attach ``thirdway bench log`` (the benchmark module is imported only when it runs)."""

    @bench_app.command("log")
    @friendly_errors
    def bench_log(
        quick: Annotated[
            bool, typer.Option("--quick", help="Small trees and fewer samples (under 30 s).")
        ] = False,
        sizes: Annotated[
            str | None,
            typer.Option("--sizes", help="Comma-separated tree sizes (default 10^4,10^5,10^6)."),
        ] = None,
        json_path: Annotated[
            Path | None, typer.Option("--json", help="Also write the results to this JSON file.")
        ] = None,
        samples: Annotated[
            int | None, typer.Option("--samples", help="Proofs measured per kind and size.")
        ] = None,
        pymerkle_max_size: Annotated[
            int | None,
            typer.Option("--pymerkle-max-size", help="Skip pymerkle above this tree size."),
        ] = None,
        tmpdir: Annotated[
            Path | None,
            typer.Option("--tmpdir", help="Where the temporary databases go (default: system)."),
        ] = None,
        repeat: Annotated[
            int | None,
            typer.Option("--repeat", help="Rounds per size (default 3, or 1 with --quick)."),
        ] = None,
    ) -> None:
        """Durable appends, proofs and memory of the log, against pymerkle (SQLite)."""
        from thirdway.bench.log import run_command

        run_command(
            quick=quick,
            sizes=sizes,
            json_path=json_path,
            samples=samples,
            pymerkle_max_size=pymerkle_max_size,
            tmpdir=tmpdir,
            repeat=repeat,
        )


def _trusted_key(vkey: str | None) -> NoteVerifier | None:
    return None if vkey is None else NoteVerifier.from_vkey(vkey)


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


def ok(message: str) -> None:
    """Print a success line; ``message`` is plain text (never parsed as rich markup)."""
    console.print(Text.assemble(("✓ ", "green"), message), soft_wrap=True)


def _print_json(value: dict[str, Any]) -> None:
    typer.echo(json.dumps(value, indent=2))


@contextmanager
def _open_log(
    db: str, *, key: Path | None = None, create: bool = False, origin: str | None = None
) -> Iterator[TransparencyLog]:
    """The log at ``db`` (a path, ``sqlite:///PATH`` or ``postgresql://`` URL), closed after.

    Without ``key`` a SQLite log signs with ``<file>.key`` as always, and a PostgreSQL log with
    no key at all (:data:`READ_ONLY_KEY`)."""
    from thirdway.ledger.open import is_postgres_url, open_log

    if key is None and is_postgres_url(db):
        key = READ_ONLY_KEY
    log = open_log(db, key_path=key, create=create, origin=origin)
    try:
        yield log
    finally:
        log.close()


def _needs_key(db: str, key: Path | None, command: str, why: str) -> None:
    """Refuse ``command`` on a PostgreSQL log when no ``--key`` names its key file."""
    from thirdway.ledger.open import is_postgres_url

    if key is None and is_postgres_url(db):
        from thirdway.gateway.gatekeeper import LOG_KEY_NAME

        raise InputError(
            f"'log {command}' on the PostgreSQL log {shown_location(db)} needs --key PATH, the "
            f"log key file ({LOG_KEY_NAME} in the gateway's data folder): {why}"
        )


# --- append / checkpoint / show ------------------------------------------------------------


def _entries_from_input(data: list[str] | None, file: Path | None) -> list[bytes]:
    if data and file is not None:
        raise InputError("give entries as arguments or with --file, not both")
    if file is not None:
        if str(file) != "-" and file.is_file() and file.stat().st_size > MAX_ENTRY_BYTES:
            raise InputError(f"entry file {file} is larger than {MAX_ENTRY_BYTES} bytes")
        return [read_input(file, "entry")]
    if data:
        return [os.fsencode(item) for item in data]
    if sys.stdin.isatty():
        raise InputError("nothing to append: give DATA arguments, --file, or lines on stdin")
    lines = sys.stdin.buffer.read().splitlines()
    if not lines:
        raise InputError("nothing to append: standard input was empty")
    return lines


@app.command("append")
@friendly_errors
def append(
    data: Annotated[
        list[str] | None,
        typer.Argument(help="Entries to append, one per argument (UTF-8).", show_default=False),
    ] = None,
    file: Annotated[
        Path | None,
        typer.Option("--file", "-f", help="Append this file's bytes as one entry (- = stdin)."),
    ] = None,
    origin: Annotated[
        str | None,
        typer.Option("--origin", help="Origin (log name) for a new log; must match an old one."),
    ] = None,
    db: DbOption = DEFAULT_DB,
    key: KeyOption = None,
    as_json: JsonOption = False,
) -> None:
    """Append entries (arguments, --file, or one per line on stdin); creates the log if needed."""
    _needs_key(db, key, "append", "a new log's key is created there, where every worker finds it")
    items = _entries_from_input(data, file)
    with _open_log(db, key=key, create=True, origin=origin) as log:
        # Each chunk is one durable transaction; a huge stdin is not one giant batch.
        chunks = [
            log.append_batch(items[start : start + APPEND_CHUNK])
            for start in range(0, len(items), APPEND_CHUNK)
        ]
        size = log.size()
    indices = range(chunks[0].start, chunks[-1].stop)
    if as_json:
        _print_json({"first": indices.start, "count": len(indices), "size": size})
        return
    if len(indices) == 1:
        console.print(f"appended entry {indices.start}; the log has {size} entries")
    else:
        console.print(
            f"appended entries {indices.start}..{indices.stop - 1}; the log has {size} entries"
        )


@app.command("checkpoint")
@friendly_errors
def checkpoint(
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="Write the signed note to this file.")
    ] = None,
    db: DbOption = DEFAULT_DB,
    key: KeyOption = None,
    as_json: JsonOption = False,
) -> None:
    """Sign the current size and root as a C2SP checkpoint (signed note), store and print it."""
    _needs_key(db, key, "checkpoint", "a checkpoint is signed with it")
    with _open_log(db, key=key) as log:
        note = log.checkpoint()
        parsed = open_checkpoint(note, log.verifier())
    if out is not None:
        out.write_text(note, encoding="utf-8")
    if as_json:
        _print_json(
            {
                "origin": parsed.origin,
                "size": parsed.size,
                "root": _b64(parsed.root_hash),
                "note": note,
            }
        )
    elif out is not None:
        console.print(f"wrote the checkpoint for size {parsed.size} to {out}")
    else:
        typer.echo(note, nl=False)


def _printable(data: bytes) -> str | None:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return None
    if any(ch < " " and ch not in "\t\n" for ch in text):
        return None
    return text


@app.command("show")
@friendly_errors
def show(
    index: Annotated[int, typer.Option("--index", "-i", help="Entry index (from 0).")],
    db: DbOption = DEFAULT_DB,
    as_json: JsonOption = False,
) -> None:
    """Print one entry (as text if it is printable UTF-8, else base64) and its leaf hash."""
    with _open_log(db) as log:
        data = log.entry(index)
        leaf = log.leaf_hash_at(index)
    if as_json:
        _print_json({"index": index, "leaf_hash": _b64(leaf), "data_base64": _b64(data)})
        return
    text = _printable(data)
    console.print(
        f"entry {index}: {len(data)} bytes, leaf hash {_b64(leaf)} (base64)", soft_wrap=True
    )
    if text is None:
        console.print(Text(f"data (base64): {_b64(data)}"))
    else:
        console.print(Text(text))


@app.command("info")
@friendly_errors
def info(db: DbOption = DEFAULT_DB, as_json: JsonOption = False) -> None:
    """Print the log's origin, size, root and public key."""
    with _open_log(db) as log:
        size = log.size()
        summary = {
            "origin": log.origin,
            "size": size,
            "root": _b64(log.root(size)),
            "vkey": log.verifier().vkey(),
            "checkpoints": len(log.checkpoints()),
        }
    if as_json:
        _print_json(summary)
        return
    table = Table(show_header=False, title=Text(f"log {shown_location(db)}"))
    for key, value in summary.items():
        table.add_row(key, Text(str(value), overflow="fold"))
    console.print(table)


# --- proofs ---------------------------------------------------------------------------------


def _proof_table(title: str, rows: list[tuple[str, str]], proof: list[bytes]) -> Table:
    table = Table(title=title, show_header=False)
    for key, value in rows:
        table.add_row(key, Text(value))
    for number, element in enumerate(proof):
        table.add_row(f"proof[{number}]", _b64(element))
    if not proof:
        table.add_row("proof", "(empty)")
    return table


@app.command("prove")
@friendly_errors
def prove(
    index: Annotated[int, typer.Option("--index", "-i", help="Entry index (from 0).")],
    size: Annotated[
        int | None, typer.Option("--size", "-n", help="Tree size (default: the current size).")
    ] = None,
    db: DbOption = DEFAULT_DB,
    as_json: JsonOption = False,
) -> None:
    """Print the inclusion proof of entry INDEX in the tree of SIZE entries, verified."""
    with _open_log(db) as log:
        current = log.size()
        tree_size = current if size is None else size
        proof = log.inclusion_proof(index, tree_size)
        leaf = log.leaf_hash_at(index)
        root = log.root(tree_size)
        origin = log.origin
    merkle.verify_inclusion(leaf, index, tree_size, proof, root)
    against = "the current root" if tree_size == current else f"the root at size {tree_size}"
    if as_json:
        _print_json(
            {
                "type": "inclusion",
                "encoding": "base64",
                "origin": origin,
                "index": index,
                "size": tree_size,
                "leaf_hash": _b64(leaf),
                "root": _b64(root),
                "proof": [_b64(h) for h in proof],
                "verified": True,
            }
        )
        return
    rows = [
        ("entry", str(index)),
        ("tree size", str(tree_size)),
        ("leaf hash", _b64(leaf)),
        ("root", _b64(root)),
    ]
    title = "inclusion proof (hashes in base64, leaf to root)"
    console.print(_proof_table(title, rows, proof))
    ok(f"verified against {against} ({len(proof)} hashes)")


@app.command("consistency")
@friendly_errors
def consistency(
    size1: Annotated[int, typer.Option("--from", help="The older tree size (>= 1).")],
    size2: Annotated[
        int | None, typer.Option("--to", help="The newer tree size (default: the current size).")
    ] = None,
    db: DbOption = DEFAULT_DB,
    as_json: JsonOption = False,
) -> None:
    """Print the proof that the tree of FROM entries is a prefix of the tree of TO entries."""
    with _open_log(db) as log:
        current = log.size()
        newer = current if size2 is None else size2
        proof = log.consistency_proof(size1, newer)
        root1, root2 = log.root(size1), log.root(newer)
        origin = log.origin
    merkle.verify_consistency(size1, newer, proof, root1, root2)
    if as_json:
        _print_json(
            {
                "type": "consistency",
                "encoding": "base64",
                "origin": origin,
                "size1": size1,
                "size2": newer,
                "root1": _b64(root1),
                "root2": _b64(root2),
                "proof": [_b64(h) for h in proof],
                "verified": True,
            }
        )
        return
    rows = [
        ("from size", str(size1)),
        ("root", _b64(root1)),
        ("to size", str(newer)),
        ("root", _b64(root2)),
    ]
    console.print(_proof_table("consistency proof (hashes in base64)", rows, proof))
    ok(f"verified: size {size1} is a prefix of size {newer}")


class _ProofFileBase(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    encoding: Literal["base64"] = "base64"
    origin: str | None = Field(default=None, max_length=1024)
    proof: list[str] = Field(max_length=256)
    verified: bool | None = None


class _InclusionFile(_ProofFileBase):
    type: Literal["inclusion"]
    index: int = Field(ge=0, le=merkle.MAX_TREE_SIZE)
    size: int = Field(ge=0, le=merkle.MAX_TREE_SIZE)
    leaf_hash: str = Field(max_length=64)
    root: str = Field(max_length=64)


class _ConsistencyFile(_ProofFileBase):
    type: Literal["consistency"]
    size1: int = Field(ge=0, le=merkle.MAX_TREE_SIZE)
    size2: int = Field(ge=0, le=merkle.MAX_TREE_SIZE)
    root1: str = Field(max_length=64)
    root2: str = Field(max_length=64)


def _load_proof_file(path: Path) -> _InclusionFile | _ConsistencyFile:
    raw = read_input(path, "proof")
    if len(raw) > MAX_PROOF_FILE_BYTES:
        raise InputError(f"proof file {path} is larger than {MAX_PROOF_FILE_BYTES} bytes")
    try:
        document = json.loads(raw)
    except (UnicodeDecodeError, ValueError) as exc:
        raise InputError(f"proof file {path} is not JSON: {exc}") from None
    if not isinstance(document, dict):
        raise InputError(f"proof file {path} must hold a JSON object")
    kind = document.get("type")
    model: type[_InclusionFile | _ConsistencyFile]
    if kind == "inclusion":
        model = _InclusionFile
    elif kind == "consistency":
        model = _ConsistencyFile
    else:
        raise InputError(f"proof file {path}: type must be 'inclusion' or 'consistency'")
    try:
        return model.model_validate(document)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "(top level)"
        raise InputError(f"proof file {path}: {where}: {first['msg']}") from None


def _hash(value: str, what: str) -> bytes:
    raw = decode_base64(value, what, InputError)
    if len(raw) != merkle.HASH_SIZE:
        raise InputError(f"{what} is {len(raw)} bytes, not {merkle.HASH_SIZE}")
    return raw


def _anchor(checkpoint_file: Path | None, vkey: str | None, db: str) -> Checkpoint | None:
    """Open ``--checkpoint`` with ``--vkey`` (or the key recorded in the log at ``--db``)."""
    if checkpoint_file is None:
        if vkey is not None:
            raise InputError("--vkey needs --checkpoint")
        return None
    note = read_input(checkpoint_file, "checkpoint")
    if vkey is not None:
        return open_checkpoint(note, NoteVerifier.from_vkey(vkey))
    with _open_log(db) as log:
        return open_checkpoint(note, log.verifier(), origin=log.origin)


@app.command("verify-proof")
@friendly_errors
def verify_proof(
    proof_file: Annotated[
        Path, typer.Argument(help="A proof written by 'prove --json' or 'consistency --json'.")
    ],
    checkpoint_file: Annotated[
        Path | None,
        typer.Option("--checkpoint", help="A signed checkpoint the proof must lead to."),
    ] = None,
    vkey: Annotated[
        str | None,
        typer.Option("--vkey", help="The log's verifier key (default: the one in --db)."),
    ] = None,
    db: DbOption = DEFAULT_DB,
) -> None:
    """Check a saved inclusion or consistency proof, optionally against a signed checkpoint."""
    document = _load_proof_file(proof_file)
    anchor = _anchor(checkpoint_file, vkey, db)
    if isinstance(document, _InclusionFile):
        proof = [_hash(h, f"proof[{n}]") for n, h in enumerate(document.proof)]
        root, size = _hash(document.root, "root"), document.size
        leaf = _hash(document.leaf_hash, "leaf_hash")
        merkle.verify_inclusion(leaf, document.index, size, proof, root)
        message = f"entry {document.index} is included in the tree of size {size}"
    else:
        proof = [_hash(h, f"proof[{n}]") for n, h in enumerate(document.proof)]
        root1, root2 = _hash(document.root1, "root1"), _hash(document.root2, "root2")
        root, size = root2, document.size2
        merkle.verify_consistency(document.size1, size, proof, root1, root2)
        message = f"size {document.size1} is a prefix of size {size}"
    if anchor is not None:
        if document.origin is not None and document.origin != anchor.origin:
            raise ProofError(
                f"proof is for log {document.origin!r}, checkpoint for {anchor.origin!r}"
            )
        if anchor.size != size or anchor.root_hash != root:
            raise ProofError(
                f"proof leads to size {size} root {_b64(root)}, but the checkpoint signs "
                f"size {anchor.size} root {_b64(anchor.root_hash)}"
            )
        ok(f"{message}, whose root the checkpoint signs")
    else:
        ok(f"{message} (root taken from the proof file; pass --checkpoint)")


@app.command("verify-checkpoint")
@friendly_errors
def verify_checkpoint(
    checkpoint_file: Annotated[Path, typer.Argument(help="A signed checkpoint note (- = stdin).")],
    vkey: VkeyOption = None,
    db: DbOption = DEFAULT_DB,
    as_json: JsonOption = False,
) -> None:
    """Check a checkpoint's signature (by this log's key) and that the log's entries produce it."""
    note = read_input(checkpoint_file, "checkpoint")
    with _open_log(db) as log:
        try:
            parsed = log.open_checkpoint(note, trusted_key=_trusted_key(vkey))
        except ProofError as exc:
            raise ProofError(f"checkpoint {checkpoint_file} rejected: {exc}") from None
        size = log.size()
    if as_json:
        _print_json(
            {
                "origin": parsed.origin,
                "size": parsed.size,
                "root": _b64(parsed.root_hash),
                "log_size": size,
                "verified": True,
            }
        )
        return
    ok(
        f"checkpoint verified: {parsed.origin} size {parsed.size} root "
        f"{_b64(parsed.root_hash)} is signed by the log key and matches entries "
        f"0..{parsed.size - 1} (the log now has {size})"
    )


# --- verify ---------------------------------------------------------------------------------


def _report_json(report: VerifyReport) -> dict[str, Any]:
    return {
        "ok": report.ok,
        "size": report.size,
        "root": _b64(report.root),
        "entries_checked": report.entries_checked,
        "nodes_checked": report.nodes_checked,
        "checkpoints_checked": report.checkpoints_checked,
        "first_bad_entry": report.first_bad_entry,
        "problems": list(report.problems),
        "problems_truncated": report.problems_truncated,
    }


@app.command("verify")
@friendly_errors
def verify(vkey: VkeyOption = None, db: DbOption = DEFAULT_DB, as_json: JsonOption = False) -> None:
    """Recompute the whole tree from the entries and check every stored checkpoint."""
    trusted = _trusted_key(vkey)
    with _open_log(db) as log:
        report = log.verify(trusted_key=trusted)
    if as_json:
        _print_json(_report_json(report))
        if not report.ok:
            raise typer.Exit(1)
        return
    if report.ok:
        ok(f"log {shown_location(db)}: {report.summary()}")
        return
    where = (
        "" if report.first_bad_entry is None else f" (first bad entry: {report.first_bad_entry})"
    )
    more = len(report.problems) - 1
    suffix = f"; {more} more problem(s), see --json" if more else ""
    raise fail(f"log verification failed{where}: {report.problems[0]}{suffix}", code=1)
