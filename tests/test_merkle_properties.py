"""Properties of the Merkle tree: proofs read from stored subtrees equal the RFC's recursive
definitions, verify, cost O(log n) reads, and break when any bit of a proof, root or leaf flips.

The reference functions below are written straight from RFC 9162 section 2.1 (MTH, PATH, PROOF /
SUBPROOF) and from draft-davidben-tls-merkle-tree-certs (subtree consistency), independent of the
code under test, which builds proofs from stored perfect-subtree hashes instead.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from functools import lru_cache

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from thirdway.errors import LogError, ProofError
from thirdway.ledger import merkle

# --- the RFC, literally ------------------------------------------------------------------------


def ref_leaf(data: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + data).digest()


def ref_node(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def split(n: int) -> int:
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def mth(leaves: Sequence[bytes]) -> bytes:
    if not leaves:
        return hashlib.sha256(b"").digest()
    if len(leaves) == 1:
        return leaves[0]
    k = split(len(leaves))
    return ref_node(mth(leaves[:k]), mth(leaves[k:]))


def path(m: int, leaves: Sequence[bytes]) -> list[bytes]:
    if len(leaves) == 1:
        return []
    k = split(len(leaves))
    if m < k:
        return [*path(m, leaves[:k]), mth(leaves[k:])]
    return [*path(m - k, leaves[k:]), mth(leaves[:k])]


def subproof(m: int, leaves: Sequence[bytes], known: bool) -> list[bytes]:
    n = len(leaves)
    if m == n:
        return [] if known else [mth(leaves)]
    k = split(n)
    if m <= k:
        return [*subproof(m, leaves[:k], known), mth(leaves[k:])]
    return [*subproof(m - k, leaves[k:], False), mth(leaves[:k])]


def subtree_subproof(start: int, end: int, leaves: Sequence[bytes], known: bool) -> list[bytes]:
    """SUBTREE_SUBPROOF of draft-davidben-tls-merkle-tree-certs (section 4.4.1)."""
    n = len(leaves)
    if start == 0 and end == n:
        return [] if known else [mth(leaves)]
    k = split(n)
    if end <= k:
        return [*subtree_subproof(start, end, leaves[:k], known), mth(leaves[k:])]
    if start >= k:
        return [*subtree_subproof(start - k, end - k, leaves[k:], known), mth(leaves[:k])]
    assert start == 0
    return [*subtree_subproof(0, end - k, leaves[k:], False), mth(leaves[:k])]


# --- a stored tree -------------------------------------------------------------------------------


class MemoryTree:
    """Perfect-subtree hashes in a dict, built the way the log builds them; counts reads."""

    def __init__(self, leaves: Sequence[bytes]) -> None:
        self.leaves = list(leaves)
        self.nodes: dict[merkle.NodeId, bytes] = {}
        frontier = merkle.Frontier()
        for index, leaf in enumerate(self.leaves):
            self.nodes[(0, index)] = leaf
            for node, digest in frontier.append(leaf):
                self.nodes[node] = digest
        self.frontier = frontier
        self.calls = 0
        self.read = 0

    def read_nodes(self, nodes: Sequence[merkle.NodeId]) -> list[bytes]:
        self.calls += 1
        self.read += len(nodes)
        return [self.nodes[node] for node in nodes]


@lru_cache(maxsize=64)
def tree(size: int) -> MemoryTree:
    return MemoryTree([ref_leaf(b"entry %d" % i) for i in range(size)])


BIG_SIZES = (1023, 1024, 1025, 4096, 5000, 1 << 14 | 3)
sizes = st.one_of(st.integers(1, 300), st.sampled_from(BIG_SIZES))


def flip(data: bytes, bit: int) -> bytes:
    raw = bytearray(data)
    raw[bit // 8 % len(raw)] ^= 1 << (bit % 8)
    return bytes(raw)


def log2_reads(size: int) -> int:
    """An upper bound on stored hashes any one proof may read: two per level."""
    return 2 * max(1, size.bit_length()) + 2


# --- properties ----------------------------------------------------------------------------------


@settings(max_examples=150, deadline=None)
@given(size=sizes)
def test_root_matches_the_rfc_definition(size: int) -> None:
    stored = tree(size)
    assert stored.frontier.root() == mth(stored.leaves)
    assert merkle.root_from_leaf_hashes(stored.leaves) == mth(stored.leaves)
    assert merkle.tree_hash(0, size, stored) == mth(stored.leaves)


def test_empty_tree() -> None:
    assert hashlib.sha256(b"").digest() == merkle.EMPTY_ROOT
    assert merkle.Frontier().root() == merkle.EMPTY_ROOT
    assert merkle.leaf_hash(b"") == ref_leaf(b"")


@settings(max_examples=300, deadline=None)
@given(size=sizes, data=st.data())
def test_inclusion_proof_is_the_rfc_path_verifies_and_breaks(
    size: int, data: st.DataObject
) -> None:
    stored = tree(size)
    index = data.draw(st.integers(0, size - 1), label="index")
    root, leaf = mth(stored.leaves), stored.leaves[index]
    before = (stored.calls, stored.read)
    proof = merkle.inclusion_proof(index, size, stored)
    assert stored.calls - before[0] <= 1
    assert stored.read - before[1] <= log2_reads(size)
    assert proof == path(index, stored.leaves)
    assert len(proof) == merkle.inclusion_proof_size(index, size)
    merkle.verify_inclusion(leaf, index, size, proof, root)

    bit = data.draw(st.integers(0, 255), label="bit")
    with pytest.raises(ProofError):
        merkle.verify_inclusion(flip(leaf, bit), index, size, proof, root)
    with pytest.raises(ProofError):
        merkle.verify_inclusion(leaf, index, size, proof, flip(root, bit))
    if proof:
        position = data.draw(st.integers(0, len(proof) - 1), label="position")
        broken = [*proof[:position], flip(proof[position], bit), *proof[position + 1 :]]
        with pytest.raises(ProofError):
            merkle.verify_inclusion(leaf, index, size, broken, root)
        with pytest.raises(ProofError, match="must have"):
            merkle.verify_inclusion(leaf, index, size, proof[:-1], root)
    with pytest.raises(ProofError, match="must have"):
        merkle.verify_inclusion(leaf, index, size, [*proof, root], root)


@settings(max_examples=300, deadline=None)
@given(size=sizes, data=st.data())
def test_consistency_proof_is_the_rfc_proof_verifies_and_breaks(
    size: int, data: st.DataObject
) -> None:
    stored = tree(size)
    size1 = data.draw(st.integers(1, size), label="size1")
    root1, root2 = mth(stored.leaves[:size1]), mth(stored.leaves)
    before = (stored.calls, stored.read)
    proof = merkle.consistency_proof(size1, size, stored)
    assert stored.calls - before[0] <= 1
    assert stored.read - before[1] <= log2_reads(size)
    assert proof == (subproof(size1, stored.leaves, True) if size1 < size else [])
    merkle.verify_consistency(size1, size, proof, root1, root2)
    if size1 < size:  # the generalised subtree verifier agrees with RFC 9162's
        merkle.verify_subtree_consistency(0, size1, size, proof, root1, root2)

    bit = data.draw(st.integers(0, 255), label="bit")
    with pytest.raises(ProofError):
        merkle.verify_consistency(size1, size, proof, flip(root1, bit), root2)
    with pytest.raises(ProofError):
        merkle.verify_consistency(size1, size, proof, root1, flip(root2, bit))
    if proof:
        position = data.draw(st.integers(0, len(proof) - 1), label="position")
        broken = [*proof[:position], flip(proof[position], bit), *proof[position + 1 :]]
        with pytest.raises(ProofError):
            merkle.verify_consistency(size1, size, broken, root1, root2)
        with pytest.raises(ProofError):
            merkle.verify_consistency(size1, size, proof[1:], root1, root2)
    with pytest.raises(ProofError):
        merkle.verify_consistency(size1, size, [*proof, root2], root1, root2)


@st.composite
def subtrees(draw: st.DrawFn, size: int) -> tuple[int, int]:
    """A valid, non-empty subtree ``[start, end)`` with ``end <= size``."""
    width_exp = draw(st.integers(0, (size - 1).bit_length()))
    width = 1 << width_exp
    start = width * draw(st.integers(0, (size - 1) // width))
    end = draw(st.integers(start + 1, min(start + width, size)))
    return start, end


@settings(max_examples=300, deadline=None)
@given(size=sizes, data=st.data())
def test_subtree_proofs_match_the_draft_verify_and_break(size: int, data: st.DataObject) -> None:
    stored = tree(size)
    start, end = data.draw(subtrees(size), label="subtree")
    sub_root, root = mth(stored.leaves[start:end]), mth(stored.leaves)
    assert merkle.tree_hash(start, end, stored) == sub_root

    proof = merkle.subtree_consistency_proof(start, end, size, stored)
    assert proof == subtree_subproof(start, end, stored.leaves, True)
    assert len(proof) == merkle.subtree_consistency_proof_size(start, end, size)
    merkle.verify_subtree_consistency(start, end, size, proof, sub_root, root)

    index = data.draw(st.integers(start, end - 1), label="index")
    inclusion = merkle.subtree_inclusion_proof(index, start, end, stored)
    assert inclusion == path(index - start, stored.leaves[start:end])
    merkle.verify_subtree_inclusion(stored.leaves[index], index, start, end, inclusion, sub_root)

    bit = data.draw(st.integers(0, 255), label="bit")
    if (start, end) != (0, size):  # else the two roots are one and the same value
        with pytest.raises(ProofError):
            merkle.verify_subtree_consistency(start, end, size, proof, flip(sub_root, bit), root)
    with pytest.raises(ProofError):
        merkle.verify_subtree_consistency(start, end, size, proof, sub_root, flip(root, bit))
    with pytest.raises(ProofError):
        merkle.verify_subtree_inclusion(
            flip(stored.leaves[index], bit), index, start, end, inclusion, sub_root
        )
    for position in range(len(proof)):
        broken = [*proof[:position], flip(proof[position], bit), *proof[position + 1 :]]
        with pytest.raises(ProofError):
            merkle.verify_subtree_consistency(start, end, size, broken, sub_root, root)


@settings(max_examples=200, deadline=None)
@given(size=st.integers(1, 300), data=st.data())
def test_a_proof_for_one_position_does_not_verify_another(size: int, data: st.DataObject) -> None:
    stored = tree(size)
    index = data.draw(st.integers(0, size - 1))
    other = data.draw(st.integers(0, size - 1).filter(lambda i: i != index))
    proof = merkle.inclusion_proof(index, size, stored)
    with pytest.raises(ProofError):
        merkle.verify_inclusion(stored.leaves[index], other, size, proof, mth(stored.leaves))


@settings(max_examples=100, deadline=None)
@given(st.lists(st.binary(max_size=40), min_size=1, max_size=70))
def test_arbitrary_entries(entries: list[bytes]) -> None:
    leaves = [merkle.leaf_hash(entry) for entry in entries]
    assert leaves == [ref_leaf(entry) for entry in entries]
    stored = MemoryTree(leaves)
    for index in range(len(leaves)):
        proof = merkle.inclusion_proof(index, len(leaves), stored)
        merkle.verify_inclusion(leaves[index], index, len(leaves), proof, mth(leaves))


def test_stored_index_is_dense_and_in_creation_order() -> None:
    frontier = merkle.Frontier()
    keys = []
    for index in range(1000):
        keys.append(merkle.stored_index((0, index)))
        keys += [merkle.stored_index(node) for node, _ in frontier.append(b"\0" * 32)]
    assert keys == list(range(len(keys)))


def test_generation_rejects_impossible_requests() -> None:
    stored = tree(10)
    with pytest.raises(LogError, match="out of range"):
        merkle.inclusion_proof(10, 10, stored)
    with pytest.raises(LogError, match="smaller size"):
        merkle.consistency_proof(5, 4, stored)
    with pytest.raises(LogError, match="empty tree"):
        merkle.consistency_proof(0, 4, stored)
    with pytest.raises(LogError, match="not a subtree"):
        merkle.subtree_consistency_proof(1, 3, 10, stored)
    with pytest.raises(LogError, match="does not fit"):
        merkle.subtree_consistency_proof(8, 12, 10, stored)


@settings(max_examples=100, deadline=None)
@given(st.integers(0, 300), st.lists(st.integers(0, 70), max_size=8))
def test_extend_is_repeated_append(start: int, chunks: list[int]) -> None:
    """A batch's one-pass ``extend`` completes the same nodes, in the same order, as appending
    its leaves one at a time, from any frontier."""
    leaves = [ref_leaf(b"%d" % i) for i in range(start + sum(chunks))]
    one_by_one, batched = merkle.Frontier(), merkle.Frontier()
    batched.extend(leaves[:start])
    expected: list[tuple[merkle.NodeId, bytes]] = []
    for leaf in leaves:
        nodes = one_by_one.append(leaf)
        if one_by_one.size > start:
            expected += nodes
    got: list[tuple[merkle.NodeId, bytes]] = []
    position = start
    for chunk in chunks:
        got += batched.extend(leaves[position : position + chunk])
        position += chunk
    assert got == expected
    assert (batched.size, batched.hashes) == (one_by_one.size, one_by_one.hashes)
    assert batched.root() == mth(leaves)
    assert [merkle.leaf_hash(b"%d" % i) for i in range(3)] == merkle.leaf_hashes(
        [b"%d" % i for i in range(3)]
    )


@settings(max_examples=300, deadline=None)
@given(st.integers(2, merkle.MAX_TREE_SIZE), st.data())
def test_consistency_proof_size_formula_is_the_walk(size2: int, data: st.DataObject) -> None:
    """The verifier's closed-form proof length equals the generator's walk, at any size."""
    size1 = data.draw(st.one_of(st.integers(1, size2 - 1), st.sampled_from([1, size2 - 1])))
    assert merkle._consistency_proof_size(size1, size2) == merkle.subtree_consistency_proof_size(
        0, size1, size2
    )


@pytest.mark.parametrize("size1", [4, 5])
def test_consistency_roots_that_are_not_bytes_are_refused(size1: int) -> None:
    stored = tree(9)
    proof = merkle.consistency_proof(size1, 9, stored)
    root1, root2 = mth(stored.leaves[:size1]), mth(stored.leaves)
    merkle.verify_consistency(size1, 9, proof, bytearray(root1), bytearray(root2))
    for bad1, bad2 in (("x" * 32, root2), (root1, "x" * 32), (None, root2)):
        with pytest.raises(ProofError, match="must be bytes"):
            merkle.verify_consistency(size1, 9, proof, bad1, bad2)  # type: ignore[arg-type]
