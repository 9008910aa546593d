"""Capability tokens (Biscuit, Ed25519), the single-use spent-set and locked tools.

A token binds one exact tool call (agent, session, tool, the RFC 8785 hash of the arguments, the
proposal and verdict that justified it, a nonce and an expiry). :class:`LockedTool` and
:func:`verify_capability` refuse to act without one, and spend it so it cannot be used again.
"""

from thirdway.capability.locked import LockedTool, locked, verify_capability
from thirdway.capability.spent import MemorySpentSet, SpentSet, SQLiteSpentSet
from thirdway.capability.tokens import (
    DEFAULT_TTL_SECONDS,
    REASONS,
    CapabilityClaims,
    CapabilityIssuer,
    CapabilityVerifier,
    Reason,
    args_sha256,
    canonical_args,
    load_private_key,
    load_public_key,
)
from thirdway.errors import CapabilityError

__all__ = [
    "DEFAULT_TTL_SECONDS",
    "REASONS",
    "CapabilityClaims",
    "CapabilityError",
    "CapabilityIssuer",
    "CapabilityVerifier",
    "LockedTool",
    "MemorySpentSet",
    "Reason",
    "SQLiteSpentSet",
    "SpentSet",
    "args_sha256",
    "canonical_args",
    "load_private_key",
    "load_public_key",
    "locked",
    "verify_capability",
]
