"""C2SP checkpoints (https://c2sp.org/tlog-checkpoint) and Ed25519 witness cosignatures.

A checkpoint is the signed-note text ``<origin>\\n<tree size>\\n<base64 root hash>\\n`` plus
optional extension lines. The log signs it with its own key; witnesses add C2SP
``tlog-cosignature`` lines (signature type 0x04: a big-endian u64 timestamp and an Ed25519
signature over ``cosignature/v1\\ntime <t>\\n`` followed by the checkpoint text). Parsing is strict
and every error names the line, because a checkpoint is what a client trusts instead of the log.
"""

from __future__ import annotations

import base64
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from thirdway.errors import InputError, ProofError
from thirdway.ledger.note import (
    MAX_NOTE_BYTES,
    NoteSignature,
    NoteSigner,
    NoteVerifier,
    Verifier,
    check_key_name,
    compute_key_id,
    decode_base64,
    ed25519_public_key,
    ed25519_verifies,
    open_note,
    parse_vkey,
    sign_note,
    split_note,
)

if TYPE_CHECKING:
    # Imported where keys are made or used, as in note.py: a process that never signs or
    # verifies never loads cryptography.
    from cryptography.hazmat.primitives.asymmetric.ed25519 import (
        Ed25519PrivateKey,
        Ed25519PublicKey,
    )

__all__ = [
    "HASH_SIZE",
    "MAX_TREE_SIZE",
    "SIG_TYPE_COSIGNATURE_V1",
    "Checkpoint",
    "Cosignature",
    "CosignatureSigner",
    "CosignatureVerifier",
    "cosign_checkpoint",
    "open_checkpoint",
    "sign_checkpoint",
    "verified_cosignatures",
]

HASH_SIZE = 32
MAX_TREE_SIZE = (1 << 64) - 1
#: Signature type byte of timestamped Ed25519 witness cosignatures (tlog-cosignature).
SIG_TYPE_COSIGNATURE_V1 = 0x04
MAX_TIMESTAMP = (1 << 63) - 1
_TREE_SIZE = re.compile(r"0|[1-9][0-9]{0,19}")
_COSIGNATURE_BYTES = 8 + 64


def _check_line(value: str, what: str) -> None:
    if not value:
        raise InputError(f"checkpoint {what} must not be empty")
    if any(ch < " " for ch in value):
        raise InputError(f"checkpoint {what} must not contain newlines or control characters")


@dataclass(frozen=True)
class Checkpoint:
    """A log's tree head at one size, as the C2SP checkpoint text encodes it."""

    origin: str
    size: int
    root_hash: bytes
    extensions: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        _check_line(self.origin, "origin")
        if isinstance(self.size, bool) or not isinstance(self.size, int):
            raise InputError("checkpoint tree size must be an integer")
        if not 0 <= self.size <= MAX_TREE_SIZE:
            raise InputError("checkpoint tree size must fit an unsigned 64-bit integer")
        if not isinstance(self.root_hash, bytes) or len(self.root_hash) != HASH_SIZE:
            raise InputError(f"checkpoint root hash must be {HASH_SIZE} bytes")
        for extension in self.extensions:
            _check_line(extension, "extension line")

    def to_text(self) -> str:
        """The checkpoint note text, ending in a newline."""
        root = base64.b64encode(self.root_hash).decode("ascii")
        lines = [self.origin, str(self.size), root, *self.extensions]
        return "\n".join(lines) + "\n"

    @classmethod
    def parse(cls, text: str) -> Checkpoint:
        """Parse a checkpoint text strictly; :class:`ProofError` names the offending line."""
        if not isinstance(text, str):
            raise ProofError("checkpoint must be text")
        if len(text) > MAX_NOTE_BYTES:
            raise ProofError(f"checkpoint is longer than {MAX_NOTE_BYTES} characters")
        if not text.endswith("\n"):
            raise ProofError("checkpoint does not end with a newline")
        lines = text[:-1].split("\n")
        if len(lines) < 3:
            raise ProofError(
                f"checkpoint has {len(lines)} line(s); it needs origin, tree size and root hash"
            )
        for number, line in enumerate(lines, start=1):
            if not line:
                raise ProofError(f"checkpoint line {number} is empty")
            if any(ch < " " for ch in line):
                raise ProofError(f"checkpoint line {number} contains a control character")
        origin, size_line, root_line, *extensions = lines
        return cls(origin, _parse_size(size_line), _parse_root(root_line), tuple(extensions))


def _parse_size(line: str) -> int:
    if not _TREE_SIZE.fullmatch(line):
        raise ProofError(
            f"checkpoint line 2 (tree size) {line[:40]!r} is not a decimal number "
            "without leading zeros"
        )
    size = int(line)
    if size > MAX_TREE_SIZE:
        raise ProofError("checkpoint line 2 (tree size) does not fit an unsigned 64-bit integer")
    return size


def _parse_root(line: str) -> bytes:
    root = decode_base64(line, "checkpoint line 3 (root hash)")
    if len(root) != HASH_SIZE:
        raise ProofError(f"checkpoint line 3 (root hash) is {len(root)} bytes, not {HASH_SIZE}")
    return root


def sign_checkpoint(cp: Checkpoint, signer: NoteSigner) -> str:
    """The checkpoint as a signed note, signed by the log's key."""
    return sign_note(cp.to_text(), [signer])


def open_checkpoint(
    note: str | bytes,
    log_verifier: NoteVerifier,
    *,
    origin: str | None = None,
    witnesses: Sequence[CosignatureVerifier] = (),
    quorum: int = 0,
) -> Checkpoint:
    """Verify a signed checkpoint and parse it.

    The log's own signature is required; signatures by unknown keys are ignored. With ``origin``
    the checkpoint must name that log. With ``quorum`` > 0, at least that many distinct
    ``witnesses`` must have cosigned it (each cosignature present by a known witness must verify).
    """
    opened = open_note(note, [log_verifier])
    checkpoint = Checkpoint.parse(opened.text)
    if origin is not None and checkpoint.origin != origin:
        raise ProofError(f"checkpoint is for origin {checkpoint.origin!r}, expected {origin!r}")
    if quorum > 0 or witnesses:
        cosigned = verified_cosignatures(note, witnesses)
        if len(cosigned) < quorum:
            raise ProofError(
                f"checkpoint has {len(cosigned)} valid witness cosignature(s); {quorum} required"
            )
    return checkpoint


@dataclass(frozen=True)
class Cosignature:
    """A verified witness cosignature: who, and the time (POSIX seconds) it claims."""

    name: str
    timestamp: int


def _cosigned_message(text: str, timestamp: int) -> bytes:
    return f"cosignature/v1\ntime {timestamp}\n{text}".encode()


class CosignatureVerifier:
    """A witness's Ed25519 cosignature (v1, signature type 0x04) verifier."""

    __slots__ = ("_key_id", "_name", "_public_key", "_raw")

    def __init__(self, name: str, public_key: bytes) -> None:
        check_key_name(name)
        if len(public_key) != 32:
            raise InputError(f"Ed25519 public key for {name!r} must be 32 bytes")
        self._name = name
        self._raw = bytes(public_key)
        self._public_key: Ed25519PublicKey | None = None  # made on the first verify
        self._key_id = compute_key_id(name, SIG_TYPE_COSIGNATURE_V1, self._raw)

    @property
    def name(self) -> str:
        return self._name

    @property
    def key_id(self) -> bytes:
        return self._key_id

    @classmethod
    def from_vkey(cls, vkey: str) -> CosignatureVerifier:
        """Parse ``<name>+<hex key id>+<base64(0x04 || 32-byte public key)>``."""
        name, _key_id, sig_type, public_key = parse_vkey(vkey)
        if sig_type != SIG_TYPE_COSIGNATURE_V1:
            raise InputError(
                f"verifier key for {name!r} has signature type 0x{sig_type:02x}, "
                "not an Ed25519 cosignature (0x04)"
            )
        return cls(name, public_key)

    def vkey(self) -> str:
        material = bytes([SIG_TYPE_COSIGNATURE_V1]) + self._raw
        encoded = base64.b64encode(material).decode("ascii")
        return f"{self._name}+{self._key_id.hex()}+{encoded}"

    def verify(self, text: str, signature: bytes) -> bool:
        """Whether ``signature`` (u64 timestamp || Ed25519 signature) cosigns ``text``."""
        if len(signature) != _COSIGNATURE_BYTES:
            return False
        timestamp = int.from_bytes(signature[:8], "big")
        if timestamp > MAX_TIMESTAMP:
            return False
        try:
            message = _cosigned_message(text, timestamp)
        except UnicodeEncodeError:
            return False
        if self._public_key is None:
            self._public_key = ed25519_public_key(self._raw)
        return ed25519_verifies(self._public_key, signature[8:], message)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, CosignatureVerifier):
            return NotImplemented
        return self._name == other._name and self._raw == other._raw

    def __hash__(self) -> int:
        return hash((self._name, self._raw))

    def __repr__(self) -> str:
        return f"CosignatureVerifier({self.vkey()!r})"


class CosignatureSigner:
    """A witness's cosigning key. ``repr`` never shows the private key."""

    __slots__ = ("_key_id", "_name", "_private_key", "_public_raw")

    def __init__(self, name: str, private_key: Ed25519PrivateKey) -> None:
        check_key_name(name)
        self._name = name
        self._private_key = private_key
        self._public_raw = private_key.public_key().public_bytes_raw()
        self._key_id = compute_key_id(name, SIG_TYPE_COSIGNATURE_V1, self._public_raw)

    @property
    def name(self) -> str:
        return self._name

    @property
    def key_id(self) -> bytes:
        return self._key_id

    @classmethod
    def generate(cls, name: str) -> CosignatureSigner:
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

        return cls(name, Ed25519PrivateKey.generate())

    def verifier(self) -> CosignatureVerifier:
        return CosignatureVerifier(self._name, self._public_raw)

    def sign_at(self, text: str, timestamp: int) -> bytes:
        """The cosignature (u64 timestamp || Ed25519 signature) of ``text`` at ``timestamp``."""
        if not 0 <= timestamp <= MAX_TIMESTAMP:
            raise InputError("cosignature timestamp must be between 0 and 2^63 - 1")
        signature = self._private_key.sign(_cosigned_message(text, timestamp))
        return timestamp.to_bytes(8, "big") + signature

    def sign(self, text: str) -> bytes:
        """Cosign ``text`` now."""
        return self.sign_at(text, int(time.time()))

    def __repr__(self) -> str:
        return f"CosignatureSigner(name={self._name!r}, key_id={self._key_id.hex()!r})"


def cosign_checkpoint(
    note: str,
    log_verifier: NoteVerifier,
    cosigner: CosignatureSigner,
    *,
    timestamp: int | None = None,
) -> str:
    """Verify a log-signed checkpoint, then append ``cosigner``'s cosignature line.

    (A real witness must also check consistency with the last checkpoint it cosigned; that needs
    the log and lives with the log, not here.)
    """
    checkpoint = open_checkpoint(note, log_verifier)
    text = checkpoint.to_text()
    when = int(time.time()) if timestamp is None else timestamp
    line = NoteSignature(cosigner.name, cosigner.key_id, cosigner.sign_at(text, when)).line()
    return note + line + "\n"


def verified_cosignatures(
    note: str | bytes, witnesses: Sequence[CosignatureVerifier]
) -> tuple[Cosignature, ...]:
    """The cosignatures in ``note`` by ``witnesses`` (one per witness name), all verified.

    A cosignature by a known witness that does not verify raises :class:`ProofError`.
    """
    text, signatures = split_note(note)
    known: dict[tuple[str, bytes], Verifier] = {(w.name, w.key_id): w for w in witnesses}
    found: dict[str, Cosignature] = {}
    for signature in signatures:
        witness = known.get((signature.name, signature.key_id))
        if witness is None:
            continue
        if not witness.verify(text, signature.signature):
            raise ProofError(f"cosignature by witness {signature.name} does not verify")
        timestamp = int.from_bytes(signature.signature[:8], "big")
        found.setdefault(signature.name, Cosignature(signature.name, timestamp))
    return tuple(found.values())
