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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from pydantic import ValidationError

from thirdway.enclave.allowlist import MeasurementAcceptance, MeasurementAllowList
from thirdway.enclave.attestation import (
    Attestation,
    Measurement,
    describe_difference,
    verify_attestation,
)
from thirdway.enclave.client import EnclaveClient
from thirdway.enclave.measure import MeasurementError, code_digests
from thirdway.enclave.verdicts import SignedVerdict, check_verdict_signature, request_digest
from thirdway.errors import EnclaveError, EnclaveUnavailable
from thirdway.gateway.hooks import Append
from thirdway.gateway.verifiers import VerifierResult
from thirdway.ledger.log import TransparencyLog
from thirdway.protocol.canonical import canonical_sha256
from thirdway.protocol.models import LogEntry, Observation, Proposal, Verdict
from thirdway.protocol.parse import describe

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
        package_root: Path | None = None,
    ) -> None:
        if client.on_attestation is not None:
            raise EnclaveError("the enclave client already reports its attestations elsewhere")
        self.client = client
        self.manifests = client.manifests
        self.expected = expected
        self.package_root = package_root
        """Where the enclave's thirdway is (None: this interpreter's): re-measured when an
        enclave fails, so a verifier file changed under a running gateway is noticed."""
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
        try:
            signed = self.client.verify(proposal, observations, history, recorded_before)
        except EnclaveError:
            self._remeasure()  # raises if the verifier code changed on disk
            raise
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

    def _remeasure(self) -> None:
        """After a failure: if the verifier files changed since :attr:`expected` was computed
        (a new enclave then measures otherwise and is refused), expect the new measurement from
        now on and say that it needs an operator's acceptance: nothing is minted until
        ``thirdway attest accept`` (logged), and no gateway restart is needed after it."""
        try:
            code = code_digests(self.package_root)
        except MeasurementError as exc:
            raise EnclaveError(f"cannot measure the verifier code: {exc}") from None
        with self._lock:
            if code == self.expected.code:
                return
            changed = Measurement(
                code=code,
                manifests=self.expected.manifests,
                policy=self.expected.policy,
                charter=self.expected.charter,
            )
            difference = describe_difference(changed, self.expected)
            self.expected = changed
            self.client.expected_measurement = changed
        raise EnclaveUnavailable(
            f"the verifier code changed on disk ({difference}); its measurement {changed.value} "
            "has not been accepted by an operator; no tokens are minted until it is (thirdway "
            f"attest accept {changed.value} --reason … --operator … --data-dir …); then retry"
        )

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


# --------------------------------------------------------------------------- checking a log

AUDIT_CHUNK = 1000
"""Entries read per query when checking a log."""


@dataclass
class LoggedAttestation:
    """One ``enclave_started`` entry as checked."""

    index: int
    start: int | None
    attestation: Attestation
    accepted: bool
    """Whether an operator had accepted its measurement before it was logged."""


@dataclass
class LogAudit:
    """What :func:`audit_log` found: the enclave's history in a log and every problem."""

    entries: int = 0
    attestations: list[LoggedAttestation] = field(default_factory=list)
    acceptances: list[tuple[int, MeasurementAcceptance]] = field(default_factory=list)
    signed_verdicts: int = 0
    """Verdicts whose enclave signature, attestation, accepted measurement, proposal and request
    digest all checked."""
    unsigned_verdicts: dict[str, int] = field(default_factory=dict)
    """Verdicts from other (unattested) verifiers, by verifier name."""
    verdict_errors: int = 0
    """Proposals for which no verdict could be had (nothing was minted on them)."""
    capabilities_on_enclave_verdicts: int = 0
    foreign: int = 0
    """Entries that are not thirdway log entries (``thirdway log append`` can write anything)."""
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


@dataclass
class _SessionRecord:
    observations: list[Observation] = field(default_factory=list)
    history: list[Proposal] = field(default_factory=list)


@dataclass
class _Seen:
    """What the audit has read so far, which later entries are checked against."""

    attestations: dict[str, Attestation] = field(default_factory=dict)
    accepted: set[str] = field(default_factory=set)
    proposals: dict[int, tuple[Proposal, int | None]] = field(default_factory=dict)
    sessions: dict[str, _SessionRecord] = field(default_factory=dict)
    enclave_verdicts: dict[int, bool] = field(default_factory=dict)
    """Proposal index → whether its enclave verdict checked."""


def audit_log(log: TransparencyLog) -> LogAudit:
    """Check every enclave attestation, operator acceptance and signed verdict in ``log``.

    An ``enclave_started`` entry must hold an attestation that verifies on its own terms
    (signature, components, platform claim and quote binding) under the id it is logged with. A
    signed verdict must name an attestation logged before it, verify under that attestation's
    key, carry a measurement an operator had accepted before it, judge the proposal logged at
    its ``proposal_index`` and answer exactly the request the log records (the session's
    observations up to the proposal's ``recorded_before`` and the agent's earlier passing
    proposals, as the gatekeeper rebuilds them). A verdict logged by the enclave verifier without
    a signature, and a capability minted on an enclave verdict that fails these checks, are
    problems too. The log's own integrity is ``thirdway log verify``'s job.
    """
    audit = LogAudit(entries=log.size())
    seen = _Seen()
    for start in range(0, audit.entries, AUDIT_CHUNK):
        for index, data in log.entries_between(start, min(start + AUDIT_CHUNK, audit.entries)):
            try:
                entry = LogEntry.model_validate_json(data)
            except ValidationError:
                audit.foreign += 1
                continue
            try:
                _audit_entry(audit, seen, index, entry)
            except _Problem as exc:
                audit.problems.append(f"entry {index}: {exc}")
    return audit


class _Problem(Exception):
    """One entry fails a check (the message says which)."""


def _audit_entry(audit: LogAudit, seen: _Seen, index: int, entry: LogEntry) -> None:
    payload = entry.payload
    if entry.type == "observation":
        observation = _model(Observation, payload, "observation")
        seen.sessions.setdefault(observation.session, _SessionRecord()).observations.append(
            observation
        )
    elif entry.type == "proposal":
        if not isinstance(payload, dict):
            raise _Problem("a proposal entry's payload is not an object")
        before = payload.get("recorded_before")
        proposal = _model(Proposal, payload.get("proposal"), "proposal")
        seen.proposals[index] = (proposal, before if isinstance(before, int) else None)
    elif entry.type == "attestation":
        _audit_attestation(audit, seen, index, payload)
    elif entry.type == "verdict":
        _audit_verdict(audit, seen, index, payload)
    elif entry.type == "capability" and isinstance(payload, dict):
        claims = payload.get("claims")
        at = claims.get("proposal_index") if isinstance(claims, dict) else None
        if isinstance(at, int) and at in seen.enclave_verdicts:
            if not seen.enclave_verdicts[at]:
                raise _Problem(
                    f"a capability was minted on the enclave verdict for proposal {at}, "
                    "which does not check"
                )
            audit.capabilities_on_enclave_verdicts += 1


def _audit_attestation(audit: LogAudit, seen: _Seen, index: int, payload: Any) -> None:
    event = payload.get("event") if isinstance(payload, dict) else None
    if event == ACCEPTED:
        fields = {key: value for key, value in payload.items() if key != "event"}
        record = _model(MeasurementAcceptance, fields, "measurement acceptance")
        seen.accepted.add(record.measurement)
        audit.acceptances.append((index, record))
        return
    if event != STARTED:
        raise _Problem(f"an attestation entry with unknown event {event!r}")
    attestation = _model(Attestation, payload.get("attestation"), "attestation")
    try:
        verify_attestation(attestation)
    except EnclaveError as exc:
        raise _Problem(f"attestation {attestation.id[:16]}… does not verify: {exc}") from None
    if payload.get("attestation_id") != attestation.id:
        raise _Problem("the logged attestation id is not the id of the attestation it holds")
    start = payload.get("start")
    seen.attestations[attestation.id] = attestation
    audit.attestations.append(
        LoggedAttestation(
            index=index,
            start=start if isinstance(start, int) else None,
            attestation=attestation,
            accepted=attestation.measurement in seen.accepted,
        )
    )


def _audit_verdict(audit: LogAudit, seen: _Seen, index: int, payload: Any) -> None:
    if not isinstance(payload, dict):
        raise _Problem("a verdict entry's payload is not an object")
    verifier = str(payload.get("verifier"))
    at = payload.get("proposal_index")
    if "verdict" not in payload:
        audit.verdict_errors += 1
        if isinstance(at, int) and verifier.split("+", 1)[0] == AttestedVerifier.name:
            seen.enclave_verdicts[at] = False  # no verdict: nothing may be minted on it
        return
    verdict = _model(Verdict, payload["verdict"], "verdict")
    found = seen.proposals.get(at) if isinstance(at, int) else None
    if verdict.verdict == "pass" and found is not None:
        record = seen.sessions.setdefault(found[0].session, _SessionRecord())
        passed = found[0]
    else:
        record, passed = None, None
    signed_fields = payload.get("signed")
    enclave = verifier.split("+", 1)[0] == AttestedVerifier.name
    try:
        if signed_fields is None:
            if enclave:
                if isinstance(at, int):
                    seen.enclave_verdicts[at] = False
                raise _Problem(f"a verdict by {verifier} carries no enclave signature")
            audit.unsigned_verdicts[verifier] = audit.unsigned_verdicts.get(verifier, 0) + 1
            return
        if isinstance(at, int):
            seen.enclave_verdicts[at] = False
        if not isinstance(signed_fields, dict):
            raise _Problem("the verdict's signature fields are not an object")
        signed = _model(SignedVerdict, {**signed_fields, "verdict": verdict}, "signed verdict")
        attestation = seen.attestations.get(signed.attestation_id)
        if attestation is None:
            raise _Problem(
                f"the verdict names attestation {signed.attestation_id[:16]}…, which is not "
                "logged (and verified) before it"
            )
        if found is None:
            raise _Problem(f"the verdict names proposal {at!r}, which is not logged before it")
        proposal, recorded_before = found
        observations = seen.sessions.get(proposal.session, _SessionRecord()).observations
        if recorded_before is None or recorded_before > len(observations):
            raise _Problem(
                f"proposal {at} records {recorded_before!r} observations before it; the log "
                f"holds {len(observations)} for its session"
            )
        digest = request_digest(
            proposal,
            observations[:recorded_before],
            seen.sessions.get(proposal.session, _SessionRecord()).history,
            recorded_before,
        )
        try:
            check_verdict_signature(signed, attestation, request_sha256=digest)
        except EnclaveError as exc:
            raise _Problem(str(exc)) from None
        if verdict.proposal_sha256 not in (None, canonical_sha256(proposal)):
            raise _Problem(f"the signed verdict judged another proposal than entry {at}")
        if signed.measurement not in seen.accepted:
            raise _Problem(
                f"the verdict comes from measurement {signed.measurement}, which no operator "
                "had accepted before it"
            )
        seen.enclave_verdicts[at] = True  # type: ignore[index]
        audit.signed_verdicts += 1
    finally:
        if record is not None and passed is not None:
            record.history.append(passed)


def _model(model: Any, value: Any, what: str) -> Any:
    try:
        return model.model_validate(value)
    except ValidationError as exc:
        raise _Problem(describe(exc, what)) from None
