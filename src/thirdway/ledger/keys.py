"""The log's signing key on disk: one ``PRIVATE+KEY+…`` line in a file only its owner can read.

The format is Go's ``golang.org/x/mod/sumdb/note`` signer key, so the same file works with Go
tooling. A key file that is malformed, for another origin, or readable by other users is refused
rather than repaired or replaced: silently minting a new key would fork the log's identity.
"""

from __future__ import annotations

import contextlib
import os
import stat
from pathlib import Path

from thirdway.errors import InputError, LogError
from thirdway.ledger.note import NoteSigner, check_key_name

__all__ = ["MAX_KEY_FILE_BYTES", "load_or_create_log_key"]

#: A key line is about 100 bytes; anything much bigger is not a key file.
MAX_KEY_FILE_BYTES = 4096


def load_or_create_log_key(path: Path, origin: str) -> NoteSigner:
    """Load the log key for ``origin`` from ``path``, creating it (mode 0600) if missing.

    Raises :class:`LogError` if the file cannot be read, is malformed, is for another origin or is
    accessible by group or others; :class:`InputError` if ``origin`` cannot be a key name.
    """
    check_key_name(origin)
    path = Path(path)
    try:
        return _create(path, origin)
    except FileExistsError:
        return _load(path, origin)


def _create(path: Path, origin: str) -> NoteSigner:
    """Write a fresh key with ``O_EXCL`` so two processes never both create one."""
    if not path.parent.is_dir():
        raise LogError(f"cannot create log key {path}: directory {path.parent} does not exist")
    signer = NoteSigner.generate(origin)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
    try:
        fd = os.open(path, flags, 0o600)
    except FileExistsError:
        raise
    except OSError as exc:
        raise LogError(f"cannot create log key {path}: {exc.strerror}") from None
    try:
        with os.fdopen(fd, "w", encoding="ascii") as handle:
            handle.write(signer.private_key_string() + "\n")
            handle.flush()
            os.fsync(handle.fileno())
    except OSError as exc:
        with contextlib.suppress(OSError):
            path.unlink()
        raise LogError(f"cannot write log key {path}: {exc.strerror}") from None
    return signer


def _load(path: Path, origin: str) -> NoteSigner:
    try:
        info = path.lstat()
    except OSError as exc:
        raise LogError(f"cannot read log key {path}: {exc.strerror}") from None
    if not stat.S_ISREG(info.st_mode):
        raise LogError(f"log key {path} is not a regular file")
    if os.name == "posix" and info.st_mode & 0o077:
        raise LogError(
            f"log key {path} is accessible by other users (mode {stat.S_IMODE(info.st_mode):04o});"
            " run: chmod 600 on it"
        )
    if info.st_size > MAX_KEY_FILE_BYTES:
        raise LogError(f"log key {path} is {info.st_size} bytes; not a key file")
    try:
        raw = path.read_bytes()[: MAX_KEY_FILE_BYTES + 1]
    except OSError as exc:
        raise LogError(f"cannot read log key {path}: {exc.strerror}") from None
    try:
        text = raw.decode("ascii")
    except UnicodeDecodeError:
        raise LogError(f"log key {path} is malformed: not ASCII text") from None
    lines = text.splitlines()
    if len(lines) != 1:
        raise LogError(f"log key {path} is malformed: expected exactly one line")
    try:
        signer = NoteSigner.from_private_key_string(lines[0])
    except InputError as exc:
        # The message names the key's problem, never its material.
        raise LogError(f"log key {path} is malformed: {exc}") from None
    if signer.name != origin:
        raise LogError(f"log key {path} is for origin {signer.name!r}, not {origin!r}")
    return signer
