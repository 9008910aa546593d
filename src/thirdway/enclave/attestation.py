"""Attestations: who the enclave is (its key) and what it runs (its measurement).

At start-up the enclave generates an Ed25519 key that never leaves its process and publishes one
:class:`Attestation`: the measurement (SHA-256 of :class:`Measurement`: the verifier code it
loaded, the manifests, the verify policy and the charter, each as a SHA-256), its public key, the
platform, the nonce the gateway sent (so an old attestation cannot be replayed as a new one),
and on hardware a quote from configfs-tsm whose report data is SHA-512(public key ‖ nonce). The
attestation is signed with the enclave key.

Without hardware the platform is ``process`` and the note says plainly that isolation is an OS
process: the signature then proves only that the verdicts come from the process that the gateway
started and measured, not that the machine is honest. With a quote, the quote binds the key to
the hardware's own measurement of the VM; checking the quote itself needs the vendor's collateral
(Intel DCAP, AMD KDS) and is left to the vendor's tooling: thirdway checks the binding.

Signatures cover ``DOMAIN || RFC 8785 bytes of the object without its signature field``, with a
domain string per object type so that no signature can be replayed as another kind of object.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import secrets
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Final, Literal

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from pydantic import AfterValidator, BaseModel, Field, StringConstraints

from thirdway.enclave.measure import MeasurementError, code_digests
from thirdway.enclave.tsm import PROCESS_NOTE
from thirdway.errors import EnclaveError
from thirdway.protocol.canonical import canonical_json, canonical_sha256
from thirdway.protocol.models import Claim, Id, Model, Sha256Hex
from thirdway.verify import memo

ATTESTATION_FORMAT: Final = "thirdway-attestation/1"
MEASUREMENT_FORMAT: Final = "thirdway-measurement/1"
ATTESTATION_DOMAIN = b"thirdway attestation v1\x00"

PROCESS_PLATFORM = "process"
NONCE_BYTES = 32
MAX_QUOTE_BYTES = 1024 * 1024
"""configfs-tsm outblobs are a few KiB (a TDX quote with its certificate chain is ~5-10 KiB)."""


def _canonical_base64(raw_length: int | None) -> AfterValidator:
    """Standard base64 that decodes strictly and re-encodes to itself (one spelling per value)."""

    def check(value: str) -> str:
        try:
            raw = base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            raise ValueError("not valid base64") from None
        if base64.b64encode(raw).decode("ascii") != value:
            raise ValueError("not canonical base64")
        if raw_length is not None and len(raw) != raw_length:
            raise ValueError(f"must decode to {raw_length} bytes, not {len(raw)}")
        return value

    return AfterValidator(check)


PublicKeyB64 = Annotated[str, StringConstraints(max_length=64), _canonical_base64(32)]
SignatureB64 = Annotated[str, StringConstraints(max_length=128), _canonical_base64(64)]
QuoteB64 = Annotated[
    str,
    StringConstraints(min_length=1, max_length=MAX_QUOTE_BYTES * 4 // 3 + 4),
    _canonical_base64(None),
]
NonceHex = Annotated[str, StringConstraints(pattern=rf"^[0-9a-f]{{{2 * NONCE_BYTES}}}$")]
ReportDataHex = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{128}$")]
CodeMap = Annotated[dict[Id, Sha256Hex], Field(min_length=1, max_length=10_000)]


class Measurement(Model):
    """What the enclave runs and judges with. Its SHA-256 is the measurement."""

    format: Literal["thirdway-measurement/1"] = MEASUREMENT_FORMAT
    code: CodeMap
    """Module name → SHA-256 of the source bytes loaded (see :mod:`thirdway.enclave.measure`)."""
    manifests: Sha256Hex
    policy: Sha256Hex
    charter: Sha256Hex

    @property
    def value(self) -> str:
        """The measurement: SHA-256 of these components' canonical bytes (cached per object)."""
        return memo.derived(self, "enclave.measurement", lambda: canonical_sha256(self))


class Quote(Model):
    """Evidence from configfs-tsm: the provider's report over ``inblob``, kept as read."""

    provider: Id
    """``tdx_guest``, ``sev_guest``, … as the kernel names it."""
    inblob: ReportDataHex
    """The report data written: SHA-512(public key ‖ nonce)."""
    outblob: QuoteB64
    generation: Annotated[int, Field(ge=0)]


class Attestation(Model):
    """The enclave's signed statement of its key, its measurement and its platform."""

    format: Literal["thirdway-attestation/1"] = ATTESTATION_FORMAT
    measurement: Sha256Hex
    components: Measurement
    public_key: PublicKeyB64
    """Raw Ed25519 public key, base64."""
    platform: Id
    """``process``, or the configfs-tsm provider that produced :attr:`quote`."""
    nonce: NonceHex
    """The gateway's fresh nonce for this enclave start, hex."""
    quote: Quote | None
    note: Claim
    signature: SignatureB64
    """Ed25519 over ``ATTESTATION_DOMAIN || canonical bytes of the other fields``."""

    def signed_bytes(self) -> bytes:
        """What the signature covers (cached per object: the model is frozen)."""
        return memo.derived(self, "enclave.attestation_signed", self._signed_bytes)

    def _signed_bytes(self) -> bytes:
        body = self.model_dump(mode="json", by_alias=True, exclude={"signature"})
        return ATTESTATION_DOMAIN + canonical_json(body)

    @property
    def id(self) -> str:
        """SHA-256 of the signed content: names this attestation in verdicts and the log."""
        return hashlib.sha256(self.signed_bytes()).hexdigest()

    def public_key_object(self) -> Ed25519PublicKey:
        return Ed25519PublicKey.from_public_bytes(base64.b64decode(self.public_key))


def report_data(public_key: bytes, nonce: bytes) -> bytes:
    """What a hardware quote binds: SHA-512(public key ‖ nonce), 64 bytes."""
    return hashlib.sha512(public_key + nonce).digest()


def raw_public_key(key: Ed25519PrivateKey) -> bytes:
    return key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


def sign_attestation(
    key: Ed25519PrivateKey,
    components: Measurement,
    nonce: str,
    platform: str,
    quote: Quote | None,
    note: str,
) -> Attestation:
    """Build and sign the enclave's attestation (runs inside the enclave)."""
    fields: dict[str, Any] = {
        "format": ATTESTATION_FORMAT,
        "measurement": components.value,
        "components": components,
        "public_key": base64.b64encode(raw_public_key(key)).decode("ascii"),
        "platform": platform,
        "nonce": nonce,
        "quote": quote,
        "note": note,
    }
    unsigned = Attestation.model_construct(**fields, signature="")
    signature = key.sign(unsigned.signed_bytes())
    return Attestation.model_validate(
        {**fields, "signature": base64.b64encode(signature).decode("ascii")}
    )


def verify_attestation(
    attestation: Attestation,
    *,
    nonce: str | None = None,
    expected_measurement: str | Measurement | None = None,
) -> None:
    """Check an attestation on its own terms, then against what the caller expects.

    Raises :class:`EnclaveError` naming the first problem: bad signature, components that do not
    hash to the measurement, a platform that claims hardware without a quote (or the reverse), a
    quote not bound to this key and nonce, another nonce, another measurement.
    """
    try:
        attestation.public_key_object().verify(
            base64.b64decode(attestation.signature), attestation.signed_bytes()
        )
    except (InvalidSignature, ValueError):
        raise EnclaveError("attestation signature does not verify under its public key") from None
    if attestation.components.value != attestation.measurement:
        raise EnclaveError("attestation components do not hash to its measurement")
    _check_platform(attestation)
    if nonce is not None and attestation.nonce != nonce:
        raise EnclaveError("attestation nonce is not the one sent: a stale or replayed attestation")
    if expected_measurement is not None:
        check_measurement(attestation, expected_measurement)


def check_measurement(attestation: Attestation, expected: str | Measurement) -> None:
    """Refuse an attestation whose measurement is not ``expected`` (a value or components)."""
    value = expected.value if isinstance(expected, Measurement) else expected
    if attestation.measurement == value:
        return
    detail = ""
    if isinstance(expected, Measurement):
        detail = f" ({describe_difference(attestation.components, expected)})"
    raise EnclaveError(
        f"enclave measurement {attestation.measurement} is not the expected {value}{detail}; "
        "no verdict from it may be used"
    )


def _check_platform(attestation: Attestation) -> None:
    quote = attestation.quote
    if attestation.platform == PROCESS_PLATFORM:
        if quote is not None:
            raise EnclaveError("attestation says platform 'process' but carries a quote")
        if not attestation.note.startswith(PROCESS_NOTE):
            raise EnclaveError("a 'process' attestation must say it has no hardware attestation")
        return
    if quote is None:
        raise EnclaveError(
            f"attestation claims platform {attestation.platform!r} but carries no quote"
        )
    if quote.provider != attestation.platform:
        raise EnclaveError(
            f"quote provider {quote.provider!r} is not the platform {attestation.platform!r}"
        )
    expected = report_data(
        base64.b64decode(attestation.public_key), bytes.fromhex(attestation.nonce)
    ).hex()
    if quote.inblob != expected:
        raise EnclaveError("quote report data is not SHA-512(public key ‖ nonce)")


def describe_difference(actual: Measurement, expected: Measurement) -> str:
    """Which components differ, for a message an operator can act on."""
    parts = [
        f"{name} differs"
        for name in ("manifests", "policy", "charter")
        if getattr(actual, name) != getattr(expected, name)
    ]
    changed = sorted(
        name
        for name in set(actual.code) | set(expected.code)
        if actual.code.get(name) != expected.code.get(name)
    )
    if changed:
        shown = ", ".join(changed[:5]) + (
            f" and {len(changed) - 5} more" if len(changed) > 5 else ""
        )
        parts.append(f"code differs in {shown}")
    return "; ".join(parts) or "no component differs"


def config_digest(value: BaseModel | Mapping[str, Any]) -> str:
    """SHA-256 of a manifest set, policy or charter as canonical JSON (model or plain object)."""
    return canonical_sha256(value if isinstance(value, BaseModel) else dict(value))


def expected_measurement(
    manifests: BaseModel | Mapping[str, Any],
    policy: BaseModel | Mapping[str, Any],
    charter: BaseModel | Mapping[str, Any],
    package_root: Path | None = None,
) -> Measurement:
    """The measurement an enclave must report, computed from the gateway's own files.

    ``package_root`` is the directory holding the ``thirdway`` package to measure (default: the
    one this interpreter imported). A changed verifier file changes the result.
    """
    try:
        code = code_digests(package_root)
    except MeasurementError as exc:
        raise EnclaveError(f"cannot measure the verifier code: {exc}") from None
    return Measurement(
        code=code,
        manifests=config_digest(manifests),
        policy=config_digest(policy),
        charter=config_digest(charter),
    )


def new_nonce() -> str:
    """A fresh 32-byte nonce, hex."""
    return secrets.token_hex(NONCE_BYTES)
