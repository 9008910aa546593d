"""Signed verdicts: a verdict bound to the request it answers and the enclave that produced it.

The enclave signs ``VERDICT_DOMAIN || RFC 8785 bytes of {format, verdict, request_sha256,
attestation_id, measurement}``. :func:`check_signed_verdict` is what the gateway runs before it
mints anything: the signature must verify under the attestation's key, the verdict must name
that attestation and its measurement, the measurement must be the expected one, the verdict must
cite the charter the enclave measured, and (when the caller says which) the verdict must answer
this very request. Any failure raises
:class:`~thirdway.errors.EnclaveError`: no capability may be minted on that verdict.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from typing import Final, Literal

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from thirdway.enclave.attestation import (
    Attestation,
    Measurement,
    SignatureB64,
    check_measurement,
    verify_attestation,
)
from thirdway.errors import EnclaveError
from thirdway.protocol.canonical import canonical_json, canonical_sha256
from thirdway.protocol.models import Index, Model, Observation, Proposal, Sha256Hex, Verdict
from thirdway.verify import memo

SIGNED_VERDICT_FORMAT: Final = "thirdway-signed-verdict/1"
VERDICT_DOMAIN = b"thirdway verdict v1\x00"


class SignedVerdict(Model):
    """A verdict as the enclave signed it."""

    format: Literal["thirdway-signed-verdict/1"] = SIGNED_VERDICT_FORMAT
    verdict: Verdict
    request_sha256: Sha256Hex
    """:func:`request_digest` of the proposal, observations, history and position judged."""
    attestation_id: Sha256Hex
    measurement: Sha256Hex
    signature: SignatureB64

    def signed_bytes(self) -> bytes:
        return VERDICT_DOMAIN + canonical_json(
            self.model_dump(mode="json", by_alias=True, exclude={"signature"})
        )


def canonical_bytes(model: Model) -> bytes:
    """RFC 8785 bytes of a frozen wire model, computed once per live object."""
    return memo.derived(model, "enclave.canonical_json", lambda: canonical_json(model))


def object_digest(model: Model) -> str:
    """SHA-256 of the model's canonical bytes, computed once per live object.

    Same cache entry as the verifier's own per-object hashes (``thirdway.verify.api``), which
    are the same value by definition: inside the enclave the request digest then reuses the
    hashing the verifier already did.
    """
    return memo.derived(model, "sha256", lambda: canonical_sha256(model))


def request_digest(
    proposal: Proposal,
    observations: Sequence[Observation],
    history: Sequence[Proposal] = (),
    recorded_before: Index | None = None,
) -> str:
    """SHA-256 naming one verification request.

    The canonical JSON of ``{"proposal": h, "observations": [h...], "history": [h...],
    "recorded_before": n | null}``, each ``h`` the SHA-256 of that object's canonical bytes (in
    the order given): both sides compute it from their own objects, so a verdict cannot be
    replayed for another proposal or another record. Per-object hashes are cached, so a
    session's record is hashed once, not at every proposal.
    """
    return canonical_sha256(
        {
            "proposal": object_digest(proposal),
            "observations": [object_digest(o) for o in observations],
            "history": [object_digest(p) for p in history],
            "recorded_before": recorded_before,
        }
    )


def sign_verdict(
    key: Ed25519PrivateKey, verdict: Verdict, request_sha256: str, attestation: Attestation
) -> SignedVerdict:
    """Sign ``verdict`` for one request (runs inside the enclave)."""
    unsigned = SignedVerdict.model_construct(
        format=SIGNED_VERDICT_FORMAT,
        verdict=verdict,
        request_sha256=request_sha256,
        attestation_id=attestation.id,
        measurement=attestation.measurement,
        signature="",
    )
    signature = base64.b64encode(key.sign(unsigned.signed_bytes())).decode("ascii")
    return SignedVerdict.model_validate({**unsigned.model_dump(), "signature": signature})


def check_signed_verdict(
    signed: SignedVerdict,
    attestation: Attestation,
    expected_measurement: str | Measurement,
    *,
    request_sha256: str | None = None,
) -> Verdict:
    """Return the verdict if, and only if, it may be acted on; else raise :class:`EnclaveError`.

    Checks, in order: the attestation itself (signature, components, platform binding); that its
    measurement is ``expected_measurement`` (computed by the gateway from its own files and
    accepted by an operator); that the verdict names this attestation and measurement; the
    verdict's signature under the attestation's key; that the verdict cites the charter the
    enclave measured; and, when given, the request digest.
    """
    verify_attestation(attestation)
    check_measurement(attestation, expected_measurement)
    return check_verdict_signature(signed, attestation, request_sha256=request_sha256)


def check_verdict_signature(
    signed: SignedVerdict,
    attestation: Attestation,
    *,
    request_sha256: str | None = None,
) -> Verdict:
    """The verdict-side half of :func:`check_signed_verdict`, for an attestation the caller has
    already verified and measured (the client does so once per enclave, at its start)."""
    if signed.attestation_id != attestation.id:
        raise EnclaveError(
            f"verdict was signed under attestation {signed.attestation_id[:16]}…, "
            f"not {attestation.id[:16]}…: it comes from another enclave"
        )
    if signed.measurement != attestation.measurement:
        raise EnclaveError("verdict names another measurement than its attestation")
    try:
        attestation.public_key_object().verify(
            base64.b64decode(signed.signature), signed.signed_bytes()
        )
    except (InvalidSignature, ValueError):
        raise EnclaveError("verdict signature does not verify under the enclave key") from None
    if signed.verdict.charter_sha256 != attestation.components.charter:
        raise EnclaveError("verdict does not cite the charter the enclave measured")
    if request_sha256 is not None and signed.request_sha256 != request_sha256:
        raise EnclaveError("verdict answers another request (request digest differs)")
    return signed.verdict
