"""C2SP tlog-checkpoint parsing and signing, and tlog-cosignature (Ed25519, type 0x04).

The reference vector is a real checkpoint of the transparency.dev static CT log
``arche2025h1.staging.ct.transparency.dev`` as published with its log signature, an RFC 6962
``TreeHeadSignature`` (type 0x05, which we do not implement and must ignore) and four witness
cosignatures, together with the log's and the witnesses' published verifier keys. It exercises the
key-id rule, "ignore unknown signatures even if they share the log's name", the cosigned message
format and the timestamp encoding against signatures made by other implementations.
"""

from __future__ import annotations

import base64

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from thirdway.errors import InputError, ProofError
from thirdway.ledger.checkpoint import (
    MAX_TREE_SIZE,
    Checkpoint,
    CosignatureSigner,
    CosignatureVerifier,
    cosign_checkpoint,
    open_checkpoint,
    sign_checkpoint,
    verified_cosignatures,
)
from thirdway.ledger.note import NoteSigner, NoteVerifier, open_note, sign_note

ARCHE_BODY = (
    "arche2025h1.staging.ct.transparency.dev\n"
    "1432088532\n"
    "U7WM79jrzyhGZ5/GUBTpM7NzwdyfFx61t3RovgcC4Ro=\n"
)
ARCHE_SIGNATURES = [
    "— arche2025h1.staging.ct.transparency.dev zTM8sQAAAZ5W0WdjBAMARjBEAiBjW5IQf9pvsYLfQFX6hoGREPMH"
    "bdQ3urbllzalApkptQIgIpwtEroeW2BXaHAI4kJXFbon5Ch9MNL5zRNZ55lvGt0=",
    "— arche2025h1.staging.ct.transparency.dev ui8GwCF1+kWqZrxGdhj4aX3gcw7XUlXQQabg/27lefwhUkzbC3Ny"
    "gNI75MdhL1bfTW9g8Ei59RA23oHP7Ry1k3ZFWwQ=",
    "— transparency.dev/DEV:witness-little-garden 2AQqhwAAAABqEiEgzgFIqqhbUoDwjMWE6UP8nd8/KYTzwZ2r"
    "hIgcqoXHAwVkjZr4AscylP3v7sEodkRAErumC2q44vdgJY096st5BQ==",
    "— witness1.smartit.nu/witness1 pIyCDwAAAABqEiEghIp82KWebrw7/oHQwlTAm3g2RKS4+eebl8eO0WH+/iEcxZ"
    "75W3u5hNI7TOQtmJbqmNWVuE0tgh0XwzdZsDsUAQ==",
    "— remora.n621.de 2net5wAAAABqEiEgPlfF3V06o0Y+fHM+J5J9s27wgxxcOVSpZ/2g/KSiXCg9DEZI+aVCIobWX9sXT"
    "ynk5XeU/zZ0WBxtqB0DrAWfBw==",
    "— witness.stagemole.eu Z/euoAAAAABqEiEgw0i+7g2ENfDAWHmtRzCfKTHSDwYDJA2NmKeGi9Y8FtEyOUvVr+AJmIY"
    "/2TUFucgKi7lI7cUiOvKFYe/TmN9DAg==",
]
ARCHE_NOTE = ARCHE_BODY + "\n" + "".join(line + "\n" for line in ARCHE_SIGNATURES)
ARCHE_LOG_VKEY = (
    "arche2025h1.staging.ct.transparency.dev+ba2f06c0+AU0vHmlGCS/PdN8b2OaGmKprLI8HKM+dJ472xgFYh15f"
)
WITNESS_VKEYS = [
    "remora.n621.de+da77ade7+BOvN63jn/bLvkieywe8R6UYAtVtNbZpXh34x7onlmtw2",
    "witness.stagemole.eu+67f7aea0+BEqSG3yu9YrmcM3BHvQYTxwFj3uSWakQepafafpUqklv",
    "transparency.dev/DEV:witness-little-garden+d8042a87+BCtusOxINQNUTN5Oj8HObRkh2yHf/MwYaGX4CPdiVEPM",
    "witness1.smartit.nu/witness1+a48c820f+BPSFWg9G6KPiO7QPryYO5Xq4oYJJ+kAvLKLSimDhoxMO",
]
ARCHE_LOG = NoteVerifier.from_vkey(ARCHE_LOG_VKEY)
WITNESSES = [CosignatureVerifier.from_vkey(vkey) for vkey in WITNESS_VKEYS]


def test_real_checkpoint_opens_with_the_log_key_ignoring_the_other_signatures() -> None:
    checkpoint = open_checkpoint(ARCHE_NOTE, ARCHE_LOG, origin=ARCHE_LOG.name)
    assert checkpoint == Checkpoint(
        "arche2025h1.staging.ct.transparency.dev",
        1432088532,
        base64.b64decode("U7WM79jrzyhGZ5/GUBTpM7NzwdyfFx61t3RovgcC4Ro="),
    )
    assert checkpoint.to_text() == ARCHE_BODY
    opened = open_note(ARCHE_NOTE, [ARCHE_LOG])
    # The RFC 6962 signature shares the log's name but not its key id: ignored, not failed.
    assert opened.unverified[0].key_id.hex() == "cd333cb1"
    assert len(opened.unverified) == 5


def test_real_witness_cosignatures_verify_with_their_timestamps() -> None:
    cosignatures = verified_cosignatures(ARCHE_NOTE, WITNESSES)
    assert sorted(c.name for c in cosignatures) == sorted(w.name for w in WITNESSES)
    assert {c.timestamp for c in cosignatures} == {0x6A122120}
    assert open_checkpoint(ARCHE_NOTE, ARCHE_LOG, witnesses=WITNESSES, quorum=4).size == 1432088532
    with pytest.raises(ProofError, match="4 valid witness cosignature"):
        open_checkpoint(ARCHE_NOTE, ARCHE_LOG, witnesses=WITNESSES, quorum=5)


def test_real_checkpoint_with_a_changed_size_fails_for_log_and_witnesses() -> None:
    clobbered = ARCHE_NOTE.replace("1432088532", "1432088533")
    with pytest.raises(ProofError, match="does not verify"):
        open_checkpoint(clobbered, ARCHE_LOG)
    with pytest.raises(ProofError, match=r"cosignature by witness .* does not verify"):
        verified_cosignatures(clobbered, WITNESSES)


def test_witness_keys_are_not_plain_note_keys() -> None:
    """Domain separation: the same Ed25519 key has a different key id as type 0x01 and 0x04, and
    a cosignature never verifies as a plain note signature."""
    witness = WITNESSES[0]
    raw = base64.b64decode(WITNESS_VKEYS[0].split("+", 2)[2])[1:]
    plain = NoteVerifier(witness.name, raw)
    assert plain.key_id != witness.key_id
    with pytest.raises(InputError, match="not Ed25519 \\(0x01\\)"):
        NoteVerifier.from_vkey(WITNESS_VKEYS[0])
    with pytest.raises(InputError, match="not an Ed25519 cosignature"):
        CosignatureVerifier.from_vkey(ARCHE_LOG_VKEY)
    with pytest.raises(ProofError, match="not signed by any known key"):
        open_note(ARCHE_NOTE, [plain])


def test_c2sp_example_checkpoint_text_parses() -> None:
    text = "example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n"
    checkpoint = Checkpoint.parse(text)
    assert (checkpoint.origin, checkpoint.size, checkpoint.extensions) == (
        "example.com/behind-the-sofa",
        20852163,
        (),
    )
    assert checkpoint.to_text() == text


# --- strict parsing ----------------------------------------------------------------------------

ROOT = base64.b64encode(bytes(range(32))).decode()


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("log\n5\n" + ROOT, "does not end with a newline"),
        ("log\n5\n", "2 line\\(s\\)"),
        ("", "does not end with a newline"),
        ("\n5\n" + ROOT + "\n", "line 1 is empty"),
        ("log\n\n" + ROOT + "\n", "line 2 is empty"),
        ("log\n5\n" + ROOT + "\n\n", "line 4 is empty"),
        ("log\n5\n" + ROOT + "\next\n\n", "line 5 is empty"),
        ("log\r\n5\n" + ROOT + "\n", "line 1 contains a control character"),
        ("log\n007\n" + ROOT + "\n", "line 2 \\(tree size\\) '007'"),
        ("log\n00\n" + ROOT + "\n", "line 2 \\(tree size\\)"),
        ("log\n+5\n" + ROOT + "\n", "line 2 \\(tree size\\)"),
        ("log\n-1\n" + ROOT + "\n", "line 2 \\(tree size\\)"),
        ("log\n 5\n" + ROOT + "\n", "line 2 \\(tree size\\)"),
        ("log\n1_000\n" + ROOT + "\n", "line 2 \\(tree size\\)"),
        ("log\n0x10\n" + ROOT + "\n", "line 2 \\(tree size\\)"),
        ("log\n\u0661\u0662\n" + ROOT + "\n", "line 2 \\(tree size\\)"),
        ("log\n18446744073709551616\n" + ROOT + "\n", "does not fit an unsigned 64-bit"),
        ("log\n" + "9" * 500 + "\n" + ROOT + "\n", "line 2 \\(tree size\\)"),
        ("log\n5\nnot base64!\n", "line 3 \\(root hash\\) is not valid base64"),
        ("log\n5\n" + ROOT[:-4] + "\n", "line 3 \\(root hash\\) is 30 bytes, not 32"),
        ("log\n5\n" + ROOT[:-1] + "\n", "line 3 \\(root hash\\) is not valid base64"),
        ("log\n5\n" + base64.b64encode(bytes(31)).decode() + "\n", "31 bytes, not 32"),
        ("log\n5\n" + base64.b64encode(bytes(33)).decode() + "\n", "33 bytes, not 32"),
        ("log\n5\n" + ROOT[:-2] + "9=\n", "line 3 \\(root hash\\) is not canonical base64"),
        ("log\n5\n" + base64.urlsafe_b64encode(bytes([251] * 32)).decode() + "\n", "base64"),
    ],
)
def test_malformed_checkpoints_are_refused_naming_the_line(text: str, reason: str) -> None:
    with pytest.raises(ProofError, match=reason):
        Checkpoint.parse(text)


def test_size_bounds_and_extensions_parse() -> None:
    assert Checkpoint.parse("log\n0\n" + ROOT + "\n").size == 0
    top = Checkpoint.parse(f"log\n{MAX_TREE_SIZE}\n{ROOT}\n")
    assert top.size == MAX_TREE_SIZE
    extended = Checkpoint.parse(f"origin with spaces\n1\n{ROOT}\nfirst ext\n— second\n")
    assert extended.origin == "origin with spaces"
    assert extended.extensions == ("first ext", "— second")


@pytest.mark.parametrize(
    "kwargs",
    [
        {"origin": ""},
        {"origin": "two\nlines"},
        {"size": -1},
        {"size": MAX_TREE_SIZE + 1},
        {"size": True},
        {"root_hash": bytes(31)},
        {"extensions": ("",)},
        {"extensions": ("a\nb",)},
    ],
)
def test_invalid_checkpoints_cannot_be_built(kwargs: dict[str, object]) -> None:
    fields: dict[str, object] = {"origin": "log", "size": 1, "root_hash": bytes(32)}
    fields.update(kwargs)
    with pytest.raises(InputError):
        Checkpoint(**fields)  # type: ignore[arg-type]


line_text = st.text(st.characters(min_codepoint=0x20, exclude_categories=["Cs"]), min_size=1)


@settings(max_examples=200, deadline=None)
@given(
    origin=line_text,
    size=st.integers(0, MAX_TREE_SIZE),
    root=st.binary(min_size=32, max_size=32),
    extensions=st.lists(line_text, max_size=3).map(tuple),
)
def test_checkpoint_text_round_trips(
    origin: str, size: int, root: bytes, extensions: tuple[str, ...]
) -> None:
    checkpoint = Checkpoint(origin, size, root, extensions)
    assert Checkpoint.parse(checkpoint.to_text()) == checkpoint


# --- signing, opening, cosigning ---------------------------------------------------------------

LOG = NoteSigner.generate("log.example/thirdway")
CHECKPOINT = Checkpoint(LOG.name, 42, bytes(range(32)))


def test_sign_and_open_checkpoint() -> None:
    note = sign_checkpoint(CHECKPOINT, LOG)
    assert note.startswith(CHECKPOINT.to_text() + "\n— log.example/thirdway ")
    assert open_checkpoint(note, LOG.verifier(), origin=LOG.name) == CHECKPOINT


def test_checkpoint_needs_the_logs_own_signature() -> None:
    note = sign_checkpoint(CHECKPOINT, NoteSigner.generate(LOG.name))  # same name, other key
    with pytest.raises(ProofError, match="not signed by any known key"):
        open_checkpoint(note, LOG.verifier())
    witness = CosignatureSigner.generate("witness.example")
    only_cosigned = CHECKPOINT.to_text() + "\n"
    only_cosigned += sign_note(CHECKPOINT.to_text(), [witness]).split("\n\n", 1)[1]
    with pytest.raises(ProofError, match="not signed by any known key"):
        open_checkpoint(only_cosigned, LOG.verifier())


def test_checkpoint_for_another_origin_is_refused_when_origin_is_given() -> None:
    other = Checkpoint("other.example", 42, bytes(32))
    note = sign_checkpoint(other, LOG)
    assert open_checkpoint(note, LOG.verifier()).origin == "other.example"
    with pytest.raises(ProofError, match=r"for origin 'other\.example'"):
        open_checkpoint(note, LOG.verifier(), origin=LOG.name)


def test_signed_note_with_a_malformed_body_names_the_line() -> None:
    note = sign_note("log.example/thirdway\n042\n" + ROOT + "\n", [LOG])
    with pytest.raises(ProofError, match="line 2 \\(tree size\\)"):
        open_checkpoint(note, LOG.verifier())


def test_truncated_or_garbled_checkpoint_notes_are_refused() -> None:
    note = sign_checkpoint(CHECKPOINT, LOG)
    for cut in range(len(note) - 1):
        with pytest.raises(ProofError):
            open_checkpoint(note[:cut], LOG.verifier())
    with pytest.raises(ProofError):
        open_checkpoint(note.replace("42", "43"), LOG.verifier())
    with pytest.raises(ProofError):
        open_checkpoint(b"\x00garbage" + note.encode(), LOG.verifier())


def test_unknown_cosigners_are_ignored() -> None:
    stranger = CosignatureSigner.generate("stranger.example")
    note = cosign_checkpoint(sign_checkpoint(CHECKPOINT, LOG), LOG.verifier(), stranger)
    assert open_checkpoint(note, LOG.verifier()) == CHECKPOINT
    assert verified_cosignatures(note, []) == ()


def test_cosign_and_verify_quorum() -> None:
    witnesses = [CosignatureSigner.generate(f"w{i}.example") for i in range(3)]
    note = sign_checkpoint(CHECKPOINT, LOG)
    for i, witness in enumerate(witnesses[:2]):
        note = cosign_checkpoint(note, LOG.verifier(), witness, timestamp=1_700_000_000 + i)
    verifiers = [w.verifier() for w in witnesses]
    cosigned = verified_cosignatures(note, verifiers)
    assert [(c.name, c.timestamp) for c in cosigned] == [
        ("w0.example", 1_700_000_000),
        ("w1.example", 1_700_000_001),
    ]
    assert open_checkpoint(note, LOG.verifier(), witnesses=verifiers, quorum=2) == CHECKPOINT
    with pytest.raises(ProofError, match="2 valid witness cosignature\\(s\\); 3 required"):
        open_checkpoint(note, LOG.verifier(), witnesses=verifiers, quorum=3)


def test_tampered_cosignature_or_timestamp_is_refused() -> None:
    witness = CosignatureSigner.generate("w.example")
    note = cosign_checkpoint(
        sign_checkpoint(CHECKPOINT, LOG), LOG.verifier(), witness, timestamp=1_700_000_000
    )
    line = note.rstrip("\n").rsplit("\n", 1)[1]
    raw = bytearray(base64.b64decode(line.split()[-1]))
    raw[4 + 7] ^= 1  # the last byte of the timestamp
    forged = note.replace(line, "— w.example " + base64.b64encode(bytes(raw)).decode())
    with pytest.raises(ProofError, match=r"cosignature by witness w\.example does not verify"):
        open_checkpoint(forged, LOG.verifier(), witnesses=[witness.verifier()], quorum=1)


def test_cosigning_requires_a_valid_log_signature() -> None:
    witness = CosignatureSigner.generate("w.example")
    forged = sign_checkpoint(CHECKPOINT, NoteSigner.generate(LOG.name))
    with pytest.raises(ProofError):
        cosign_checkpoint(forged, LOG.verifier(), witness)
    with pytest.raises(InputError, match="2\\^63"):
        witness.sign_at(CHECKPOINT.to_text(), 1 << 63)


def test_cosignature_vkey_round_trips() -> None:
    verifier = CosignatureSigner.generate("w.example").verifier()
    assert CosignatureVerifier.from_vkey(verifier.vkey()) == verifier
    assert verifier.vkey().split("+")[2].startswith("B")  # 0x04 type byte in base64
