"""Errors that carry a one-line, human-actionable message.

Every error a user can cause derives from :class:`ThirdwayError`; the CLI prints ``str(err)``
and exits non-zero instead of showing a traceback.
"""


class ThirdwayError(Exception):
    """Base class for every error thirdway raises on purpose."""


class InputError(ThirdwayError):
    """The input could not be read or does not match the expected format."""


class LogError(ThirdwayError):
    """The transparency log is unreadable, inconsistent or was asked for something impossible."""


class ProofError(ThirdwayError):
    """A Merkle proof, root or checkpoint failed verification."""


class CapabilityError(ThirdwayError):
    """A capability token was refused. ``reason`` is a stable machine-readable code (``expired``,
    ``wrong_args``, ``spent``, …; see ``thirdway.capability.REASONS``); the message says what to
    do about it."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(f"capability refused ({reason}): {message}")
        self.reason = reason


class GateError(InputError):
    """The gatekeeper refused a request before acting on it: an unknown session or escalation,
    an agent acting in another agent's session, a tool nobody hosts, an auditor who is an agent.
    Nothing was logged for it."""


class QuotaExceeded(GateError):
    """An agent asked the gatekeeper to hold more than its share: more open sessions, or more
    characters of observations across them, than the gatekeeper's per-agent limits allow.
    Nothing was logged; closing sessions makes room."""


class EnclaveError(ThirdwayError):
    """The verifier enclave's answer cannot be trusted: a bad signature, a verdict for another
    request or attestation, a measurement that is not the expected or an accepted one, or an
    unusable hardware attestation. The caller must not mint a capability."""

    retryable = False


class EnclaveUnavailable(EnclaveError):
    """The verifier enclave died, hung past its timeout or spoke garbage. No verdict exists; the
    client has started (or will start) a fresh enclave, so the same request may be retried."""

    retryable = True
