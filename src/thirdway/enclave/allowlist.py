"""Operator-accepted measurements: a changed verifier blocks minting until someone says yes.

The gateway computes the expected measurement from its own copy of the verifier files, manifests,
policy and charter. If that value is not in the allow-list, nothing is minted: a modified
verifier file (or a new policy) needs an operator to accept the new measurement, with a reason.
:meth:`MeasurementAllowList.accept_measurement` returns a :class:`MeasurementAcceptance` record
that the gatekeeper appends to the transparency log, so every accepted change is public.

The list persists as a small JSON file (written atomically); it holds every acceptance ever made,
in order, so it is also the history of which code was trusted and why.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Annotated, Final, Literal

from pydantic import AfterValidator, Field, ValidationError

from thirdway.enclave.attestation import Measurement
from thirdway.errors import EnclaveError, InputError
from thirdway.protocol.models import Claim, Id, Model, Sha256Hex
from thirdway.protocol.parse import describe

ACCEPTANCE_FORMAT: Final = "thirdway-measurement-acceptance/1"
ALLOWLIST_FORMAT: Final = "thirdway-measurement-allowlist/1"
MAX_ALLOWLIST_BYTES = 4 * 1024 * 1024


def _not_blank(value: str) -> str:
    if not value.strip():
        raise ValueError("must say why (not blank)")
    return value


Reason = Annotated[Claim, AfterValidator(_not_blank)]


class MeasurementAcceptance(Model):
    """An operator's decision to trust one measurement: the loggable record."""

    format: Literal["thirdway-measurement-acceptance/1"] = ACCEPTANCE_FORMAT
    kind: Literal["measurement_accepted"] = "measurement_accepted"
    measurement: Sha256Hex
    operator: Id
    reason: Reason
    components: Measurement | None = None
    """What the accepted value is made of, when the operator had it at hand (for audits)."""


class AllowListFile(Model):
    """The JSON file: every acceptance, oldest first."""

    format: Literal["thirdway-measurement-allowlist/1"] = ALLOWLIST_FORMAT
    accepted: list[MeasurementAcceptance] = Field(default_factory=list, max_length=100_000)


class MeasurementAllowList:
    """Measurements an operator has accepted. Not thread-safe for writers (one operator CLI)."""

    def __init__(self, accepted: list[MeasurementAcceptance] | None = None) -> None:
        self._accepted: list[MeasurementAcceptance] = list(accepted or [])

    @property
    def acceptances(self) -> tuple[MeasurementAcceptance, ...]:
        return tuple(self._accepted)

    def is_accepted(self, measurement: str) -> bool:
        return any(a.measurement == measurement for a in self._accepted)

    def accept_measurement(
        self,
        value: str | Measurement,
        operator: str,
        reason: str,
    ) -> MeasurementAcceptance:
        """Accept ``value`` on ``operator``'s word; returns the record to append to the log.

        An operator and a non-empty reason are required: an acceptance without either would be
        a silent change of what the gateway trusts.
        """
        components = value if isinstance(value, Measurement) else None
        measurement = value.value if isinstance(value, Measurement) else value
        try:
            record = MeasurementAcceptance(
                measurement=measurement,
                operator=operator,
                reason=reason,
                components=components,
            )
        except ValidationError as exc:
            raise InputError(describe(exc, "measurement acceptance")) from None
        self._accepted.append(record)
        return record

    def require(self, measurement: str | Measurement) -> str:
        """Return the measurement if accepted; otherwise refuse (no minting until accepted)."""
        value = measurement.value if isinstance(measurement, Measurement) else measurement
        if not self.is_accepted(value):
            raise EnclaveError(
                f"verifier measurement {value} has not been accepted by an operator: no tokens "
                "are minted until it is (thirdway attest accept, or accept_measurement)"
            )
        return value

    # ----------------------------------------------------------------------- persistence

    def to_json(self) -> str:
        document = AllowListFile(accepted=self._accepted)
        return json.dumps(document.model_dump(mode="json"), indent=2, ensure_ascii=False) + "\n"

    def save(self, path: Path) -> None:
        """Write atomically: a crash leaves the old file or the new one, never half of one."""
        data = self.to_json().encode("utf-8")
        fd, tmp = tempfile.mkstemp(prefix=".allowlist-", dir=path.parent)
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    @classmethod
    def load(cls, path: Path) -> MeasurementAllowList:
        """Read a list written by :meth:`save`; a missing file is an empty list."""
        try:
            size = path.stat().st_size
        except FileNotFoundError:
            return cls()
        if size > MAX_ALLOWLIST_BYTES:
            raise InputError(
                f"allow-list {path} is {size} bytes; the limit is {MAX_ALLOWLIST_BYTES}"
            )
        try:
            document = AllowListFile.model_validate_json(path.read_bytes())
        except ValidationError as exc:
            raise InputError(describe(exc, f"allow-list {path}")) from None
        return cls(document.accepted)
