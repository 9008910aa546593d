"""C2SP signed notes and the log key file.

Known-answer vectors come from the Go reference implementation's tests
(golang.org/x/mod/sumdb/note, note_test.go: the PeterNeumann and EnochRoot keys and signatures)
and from the c2sp.org/signed-note example key ``example.com/foo``. Ed25519 is deterministic, so
signing the Go example text with the Go example key must reproduce Go's note byte for byte.
"""

from __future__ import annotations

import base64
import hashlib
import os
import stat
import unicodedata
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from thirdway.errors import InputError, LogError, ProofError
from thirdway.ledger.keys import load_or_create_log_key
from thirdway.ledger.note import (
    MAX_NOTE_BYTES,
    MAX_SIGNATURES,
    NoteSigner,
    NoteVerifier,
    check_key_name,
    open_note,
    sign_note,
)

# --- reference vectors -------------------------------------------------------------------------

PETER_SKEY = "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz"
PETER_VKEY = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
ENOCH_VKEY = "EnochRoot+af0cfe78+ATtqJ7zOtqQtYqOo0CpvDXNlMhV3HeJDpjrASKGLWdop"
GO_TEXT = (
    "If you think cryptography is the answer to your problem,\n"
    "then you don't know what your problem is.\n"
)
PETER_SIG = (
    "— PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb"
    "6KE6RyyBwJnAM=\n"
)
ENOCH_SIG = (
    "— EnochRoot rwz+eBzmZa0SO3NbfRGzPCpDckykFXSdeX+MNtCOXm2/5n2tiOHp+vAF1aGrQ5ovTG01oOTGwnWLox33W"
    "Wd1RvMc+QQ=\n"
)
C2SP_VKEY = "example.com/foo+530d903a+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k"
C2SP_NOTE = (
    "This is an example message.\n\n"
    "— example.com/foo Uw2QOkn8srV1yJGh2VYRlL1Tnagv1YEq6TfXppzi2ONncAlTgK7Ztg1ERYNZXsYjOBH3mFXmRK"
    "uwHjG1Yu72IneyaQM=\n"
)


def test_go_reference_signer_reproduces_the_published_note() -> None:
    signer = NoteSigner.from_private_key_string(PETER_SKEY)
    assert signer.name == "PeterNeumann"
    assert signer.key_id == bytes.fromhex("c74f20a3")
    assert signer.verifier().vkey() == PETER_VKEY
    assert signer.private_key_string() == PETER_SKEY
    assert sign_note(GO_TEXT, [signer]) == GO_TEXT + "\n" + PETER_SIG


def test_key_id_is_the_spec_hash_of_name_type_and_public_key() -> None:
    verifier = NoteVerifier.from_vkey(PETER_VKEY)
    expected = hashlib.sha256(b"PeterNeumann\n\x01" + verifier.public_key).digest()[:4]
    assert verifier.key_id == expected == bytes.fromhex("c74f20a3")


def test_go_reference_note_opens_with_one_or_both_known_keys() -> None:
    peter, enoch = NoteVerifier.from_vkey(PETER_VKEY), NoteVerifier.from_vkey(ENOCH_VKEY)
    note = GO_TEXT + "\n" + PETER_SIG + ENOCH_SIG
    only_peter = open_note(note, [peter])
    assert only_peter.text == GO_TEXT
    assert only_peter.verified_by == ("PeterNeumann",)
    assert [s.name for s in only_peter.unverified] == ["EnochRoot"]
    both = open_note(note, [peter, enoch])
    assert both.verified_by == ("PeterNeumann", "EnochRoot")
    assert both.unverified == ()
    with pytest.raises(ProofError, match="not signed by any known key"):
        open_note(note, [])


def test_c2sp_example_key_and_note() -> None:
    verifier = NoteVerifier.from_vkey(C2SP_VKEY)
    assert verifier.public_key.hex() == (
        "e932791ae6e7a840a46164c904786426d5e7821dd8b29a00d61cae72afdd4da4"
    )
    assert verifier.vkey() == C2SP_VKEY
    assert open_note(C2SP_NOTE, [verifier]).text == "This is an example message.\n"
    assert open_note(C2SP_NOTE.encode("utf-8"), [verifier]).verified_by == ("example.com/foo",)


@pytest.mark.parametrize("good", [PETER_VKEY, PETER_SKEY])
def test_every_truncation_or_changed_character_of_a_key_is_refused(good: str) -> None:
    """Port of Go's TestNewVerifier / TestNewSigner manglings."""
    parse = (
        NoteSigner.from_private_key_string if good.startswith("PRIVATE") else NoteVerifier.from_vkey
    )
    for i in range(len(good) + 1):
        for j in range(i + 1, len(good) + 1):
            if (i, j) != (0, len(good)):
                with pytest.raises(InputError):
                    parse(good[i:j])
    for i in range(len(good)):
        changed = good[:i] + chr(ord(good[i]) + 1) + good[i + 1 :]
        with pytest.raises(InputError):
            parse(changed)


def test_key_strings_of_the_wrong_type_or_length_are_refused() -> None:
    with pytest.raises(InputError):  # wrong length key, with adjusted key id (from Go's tests)
        NoteVerifier.from_vkey(
            "PeterNeumann+cc469956+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TWBADKEY=="
        )
    with pytest.raises(InputError, match="signature type 0x65"):  # unknown algorithm (Go's tests)
        NoteVerifier.from_vkey("PeterNeumann+173116ae+ZRpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW")
    with pytest.raises(InputError, match="key id"):
        NoteVerifier.from_vkey(PETER_VKEY.replace("c74f20a3", "c74f20a4"))
    with pytest.raises(InputError):
        NoteVerifier.from_vkey(PETER_VKEY + "\n")


@pytest.mark.parametrize("name", ["", "has space", "a+b", "tab\there", "nbsp\u00a0x", "cr\r"])
def test_invalid_key_names_are_refused(name: str) -> None:
    with pytest.raises(InputError):
        NoteSigner.generate(name)


def test_key_names_refuse_exactly_spaces_controls_surrogates_and_plus() -> None:
    """Every code point below U+3100 (ASCII, Latin, the spaces up to U+3000), checked against the
    rule written with ``unicodedata`` directly (the check skips that table for ASCII)."""
    for code in range(0x3100):
        ch = chr(code)
        forbidden = (
            ch == "+" or ch.isspace() or unicodedata.category(ch) in ("Zs", "Zl", "Zp", "Cc", "Cs")
        )
        try:
            check_key_name(f"a{ch}b")
        except InputError:
            assert forbidden, f"U+{code:04X} refused"
        else:
            assert not forbidden, f"U+{code:04X} accepted"


def test_signer_repr_and_errors_never_show_the_private_key() -> None:
    signer = NoteSigner.from_private_key_string(PETER_SKEY)
    secret = PETER_SKEY.rsplit("+", 1)[1]
    assert secret not in repr(signer)
    assert secret not in str(signer)
    with pytest.raises(InputError) as info:
        NoteSigner.from_private_key_string(PETER_SKEY.replace("c74f20a3", "00000000"))
    assert secret not in str(info.value)


# --- malformed notes ---------------------------------------------------------------------------

PETER = NoteVerifier.from_vkey(PETER_VKEY)
GOOD = GO_TEXT + "\n" + PETER_SIG


@pytest.mark.parametrize(
    ("note", "reason"),
    [
        (GO_TEXT, "no signature lines|no blank line"),
        (GO_TEXT + "\n", "no signature lines"),
        (GO_TEXT + "\n" + PETER_SIG[:-1], "does not end with a newline"),
        ("\x01" + GOOD, "control character U\\+0001"),
        (GOOD.replace("\n", "\r\n", 1), "control character U\\+000D"),
        ("\t" + GOOD, "control character U\\+0009"),
        (GO_TEXT + "\n" + PETER_SIG.replace("PeterNeumann", "Bad Name"), "not valid base64"),
        (GOOD + "Unexpected line.\n", "signature line 2 does not start with an em dash"),
        (GO_TEXT + "\n" + PETER_SIG.replace("— ", "- "), "em dash"),
        (GO_TEXT + "\n" + PETER_SIG.replace("— ", "—"), "em dash"),
        (GO_TEXT + PETER_SIG, "no blank line"),
        ("", "no blank line"),
        ("\n", "no blank line"),
        (GO_TEXT + "\n— PeterNeumann\n", "no signature after the key name"),
        (GO_TEXT + "\n— PeterNeumann \n", "no signature after the key name"),
        (GO_TEXT + "\n— PeterNeumann x08go/ZJ!uBS9\n", "not valid base64"),
        (GO_TEXT + "\n— PeterNeumann x08go\n", "not valid base64"),
        (GO_TEXT + "\n— PeterNeumann AAAA\n", "too short"),
        (GO_TEXT + "\n— PeterNeumann AAAAAB==\n", "not canonical base64"),
        (GO_TEXT + "\n" + PETER_SIG.replace(" x08", "  x08"), "invalid key name|base64"),
        (GOOD.replace("x08go", "x08g\u00a0o"), "base64"),
    ],
)
def test_malformed_notes_are_refused_with_a_reason(note: str, reason: str) -> None:
    with pytest.raises(ProofError, match=reason):
        open_note(note, [PETER])


def test_invalid_utf8_is_refused() -> None:
    with pytest.raises(ProofError, match="not valid UTF-8"):
        open_note(b"\xff" + GOOD.encode("utf-8"), [PETER])
    with pytest.raises(ProofError, match="not valid UTF-8"):
        open_note("\ud800" + GOOD, [PETER])


def test_oversized_notes_are_refused_before_any_work() -> None:
    big = "x" * MAX_NOTE_BYTES + "\n" + GOOD
    with pytest.raises(ProofError, match=r"limit|longer"):
        open_note(big, [PETER])
    with pytest.raises(ProofError, match="limit"):
        open_note(big.encode("utf-8"), [PETER])
    # Multi-byte characters: under the limit in characters, over it in bytes.
    with pytest.raises(ProofError, match="limit"):
        open_note("é" * (MAX_NOTE_BYTES // 2 + 1) + "\n" + GOOD, [PETER])


def test_signature_count_is_bounded() -> None:
    assert open_note(GO_TEXT + "\n" + PETER_SIG * MAX_SIGNATURES, [PETER]).text == GO_TEXT
    with pytest.raises(ProofError, match="101 signatures"):
        open_note(GO_TEXT + "\n" + PETER_SIG * (MAX_SIGNATURES + 1), [PETER])


def test_tampered_text_fails() -> None:
    tampered = GOOD.replace("cryptography", "cryptographY")
    with pytest.raises(ProofError, match=r"signature line 1 by PeterNeumann .* does not verify"):
        open_note(tampered, [PETER])


def test_tampered_signature_by_a_known_key_rejects_the_whole_note() -> None:
    bad = PETER_SIG[:60] + "ABCD" + PETER_SIG[60:]  # Go's "invalid signature" case
    with pytest.raises(ProofError, match="does not verify"):
        open_note(GO_TEXT + "\n" + bad, [PETER])
    # Even when another signature by the same key is valid, a failing one is not skipped.
    with pytest.raises(ProofError, match=r"signature line 2 .* does not verify"):
        open_note(GO_TEXT + "\n" + PETER_SIG + bad, [PETER])


def test_wrong_key_with_the_same_name_is_treated_as_unknown() -> None:
    impostor = NoteSigner.generate("PeterNeumann").verifier()
    with pytest.raises(ProofError, match="not signed by any known key"):
        open_note(GOOD, [impostor])


def test_signature_with_a_wrong_key_id_is_ignored_not_trusted() -> None:
    raw = base64.b64decode(PETER_SIG.split()[-1])
    wrong_id = base64.b64encode(b"\x00\x00\x00\x00" + raw[4:]).decode()
    note = GO_TEXT + "\n— PeterNeumann " + wrong_id + "\n"
    with pytest.raises(ProofError, match="not signed by any known key"):
        open_note(note, [PETER])


def test_unknown_cosigners_are_ignored_and_reported() -> None:
    stranger = NoteSigner.generate("stranger.example/w")
    peter = NoteSigner.from_private_key_string(PETER_SKEY)
    note = sign_note(GO_TEXT, [stranger, peter])
    opened = open_note(note, [PETER])
    assert opened.verified_by == ("PeterNeumann",)
    assert [s.name for s in opened.unverified] == ["stranger.example/w"]
    # An unknown key's signature is ignored even if it is garbage.
    garbage = "— stranger.example/w " + base64.b64encode(b"\x01\x02\x03\x04junk").decode() + "\n"
    assert open_note(GOOD + garbage, [PETER]).text == GO_TEXT


class _SameIdVerifier:
    """A verifier that claims another key's name and key id (a colliding or rogue entry)."""

    def __init__(self, name: str, key_id: bytes) -> None:
        self.name = name
        self.key_id = key_id

    def verify(self, text: str, signature: bytes) -> bool:
        return True


def test_ambiguous_verifier_lists_are_refused() -> None:
    rogue = _SameIdVerifier(PETER.name, PETER.key_id)
    with pytest.raises(InputError, match="share name 'PeterNeumann' and key id"):
        open_note(GOOD, [PETER, rogue])
    # The same key listed twice is not ambiguous.
    assert open_note(GOOD, [PETER, NoteVerifier.from_vkey(PETER_VKEY)]).text == GO_TEXT


def test_sign_note_refuses_bad_text_and_empty_signer_lists() -> None:
    signer = NoteSigner.generate("log.example")
    for text in ["", "no newline", "bad\x00char\n", "cr\r\n", "\ud800\n"]:
        with pytest.raises(InputError):
            sign_note(text, [signer])
    with pytest.raises(InputError, match="at least one signer"):
        sign_note("hello\n", [])


def test_text_with_empty_lines_round_trips_as_the_spec_allows() -> None:
    """c2sp.org/signed-note: the text MAY contain empty lines; the last blank line splits."""
    signer = NoteSigner.generate("log.example")
    text = "first\n\nthird\n\n"
    assert open_note(sign_note(text, [signer]), [signer.verifier()]).text == text


# --- properties --------------------------------------------------------------------------------

note_text = st.lists(
    st.text(st.characters(min_codepoint=0x20, exclude_categories=["Cs"]), max_size=40),
    min_size=1,
    max_size=6,
).map(lambda lines: "\n".join(lines) + "\n")

SIGNERS = [NoteSigner.generate(f"signer{i}.example") for i in range(3)]


@settings(max_examples=150, deadline=None)
@given(text=note_text, count=st.integers(1, 3))
def test_sign_then_open_round_trips(text: str, count: int) -> None:
    signers = SIGNERS[:count]
    opened = open_note(sign_note(text, signers), [s.verifier() for s in signers])
    assert opened.text == text
    assert opened.verified_by == tuple(s.name for s in signers)


@settings(max_examples=300, deadline=None)
@given(text=note_text, data=st.data())
def test_any_single_byte_change_is_rejected(text: str, data: st.DataObject) -> None:
    """With only known signers, a one-byte change never yields an accepted note with the same
    text (and in fact any accepted note with changed text would be a forgery)."""
    signer = SIGNERS[0]
    raw = bytearray(sign_note(text, [signer]).encode("utf-8"))
    position = data.draw(st.integers(0, len(raw) - 1))
    new_byte = data.draw(st.integers(0, 255).filter(lambda b: b != raw[position]))
    raw[position] = new_byte
    try:
        opened = open_note(bytes(raw), [signer.verifier()])
    except ProofError:
        return
    assert opened.text != text  # pragma: no cover - would mean a forged signature
    pytest.fail("a changed note was accepted")  # pragma: no cover


# --- the log key file --------------------------------------------------------------------------


def test_log_key_is_created_private_and_reloaded(tmp_path: Path) -> None:
    path = tmp_path / "log.key"
    created = load_or_create_log_key(path, "log.example/test")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.read_text() == created.private_key_string() + "\n"
    again = load_or_create_log_key(path, "log.example/test")
    assert again.key_id == created.key_id
    assert again.verifier() == created.verifier()


def test_log_key_for_another_origin_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "log.key"
    load_or_create_log_key(path, "log.example/a")
    with pytest.raises(LogError, match=r"is for origin 'log\.example/a', not 'log\.example/b'"):
        load_or_create_log_key(path, "log.example/b")


def test_malformed_log_key_is_refused_without_echoing_it(tmp_path: Path) -> None:
    path = tmp_path / "log.key"
    signer = load_or_create_log_key(path, "log.example")
    # The key material is the fifth "+"-separated field; base64 itself may contain "+".
    secret = signer.private_key_string().split("+", 4)[4]
    assert len(secret) > 20
    corrupted = signer.private_key_string()[:-3] + "AAA"
    path.write_text(corrupted + "\n")
    with pytest.raises(LogError, match="malformed") as info:
        load_or_create_log_key(path, "log.example")
    assert secret[:-3] not in str(info.value)
    for junk in [b"", b"\xff\xfe", b"two\nlines\n", b"PRIVATE+KEY+log.example+zz+AA==\n"]:
        path.write_bytes(junk)
        with pytest.raises(LogError, match="malformed"):
            load_or_create_log_key(path, "log.example")
    path.write_bytes(b"x" * 5000)
    with pytest.raises(LogError, match="not a key file"):
        load_or_create_log_key(path, "log.example")


@pytest.mark.skipif(os.name != "posix", reason="POSIX permissions")
def test_log_key_readable_by_others_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "log.key"
    load_or_create_log_key(path, "log.example")
    for mode in (0o644, 0o640, 0o604, 0o660):
        path.chmod(mode)
        with pytest.raises(LogError, match=f"accessible by other users \\(mode {mode:04o}\\)"):
            load_or_create_log_key(path, "log.example")


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root reads any file")
def test_unreadable_log_key_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "log.key"
    load_or_create_log_key(path, "log.example")
    path.chmod(0o000)
    with pytest.raises(LogError, match="cannot read"):
        load_or_create_log_key(path, "log.example")


def test_log_key_path_problems_are_clear(tmp_path: Path) -> None:
    with pytest.raises(LogError, match="does not exist"):
        load_or_create_log_key(tmp_path / "missing" / "log.key", "log.example")
    with pytest.raises(LogError, match="not a regular file"):
        load_or_create_log_key(tmp_path, "log.example")
    with pytest.raises(InputError, match="must not contain"):
        load_or_create_log_key(tmp_path / "k", "bad origin")
