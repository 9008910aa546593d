"""C2SP signed notes (https://c2sp.org/signed-note) with Ed25519 keys.

A signed note is a text ending in a newline, a blank line, then one or more lines
``— <key name> base64(4-byte key id || signature)``. The key formats are those of Go's
``golang.org/x/mod/sumdb/note`` (``PRIVATE+KEY+<name>+<hex id>+<base64>`` and
``<name>+<hex id>+<base64>``), so keys and notes interoperate with the Go tooling, sumdb and the
transparency-dev witnesses.

Opening a note is strict because a note is evidence: any malformation, a signature by a known key
that does not verify, or the lack of any signature by a known key raises
:class:`~thirdway.errors.ProofError` naming the reason. Signatures by unknown keys are ignored, as
the spec requires (that is how cosigners and key rotation work).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from thirdway.errors import InputError, ProofError

if TYPE_CHECKING:
    # Imported where keys are made or used, not here: loading cryptography (and the OpenSSL in
    # it) adds about 9 MiB to a process, which one that only appends to a log and serves proofs
    # (everything that imports the log imports this module) never needs.
    from cryptography.hazmat.primitives.asymmetric.ed25519 import (
        Ed25519PrivateKey,
        Ed25519PublicKey,
    )

__all__ = [
    "MAX_NOTE_BYTES",
    "MAX_SIGNATURES",
    "SIG_TYPE_ED25519",
    "Note",
    "NoteSignature",
    "NoteSigner",
    "NoteVerifier",
    "Signer",
    "Verifier",
    "check_key_name",
    "compute_key_id",
    "decode_base64",
    "ed25519_public_key",
    "ed25519_verifies",
    "open_note",
    "parse_vkey",
    "sign_note",
]

#: Largest note :func:`open_note` reads; far above any checkpoint, small enough to bound work.
MAX_NOTE_BYTES = 1 << 20
#: Most signature lines :func:`open_note` reads (the spec asks for at least 16; Go allows 100).
MAX_SIGNATURES = 100
#: Signature type byte of plain Ed25519 note signatures (signed-note, "Signature types").
SIG_TYPE_ED25519 = 0x01

SIGNATURE_PREFIX = "\N{EM DASH} "
_KEY_ID_HEX = re.compile(r"[0-9a-fA-F]{8}")
_ED25519_KEY_BYTES = 32
_ED25519_SIG_BYTES = 64


def check_key_name(name: str) -> str:
    """Return ``name`` if it is a valid key name, else raise :class:`InputError`.

    The spec: non-empty, no Unicode spaces, no ``+``. Control characters are refused too, since a
    note may not contain them and a name with one could never appear in a valid signature line.
    """
    if not isinstance(name, str) or not name:
        raise InputError("key name must be a non-empty string")
    for ch in name:
        if ch == "+":
            raise InputError(f"key name {name!r} must not contain '+'")
        if _is_space_or_control(ch):
            raise InputError(f"key name {name!r} must not contain spaces or control characters")
    return name


def _is_space_or_control(ch: str) -> bool:
    """A space (``isspace`` or category Zs, Zl, Zp), control (Cc) or surrogate (Cs) character.

    For ASCII, the categories reduce to ``< 0x20`` and ``0x7F`` (Cc) and ``" "`` (Zs), so the
    usual, ASCII names need no ``unicodedata`` table (which costs a log process memory).
    """
    if ch.isascii():
        return ch.isspace() or ch < " " or ch == "\x7f"
    import unicodedata

    return ch.isspace() or unicodedata.category(ch) in ("Zs", "Zl", "Zp", "Cc", "Cs")


def _is_valid_key_name(name: str) -> bool:
    try:
        check_key_name(name)
    except InputError:
        return False
    return True


def compute_key_id(name: str, sig_type: int, public_key: bytes) -> bytes:
    """The 4-byte key id: ``SHA-256(name || 0x0A || sig_type || public_key)[:4]``."""
    material = name.encode("utf-8") + b"\n" + bytes([sig_type]) + public_key
    return hashlib.sha256(material).digest()[:4]


def decode_base64(text: str, what: str, error: type[Exception] = ProofError) -> bytes:
    """Decode standard, padded, canonical base64 (RFC 4648 section 4) or raise ``error``.

    Canonical means re-encoding gives back the same text, so a value has exactly one spelling and
    a changed character can never decode to the same bytes.
    """
    try:
        raw = base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError, ValueError):
        raise error(f"{what} is not valid base64") from None
    if base64.b64encode(raw).decode("ascii") != text:
        raise error(f"{what} is not canonical base64")
    return raw


def _encode_base64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


def parse_vkey(vkey: str) -> tuple[str, bytes, int, bytes]:
    """Split a verifier key ``<name>+<8 hex digits>+<base64(type || key)>``.

    Returns ``(name, key_id, sig_type, public_key)`` after checking that the key id is the one the
    spec derives from the rest; raises :class:`InputError` otherwise.
    """
    parts = vkey.split("+", 2)
    if len(parts) != 3:
        raise InputError("verifier key must look like <name>+<8 hex digits>+<base64 key>")
    name, id_hex, key_b64 = parts
    check_key_name(name)
    if not _KEY_ID_HEX.fullmatch(id_hex):
        raise InputError(f"verifier key for {name!r}: key id {id_hex!r} is not 8 hex digits")
    material = decode_base64(key_b64, f"verifier key for {name!r}", InputError)
    if len(material) < 2:
        raise InputError(f"verifier key for {name!r} is too short")
    sig_type, public_key = material[0], material[1:]
    key_id = bytes.fromhex(id_hex)
    if compute_key_id(name, sig_type, public_key) != key_id:
        raise InputError(f"verifier key for {name!r}: key id {id_hex} does not match the key")
    return name, key_id, sig_type, public_key


def ed25519_public_key(raw: bytes) -> Ed25519PublicKey:
    """The Ed25519 public key object for 32 raw bytes (cryptography is imported on first use)."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    return Ed25519PublicKey.from_public_bytes(raw)


def ed25519_verifies(public_key: Ed25519PublicKey, signature: bytes, message: bytes) -> bool:
    """Whether ``signature`` is ``public_key``'s Ed25519 signature of ``message``."""
    from cryptography.exceptions import InvalidSignature

    try:
        public_key.verify(signature, message)
    except InvalidSignature:
        return False
    return True


class Verifier(Protocol):
    """Anything that can check one key's signatures on a note text."""

    @property
    def name(self) -> str: ...

    @property
    def key_id(self) -> bytes: ...

    def verify(self, text: str, signature: bytes) -> bool: ...


class Signer(Protocol):
    """Anything that can sign a note text with one key."""

    @property
    def name(self) -> str: ...

    @property
    def key_id(self) -> bytes: ...

    def sign(self, text: str) -> bytes: ...


class NoteVerifier:
    """An Ed25519 (signature type 0x01) note verifier: a key name and a public key."""

    __slots__ = ("_key_id", "_name", "_public_key", "_raw")

    def __init__(self, name: str, public_key: bytes) -> None:
        check_key_name(name)
        if len(public_key) != _ED25519_KEY_BYTES:
            raise InputError(f"Ed25519 public key for {name!r} must be 32 bytes")
        self._name = name
        self._raw = bytes(public_key)
        # Made on the first verify (see the imports); any 32 bytes make a key object.
        self._public_key: Ed25519PublicKey | None = None
        self._key_id = compute_key_id(name, SIG_TYPE_ED25519, self._raw)

    @property
    def name(self) -> str:
        return self._name

    @property
    def key_id(self) -> bytes:
        return self._key_id

    @property
    def public_key(self) -> bytes:
        return self._raw

    @classmethod
    def from_vkey(cls, vkey: str) -> NoteVerifier:
        """Parse ``<name>+<hex key id>+<base64(0x01 || 32-byte public key)>``."""
        name, _key_id, sig_type, public_key = parse_vkey(vkey)
        if sig_type != SIG_TYPE_ED25519:
            raise InputError(
                f"verifier key for {name!r} has signature type 0x{sig_type:02x}, not Ed25519 (0x01)"
            )
        return cls(name, public_key)

    def vkey(self) -> str:
        """The verifier key string, safe to publish."""
        material = bytes([SIG_TYPE_ED25519]) + self._raw
        return f"{self._name}+{self._key_id.hex()}+{_encode_base64(material)}"

    def verify(self, text: str, signature: bytes) -> bool:
        """Whether ``signature`` is this key's Ed25519 signature of the UTF-8 bytes of ``text``."""
        if len(signature) != _ED25519_SIG_BYTES:
            return False
        try:
            message = text.encode("utf-8")
        except UnicodeEncodeError:
            return False
        if self._public_key is None:
            self._public_key = ed25519_public_key(self._raw)
        return ed25519_verifies(self._public_key, signature, message)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, NoteVerifier):
            return NotImplemented
        return self._name == other._name and self._raw == other._raw

    def __hash__(self) -> int:
        return hash((self._name, self._raw))

    def __repr__(self) -> str:
        return f"NoteVerifier({self.vkey()!r})"


class NoteSigner:
    """An Ed25519 (signature type 0x01) note signer. ``repr`` never shows the private key."""

    __slots__ = ("_key_id", "_name", "_private_key", "_public_raw")

    def __init__(self, name: str, private_key: Ed25519PrivateKey) -> None:
        check_key_name(name)
        self._name = name
        self._private_key = private_key
        self._public_raw = private_key.public_key().public_bytes_raw()
        self._key_id = compute_key_id(name, SIG_TYPE_ED25519, self._public_raw)

    @property
    def name(self) -> str:
        return self._name

    @property
    def key_id(self) -> bytes:
        return self._key_id

    @classmethod
    def generate(cls, name: str) -> NoteSigner:
        """A new random key for ``name``."""
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

        return cls(name, Ed25519PrivateKey.generate())

    @classmethod
    def from_seed(cls, name: str, seed: bytes) -> NoteSigner:
        """The key whose RFC 8032 32-byte private seed is ``seed``."""
        if len(seed) != _ED25519_KEY_BYTES:
            raise InputError("Ed25519 private key seed must be 32 bytes")
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

        return cls(name, Ed25519PrivateKey.from_private_bytes(seed))

    @classmethod
    def from_private_key_string(cls, skey: str) -> NoteSigner:
        """Parse ``PRIVATE+KEY+<name>+<hex key id>+<base64(0x01 || 32-byte seed)>``.

        Error messages never repeat the key material.
        """
        parts = skey.split("+", 4)
        if len(parts) != 5 or parts[0] != "PRIVATE" or parts[1] != "KEY":
            raise InputError(
                "private key must look like PRIVATE+KEY+<name>+<8 hex digits>+<base64 key>"
            )
        _, _, name, id_hex, key_b64 = parts
        check_key_name(name)
        if not _KEY_ID_HEX.fullmatch(id_hex):
            raise InputError(f"private key for {name!r}: key id is not 8 hex digits")
        material = decode_base64(key_b64, f"private key for {name!r}", InputError)
        if len(material) != 1 + _ED25519_KEY_BYTES or material[0] != SIG_TYPE_ED25519:
            raise InputError(f"private key for {name!r} is not an Ed25519 (0x01) key of 32 bytes")
        signer = cls.from_seed(name, material[1:])
        if signer.key_id != bytes.fromhex(id_hex):
            raise InputError(f"private key for {name!r}: key id does not match the key")
        return signer

    def private_key_string(self) -> str:
        """The secret key string; whoever holds it can sign as this log. Keep it private."""
        seed = self._private_key.private_bytes_raw()
        material = bytes([SIG_TYPE_ED25519]) + seed
        return f"PRIVATE+KEY+{self._name}+{self._key_id.hex()}+{_encode_base64(material)}"

    def verifier(self) -> NoteVerifier:
        """The matching public verifier."""
        return NoteVerifier(self._name, self._public_raw)

    def sign(self, text: str) -> bytes:
        """The 64-byte Ed25519 signature of the UTF-8 bytes of ``text``."""
        return self._private_key.sign(text.encode("utf-8"))

    def __repr__(self) -> str:
        return f"NoteSigner(name={self._name!r}, key_id={self._key_id.hex()!r})"


@dataclass(frozen=True)
class NoteSignature:
    """One signature line: key name, 4-byte key id and the signature bytes after the id."""

    name: str
    key_id: bytes
    signature: bytes

    def line(self) -> str:
        """The signature line, without its newline."""
        encoded = _encode_base64(self.key_id + self.signature)
        return f"{SIGNATURE_PREFIX}{self.name} {encoded}"


@dataclass(frozen=True)
class Note:
    """An opened note: its text (with final newline) and who verifiably signed it."""

    text: str
    verified_by: tuple[str, ...]
    signatures: tuple[NoteSignature, ...] = ()
    unverified: tuple[NoteSignature, ...] = ()


def check_note_text(text: str) -> None:
    """Raise :class:`InputError` unless ``text`` can be the text of a signed note."""
    if not isinstance(text, str) or not text.endswith("\n"):
        raise InputError("note text must be non-empty and end with a newline")
    try:
        size = len(text.encode("utf-8"))
    except UnicodeEncodeError:
        raise InputError("note text is not valid Unicode (lone surrogate)") from None
    if size > MAX_NOTE_BYTES:
        raise InputError(f"note text is {size} bytes; the limit is {MAX_NOTE_BYTES}")
    bad = _first_control_char(text)
    if bad is not None:
        raise InputError(f"note text contains control character U+{ord(bad):04X}")


def _first_control_char(text: str) -> str | None:
    for ch in text:
        if ch < " " and ch != "\n":
            return ch
    return None


def sign_note(text: str, signers: Sequence[Signer]) -> str:
    """Sign ``text`` with every signer and return the whole signed note."""
    check_note_text(text)
    if not signers:
        raise InputError("a signed note needs at least one signer")
    if len(signers) > MAX_SIGNATURES:
        raise InputError(f"at most {MAX_SIGNATURES} signers per note")
    lines = []
    for signer in signers:
        check_key_name(signer.name)
        signature = NoteSignature(signer.name, signer.key_id, signer.sign(text))
        lines.append(signature.line() + "\n")
    return text + "\n" + "".join(lines)


def _decode_note(note: str | bytes) -> str:
    if isinstance(note, bytes):
        if len(note) > MAX_NOTE_BYTES:
            raise ProofError(f"note is {len(note)} bytes; the limit is {MAX_NOTE_BYTES}")
        try:
            return note.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ProofError(f"note is not valid UTF-8 (byte {exc.start})") from None
    if not isinstance(note, str):
        raise ProofError("note must be text")
    if len(note) > MAX_NOTE_BYTES:
        raise ProofError(f"note is longer than {MAX_NOTE_BYTES} bytes")
    try:
        size = len(note.encode("utf-8"))
    except UnicodeEncodeError:
        raise ProofError("note is not valid UTF-8 (lone surrogate)") from None
    if size > MAX_NOTE_BYTES:
        raise ProofError(f"note is {size} bytes; the limit is {MAX_NOTE_BYTES}")
    return note


def _parse_signature_line(line: str, number: int) -> NoteSignature:
    where = f"signature line {number}"
    if not line.startswith(SIGNATURE_PREFIX):
        raise ProofError(f"{where} does not start with an em dash and a space")
    name, space, encoded = line[len(SIGNATURE_PREFIX) :].partition(" ")
    if not space or not encoded:
        raise ProofError(f"{where} has no signature after the key name")
    if not _is_valid_key_name(name):
        raise ProofError(f"{where} has an invalid key name {name!r}")
    raw = decode_base64(encoded, f"{where} ({name})")
    if len(raw) < 5:
        raise ProofError(f"{where} ({name}) is too short to hold a key id and a signature")
    return NoteSignature(name, raw[:4], raw[4:])


def split_note(note: str | bytes) -> tuple[str, list[NoteSignature]]:
    """Parse a signed note into its text and signature lines, verifying nothing.

    Raises :class:`ProofError` naming the first thing wrong with the note's shape.
    """
    message = _decode_note(note)
    bad = _first_control_char(message)
    if bad is not None:
        raise ProofError(f"note contains control character U+{ord(bad):04X}")
    split = message.rfind("\n\n")
    if split < 0:
        raise ProofError("note has no blank line before its signatures")
    text, block = message[: split + 1], message[split + 2 :]
    if not block:
        raise ProofError("note has no signature lines after the blank line")
    if not block.endswith("\n"):
        raise ProofError("note does not end with a newline")
    lines = block[:-1].split("\n")
    if len(lines) > MAX_SIGNATURES:
        raise ProofError(f"note has {len(lines)} signatures; the limit is {MAX_SIGNATURES}")
    return text, [_parse_signature_line(line, i) for i, line in enumerate(lines, start=1)]


def _index_verifiers(verifiers: Sequence[Verifier]) -> dict[tuple[str, bytes], Verifier]:
    known: dict[tuple[str, bytes], Verifier] = {}
    for verifier in verifiers:
        slot = (verifier.name, bytes(verifier.key_id))
        if slot in known and known[slot] != verifier:
            raise InputError(f"two different verifier keys share name {slot[0]!r} and key id")
        known[slot] = verifier
    return known


def open_note(note: str | bytes, verifiers: Sequence[Verifier]) -> Note:
    """Parse ``note`` and verify it against ``verifiers``.

    Signatures whose (name, key id) matches no verifier are ignored (returned as ``unverified``).
    Every signature by a known key must verify, and at least one must be present.
    """
    text, signatures = split_note(note)
    known = _index_verifiers(verifiers)
    verified: list[NoteSignature] = []
    unverified: list[NoteSignature] = []
    for number, signature in enumerate(signatures, start=1):
        verifier = known.get((signature.name, signature.key_id))
        if verifier is None:
            unverified.append(signature)
        elif verifier.verify(text, signature.signature):
            verified.append(signature)
        else:
            raise ProofError(
                f"signature line {number} by {signature.name} "
                f"(key id {signature.key_id.hex()}) does not verify"
            )
    if not verified:
        expected = ", ".join(sorted({v.name for v in verifiers})) or "none given"
        raise ProofError(f"note is not signed by any known key (expected: {expected})")
    names = tuple(dict.fromkeys(signature.name for signature in verified))
    return Note(text, names, tuple(verified), tuple(unverified))
