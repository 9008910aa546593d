"""The gateway: the in-process :class:`Gatekeeper` between an agent and its tools.

An agent opens a session with its principal's instruction, every tool result passes the gateway
and is recorded, and a protected tool runs only with a capability token minted for a verified,
authorized proposal of exactly that call. Every step is an entry in the transparency log.
"""

from thirdway.gateway.gatekeeper import Gatekeeper
from thirdway.gateway.hooks import (
    DEFAULT_TIER,
    FixedTier,
    RecordOnlySanctioner,
    Sanctioner,
    StageTimer,
    TierSource,
)
from thirdway.gateway.outcomes import Acted, Denied, Escalated, Executed, Granted, Outcome
from thirdway.gateway.sessions import StaleRecordError
from thirdway.gateway.tools import HostedTool, ToolRegistry, render_result
from thirdway.gateway.verifiers import (
    EnclaveVerifier,
    InProcessVerifier,
    Verifier,
    VerifierResult,
)

__all__ = [
    "DEFAULT_TIER",
    "Acted",
    "Denied",
    "EnclaveVerifier",
    "Escalated",
    "Executed",
    "FixedTier",
    "Gatekeeper",
    "Granted",
    "HostedTool",
    "InProcessVerifier",
    "Outcome",
    "RecordOnlySanctioner",
    "Sanctioner",
    "StageTimer",
    "StaleRecordError",
    "TierSource",
    "ToolRegistry",
    "Verifier",
    "VerifierResult",
    "render_result",
]
