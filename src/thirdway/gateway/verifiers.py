"""Verifier back ends for the gatekeeper: the pure in-process verifier, or the signing enclave.

Both answer the same question (DESIGN step "gatekeeper → verifier"): given a proposal, the
session's record so far, and the agent's earlier passing proposals, what is the verdict? The
enclave's answer also carries its signature, which goes into the log with the verdict so anyone
can check that an attested verifier produced it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from pydantic import JsonValue

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


class InProcessVerifier:
    """:func:`thirdway.verify.verify` in this process: deterministic and fast, but unattested."""

    name = "thirdway.verify"

    def __init__(self, manifests: ManifestSet, policy: VerifyPolicy | None = None) -> None:
        self.manifests = manifests
        self.policy = policy or VerifyPolicy()

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
