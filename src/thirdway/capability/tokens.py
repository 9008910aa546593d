"""Capability tokens: Biscuit (Ed25519) tokens that bind one exact tool call.

A token is minted only after a proposal passed verification (or an auditor approved it) and the
authorization policy allowed it. Its authority block states, as Datalog facts, who may call which
tool with which arguments (by the SHA-256 of their RFC 8785 canonical JSON), for which logged
proposal and verdict, until when, under which single-use nonce. Nothing else is in it: the token
is useless for any other call, and a second use is refused by the spent-set
(:mod:`thirdway.capability.spent`).

Verification is pure: the caller passes the current time, so expiry is testable and the same
inputs always give the same answer. The Datalog checks are the enforcement; the reasons attached
to refusals are worked out from the token's own facts, and both must agree before a token is
accepted.
"""

from __future__ import annotations

import binascii
import datetime
import hashlib
import math
import secrets
import threading
import time
from collections.abc import Callable, Mapping
from typing import Annotated, Any, Final, Literal, TypeVar

from biscuit_auth import (
    Algorithm,
    AuthorizationError,
    Authorizer,
    AuthorizerBuilder,
    Biscuit,
    BiscuitBuilder,
    BiscuitValidationError,
    KeyPair,
    PrivateKey,
    PublicKey,
    Rule,
    UnverifiedBiscuit,
)
from pydantic import ConfigDict, Field, StringConstraints, ValidationError

from thirdway.errors import CapabilityError, InputError
from thirdway.protocol.canonical import canonical_json, sha256_hex
from thirdway.protocol.models import Format, Id, Index, Model, Sha256Hex

Reason = Literal[
    "malformed",
    "unknown_key",
    "bad_signature",
    "expired",
    "wrong_tool",
    "wrong_args",
    "wrong_agent",
    "wrong_session",
    "spent",
    "voided",
    "unlogged",
    "unavailable",
    "refused",
]
"""Why a token was refused. ``voided``: the gatekeeper restarted after a stop that was not clean
since the token was minted (see :mod:`thirdway.gateway.restart`); ``unlogged``: the
gatekeeper's log does not hold the proposal the token was minted for (a log restored from a
backup, or a token of another deployment signed with the same key); ``unavailable``: the
spent-set could not be reached (fail closed);
``refused``: the authorizer said no for a reason none of the others explains (e.g. its run
limits), which should never happen to a token this module minted."""

REASONS: Final[tuple[Reason, ...]] = (
    "malformed",
    "unknown_key",
    "bad_signature",
    "expired",
    "wrong_tool",
    "wrong_args",
    "wrong_agent",
    "wrong_session",
    "spent",
    "voided",
    "unlogged",
    "unavailable",
    "refused",
)

DEFAULT_TTL_SECONDS: Final = 60
MAX_TTL_SECONDS: Final = 24 * 3600
MAX_TOKEN_CHARS: Final = 8 * 1024
"""Our tokens are well under 2 KiB; anything far larger is refused before it is decoded."""
AUTHORIZER_MAX_TIME: Final = datetime.timedelta(milliseconds=100)
"""Biscuit's default run limit is 1 ms, which a loaded machine can exceed for a valid token."""
MAX_EXPIRES_AT: Final = 2**53
MAX_REMEMBERED_TOKENS: Final = 10_000
"""Most tokens an issuer remembers at once (:class:`IssuedTokens`, about 5.6 KB each: the Biscuit
object is most of it); more are verified in full. A token is forgotten once it is spent, so
only tokens minted and not yet used count."""

KeyT = TypeVar("KeyT", PublicKey, PrivateKey)

Nonce = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{32}$")]
UnixSeconds = Annotated[int, Field(ge=0, le=MAX_EXPIRES_AT)]

_ED25519: Final = Algorithm.Ed25519  # type: ignore[attr-defined]  # stubs lag the binding
_ED25519_PUBLIC_PREFIX: Final = "ed25519/"
_ED25519_PRIVATE_PREFIX: Final = "ed25519-private/"

_CLAIMS_RULE: Final = (
    "claims($format, $agent, $session, $tool, $args, $proposal, $verdict, $nonce, $expires) <- "
    "capability_format($format), agent($agent), session($session), tool($tool), "
    "args_sha256($args), proposal_index($proposal), verdict_sha256($verdict), nonce($nonce), "
    "expires_at($expires)"
)
_CLAIM_FIELDS: Final = (
    "format",
    "agent",
    "session",
    "tool",
    "args_sha256",
    "proposal_index",
    "verdict_sha256",
    "nonce",
    "expires_at",
)


class CapabilityClaims(Model):
    """What one capability token allows: one call of ``tool`` with exactly the arguments whose
    canonical hash is ``args_sha256``, by ``agent`` in ``session``, before ``expires_at``."""

    model_config = ConfigDict(strict=True)  # a claim read back from a token is never coerced

    format: Format = "thirdway/1"
    agent: Id
    session: Id
    tool: Id
    args_sha256: Sha256Hex
    """SHA-256 (hex) of the RFC 8785 canonical JSON of the call's arguments object."""
    proposal_index: Index
    """Log index of the proposal entry this token answers."""
    verdict_sha256: Sha256Hex
    """SHA-256 of the canonical bytes of the verdict that allowed it."""
    nonce: Nonce
    """128 random bits (hex); the spent-set refuses a nonce the second time."""
    expires_at: UnixSeconds
    """Unix seconds; the token is valid while ``now < expires_at``."""

    @classmethod
    def for_call(
        cls,
        *,
        agent: str,
        session: str,
        tool: str,
        args: Mapping[str, Any],
        proposal_index: int,
        verdict_sha256: str,
        now: float,
        ttl_seconds: int = DEFAULT_TTL_SECONDS,
    ) -> CapabilityClaims:
        """Claims for one call, with a fresh random nonce and ``expires_at = now + ttl``."""
        if (
            isinstance(ttl_seconds, bool)
            or not isinstance(ttl_seconds, int)
            or not 1 <= ttl_seconds <= MAX_TTL_SECONDS
        ):
            raise InputError(f"ttl_seconds must be between 1 and {MAX_TTL_SECONDS}")
        try:
            return cls(
                agent=agent,
                session=session,
                tool=tool,
                args_sha256=args_sha256(args),
                proposal_index=proposal_index,
                verdict_sha256=verdict_sha256,
                nonce=secrets.token_hex(16),
                expires_at=math.floor(_checked_now(now)) + ttl_seconds,
            )
        except ValidationError as exc:
            raise InputError(f"invalid capability claims: {_first_error(exc)}") from exc


def args_sha256(args: Mapping[str, Any]) -> str:
    """SHA-256 (hex) of the RFC 8785 canonical JSON of an arguments object: key order and number
    spelling (``1.0`` vs ``1``) do not matter, every other difference does."""
    return sha256_hex(canonical_args(args))


def canonical_args(args: Mapping[str, Any]) -> bytes:
    """RFC 8785 bytes of an arguments object (raises InputError if it is not I-JSON)."""
    if not isinstance(args, Mapping):
        raise InputError(f"tool arguments must be a JSON object, not {type(args).__name__}")
    try:
        return canonical_json(dict(args))
    except RecursionError:  # the reference encoder recurses; a hostile caller nests deeply
        raise InputError("tool arguments are nested too deeply to be canonicalised") from None


# --------------------------------------------------------------------------- keys


def key_id(public_key: PublicKey) -> int:
    """A 32-bit identifier of a root key, carried (unsigned) in the token as its root key id so
    that a token from another issuer is reported as such rather than as a broken signature."""
    return int.from_bytes(hashlib.sha256(bytes(public_key.to_bytes())).digest()[:4], "big")


def load_public_key(value: PublicKey | str | bytes) -> PublicKey:
    """An Ed25519 public key from a biscuit key, ``"ed25519/<hex>"`` or 32 raw bytes.

    Any other algorithm is refused: thirdway tokens are Ed25519 only."""
    if isinstance(value, PublicKey):
        key = value
    elif isinstance(value, str):
        if not value.startswith(_ED25519_PUBLIC_PREFIX):
            raise InputError("capability public key must be written 'ed25519/<64 hex digits>'")
        key = _parse_key(lambda: PublicKey(value), "public")
    elif isinstance(value, bytes):
        if len(value) != 32:
            raise InputError(f"an Ed25519 public key is 32 bytes, not {len(value)}")
        key = _parse_key(lambda: PublicKey.from_bytes(value, _ED25519), "public")  # type: ignore[call-arg]
    else:
        raise InputError(f"cannot use a {type(value).__name__} as a capability public key")
    if not str(key).startswith(_ED25519_PUBLIC_PREFIX):
        raise InputError(f"capability keys must be Ed25519, not {str(key).split('/')[0]}")
    return key


def load_private_key(value: PrivateKey | str | bytes) -> PrivateKey:
    """An Ed25519 private key from a biscuit key, ``"ed25519-private/<hex>"`` or 32 raw bytes."""
    if isinstance(value, PrivateKey):
        key = value
    elif isinstance(value, str):
        if not value.startswith(_ED25519_PRIVATE_PREFIX):
            raise InputError("capability private key must be written 'ed25519-private/<hex>'")
        key = _parse_key(lambda: PrivateKey(value), "private")
    elif isinstance(value, bytes):
        if len(value) != 32:
            raise InputError(f"an Ed25519 private key is 32 bytes, not {len(value)}")
        key = _parse_key(lambda: PrivateKey.from_bytes(value, _ED25519), "private")  # type: ignore[call-arg]
    else:
        raise InputError(f"cannot use a {type(value).__name__} as a capability private key")
    if not str(key).startswith(_ED25519_PRIVATE_PREFIX):
        raise InputError(f"capability keys must be Ed25519, not {str(key).split('/')[0]}")
    return key


def _parse_key(parse: Callable[[], KeyT], kind: str) -> KeyT:
    try:
        return parse()
    except Exception as exc:  # the binding raises bare ValueError/Exception subclasses
        raise InputError(f"invalid Ed25519 {kind} key: {exc}") from exc


# --------------------------------------------------------------------------- minting


class IssuedTokens:
    """The tokens one issuer minted and that have not expired, by the SHA-256 of their text.

    A token whose text is exactly one this process signed is exactly the Biscuit it built, with
    exactly the claims it was built from. The issuer's own verifier
    (:meth:`CapabilityIssuer.verifier`) therefore skips decoding it, checking its signature and
    its encoding, and reading its facts back: Biscuit's authorizer still runs the same checks on
    the same facts, and the explanation is worked out from the same claims, so the answer is
    the one the full path gives. Any other text (a single byte altered included) misses and is
    verified in full. This takes about two thirds off the gatekeeper's token check; resources
    in other processes verify in full as before.

    Bounded: a token is forgotten once it is spent (:meth:`forget`, called by
    :class:`~thirdway.capability.locked.LockedTool`; the spent-set refuses it from then on),
    tokens that expired by the wall clock are forgotten as new ones arrive, and past
    :data:`MAX_REMEMBERED_TOKENS` unspent ones a new token is simply not remembered. None of
    this changes an answer: a forgotten token is verified in full, and a remembered one that
    expired is refused by the same checks either way."""

    def __init__(self, limit: int = MAX_REMEMBERED_TOKENS) -> None:
        self._limit = limit
        self._minted: dict[bytes, tuple[Biscuit, CapabilityClaims]] = {}
        self._lock = threading.Lock()

    def remember(self, token: str, biscuit: Biscuit, claims: CapabilityClaims) -> None:
        digest = _token_digest(token)
        with self._lock:
            self._forget_expired(math.floor(time.time()))
            if len(self._minted) < self._limit:
                self._minted[digest] = (biscuit, claims)

    def find(self, token: str) -> tuple[Biscuit, CapabilityClaims] | None:
        """The Biscuit and claims this issuer minted as exactly the text ``token``, if any."""
        if not token.isascii():  # base64: nothing this issuer minted
            return None
        with self._lock:
            return self._minted.get(_token_digest(token))

    def forget(self, token: str) -> None:
        """Drop ``token`` (it was spent: nothing will accept it again)."""
        if not token.isascii():
            return
        with self._lock:
            self._minted.pop(_token_digest(token), None)

    def __len__(self) -> int:
        return len(self._minted)

    def _forget_expired(self, now: int) -> None:
        """Drop the oldest entries while they have expired. The dict keeps minting order, which
        with one TTL is also expiry order; an unspent token minted with a longer TTL holds the
        ones after it until it expires (spent ones still leave at once), which at worst fills
        the memory and sends new tokens down the full path, never changing an answer."""
        while self._minted:
            oldest = next(iter(self._minted))
            if self._minted[oldest][1].expires_at > now:
                return
            del self._minted[oldest]


def _token_digest(token: str) -> bytes:
    return hashlib.sha256(token.encode("ascii")).digest()


class CapabilityIssuer:
    """Holds the Ed25519 root key and mints tokens. Lives with the gatekeeper only; locked tools
    and resources need just :attr:`public_key`."""

    def __init__(self, private_key: PrivateKey | str | bytes | None = None) -> None:
        keypair = KeyPair() if private_key is None else _keypair(load_private_key(private_key))
        self._private_key = keypair.private_key
        self.public_key: PublicKey = keypair.public_key
        self.key_id = key_id(self.public_key)
        self.issued = IssuedTokens()

    @property
    def public_key_text(self) -> str:
        """``"ed25519/<hex>"``: what a resource in another process is configured with."""
        return str(self.public_key)

    def private_key_bytes(self) -> bytes:
        """The raw 32-byte private key, for the caller to persist (keep it secret)."""
        return bytes(self._private_key.to_bytes())

    def mint(self, claims: CapabilityClaims) -> str:
        """A URL-safe base64 token whose authority block holds exactly these claims."""
        builder = BiscuitBuilder(
            "capability_format({format});\n"
            "agent({agent});\n"
            "session({session});\n"
            "tool({tool});\n"
            "args_sha256({args_sha256});\n"
            "proposal_index({proposal_index});\n"
            "verdict_sha256({verdict_sha256});\n"
            "nonce({nonce});\n"
            "expires_at({expires_at});\n",
            claims.model_dump(),
        )
        builder.set_root_key_id(self.key_id)
        biscuit = builder.build(self._private_key)
        token: str = biscuit.to_base64()
        self.issued.remember(token, biscuit, claims)
        return token

    def verifier(self) -> CapabilityVerifier:
        """A verifier for this issuer's tokens, which knows the ones it minted
        (:class:`IssuedTokens`)."""
        return CapabilityVerifier(self.public_key, issued=self.issued)


def _keypair(private_key: PrivateKey) -> KeyPair:
    return KeyPair.from_private_key(private_key)


# --------------------------------------------------------------------------- verification


class CapabilityVerifier:
    """Checks tokens against one issuer's Ed25519 public key. Pure: the time is an argument.

    :meth:`verify` does not spend the token; :class:`~thirdway.capability.locked.LockedTool` and
    :func:`~thirdway.capability.locked.verify_capability` verify *and* spend."""

    def __init__(
        self,
        public_key: PublicKey | str | bytes,
        *,
        max_time: datetime.timedelta = AUTHORIZER_MAX_TIME,
        issued: IssuedTokens | None = None,
    ) -> None:
        self.public_key = load_public_key(public_key)
        self.key_id = key_id(self.public_key)
        self.max_time = max_time
        self.issued = issued

    def verify(
        self,
        token: str,
        *,
        tool: str,
        args: Mapping[str, Any],
        agent: str | None = None,
        session: str | None = None,
        now: float,
    ) -> CapabilityClaims:
        """Return the token's claims if it allows calling ``tool`` with exactly ``args`` (and, when
        given, by ``agent`` in ``session``) at time ``now``; raise CapabilityError otherwise."""
        try:
            digest = args_sha256(args)
        except InputError as exc:
            raise CapabilityError(
                "wrong_args", f"the call's arguments cannot be hashed: {exc}"
            ) from None
        return self.verify_digest(
            token, tool=tool, args_sha256=digest, agent=agent, session=session, now=now
        )

    def verify_digest(
        self,
        token: str,
        *,
        tool: str,
        args_sha256: str,
        agent: str | None = None,
        session: str | None = None,
        now: float,
    ) -> CapabilityClaims:
        """:meth:`verify` for a caller that already hashed the arguments."""
        _check_names(tool=tool, agent=agent, session=session)
        request = _Request(tool, args_sha256, agent, session, math.floor(_checked_now(now)))
        minted = self._minted(token)
        if minted is None:
            biscuit = self._parse(token)
            authorizer = self._authorizer(biscuit, request)
            claims = _claims(authorizer)
        else:
            biscuit, claims = minted
            authorizer = self._authorizer(biscuit, request)
        explanation = _explain(claims, request)
        try:
            authorizer.authorize()
        except AuthorizationError as exc:
            raise explanation or CapabilityError(
                "refused", f"the token's authorization policy failed: {exc}"
            ) from None
        if explanation is not None:  # Datalog and the explanation disagree: fail closed
            raise explanation
        return claims

    def spent(self, token: str) -> None:
        """``token`` was spent: its issuer need not remember it any longer."""
        if self.issued is not None and isinstance(token, str):
            self.issued.forget(token)

    def _minted(self, token: object) -> tuple[Biscuit, CapabilityClaims] | None:
        """The Biscuit and claims of a token this verifier's issuer minted as exactly this
        text (:class:`IssuedTokens`)."""
        if self.issued is None or not isinstance(token, str) or len(token) > MAX_TOKEN_CHARS:
            return None
        return self.issued.find(token)

    def _parse(self, token: str) -> Biscuit:
        if not isinstance(token, str):
            raise CapabilityError(
                "malformed", f"a token is a base64 string, not {type(token).__name__}"
            )
        if not token:
            raise CapabilityError("malformed", "no token given (expected a base64 string)")
        if len(token) > MAX_TOKEN_CHARS:
            raise CapabilityError(
                "malformed", f"token is {len(token)} characters; the limit is {MAX_TOKEN_CHARS}"
            )
        try:
            unverified = UnverifiedBiscuit.from_base64(token)
        except (BiscuitValidationError, ValueError, binascii.Error) as exc:
            raise CapabilityError("malformed", f"not a Biscuit token: {exc}") from None
        if unverified.root_key_id() != self.key_id:
            raise CapabilityError(
                "unknown_key",
                f"token names root key id {unverified.root_key_id()}; this verifier trusts only "
                f"{self.key_id} ({self.public_key})",
            )
        try:
            biscuit = unverified.verify(self.public_key)
        except (BiscuitValidationError, ValueError) as exc:
            raise CapabilityError("bad_signature", f"signature check failed: {exc}") from None
        if biscuit.to_base64() != token:
            # Protobuf parsing is lenient: some altered bytes (a length, a varint's padding)
            # still decode to the same signed content. One token has one encoding: the
            # issuer's; anything else was altered on the way and is refused.
            raise CapabilityError(
                "malformed",
                "token is not in the issuer's canonical encoding (its bytes were altered)",
            )
        if biscuit.block_count() != 1:
            raise CapabilityError(
                "malformed",
                f"token has {biscuit.block_count()} blocks; capability tokens are single-block",
            )
        return biscuit

    def _authorizer(self, biscuit: Biscuit, request: _Request) -> Authorizer:
        code = [
            'allow if capability_format("thirdway/1");',
            "check if tool($t), $t == {tool};",
            "check if args_sha256($h), $h == {args_sha256};",
            "check if expires_at($e), $e > {now};",
        ]
        params: dict[str, Any] = {
            "tool": request.tool,
            "args_sha256": request.args_sha256,
            "now": request.now,
        }
        if request.agent is not None:
            code.append("check if agent($a), $a == {agent};")
            params["agent"] = request.agent
        if request.session is not None:
            code.append("check if session($s), $s == {session};")
            params["session"] = request.session
        code.append("deny if true;")
        try:
            builder = AuthorizerBuilder("\n".join(code), params)
        except Exception as exc:  # a parameter Biscuit cannot represent
            raise CapabilityError("refused", f"cannot build the token check: {exc}") from None
        limits = builder.limits()  # type: ignore[attr-defined]
        limits.max_time = self.max_time
        builder.set_limits(limits)  # type: ignore[attr-defined]
        return builder.build(biscuit)


class _Request:
    """The call a token is checked against."""

    __slots__ = ("agent", "args_sha256", "now", "session", "tool")

    def __init__(
        self, tool: str, args_sha256: str, agent: str | None, session: str | None, now: int
    ) -> None:
        self.tool = tool
        self.args_sha256 = args_sha256
        self.agent = agent
        self.session = session
        self.now = now


def _claims(authorizer: Authorizer) -> CapabilityClaims:
    """Read the authority block's facts back as claims; exactly one of each is required."""
    try:
        rows = authorizer.query(Rule(_CLAIMS_RULE))
    except Exception as exc:
        # The token parsed and its signature held, so only the run limits can fail here.
        raise CapabilityError("refused", f"token facts cannot be evaluated: {exc}") from None
    if len(rows) != 1:
        raise CapabilityError(
            "malformed",
            f"token must state each claim exactly once ({len(rows)} combinations of claims found)",
        )
    try:
        return CapabilityClaims(**dict(zip(_CLAIM_FIELDS, rows[0].terms, strict=True)))
    except (ValidationError, ValueError) as exc:
        message = _first_error(exc) if isinstance(exc, ValidationError) else str(exc)
        raise CapabilityError("malformed", f"token claims are invalid: {message}") from None


def _explain(claims: CapabilityClaims, request: _Request) -> CapabilityError | None:
    """The first way the claims fail the request, in a fixed order, or None."""
    if claims.tool != request.tool:
        return CapabilityError(
            "wrong_tool", f"token is for tool {claims.tool!r}, not {request.tool!r}"
        )
    if claims.args_sha256 != request.args_sha256:
        return CapabilityError(
            "wrong_args",
            f"token is for arguments with hash {claims.args_sha256[:16]}…; these hash to "
            f"{request.args_sha256[:16]}… (the call differs from the one that was approved)",
        )
    if request.agent is not None and claims.agent != request.agent:
        return CapabilityError(
            "wrong_agent", f"token was issued to agent {claims.agent!r}, not {request.agent!r}"
        )
    if request.session is not None and claims.session != request.session:
        return CapabilityError(
            "wrong_session",
            f"token belongs to session {claims.session!r}, not {request.session!r}",
        )
    if claims.expires_at <= request.now:
        return CapabilityError(
            "expired",
            f"token expired at {claims.expires_at} (now {request.now}); propose the action again",
        )
    return None


def _check_names(*, tool: object, agent: object, session: object) -> None:
    """What the call is checked against must be names: a caller passing ``None`` or bytes for
    one has a bug, which is an InputError naming it, not a refusal of the token."""
    if not isinstance(tool, str):
        raise InputError(f"the tool to check a token for is a name, not {type(tool).__name__}")
    for what, value in (("agent", agent), ("session", session)):
        if value is not None and not isinstance(value, str):
            raise InputError(
                f"the {what} to check a token for is a name or None, not {type(value).__name__}"
            )


def _checked_now(now: float) -> float:
    if isinstance(now, bool) or not isinstance(now, int | float) or not math.isfinite(now):
        raise InputError(f"'now' must be a finite number of unix seconds, not {now!r}")
    if not 0 <= now < MAX_EXPIRES_AT:
        raise InputError(f"'now' is out of range: {now!r}")
    return float(now)


def _first_error(exc: ValidationError) -> str:
    error = exc.errors()[0]
    where = ".".join(str(part) for part in error["loc"]) or "claims"
    return f"{where}: {error['msg']}"
