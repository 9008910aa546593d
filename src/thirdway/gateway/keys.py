"""The capability signing key file of :meth:`Gatekeeper.open`."""

from __future__ import annotations

import contextlib
import os
import secrets
from pathlib import Path

from thirdway.capability import CapabilityIssuer
from thirdway.errors import InputError

PREFIX = "ed25519-private/"


def load_or_create_issuer(path: Path) -> CapabilityIssuer:
    """The token issuer whose key is in ``path``: created (mode 0600, written and synced before
    use) when missing, a clear :class:`InputError` when unreadable or malformed."""
    try:
        text = path.read_text(encoding="ascii").strip()
    except FileNotFoundError:
        return _create(path)
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read the capability key {path}: {exc}") from None
    try:
        return CapabilityIssuer(text)
    except InputError as exc:
        raise InputError(f"capability key {path} is malformed: {exc}") from None


def _create(path: Path) -> CapabilityIssuer:
    """Write the key to a private temporary file, sync it, then link it into place: the link
    fails if another process got there first, so nobody ever reads a half-written key."""
    issuer = CapabilityIssuer()
    data = f"{PREFIX}{issuer.private_key_bytes().hex()}\n".encode("ascii")
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    try:
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        try:
            os.link(temporary, path)
        except FileExistsError:  # another process created it meanwhile: use theirs
            return load_or_create_issuer(path)
    except OSError as exc:
        raise InputError(f"cannot create the capability key {path}: {exc}") from None
    finally:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
    return issuer
