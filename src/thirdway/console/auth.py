"""Auditor login for the console: a pluggable check of who is who, a signed session cookie, and
a CSRF token for every form.

* :class:`AuditorAuth` is the plug point: ``authenticate(auditor, secret)`` returns the auditor
  id or ``None``. :class:`StaticAuditorAuth` checks against a configured table; the API-key
  scheme of the HTTP service can replace it without touching the console.
* The session is Starlette's signed cookie (``itsdangerous``): ``HttpOnly``, ``SameSite=Strict``,
  ``Secure`` when served over HTTPS, expiring after :data:`SESSION_SECONDS`. Logging in replaces
  the whole session (no fixation).
* CSRF: each session holds a random key; the token of a form is HMAC-SHA256(key, the form's
  action path), so a token lifted from one form does not work on another. Every POST checks it.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Mapping
from typing import Any, Final, Protocol, runtime_checkable

SESSION_SECONDS: Final = 8 * 3600
SESSION_COOKIE: Final = "thirdway_console"
MAX_SECRET_CHARS: Final = 1024


class AuditorAuth(Protocol):
    """Checks an auditor's credentials; returns the auditor id, or ``None`` to refuse."""

    def authenticate(self, auditor: str, secret: str) -> str | None: ...


@runtime_checkable
class RevocableAuditorAuth(AuditorAuth, Protocol):
    """An :class:`AuditorAuth` whose credentials can be revoked (the service's API keys). The
    session keeps the id of the credential used to sign in, and every request checks that it
    still holds: a revoked key ends its console sessions at once, as it ends its API access,
    instead of lasting as long as the cookie (:data:`SESSION_SECONDS`)."""

    def credential_id(self, secret: str) -> str:
        """The id of the credential ``secret`` (never the secret itself)."""
        ...

    def still_valid(self, auditor: str, credential_id: str) -> bool:
        """Whether that credential is still active and still ``auditor``'s."""
        ...


class StaticAuditorAuth:
    """Auditors and their login secrets from configuration. Only SHA-256 digests are kept, and
    comparison takes the same time whatever matches."""

    def __init__(self, credentials: Mapping[str, str]) -> None:
        if not credentials:
            raise ValueError("at least one auditor is needed to log in to the console")
        self._digests = {
            auditor: _digest(secret) for auditor, secret in credentials.items() if secret
        }

    def authenticate(self, auditor: str, secret: str) -> str | None:
        if len(auditor) > 256 or len(secret) > MAX_SECRET_CHARS:
            return None
        expected = self._digests.get(auditor)
        given = _digest(secret)
        if expected is None:
            hmac.compare_digest(given, given)  # same work for unknown ids
            return None
        return auditor if hmac.compare_digest(expected, given) else None


def _digest(secret: str) -> bytes:
    return hashlib.sha256(secret.encode("utf-8", "surrogatepass")).digest()


def start_session(session: dict[str, Any], auditor: str, credential: str | None = None) -> None:
    """A fresh session for ``auditor`` with a new CSRF key (and the id of the credential it
    signed in with, for a :class:`RevocableAuditorAuth`)."""
    session.clear()
    session["auditor"] = auditor
    session["csrf"] = secrets.token_hex(32)
    if credential is not None:
        session["credential"] = credential


def csrf_token(session: Mapping[str, Any], action: str) -> str:
    """The token the form posting to ``action`` must carry ('' without a session)."""
    key = session.get("csrf")
    if not isinstance(key, str):
        return ""
    return hmac.new(bytes.fromhex(key), action.encode("utf-8"), hashlib.sha256).hexdigest()


def csrf_ok(session: Mapping[str, Any], action: str, token: str | None) -> bool:
    """Whether ``token`` is the one for ``action`` in this session."""
    expected = csrf_token(session, action)
    return bool(expected) and isinstance(token, str) and hmac.compare_digest(expected, token)
