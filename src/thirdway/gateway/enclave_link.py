"""The gatekeeper's enclave wiring: attested, allow-listed, logged (issue 6's integration).

:class:`AttestedVerifier` is a :class:`~thirdway.gateway.verifiers.Verifier` back end that asks
the verifier enclave (:class:`~thirdway.enclave.client.EnclaveClient`) for every verdict, and
before the gatekeeper may mint on it checks, fail closed:

1. the expected measurement (computed from the gateway's own copy of the verifier code, the
   manifests, the policy and the charter) is in the operator's allow-list
   (:class:`~thirdway.enclave.allowlist.MeasurementAllowList`, the file ``enclave-allowlist.json``
   in the data folder): a changed verifier blocks minting until an operator accepts it with
   ``thirdway attest accept``;
2. the enclave's attestation reports exactly that measurement (the client checks it at every
   start) and the verdict is signed by that attested key, for exactly this request (the client
   checks the signature; this checks that the verdict names the running attestation and the
   accepted measurement).

Anything else raises :class:`~thirdway.errors.EnclaveError` (or ``EnclaveUnavailable``, which
is retryable): the gatekeeper then logs "no verdict" and mints nothing.

Everything the operators and agents need to check this later is in the log, as ``attestation``
entries through the gatekeeper's writer: every enclave start and restart (``enclave_started``,
with the full signed attestation) and every operator acceptance (``measurement_accepted``).
Acceptances are written to the allow-list file by the CLI (one writer per log: only the
gateway appends) and logged by the gateway the next time it looks at the file: at start-up and
before every verification.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final

from pydantic import ValidationError

from thirdway.enclave.allowlist import MeasurementAcceptance, MeasurementAllowList
from thirdway.enclave.attestation import Attestation, Measurement
from thirdway.enclave.client import EnclaveClient
from thirdway.errors import EnclaveError, EnclaveUnavailable
from thirdway.gateway.hooks import Append
from thirdway.gateway.verifiers import VerifierResult
from thirdway.ledger.log import TransparencyLog
from thirdway.protocol.canonical import canonical_sha256
from thirdway.protocol.models import LogEntry, Observation, Proposal

ALLOWLIST_NAME: Final = "enclave-allowlist.json"
STARTED: Final = "enclave_started"
ACCEPTED: Final = "measurement_accepted"


def allowlist_path(data_dir: Path | str) -> Path:
    """Where a data folder keeps its operator-accepted measurements."""
    return Path(data_dir) / ALLOWLIST_NAME


def acceptance_entry(record: MeasurementAcceptance) -> LogEntry:
    """The log entry of an operator's acceptance."""
    return LogEntry(
        type="attestation",
        payload={"event": ACCEPTED, **record.model_dump(mode="json", exclude_none=True)},
    )


def attestation_entry(attestation: Attestation, start: int) -> LogEntry:
    """The log entry of an enclave start (``start``: 1 for this gateway's first enclave, more
    for each restart after a failure)."""
    return LogEntry(
        type="attestation",
        payload={
            "event": STARTED,
            "attestation_id": attestation.id,
            "start": start,
            "attestation": attestation.model_dump(mode="json", by_alias=True),
        },
    )


class AttestedVerifier:
    """The enclave as the gatekeeper's verifier, with the checks in the module docstring.

    Build it, create the gatekeeper with it, then :meth:`bind` the gatekeeper's ``append`` and
    ``log`` (the factory does this): until bound, it refuses to verify."""

    name = "thirdway.enclave"

    def __init__(
        self,
        client: EnclaveClient,
        *,
        expected: Measurement,
        allowlist: Path,
    ) -> None:
        if client.on_attestation is not None:
            raise EnclaveError("the enclave client already reports its attestations elsewhere")
        self.client = client
        self.manifests = client.manifests
        self.expected = expected
        self.allowlist_file = allowlist
        client.expected_measurement = expected
        client.on_attestation = self._record_attestation
        self.starts = 0
        """Enclaves started (and logged) by this verifier."""
        self._append: Append | None = None
        self._logged: set[str] = set()
        self._allowlist = MeasurementAllowList()
        self._stamp: tuple[int, int] | None = None
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ wiring

    def bind(self, append: Append, log: TransparencyLog) -> None:
        """Write through ``append`` from now on; ``log`` says which acceptances are logged."""
        for index in range(log.size()):
            entry = LogEntry.model_validate_json(log.entry(index))
            payload = entry.payload
            if (
                entry.type == "attestation"
                and isinstance(payload, dict)
                and payload.get("event") == ACCEPTED
            ):
                self._logged.add(_acceptance_key(payload))
        self._append = append
        self._sync_allowlist()

    def start(self) -> Attestation:
        """Start the enclave now (its attestation is logged); see :meth:`EnclaveClient.start`."""
        self._bound()
        return self.client.start()

    def close(self) -> None:
        self.client.close()

    @property
    def accepted(self) -> bool:
        """Whether the expected measurement is accepted (after reading the allow-list file)."""
        self._sync_allowlist()
        return self._allowlist.is_accepted(self.expected.value)

    # ------------------------------------------------------------------ verification

    def __call__(
        self,
        proposal: Proposal,
        observations: Sequence[Observation],
        history: Sequence[Proposal],
        recorded_before: int,
    ) -> VerifierResult:
        self._bound()
        self._sync_allowlist()
        if not self._allowlist.is_accepted(self.expected.value):
            raise EnclaveUnavailable(
                f"verifier measurement {self.expected.value} has not been accepted by an "
                "operator; no tokens are minted until it is (thirdway attest accept "
                f"{self.expected.value} --reason … --operator … --data-dir …); then retry"
            )
        signed = self.client.verify(proposal, observations, history, recorded_before)
        attestation = self.client.attestation
        if signed.measurement != self.expected.value:
            raise EnclaveError(
                f"the verdict names measurement {signed.measurement}, not the accepted "
                f"{self.expected.value}"
            )
        if attestation is None or signed.attestation_id != attestation.id:
            raise EnclaveUnavailable(
                "the verdict names an attestation that is not the running enclave's; retry"
            )
        fields = signed.model_dump(mode="json", by_alias=True, exclude={"verdict"})
        return VerifierResult(signed.verdict, fields)

    # ------------------------------------------------------------------ internals

    def _bound(self) -> Append:
        if self._append is None:
            raise EnclaveUnavailable("the enclave verifier is not bound to a gatekeeper's log yet")
        return self._append

    def _record_attestation(self, attestation: Attestation) -> None:
        """The client's hook: log every new enclave before any of its verdicts is used."""
        self._bound()([attestation_entry(attestation, self.starts + 1)])
        self.starts += 1

    def _sync_allowlist(self) -> None:
        """Reload the allow-list file if it changed; log acceptances not yet in the log."""
        with self._lock:
            try:
                info = self.allowlist_file.stat()
                stamp: tuple[int, int] | None = (info.st_mtime_ns, info.st_size)
            except FileNotFoundError:
                stamp = None
            if stamp == self._stamp:
                return
            allowlist = MeasurementAllowList.load(self.allowlist_file)
            new = [
                record
                for record in allowlist.acceptances
                if _acceptance_key(record.model_dump(mode="json", exclude_none=True))
                not in self._logged
            ]
            if new:
                self._bound()([acceptance_entry(record) for record in new])
                for record in new:
                    self._logged.add(
                        _acceptance_key(record.model_dump(mode="json", exclude_none=True))
                    )
            self._allowlist, self._stamp = allowlist, stamp


def _acceptance_key(payload: dict[str, Any]) -> str:
    """Identifies one acceptance record, whether read from the file or from the log."""
    fields = {key: value for key, value in payload.items() if key != "event"}
    try:
        record = MeasurementAcceptance.model_validate(fields)
    except ValidationError:
        return canonical_sha256(fields)
    return canonical_sha256(record.model_dump(mode="json", exclude_none=True))
