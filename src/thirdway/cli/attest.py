"""``thirdway attest show | verify | measure | accept``: the verifier enclave's attestation.

``show`` starts an enclave (with the shipped or given manifests and charter and the default
verify policy) and prints its attestation as JSON, pretty-prints one read from a file, or with
``--log`` lists every enclave start and operator acceptance recorded in a gateway's log.
``verify`` checks an attestation file: its signature under its own key, that its components hash
to its measurement, the platform claim against the quote (``process`` must say it has no
hardware attestation; a quote must be bound to SHA-512(key ‖ nonce)), and optionally the nonce
and the expected measurement. ``verify --log`` checks a gateway's whole log: every logged
attestation, and every signed verdict against its attestation, an earlier operator acceptance
of its measurement, the proposal it judged and the request the log records
(:func:`~thirdway.gateway.enclave_link.audit_log`). ``measure`` prints the measurement an
enclave should report here, computed from this installation's files. Exit 0: verified; 1: the
attestation or the log fails a check; 2: the input could not be read.
"""

from __future__ import annotations

import importlib
import json
import re
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from pydantic import ValidationError

from thirdway.cli.common import err_console, fail, friendly_errors, read_input, shown_location
from thirdway.enclave.attestation import Attestation, Measurement, expected_measurement
from thirdway.enclave.attestation import verify_attestation as check_attestation
from thirdway.enclave.tsm import HardwareMode
from thirdway.errors import EnclaveError, InputError
from thirdway.ledger.log import TransparencyLog
from thirdway.protocol.manifest import ManifestSet
from thirdway.protocol.parse import describe
from thirdway.verify import VerifyPolicy

if TYPE_CHECKING:
    from thirdway.gateway.enclave_link import LogAudit

app = typer.Typer(
    help="The verifier enclave's attestation: show it, verify it, or compute the expected one.",
    no_args_is_help=True,
)

MAX_ATTESTATION_BYTES = 4 * 1024 * 1024
HEX64 = re.compile(r"^[0-9a-f]{64}$")

ManifestsOption = Annotated[
    Path | None,
    typer.Option("--manifests", help="Tool manifests (YAML file or directory; default: shipped)."),
]
CharterOption = Annotated[
    Path | None, typer.Option("--charter", help="Charter YAML (default: the shipped charter).")
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")]
LogOption = Annotated[
    str | None,
    typer.Option(
        "--log",
        help="A gateway's data folder (its log.db), log database file, or the postgresql:// URL "
        "of several workers' log: use the attestations and signed verdicts recorded there.",
    ),
]
READ_ONLY_KEY = Path("<no key: attest reads the log and signs nothing>")
"""The key path a PostgreSQL log is opened with: the audit never signs a checkpoint, and were
anything to try, the log would refuse naming this (missing) key."""


def register(root: typer.Typer) -> None:
    """Attach ``thirdway attest``."""
    root.add_typer(app, name="attest")


# --------------------------------------------------------------------------- helpers


def load_manifests(path: Path | None) -> ManifestSet:
    """The manifests the gateway would use (``thirdway.policy.manifests`` where installed)."""
    try:
        loader = importlib.import_module("thirdway.policy.manifests").load_manifests
    except (ImportError, AttributeError):
        if path is not None:
            raise InputError(
                "this installation has no manifest loader (thirdway.policy.manifests)"
            ) from None
        err_console.print("note: no manifest loader in this installation; using an empty set")
        return ManifestSet()
    manifests = loader(path)
    if not isinstance(manifests, ManifestSet):
        raise InputError("the manifest loader did not return a ManifestSet")
    return manifests


def _load_charter(path: Path | None) -> Any:
    from thirdway.charter import load_charter

    return load_charter(path)


def read_attestation(path: Path) -> Attestation:
    """An attestation file (``-`` for stdin), or a one-line :class:`InputError`."""
    data = read_input(path, "attestation")
    if len(data) > MAX_ATTESTATION_BYTES:
        raise InputError(f"attestation is {len(data)} bytes; the limit is {MAX_ATTESTATION_BYTES}")
    try:
        return Attestation.model_validate_json(data)
    except ValidationError as exc:
        raise InputError(describe(exc, f"attestation {path}")) from None


@contextmanager
def open_logged(location: str) -> Iterator[TransparencyLog]:
    """A gateway's log, read-only: ``location`` is its data folder, the SQLite database file
    itself (a path or ``sqlite:///PATH``), or the ``postgresql://`` URL its workers share.

    Kept a string until here: a :class:`Path` would fold the URL's ``//`` and read it as a
    missing file."""
    from thirdway.ledger.open import is_postgres_url, open_log, sqlite_path

    if is_postgres_url(location):
        # An unreachable database or one holding no thirdway log is a one-line LogError.
        log = open_log(location, key_path=READ_ONLY_KEY, create=False)
    else:
        log = _open_sqlite_logged(sqlite_path(location))
    try:
        yield log
    finally:
        log.close()


def _open_sqlite_logged(path: Path) -> TransparencyLog:
    from thirdway.gateway.gatekeeper import LOG_NAME

    database = path / LOG_NAME if path.is_dir() else path
    if not database.is_file():
        where = f"no {LOG_NAME} in the folder {path}" if path.is_dir() else str(path)
        raise InputError(f"log not found: {where}")
    try:
        return TransparencyLog.open(database, create=False)
    except sqlite3.Error as exc:
        raise InputError(f"{database} is not a thirdway log ({exc})") from None


def _audit(location: str) -> LogAudit:
    from thirdway.gateway.enclave_link import audit_log

    with open_logged(location) as log:
        try:
            return audit_log(log)
        except sqlite3.Error as exc:
            raise InputError(f"cannot read the log {shown_location(location)}: {exc}") from None


def _hex64(value: str | None, option: str) -> str | None:
    if value is not None and not HEX64.match(value):
        raise InputError(f"{option} must be 64 lower-case hex digits, not {value[:80]!r}")
    return value


def _print_json(value: Any) -> None:
    typer.echo(json.dumps(value, indent=2, ensure_ascii=False))


# --------------------------------------------------------------------------- commands


@app.command("show")
@friendly_errors
def show(
    source: Annotated[
        Path | None,
        typer.Option("--from", help="Print this attestation file instead of starting an enclave."),
    ] = None,
    manifests: ManifestsOption = None,
    charter: CharterOption = None,
    hardware: Annotated[
        str, typer.Option("--hardware", help="auto | require | off: use configfs-tsm?")
    ] = "auto",
    out: Annotated[
        Path | None, typer.Option("--out", help="Also write the attestation JSON here.")
    ] = None,
    log: LogOption = None,
    as_json: JsonOption = False,
) -> None:
    """Start a verifier enclave and print its attestation (or print one from a file, or list
    the enclave starts and measurement acceptances in a gateway's log)."""
    if hardware not in ("auto", "require", "off"):
        raise InputError(f"--hardware must be auto, require or off, not {hardware!r}")
    if log is not None:
        if source is not None or out is not None:
            raise InputError("--log lists a log's attestations; it takes no --from or --out")
        _show_log(log, as_json)
        return
    if source is not None:
        attestation = read_attestation(source)
    else:
        from thirdway.enclave.client import EnclaveClient

        mode: HardwareMode = hardware  # type: ignore[assignment]
        client = EnclaveClient(
            load_manifests(manifests), VerifyPolicy(), _load_charter(charter), hardware=mode
        )
        with client:
            started = client.attestation
        if started is None:
            raise EnclaveError("the enclave started without an attestation")
        attestation = started
    document = attestation.model_dump(mode="json")
    if out is not None:
        out.write_text(json.dumps(document, indent=2, ensure_ascii=False) + "\n")
    _print_json(document)
    err_console.print(f"attestation id {attestation.id}", highlight=False)


def _show_log(path: str, as_json: bool) -> None:
    audit = _audit(path)
    starts = [
        {
            "index": logged.index,
            "start": logged.start,
            "attestation_id": logged.attestation.id,
            "measurement": logged.attestation.measurement,
            "accepted_before": logged.accepted,
            "platform": logged.attestation.platform,
            "public_key": logged.attestation.public_key,
            "note": logged.attestation.note,
        }
        for logged in audit.attestations
    ]
    acceptances = [
        {"index": index, "measurement": r.measurement, "operator": r.operator, "reason": r.reason}
        for index, r in audit.acceptances
    ]
    if as_json:
        _print_json({"enclave_starts": starts, "acceptances": acceptances})
    else:
        typer.echo(f"log {shown_location(path)}: {audit.entries} entries")
        typer.echo(f"measurement acceptances: {len(acceptances)}")
        for accepted in acceptances:
            typer.echo(
                f"  entry {accepted['index']}: {accepted['measurement']} by "
                f"{accepted['operator']}: {accepted['reason']}"
            )
        typer.echo(f"enclave starts: {len(starts)}")
        for start in starts:
            status = "accepted" if start["accepted_before"] else "NOT accepted when started"
            typer.echo(
                f"  entry {start['index']}: start {start['start']}, attestation "
                f"{start['attestation_id']}, measurement {start['measurement']} ({status}), "
                f"platform {start['platform']}"
            )
    if audit.problems:
        err_console.print(
            f"{len(audit.problems)} problem(s) in this log: run thirdway attest verify --log",
            highlight=False,
        )


@app.command("verify")
@friendly_errors
def verify_command(
    file: Annotated[
        Path | None, typer.Argument(help="Attestation JSON file (- for stdin); or use --log.")
    ] = None,
    expect: Annotated[
        str | None,
        typer.Option("--expect", help="The measurement it must report (64 hex digits)."),
    ] = None,
    nonce: Annotated[
        str | None, typer.Option("--nonce", help="The nonce it must answer (64 hex digits).")
    ] = None,
    log: LogOption = None,
    as_json: JsonOption = False,
) -> None:
    """Check an attestation's signature, measurement, nonce and platform claim; or, with
    --log, every attestation and signed verdict in a gateway's log."""
    expected = _hex64(expect, "--expect")
    fresh = _hex64(nonce, "--nonce")
    if log is not None:
        if file is not None or fresh is not None:
            raise InputError("--log checks a whole log: give no attestation file or --nonce")
        _verify_log(log, expected, as_json)
        return
    if file is None:
        raise InputError("give an attestation file (- for stdin) or --log")
    attestation = read_attestation(file)
    try:
        check_attestation(attestation, nonce=fresh, expected_measurement=expected)
    except EnclaveError as exc:
        raise fail(f"attestation rejected: {exc}", code=1) from None
    report = _report(attestation, expected, fresh)
    if as_json:
        _print_json(report)
        return
    typer.echo(f"attestation {attestation.id}: valid")
    typer.echo(f"  signature    Ed25519 over its content, key {attestation.public_key}")
    typer.echo(f"  measurement  {attestation.measurement} ({report['measurement_check']})")
    parts = attestation.components
    typer.echo(
        f"  components   {len(parts.code)} code modules; manifests {parts.manifests[:16]}…; "
        f"policy {parts.policy[:16]}…; charter {parts.charter[:16]}…"
    )
    typer.echo(f"  nonce        {attestation.nonce} ({report['nonce_check']})")
    typer.echo(f"  platform     {attestation.platform}: {report['platform_check']}")


def _verify_log(path: str, expected: str | None, as_json: bool) -> None:
    audit = _audit(path)
    problems = list(audit.problems)
    latest = audit.attestations[-1].attestation if audit.attestations else None
    if expected is not None and (latest is None or latest.measurement != expected):
        found = latest.measurement if latest is not None else "no enclave start"
        problems.append(f"the latest enclave start reports {found}, not --expect {expected}")
    report = {
        "log": shown_location(path),
        "valid": not problems,
        "entries": audit.entries,
        "enclave_starts": len(audit.attestations),
        "acceptances": len(audit.acceptances),
        "signed_verdicts_checked": audit.signed_verdicts,
        "capabilities_on_enclave_verdicts": audit.capabilities_on_enclave_verdicts,
        "verdict_errors": audit.verdict_errors,
        "unsigned_verdicts": audit.unsigned_verdicts,
        "not_thirdway_entries": audit.foreign,
        "problems": problems,
    }
    if as_json:
        _print_json(report)
    else:
        typer.echo(f"log {shown_location(path)}: {audit.entries} entries")
        typer.echo(f"  enclave starts        {len(audit.attestations)} (each attestation verified)")
        typer.echo(f"  acceptances           {len(audit.acceptances)}")
        typer.echo(
            f"  signed verdicts       {audit.signed_verdicts} checked: enclave signature, "
            "logged attestation, accepted measurement, proposal and request digest"
        )
        typer.echo(
            f"  capabilities          {audit.capabilities_on_enclave_verdicts} minted on "
            "checked enclave verdicts"
        )
        typer.echo(f"  no verdict (refused)  {audit.verdict_errors}")
        if audit.unsigned_verdicts:
            names = ", ".join(f"{n} {name}" for name, n in sorted(audit.unsigned_verdicts.items()))
            typer.echo(f"  unsigned verdicts     {names} (not from the enclave: not attested)")
        if expected is not None and latest is not None and latest.measurement == expected:
            typer.echo("  latest enclave start reports the --expect measurement")
    if problems:
        for problem in problems[:50]:
            err_console.print(f"problem: {problem}", highlight=False, soft_wrap=True)
        if len(problems) > 50:
            err_console.print(f"… and {len(problems) - 50} more", highlight=False)
        raise fail(f"log rejected: {len(problems)} problem(s)", code=1)
    if not as_json:
        typer.echo("valid (the log's own integrity: thirdway log verify)")


def _report(attestation: Attestation, expected: str | None, nonce: str | None) -> dict[str, Any]:
    if attestation.quote is None:
        platform = attestation.note
    else:
        platform = (
            f"{len(attestation.quote.outblob) * 3 // 4} byte quote bound to SHA-512(key ‖ nonce); "
            "the quote itself is not checked here: verify it with the vendor's tooling"
        )
    return {
        "id": attestation.id,
        "valid": True,
        "measurement": attestation.measurement,
        "measurement_check": "matches --expect"
        if expected is not None
        else "not compared: pass --expect",
        "nonce_check": "matches --nonce" if nonce is not None else "not compared: pass --nonce",
        "platform": attestation.platform,
        "platform_check": platform,
    }


@app.command("measure")
@friendly_errors
def measure_command(
    manifests: ManifestsOption = None,
    charter: CharterOption = None,
    as_json: JsonOption = False,
) -> None:
    """Print the measurement an enclave must report, computed from this installation's files."""
    measurement: Measurement = expected_measurement(
        load_manifests(manifests), VerifyPolicy(), _load_charter(charter)
    )
    if as_json:
        _print_json({"measurement": measurement.value, "components": measurement.model_dump()})
        return
    typer.echo(measurement.value)


@app.command("accept")
@friendly_errors
def accept_command(
    measurement: Annotated[str, typer.Argument(help="The measurement to trust (64 hex digits).")],
    reason: Annotated[str, typer.Option("--reason", help="Why this verifier may be trusted.")],
    operator: Annotated[str, typer.Option("--operator", help="Who accepts it (your id).")],
    data_dir: Annotated[
        Path, typer.Option("--data-dir", help="The gateway's data folder.", file_okay=False)
    ],
) -> None:
    """Accept a verifier measurement: the gateway mints on that enclave's verdicts again.

    The acceptance goes into the data folder's allow-list; the gateway appends it to the
    transparency log before it next verifies (only the gateway writes its log)."""
    from thirdway.enclave.allowlist import MeasurementAllowList
    from thirdway.gateway.enclave_link import allowlist_path

    value = _hex64(measurement, "MEASUREMENT")
    assert value is not None
    if not data_dir.is_dir():
        raise InputError(f"data folder not found: {data_dir}")
    path = allowlist_path(data_dir)
    allowlist = MeasurementAllowList.load(path)
    already = allowlist.is_accepted(value)
    allowlist.accept_measurement(value, operator, reason)
    allowlist.save(path)
    note = " (it was already accepted; this acceptance is recorded too)" if already else ""
    typer.echo(
        f"accepted measurement {value} by {operator}{note}; the gateway logs the acceptance "
        "before its next verification"
    )
