"""Every RFC 6962 proof vector of ``github.com/transparency-dev/merkle`` (``cmd/proofgen``).

The folder is ``../shared/testdata/rfc6962`` from the repository root (override with
``THIRDWAY_RFC6962_VECTORS``). Each JSON file is one probe: inputs for a verifier and ``wantErr``.
A missing or incomplete folder fails the run at collection time; it never turns into skips.

The probes' wrong roots and leaves are 9-byte strings, which a verifier can reject by length alone
without ever comparing a hash. So for every positive probe we also flip one bit of each 32-byte
root and leaf hash, which only an actual comparison can catch.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from thirdway.errors import ProofError
from thirdway.ledger import merkle

KINDS = ("inclusion", "consistency", "subtreeinclusion", "subtreeconsistency")
#: How many probes each folder of the vendored vectors holds; fewer means a broken copy.
MIN_PROBES = {
    "inclusion": 98,
    "consistency": 98,
    "subtreeinclusion": 204,
    "subtreeconsistency": 118,
}


def vector_root() -> Path:
    override = os.environ.get("THIRDWAY_RFC6962_VECTORS")
    if override:
        return Path(override)
    return Path(__file__).resolve().parents[2] / "shared" / "testdata" / "rfc6962"


def collect() -> list[tuple[str, Path]]:
    root = vector_root()
    if not root.is_dir():
        pytest.fail(f"RFC 6962 test vectors not found at {root}", pytrace=False)
    found: list[tuple[str, Path]] = []
    for kind in KINDS:
        files = sorted((root / kind).rglob("*.json"))
        if len(files) < MIN_PROBES[kind]:
            pytest.fail(
                f"{root / kind} holds {len(files)} vectors; expected at least {MIN_PROBES[kind]}",
                pytrace=False,
            )
        found += [(kind, path) for path in files]
    return found


VECTORS = collect()


def b64(value: str | None) -> bytes:
    return b"" if value is None else base64.b64decode(value)


def load(path: Path) -> dict[str, Any]:
    probe: dict[str, Any] = json.loads(path.read_text())
    probe["proof"] = [b64(element) for element in probe["proof"] or []]
    return probe


def run(kind: str, probe: dict[str, Any]) -> None:
    """Call the verifier for ``kind`` with the probe's inputs (raises ProofError on rejection)."""
    proof = probe["proof"]
    if kind == "inclusion":
        merkle.verify_inclusion(
            b64(probe["leafHash"]), probe["leafIdx"], probe["treeSize"], proof, b64(probe["root"])
        )
    elif kind == "consistency":
        merkle.verify_consistency(
            probe["size1"], probe["size2"], proof, b64(probe["root1"]), b64(probe["root2"])
        )
    elif kind == "subtreeinclusion":
        merkle.verify_subtree_inclusion(
            b64(probe["leafHash"]),
            probe["leafIdx"],
            probe["start"],
            probe["end"],
            proof,
            b64(probe["root"]),
        )
    else:
        merkle.verify_subtree_consistency(
            probe["start"], probe["end"], probe["size"], proof, b64(probe["root1"]),
            b64(probe["root2"]),
        )  # fmt: skip


def vector_id(item: tuple[str, Path]) -> str:
    kind, path = item
    return str(path.relative_to(vector_root() / kind).with_suffix("")).replace(os.sep, "/")


@pytest.mark.parametrize(
    ("kind", "path"), VECTORS, ids=[f"{k}:{vector_id((k, p))}" for k, p in VECTORS]
)
def test_vector(kind: str, path: Path) -> None:
    probe = load(path)
    if probe["wantErr"]:
        with pytest.raises(ProofError) as caught:
            run(kind, probe)
        message = str(caught.value)
        assert message and "\n" not in message
    else:
        run(kind, probe)


def flipped(raw: str) -> str:
    data = bytearray(base64.b64decode(raw))
    data[0] ^= 0x01
    return base64.b64encode(bytes(data)).decode()


#: For each kind: which 32-byte fields must be compared (the empty subtree's tree root is not).
COMPARED_FIELDS: dict[str, Callable[[dict[str, Any]], list[str]]] = {
    "inclusion": lambda probe: ["leafHash", "root"],
    "subtreeinclusion": lambda probe: ["leafHash", "root"],
    "consistency": lambda probe: ["root1", "root2"],
    "subtreeconsistency": lambda probe: (
        ["root1"] if probe["start"] == probe["end"] else ["root1", "root2"]
    ),
}


POSITIVE = [(kind, path) for kind, path in VECTORS if not json.loads(path.read_text())["wantErr"]]


@pytest.mark.parametrize(
    ("kind", "path"), POSITIVE, ids=[f"{k}:{vector_id((k, p))}" for k, p in POSITIVE]
)
def test_one_flipped_bit_in_a_positive_vector_is_rejected(kind: str, path: Path) -> None:
    probe = load(path)
    checked = 0
    for name in COMPARED_FIELDS[kind](probe):
        if len(base64.b64decode(probe[name])) != merkle.HASH_SIZE:
            continue  # a "don't care" root the verifier never examines
        mutated = dict(probe, **{name: flipped(probe[name])})
        if kind.endswith("consistency") and mutated.get("root1") == mutated.get("root2"):
            continue
        with pytest.raises(ProofError):
            run(kind, mutated)
        checked += 1
    for position in range(len(probe["proof"])):
        proof = list(probe["proof"])
        proof[position] = bytes([proof[position][0] ^ 0x80]) + proof[position][1:]
        with pytest.raises(ProofError):
            run(kind, dict(probe, proof=proof))
        checked += 1
    # Only probes whose roots are all "don't care" strings and whose proof is empty have nothing
    # to flip (equal sizes: the verifier compares the two given roots with each other).
    assert checked > 0 or (not probe["proof"] and kind.endswith("consistency"))


def test_positive_vectors_cover_every_kind() -> None:
    assert {kind for kind, _ in POSITIVE} == set(KINDS)
    assert len(POSITIVE) >= 36


def test_errors_name_the_problem() -> None:
    leaf = merkle.leaf_hash(b"x")
    with pytest.raises(ProofError, match="must have 0 hashes; this one has 1"):
        merkle.verify_inclusion(leaf, 0, 1, [leaf], leaf)
    with pytest.raises(ProofError, match="not below the tree size"):
        merkle.verify_inclusion(leaf, 3, 3, [], leaf)
    with pytest.raises(ProofError, match="size1 5 is greater than size2 4"):
        merkle.verify_consistency(5, 4, [], leaf, leaf)
    with pytest.raises(ProofError, match="empty tree"):
        merkle.verify_consistency(0, 4, [], merkle.EMPTY_ROOT, leaf)
    with pytest.raises(ProofError, match="proof hash #0 is 3 bytes"):
        merkle.verify_inclusion(leaf, 0, 2, [b"abc"], leaf)
    with pytest.raises(ProofError, match="leaf hash is 0 bytes"):
        merkle.verify_inclusion(b"", 0, 1, [], leaf)
    with pytest.raises(ProofError, match="not an unsigned 64-bit integer"):
        merkle.verify_inclusion(leaf, 0, 1 << 64, [], leaf)
    with pytest.raises(ProofError, match="not a multiple of 4"):
        merkle.verify_subtree_consistency(2, 5, 8, [], leaf, leaf)


def test_a_missing_vector_folder_fails_the_run(tmp_path: Path) -> None:
    env = dict(os.environ, THIRDWAY_RFC6962_VECTORS=str(tmp_path / "nowhere"))
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", __file__],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=120,
    )
    assert result.returncode != 0
    assert "RFC 6962 test vectors not found" in result.stdout + result.stderr
    assert "skipped" not in result.stdout
