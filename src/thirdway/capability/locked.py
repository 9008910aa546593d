"""Locked tools: functions that run only when handed a valid, unspent token for exactly this call.

The order is fixed and fail-closed: hash the arguments, verify the token against them, check the
function accepts them, spend the token, run. A refusal at any step raises before the function is
touched. The function receives the arguments decoded from the very canonical bytes that were
hashed, so what runs is exactly what was approved (a caller mutating its dict after the check
changes nothing).

A token is spent before the function runs: if the function then fails, the token is still used
up. An approval is for one attempt; retrying means proposing again.
"""

from __future__ import annotations

import functools
import inspect
import json
import time
from collections.abc import Callable, Mapping
from typing import Any, Generic, TypeVar

from biscuit_auth import PublicKey

from thirdway.capability.spent import SpentSet
from thirdway.capability.tokens import CapabilityClaims, CapabilityVerifier, canonical_args
from thirdway.errors import CapabilityError, InputError
from thirdway.protocol.canonical import sha256_hex

R = TypeVar("R")
Clock = Callable[[], float]


class LockedTool(Generic[R]):
    """A tool that refuses to run without a capability token for this exact call.

    Call it as ``tool(token=..., **args)`` or ``tool.invoke(token, args)`` (the latter also works
    for tools with an argument named ``token``)."""

    def __init__(
        self,
        func: Callable[..., R],
        name: str | None = None,
        *,
        verifier: CapabilityVerifier,
        spent_set: SpentSet,
        clock: Clock = time.time,
    ) -> None:
        self.func = func
        self.name = name or func.__name__
        self.verifier = verifier
        self.spent_set = spent_set
        self.clock = clock
        self._signature = inspect.signature(func)
        functools.update_wrapper(self, func)

    def __call__(self, *, token: str, **args: Any) -> R:
        return self.invoke(token, args)

    def invoke(
        self,
        token: str,
        args: Mapping[str, Any],
        *,
        agent: str | None = None,
        session: str | None = None,
    ) -> R:
        """Verify ``token`` for this call (and ``agent``/``session`` when given), spend it, run."""
        _claims, bound_args = self.authorize_call(token, args, agent=agent, session=session)
        return self.func(**bound_args)

    def authorize_call(
        self,
        token: str,
        args: Mapping[str, Any],
        *,
        agent: str | None = None,
        session: str | None = None,
        admit: Callable[[CapabilityClaims], None] | None = None,
    ) -> tuple[CapabilityClaims, dict[str, Any]]:
        """Everything :meth:`invoke` does except running the function: returns the token's claims
        and the canonical arguments to run it with. The token is spent when this returns.
        ``admit`` is a last check of the verified claims before the spend (it raises
        :class:`CapabilityError` to refuse; the gatekeeper refuses tokens an unclean restart
        voided)."""
        now = self.clock()
        try:
            canonical = canonical_args(args)
        except InputError as exc:
            raise CapabilityError(
                "wrong_args", f"the call's arguments cannot be hashed: {exc}"
            ) from None
        claims = self.verifier.verify_digest(
            token,
            tool=self.name,
            args_sha256=sha256_hex(canonical),
            agent=agent,
            session=session,
            now=now,
        )
        bound_args: dict[str, Any] = json.loads(canonical)
        try:
            self._signature.bind(**bound_args)
        except TypeError as exc:
            raise InputError(f"tool {self.name!r} does not accept these arguments: {exc}") from None
        if admit is not None:
            admit(claims)
        self.spent_set.spend(claims.nonce, claims.expires_at, now)
        self.verifier.spent(token)
        return claims, bound_args

    def __repr__(self) -> str:
        return f"LockedTool({self.name!r})"


def locked(
    *,
    verifier: CapabilityVerifier,
    spent_set: SpentSet,
    name: str | None = None,
    clock: Clock = time.time,
) -> Callable[[Callable[..., R]], LockedTool[R]]:
    """Decorator form of :class:`LockedTool`::

    @locked(verifier=issuer.verifier(), spent_set=SQLiteSpentSet("spent.db"))
    def send_money(recipient: str, amount: float) -> str: ...
    """

    def wrap(func: Callable[..., R]) -> LockedTool[R]:
        return LockedTool(func, name, verifier=verifier, spent_set=spent_set, clock=clock)

    return wrap


@functools.lru_cache(maxsize=64)
def _verifier_for(public_key_text: str) -> CapabilityVerifier:
    return CapabilityVerifier(public_key_text)


def verify_capability(
    token: str,
    tool: str,
    args: Mapping[str, Any],
    *,
    public_key: PublicKey | str | bytes,
    spent_set: SpentSet,
    now: float,
    agent: str | None = None,
    session: str | None = None,
) -> CapabilityClaims:
    """The resource-side check for a protected resource in another process: verify ``token``
    for calling ``tool`` with ``args`` against the issuer's public key, then spend it.

    The resource needs only the public key and a spent-set it shares with every other place the
    same tokens could be redeemed (the same SQLite file). Returns the claims; raises
    CapabilityError (with its ``reason``) when the call must not proceed."""
    if not callable(getattr(spent_set, "spend", None)):
        raise InputError(f"spent_set must be a SpentSet, not {type(spent_set).__name__}")
    if isinstance(public_key, str):
        verifier = _verifier_for(public_key)
    else:
        verifier = CapabilityVerifier(public_key)
    claims = verifier.verify(token, tool=tool, args=args, agent=agent, session=session, now=now)
    spent_set.spend(claims.nonce, claims.expires_at, now)
    return claims
