"""Verifier back ends for the gatekeeper: the pure in-process verifier, or the signing enclave.

Both answer the same question (DESIGN step "gatekeeper → verifier"): given a proposal, the
session's record so far, and the agent's earlier passing proposals, what is the verdict? The
enclave's answer also carries its signature, which goes into the log with the verdict so anyone
can check that an attested verifier produced it.

Every verdict cites the charter it was given under (``charter_sha256``): the in-process verifier
is told the charter's hash, the enclave cites the charter it measured. The gatekeeper acts only
on a verdict citing the charter it runs under (:func:`check_verdict_charter`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from pydantic import JsonValue

from thirdway.charter import default_charter_sha256
from thirdway.errors import InputError, ThirdwayError
from thirdway.protocol.manifest import ManifestSet
from thirdway.protocol.models import Observation, Proposal, Verdict
from thirdway.verify import VerifyPolicy, verify

if TYPE_CHECKING:
    from thirdway.enclave.client import EnclaveClient


@dataclass(frozen=True)
class VerifierResult:
    """A verdict plus, when an enclave produced it, the signature fields to log with it."""

    verdict: Verdict
    signed: dict[str, JsonValue] | None = None


class Verifier(Protocol):
    """Judges one proposal. Raises :class:`~thirdway.errors.ThirdwayError` when no verdict can be
    had (the gatekeeper then refuses the proposal: no verifier, no tokens)."""

    name: str
    manifests: ManifestSet

    def __call__(
        self,
        proposal: Proposal,
        observations: Sequence[Observation],
        history: Sequence[Proposal],
        recorded_before: int,
    ) -> VerifierResult: ...


def check_charter_sha256(value: str) -> str:
    """``value`` if it is a charter hash (64 lower-case hex digits), else :class:`InputError`."""
    if not (isinstance(value, str) and len(value) == 64 and _is_lower_hex(value)):
        raise InputError(f"a charter SHA-256 must be 64 lower-case hex digits, not {value!r}")
    return value


def _is_lower_hex(text: str) -> bool:
    return all(c in "0123456789abcdef" for c in text)


class CharterMismatch(ThirdwayError):
    """A verdict that does not cite the charter the gateway runs under (or cites none)."""


def check_verdict_charter(verdict: Verdict, charter_sha256: str) -> None:
    """Raise :class:`CharterMismatch` unless ``verdict`` cites ``charter_sha256``.

    A verdict that cites no charter, or another one, was not given under the rules this gateway
    enforces: the gatekeeper treats it as no verdict at all (fail closed: no token)."""
    cited = verdict.charter_sha256
    if cited == charter_sha256:
        return
    if cited is None:
        raise CharterMismatch("the verdict cites no charter; not acted on")
    raise CharterMismatch(
        f"the verdict was given under charter {cited[:16]}…, not this gateway's "
        f"{charter_sha256[:16]}…; not acted on"
    )


class InProcessVerifier:
    """:func:`thirdway.verify.verify` in this process: deterministic and fast, but unattested.

    Its verdicts cite ``charter_sha256`` (default: the packaged charter's hash)."""

    name = "thirdway.verify"

    def __init__(
        self,
        manifests: ManifestSet,
        policy: VerifyPolicy | None = None,
        charter_sha256: str | None = None,
    ) -> None:
        self.manifests = manifests
        self.policy = policy or VerifyPolicy()
        self.charter_sha256 = check_charter_sha256(
            charter_sha256 if charter_sha256 is not None else default_charter_sha256()
        )

    def __call__(
        self,
        proposal: Proposal,
        observations: Sequence[Observation],
        history: Sequence[Proposal],
        recorded_before: int,
    ) -> VerifierResult:
        verdict = verify(
            proposal,
            observations,
            self.manifests,
            self.policy,
            history,
            recorded_before=recorded_before,
            charter_sha256=self.charter_sha256,
        )
        return VerifierResult(verdict)


class EnclaveVerifier:
    """The verifier enclave (:class:`~thirdway.enclave.client.EnclaveClient`): every verdict is
    signed and already checked by the client; its signature fields are logged with it.

    Raises :class:`~thirdway.errors.EnclaveError` / ``EnclaveUnavailable`` when the enclave
    cannot give a trustworthy verdict."""

    name = "thirdway.enclave"

    def __init__(self, client: EnclaveClient) -> None:
        self.client = client
        self.manifests = client.manifests

    def __call__(
        self,
        proposal: Proposal,
        observations: Sequence[Observation],
        history: Sequence[Proposal],
        recorded_before: int,
    ) -> VerifierResult:
        signed = self.client.verify(proposal, observations, history, recorded_before)
        fields = signed.model_dump(mode="json", by_alias=True, exclude={"verdict"})
        return VerifierResult(signed.verdict, fields)
