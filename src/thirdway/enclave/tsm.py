"""Hardware quotes through Linux configfs-tsm (``/sys/kernel/config/tsm/report``).

The kernel's TSM report interface (Documentation/ABI/testing/configfs-tsm): creating a directory
under ``report/`` makes a report object; writing at most 64 bytes of report data to ``inblob``
asks the provider (``tdx_guest``, ``sev_guest``, …) for a quote over it; ``outblob`` returns the
quote and ``provider`` names who made it. ``generation`` counts writes to the object: we read
it before writing ``inblob`` and again after reading ``outblob`` and ``provider``, and accept
the quote only if it grew by exactly our one write. Any other writer on the same object, before
or after ours (the quote might then cover someone else's data), is detected: we retry once on
a fresh object, then give up.

The report data is SHA-512(enclave public key ‖ nonce), which binds the quote to this enclave's
key and to this start. Nothing here pretends: where configfs-tsm is absent the platform is
``process``, and a present but unusable TSM is either named in the process note (``auto``) or an
error (``require``).

All file system access goes through :class:`ConfigfsOps`, so tests drive the same code over a
fake tree that behaves like the kernel's.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from thirdway.errors import EnclaveError

DEFAULT_TSM_ROOT = Path("/sys/kernel/config/tsm/report")
REPORT_DATA_BYTES = 64
MAX_OUTBLOB_BYTES = 1024 * 1024
KNOWN_PROVIDERS = ("tdx_guest", "sev_guest")
"""Providers we expect; others are accepted (and named as the platform) if the kernel has them."""

HardwareMode = Literal["auto", "require", "off"]
PROCESS_NOTE = "no hardware attestation: isolation is an OS process"


class TsmError(EnclaveError):
    """configfs-tsm exists but did not produce a usable quote."""


class ConfigfsOps:
    """The file operations a report needs, as the kernel expects them (one write per value)."""

    def mkdir(self, path: Path) -> None:
        os.mkdir(path)

    def rmdir(self, path: Path) -> None:
        os.rmdir(path)

    def read(self, path: Path, limit: int) -> bytes:
        with open(path, "rb") as handle:
            return handle.read(limit + 1)

    def write(self, path: Path, data: bytes) -> None:
        fd = os.open(path, os.O_WRONLY)
        try:
            written = os.write(fd, data)
        finally:
            os.close(fd)
        if written != len(data):
            raise OSError(errno.EIO, f"short write ({written} of {len(data)} bytes)", str(path))


@dataclass(frozen=True)
class TsmEvidence:
    """What configfs-tsm returned for one report."""

    provider: str
    inblob: bytes
    outblob: bytes
    generation: int


@dataclass(frozen=True)
class PlatformEvidence:
    """The platform an attestation may claim, its quote (if any) and the note saying so."""

    platform: str
    evidence: TsmEvidence | None
    note: str


class _GenerationChanged(Exception):
    """Another writer touched the report between our reads."""


def available(root: Path = DEFAULT_TSM_ROOT) -> bool:
    """Whether a configfs-tsm report directory exists at ``root``."""
    return root.is_dir()


def get_quote(
    report_data: bytes,
    root: Path = DEFAULT_TSM_ROOT,
    ops: ConfigfsOps | None = None,
) -> TsmEvidence:
    """A quote over ``report_data`` (64 bytes) from configfs-tsm; one retry on a race."""
    if len(report_data) != REPORT_DATA_BYTES:
        raise ValueError(f"report data must be {REPORT_DATA_BYTES} bytes")
    fs = ops or ConfigfsOps()
    for _attempt in range(2):
        try:
            return _one_report(report_data, root, fs)
        except _GenerationChanged:
            continue
    raise TsmError(
        "configfs-tsm report generation changed while reading the quote, twice: another "
        "process is writing to the report; no hardware quote"
    )


def _one_report(report_data: bytes, root: Path, fs: ConfigfsOps) -> TsmEvidence:
    report = root / f"thirdway-{os.getpid()}-{secrets.token_hex(8)}"
    try:
        fs.mkdir(report)
    except OSError as exc:
        raise TsmError(f"cannot create a configfs-tsm report in {root}: {_reason(exc)}") from None
    try:
        before = _read_generation(fs, report)
        _write_inblob(fs, report, report_data)
        outblob = _read(fs, report / "outblob", MAX_OUTBLOB_BYTES, "outblob")
        provider = _read_provider(fs, report)
        after = _read_generation(fs, report)
    finally:
        with contextlib.suppress(OSError):  # nothing more to do if it is already gone
            fs.rmdir(report)
    if after != before + 1:  # our inblob write and nothing else
        raise _GenerationChanged
    if not outblob:
        raise TsmError(f"configfs-tsm provider {provider!r} returned an empty outblob")
    return TsmEvidence(provider=provider, inblob=report_data, outblob=outblob, generation=after)


def _write_inblob(fs: ConfigfsOps, report: Path, data: bytes) -> None:
    try:
        fs.write(report / "inblob", data)
    except OSError as exc:
        if exc.errno == errno.EFBIG:
            raise TsmError(
                f"configfs-tsm refused the {len(data)}-byte inblob (EFBIG): this provider takes "
                "less report data than SHA-512(public key ‖ nonce); no hardware quote"
            ) from None
        raise TsmError(f"cannot write the configfs-tsm inblob: {_reason(exc)}") from None


def _read(fs: ConfigfsOps, path: Path, limit: int, what: str) -> bytes:
    try:
        data = fs.read(path, limit)
    except FileNotFoundError:
        raise TsmError(f"configfs-tsm report has no {what}") from None
    except OSError as exc:
        raise TsmError(f"cannot read the configfs-tsm {what}: {_reason(exc)}") from None
    if len(data) > limit:
        raise TsmError(f"configfs-tsm {what} is larger than {limit} bytes")
    return data


def _read_generation(fs: ConfigfsOps, report: Path) -> int:
    text = _read(fs, report / "generation", 64, "generation").strip()
    if not text.isdigit():
        raise TsmError(f"configfs-tsm generation is not a number: {text[:20]!r}")
    return int(text)


def _read_provider(fs: ConfigfsOps, report: Path) -> str:
    raw = _read(fs, report / "provider", 256, "provider").strip()
    if not raw:
        raise TsmError("configfs-tsm report has no provider: no TSM driver is loaded")
    try:
        provider = raw.decode("ascii")
    except UnicodeDecodeError:
        raise TsmError("configfs-tsm provider is not ASCII") from None
    if not provider.replace("_", "").replace("-", "").isalnum():
        raise TsmError(f"configfs-tsm provider has an unexpected name: {provider[:40]!r}")
    return provider


def _reason(exc: OSError) -> str:
    return exc.strerror or str(exc)


def platform_evidence(
    report_data: bytes,
    mode: HardwareMode = "auto",
    root: Path = DEFAULT_TSM_ROOT,
    ops: ConfigfsOps | None = None,
) -> PlatformEvidence:
    """Decide what the attestation may say about hardware, never more than is there.

    ``off``: ``process``. ``auto``: a quote when configfs-tsm is present and works, otherwise
    ``process`` with a note naming why. ``require``: a quote or :class:`TsmError`.
    """
    if mode == "off":
        return PlatformEvidence("process", None, PROCESS_NOTE)
    if not available(root):
        if mode == "require":
            raise TsmError(f"hardware attestation required, but configfs-tsm is absent ({root})")
        return PlatformEvidence("process", None, PROCESS_NOTE)
    try:
        evidence = get_quote(report_data, root, ops)
    except TsmError as exc:
        if mode == "require":
            raise
        return PlatformEvidence("process", None, f"{PROCESS_NOTE} (configfs-tsm unusable: {exc})")
    note = (
        f"hardware quote from {evidence.provider} via configfs-tsm over "
        "SHA-512(public key ‖ nonce); check the quote with the vendor's verifier"
    )
    return PlatformEvidence(evidence.provider, evidence, note)
