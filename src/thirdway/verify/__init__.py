"""The deterministic reasoning-chain verifier (DESIGN, "The reasoning chain").

``verify(proposal, observations, manifests, policy, history)`` → :class:`Verdict`. Pure: no I/O,
no clock, no randomness. One module per check: :mod:`.structure`, :mod:`.grounding`,
:mod:`.attribution`, :mod:`.binding`, :mod:`.provenance` (with :mod:`.toolcheck`),
:mod:`.screen` and :mod:`.consistency` (with :mod:`.claims`); finding codes in :mod:`.codes`.
``prepare(observation)`` does the per-observation part of that work ahead of time (same verdicts).
"""

from thirdway.verify.api import prepare, verify
from thirdway.verify.policy import VerifyPolicy

__all__ = ["VerifyPolicy", "prepare", "verify"]
