"""RFC 6962 / RFC 9162 Merkle tree hashing, proofs read from stored subtrees, and verifiers.

Hashing (RFC 9162 section 2.1.1): a leaf hashes as ``SHA-256(0x00 || data)``, an interior node as
``SHA-256(0x01 || left || right)``, and the empty tree's root is ``SHA-256()``.

Storage model. The log stores the hash of every *perfect* subtree once it is complete: node
``(level, index)`` covers entries ``[index * 2**level, (index + 1) * 2**level)``; level 0 holds the
leaf hashes. Any other subtree hash, and so every proof element, is a fold of at most 64 stored
hashes, so a proof costs O(log n) reads and never a pass over the leaves (this is the layout of Go's
``golang.org/x/mod/sumdb/tlog``). The proof *generators* here are pure: they plan which ranges a
proof needs, ask a :class:`NodeReader` for all the stored hashes in one call, and fold them.

Verification follows RFC 9162 section 2.1.3.2 (inclusion) and 2.1.4.2 (consistency) exactly. The
*subtree* proofs (a leaf's inclusion in a subtree ``[start, end)``, and a subtree's consistency with
a whole tree) are those of draft-davidben-tls-merkle-tree-certs and of
``github.com/transparency-dev/merkle``; they are checked against that project's test vectors.

Every verifier raises :class:`~thirdway.errors.ProofError` naming what is wrong (a size out of
range, a proof of the wrong length, a hash of the wrong size, a root that does not match).
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from thirdway.errors import LogError, ProofError

__all__ = [
    "EMPTY_ROOT",
    "HASH_SIZE",
    "MAX_TREE_SIZE",
    "Frontier",
    "NodeId",
    "NodeReader",
    "consistency_proof",
    "inclusion_proof",
    "inclusion_proof_size",
    "leaf_hash",
    "leaf_hashes",
    "node_coverage",
    "node_hash",
    "perfect_subtrees",
    "root_from_inclusion_proof",
    "root_from_leaf_hashes",
    "stored_index",
    "subtree_consistency_proof",
    "subtree_consistency_proof_size",
    "subtree_inclusion_proof",
    "tree_hash",
    "verify_consistency",
    "verify_inclusion",
    "verify_subtree_consistency",
    "verify_subtree_inclusion",
]

HASH_SIZE = 32
_compare_digest = hmac.compare_digest
#: Tree sizes and indices are unsigned 64-bit integers in RFC 9162 and in checkpoints.
MAX_TREE_SIZE = (1 << 64) - 1
EMPTY_ROOT = hashlib.sha256(b"").digest()

_LEAF_PREFIX = b"\x00"
_NODE_PREFIX = b"\x01"
#: A SHA-256 state that has already absorbed the leaf prefix: ``copy()`` + ``update(data)`` hashes
#: a leaf without concatenating (and so copying) its data.
_LEAF_HASHER = hashlib.sha256(_LEAF_PREFIX)

#: ``(level, index)`` of a perfect subtree; see :func:`node_coverage`.
NodeId = tuple[int, int]
#: A half-open range of entry indices ``[start, end)``.
Range = tuple[int, int]


def leaf_hash(data: bytes) -> bytes:
    """``SHA-256(0x00 || data)``: the hash of one log entry."""
    hasher = _LEAF_HASHER.copy()
    hasher.update(data)
    return hasher.digest()


def leaf_hashes(items: Iterable[bytes]) -> list[bytes]:
    """:func:`leaf_hash` of every item, in order (one loop, no call per entry: a batch append
    spends a good part of its Python time here)."""
    copy = _LEAF_HASHER.copy
    hashes: list[bytes] = []
    add = hashes.append
    for data in items:
        hasher = copy()
        hasher.update(data)
        add(hasher.digest())
    return hashes


def node_hash(left: bytes, right: bytes) -> bytes:
    """``SHA-256(0x01 || left || right)``: the hash of an interior node."""
    return hashlib.sha256(_NODE_PREFIX + left + right).digest()


def node_coverage(node: NodeId) -> Range:
    """The entries ``[start, end)`` that perfect subtree ``node`` covers."""
    level, index = node
    return index << level, (index + 1) << level


def stored_index(node: NodeId) -> int:
    """A unique integer key for ``node``, increasing in the order an append-only log creates nodes.

    It is Go's ``tlog.StoredHashIndex``: level-``L`` node ``n`` is stored right after the last leaf
    it covers, ``m = (n + 1) * 2**L - 1``, and the nodes completed with it. Before leaf ``m`` come
    ``sum(m >> i for i >= 0) = 2m - popcount(m)`` hashes, so the key is that plus ``L``. Storing by
    this key makes every append an append at the end of the table.
    """
    level, index = node
    last = ((index + 1) << level) - 1
    return 2 * last - last.bit_count() + level


def _largest_power_of_two_below(n: int) -> int:
    """``k`` of RFC 9162 section 2.1.1: the largest power of two smaller than ``n`` (``n >= 2``)."""
    return 1 << ((n - 1).bit_length() - 1)


def perfect_subtrees(start: int, end: int) -> list[NodeId]:
    """The stored nodes whose fold is ``MTH(D[start:end])``, left to right.

    ``[start, end)`` must be a range the RFC's recursion produces (``start`` a multiple of the
    smallest power of two not below ``end - start``); then the range splits into one perfect
    subtree per set bit of ``end - start``, largest first.
    """
    nodes: list[NodeId] = []
    position = start
    for level in range((end - start).bit_length() - 1, -1, -1):
        if (end - start) >> level & 1:
            nodes.append((level, position >> level))
            position += 1 << level
    return nodes


def _fold(hashes: Sequence[bytes]) -> bytes:
    """``MTH`` of a range from the hashes of its perfect subtrees (largest, leftmost first)."""
    result = hashes[-1]
    for left in reversed(hashes[:-1]):
        result = node_hash(left, result)
    return result


class NodeReader(Protocol):
    """Reads stored perfect-subtree hashes; raises :class:`LogError` if one is missing."""

    def read_nodes(self, nodes: Sequence[NodeId]) -> list[bytes]: ...


def _range_hashes(ranges: Sequence[Range], reader: NodeReader) -> list[bytes]:
    """``MTH`` of every range, reading all the stored nodes they need in one call."""
    plans = [perfect_subtrees(start, end) for start, end in ranges]
    wanted = list(dict.fromkeys(node for plan in plans for node in plan))
    hashes = reader.read_nodes(wanted) if wanted else []
    if len(hashes) != len(wanted):
        raise LogError(f"storage returned {len(hashes)} node hashes for {len(wanted)} requested")
    found = dict(zip(wanted, hashes, strict=True))
    return [_fold([found[node] for node in plan]) for plan in plans]


def _check_u64(name: str, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ProofError(f"{name} must be an integer")
    if not 0 <= value <= MAX_TREE_SIZE:
        raise ProofError(f"{name} {value} is not an unsigned 64-bit integer")


# --- trees in memory --------------------------------------------------------------------------


@dataclass
class Frontier:
    """The right border of a tree: the roots of its perfect subtrees, largest first.

    Appending a leaf merges equal-sized subtrees at the border, which yields exactly the interior
    nodes that become complete, so a log can store them in the same transaction as the leaf without
    reading anything back. A frontier for size ``n`` stays valid forever in an append-only log.
    """

    size: int = 0
    hashes: list[bytes] = field(default_factory=list)

    @classmethod
    def load(cls, size: int, reader: NodeReader) -> Frontier:
        """The frontier of the stored tree at ``size`` (one read)."""
        nodes = perfect_subtrees(0, size)
        hashes = reader.read_nodes(nodes) if nodes else []
        if len(hashes) != len(nodes):
            raise LogError(f"storage returned {len(hashes)} node hashes for {len(nodes)} requested")
        return cls(size, list(hashes))

    def copy(self) -> Frontier:
        return Frontier(self.size, list(self.hashes))

    def append(self, leaf: bytes) -> list[tuple[NodeId, bytes]]:
        """Add one leaf hash; return the interior nodes (level >= 1) it completes, lowest first."""
        return self.extend((leaf,))

    def extend(self, leaves: Iterable[bytes]) -> list[tuple[NodeId, bytes]]:
        """Add leaf hashes in order; return the interior nodes (level >= 1) they complete, in the
        order they complete (each leaf's lowest first), as repeated :meth:`append` would.

        One pass with the hashing inlined: a batch append calls this once, not once per leaf.
        """
        sha256 = hashlib.sha256
        prefix = _NODE_PREFIX
        hashes = self.hashes
        push, pop = hashes.append, hashes.pop
        completed: list[tuple[NodeId, bytes]] = []
        done = completed.append
        index = self.size
        for leaf in leaves:
            if index & 1:
                current, level = leaf, 0
                while index >> level & 1:
                    current = sha256(prefix + pop() + current).digest()
                    level += 1
                    done(((level, index >> level), current))
                push(current)
            else:
                push(leaf)
            index += 1
        self.size = index
        return completed

    def root(self) -> bytes:
        """``MTH`` of the whole tree."""
        return _fold(self.hashes) if self.hashes else EMPTY_ROOT


def root_from_leaf_hashes(leaves: Iterable[bytes]) -> bytes:
    """``MTH`` of a list of leaf hashes held in memory."""
    frontier = Frontier()
    frontier.extend(leaves)
    return frontier.root()


# --- proof generation -------------------------------------------------------------------------


def _check_tree_size(size: int) -> None:
    if isinstance(size, bool) or not isinstance(size, int) or not 0 <= size <= MAX_TREE_SIZE:
        raise LogError(f"tree size {size!r} is not an unsigned 64-bit integer")


def _inclusion_ranges(index: int, size: int) -> list[Range]:
    """The ranges whose roots form ``PATH(index, D[0:size])`` (RFC 9162 2.1.3.1), leaf first."""
    ranges: list[Range] = []
    low, high = 0, size
    while high - low > 1:
        middle = low + _largest_power_of_two_below(high - low)
        if index < middle:
            ranges.append((middle, high))
            high = middle
        else:
            ranges.append((low, middle))
            low = middle
    ranges.reverse()
    return ranges


@dataclass(frozen=True)
class _Walk:
    """The top-down walk from ``[0, size)`` to a subtree ``[start, end)``.

    Each step names where the subtree lies relative to the split of the current node (``left``,
    ``right`` or ``straddle``) and the sibling range whose root the proof carries. ``known`` says
    whether the walk ended on the subtree itself, whose root the verifier already holds
    (``SUBPROOF``'s ``b`` in RFC 9162 2.1.4.1, generalised to subtrees as in
    draft-davidben-tls-merkle-tree-certs); otherwise the proof starts with the root of ``last``.
    """

    steps: tuple[tuple[str, Range], ...]
    known: bool
    last: Range

    def proof_size(self) -> int:
        return len(self.steps) + (0 if self.known else 1)

    def proof_ranges(self) -> list[Range]:
        """The ranges whose roots form the proof, in proof order (bottom-up)."""
        ranges = [sibling for _, sibling in reversed(self.steps)]
        return ranges if self.known else [self.last, *ranges]


def _subtree_walk(start: int, end: int, size: int) -> _Walk:
    """Walk from the root of ``[0, size)`` down to the non-empty subtree ``[start, end)``."""
    steps: list[tuple[str, Range]] = []
    low, high, known = 0, size, True
    while not (start == low and end == high):
        middle = low + _largest_power_of_two_below(high - low)
        if end <= middle:
            steps.append(("left", (middle, high)))
            high = middle
        elif start >= middle:
            steps.append(("right", (low, middle)))
            low = middle
        else:
            # A valid subtree that crosses the split starts at this node's first leaf: the left
            # half is part of it, and the walk goes on with the rest of it in the right half.
            steps.append(("straddle", (low, middle)))
            low = start = middle
            known = False
    return _Walk(tuple(steps), known, (low, high))


def tree_hash(start: int, end: int, reader: NodeReader) -> bytes:
    """``MTH(D[start:end])`` for a range the tree's recursion produces (a subtree)."""
    _check_subtree_for_generation(start, end, allow_empty=True)
    if start == end:
        return EMPTY_ROOT
    return _range_hashes([(start, end)], reader)[0]


def inclusion_proof(index: int, size: int, reader: NodeReader) -> list[bytes]:
    """``PATH(index, D[0:size])``: the inclusion proof of leaf ``index`` in the tree of ``size``."""
    _check_tree_size(size)
    if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < size:
        raise LogError(f"leaf index {index} is out of range for a tree of size {size}")
    return _range_hashes(_inclusion_ranges(index, size), reader)


def consistency_proof(size1: int, size2: int, reader: NodeReader) -> list[bytes]:
    """``PROOF(size1, D[0:size2])`` (RFC 9162 2.1.4.1) for ``0 < size1 <= size2``."""
    _check_tree_size(size1)
    _check_tree_size(size2)
    if size1 > size2:
        raise LogError(f"cannot prove consistency from size {size1} to the smaller size {size2}")
    if size1 == 0:
        raise LogError("a consistency proof from the empty tree proves nothing; use size1 >= 1")
    return _range_hashes(_subtree_walk(0, size1, size2).proof_ranges(), reader)


def subtree_inclusion_proof(index: int, start: int, end: int, reader: NodeReader) -> list[bytes]:
    """The inclusion proof of leaf ``index`` in the subtree ``[start, end)``."""
    _check_subtree_for_generation(start, end, allow_empty=False)
    if isinstance(index, bool) or not isinstance(index, int) or not start <= index < end:
        raise LogError(f"leaf index {index} is outside the subtree [{start}, {end})")
    ranges = [(a + start, b + start) for a, b in _inclusion_ranges(index - start, end - start)]
    return _range_hashes(ranges, reader)


def subtree_consistency_proof(start: int, end: int, size: int, reader: NodeReader) -> list[bytes]:
    """The proof that the subtree ``[start, end)`` is part of the tree of ``size``."""
    _check_subtree_for_generation(start, end, allow_empty=True)
    _check_tree_size(size)
    if end > size:
        raise LogError(f"subtree [{start}, {end}) does not fit in a tree of size {size}")
    if start == end:
        return []
    return _range_hashes(_subtree_walk(start, end, size).proof_ranges(), reader)


def _check_subtree_for_generation(start: int, end: int, *, allow_empty: bool) -> None:
    try:
        _check_subtree(start, end, allow_empty=allow_empty)
    except ProofError as exc:
        raise LogError(str(exc)) from None


# --- proof verification -----------------------------------------------------------------------


def inclusion_proof_size(index: int, size: int) -> int:
    """How many hashes the inclusion proof of ``index`` in a tree of ``size`` has."""
    inner = (index ^ (size - 1)).bit_length()
    return inner + (index >> inner).bit_count()


def subtree_consistency_proof_size(start: int, end: int, size: int) -> int:
    """How many hashes the consistency proof of subtree ``[start, end)`` in ``size`` has."""
    if start == end:
        return 0
    return _subtree_walk(start, end, size).proof_size()


def _check_hash(name: str, value: bytes) -> None:
    if not isinstance(value, bytes | bytearray):
        raise ProofError(f"{name} must be bytes")
    if len(value) != HASH_SIZE:
        raise ProofError(f"{name} is {len(value)} bytes, not {HASH_SIZE}")


def _check_proof_hashes(proof: Sequence[bytes]) -> None:
    """Every proof element is a 32-byte hash. The common case (``bytes`` of the right size) costs
    one test per element; any other element gets :func:`_check_hash` and its message."""
    for number, element in enumerate(proof):
        if type(element) is not bytes or len(element) != HASH_SIZE:
            _check_hash(f"proof hash #{number}", element)


def _check_proof(proof: Sequence[bytes], expected: int, what: str) -> None:
    if len(proof) != expected:
        raise ProofError(f"{what} must have {expected} hashes; this one has {len(proof)}")
    _check_proof_hashes(proof)


def _check_match(what: str, computed: bytes, expected: bytes) -> None:
    if not isinstance(expected, bytes | bytearray):
        raise ProofError(f"{what}: the expected root must be bytes")
    if not _compare_digest(computed, expected):
        raise ProofError(
            f"{what}: the proof leads to {computed.hex()[:16]}…, not {bytes(expected).hex()[:16]}…"
        )


def _consistency_proof_size(size1: int, size2: int) -> int:
    """How many hashes ``PROOF(size1, D[0:size2])`` has, for ``0 < size1 < size2``, without
    walking the tree (transparency-dev/merkle's ``decompInclProof``): the inclusion path of leaf
    ``size1 - 1`` less the levels where the old tree is a perfect subtree, plus the old tree's
    own root unless it is a power of two (then the verifier holds that root already)."""
    last = size1 - 1
    inner = (last ^ (size2 - 1)).bit_length()
    border = (last >> inner).bit_count()
    shift = (size1 & -size1).bit_length() - 1
    return inner - shift + border + (0 if size1 == 1 << shift else 1)


def root_from_inclusion_proof(
    leaf_hash: bytes, index: int, size: int, proof: Sequence[bytes]
) -> bytes:
    """The root an inclusion proof leads to, by RFC 9162 section 2.1.3.2."""
    _check_u64("leaf index", index)
    _check_u64("tree size", size)
    if index >= size:
        raise ProofError(f"leaf index {index} is not below the tree size {size}")
    _check_hash("leaf hash", leaf_hash)
    expected = inclusion_proof_size(index, size)
    if len(proof) != expected:
        raise ProofError(
            f"an inclusion proof for leaf {index} in a tree of size {size} must have {expected} "
            f"hashes; this one has {len(proof)}"
        )
    _check_proof_hashes(proof)
    sha256 = hashlib.sha256
    prefix = _NODE_PREFIX
    fn, sn, result = index, size - 1, bytes(leaf_hash)
    for element in proof:
        if sn == 0:
            raise ProofError("inclusion proof is longer than the path to the root")
        if fn & 1 or fn == sn:
            result = sha256(prefix + element + result).digest()
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            result = sha256(prefix + result + element).digest()
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ProofError("inclusion proof is shorter than the path to the root")
    return result


def verify_inclusion(
    leaf_hash: bytes, index: int, size: int, proof: Sequence[bytes], root: bytes
) -> None:
    """Check that ``leaf_hash`` is entry ``index`` of the tree of ``size`` with ``root``."""
    computed = root_from_inclusion_proof(leaf_hash, index, size, proof)
    if type(root) is not bytes or not _compare_digest(computed, root):
        _check_match(f"inclusion proof of leaf {index} in the tree of size {size}", computed, root)


def verify_consistency(
    size1: int, size2: int, proof: Sequence[bytes], root1: bytes, root2: bytes
) -> None:
    """Check that the tree of ``size1`` with ``root1`` is a prefix of ``size2`` with ``root2``.

    RFC 9162 section 2.1.4.2. ``size1`` must be at least 1 (every tree extends the empty one, so a
    proof from size 0 proves nothing); equal sizes need an empty proof and equal roots.
    """
    _check_u64("size1", size1)
    _check_u64("size2", size2)
    if size1 > size2:
        raise ProofError(f"size1 {size1} is greater than size2 {size2}")
    if size1 == 0:
        raise ProofError("a consistency proof from the empty tree (size1 = 0) proves nothing")
    if size1 == size2:
        if proof:
            raise ProofError(
                f"sizes are equal ({size1}), so the proof must be empty; it has {len(proof)} hashes"
            )
        _check_match(f"consistency at equal sizes {size1}", root2, root1)
        return
    expected = _consistency_proof_size(size1, size2)
    if len(proof) != expected:
        raise ProofError(
            f"a consistency proof from size {size1} to {size2} must have {expected} hashes; "
            f"this one has {len(proof)}"
        )
    _check_proof_hashes(proof)
    # The loop below is the whole cost of a verification: hashing is inlined (a local
    # ``sha256`` and prefix concatenation), and no list or message is built unless it fails.
    sha256 = hashlib.sha256
    prefix = _NODE_PREFIX
    fn, sn = size1 - 1, size2 - 1
    if fn & (fn + 1) == 0:
        # size1 is a power of two: the old root is the seed and every element is a sibling.
        first = second = bytes(root1) if isinstance(root1, bytes | bytearray) else b""
        elements: Sequence[bytes] = proof
    else:
        first = second = proof[0]
        elements = proof[1:]
    while fn & 1:
        fn >>= 1
        sn >>= 1
    for element in elements:
        if sn == 0:
            raise ProofError("consistency proof is longer than the path to the root")
        if fn & 1 or fn == sn:
            first = sha256(prefix + element + first).digest()
            second = sha256(prefix + element + second).digest()
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            second = sha256(prefix + second + element).digest()
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ProofError("consistency proof is shorter than the path to the root")
    if not (
        type(root1) is bytes
        and type(root2) is bytes
        and _compare_digest(first, root1)
        and _compare_digest(second, root2)
    ):
        _check_match(f"consistency proof, old root at size {size1}", first, root1)
        _check_match(f"consistency proof, new root at size {size2}", second, root2)


def _check_subtree(start: int, end: int, *, allow_empty: bool) -> None:
    """A subtree ``[start, end)`` must start at a multiple of the smallest power of two that is at
    least its length (so that some node of a larger tree covers exactly its leaves and nothing to
    their left)."""
    _check_u64("subtree start", start)
    _check_u64("subtree end", end)
    if start > end:
        raise ProofError(f"subtree start {start} is after its end {end}")
    if start == end:
        if not allow_empty:
            raise ProofError(f"subtree [{start}, {end}) is empty")
        return
    if start == 0:
        return
    length = end - start
    if length > 1 << 63:
        raise ProofError(f"subtree [{start}, {end}) is longer than 2^63 and must start at 0")
    width = 1 << (length - 1).bit_length()
    if start % width:
        raise ProofError(
            f"[{start}, {end}) is not a subtree: its start is not a multiple of {width}"
        )


def verify_subtree_inclusion(
    leaf_hash: bytes, index: int, start: int, end: int, proof: Sequence[bytes], subtree_root: bytes
) -> None:
    """Check that ``leaf_hash`` is entry ``index`` of subtree ``[start, end)`` with that root."""
    _check_u64("leaf index", index)
    _check_subtree(start, end, allow_empty=False)
    if not start <= index < end:
        raise ProofError(f"leaf index {index} is outside the subtree [{start}, {end})")
    computed = root_from_inclusion_proof(leaf_hash, index - start, end - start, proof)
    what = f"inclusion proof of leaf {index} in subtree [{start}, {end})"
    _check_match(what, computed, subtree_root)


def verify_subtree_consistency(
    start: int, end: int, size: int, proof: Sequence[bytes], subtree_root: bytes, root: bytes
) -> None:
    """Check that the subtree ``[start, end)`` with ``subtree_root`` is part of ``size``/``root``.

    The proof is replayed along the same walk that generates it: bottom-up, each hash is the
    sibling of the current node; siblings that lie inside the subtree also rebuild its root. Both
    rebuilt roots must match. The empty subtree is part of every tree: its proof is empty, its
    root must be ``SHA-256()``, and ``root`` is not examined.
    """
    _check_subtree(start, end, allow_empty=True)
    _check_u64("tree size", size)
    if end > size:
        raise ProofError(f"subtree [{start}, {end}) does not fit in a tree of size {size}")
    if start == end:
        if proof:
            raise ProofError(f"the empty subtree needs an empty proof; this one has {len(proof)}")
        _check_match("empty subtree", subtree_root, EMPTY_ROOT)
        return
    walk = _subtree_walk(start, end, size)
    _check_proof(
        proof,
        walk.proof_size(),
        f"a consistency proof of subtree [{start}, {end}) in a tree of size {size}",
    )
    elements = iter(proof)
    seed = bytes(subtree_root) if walk.known else next(elements)
    rebuilt_subtree = rebuilt_tree = seed
    for kind, _ in reversed(walk.steps):
        sibling = next(elements)
        if kind == "left":
            rebuilt_tree = node_hash(rebuilt_tree, sibling)
        elif kind == "right":
            rebuilt_tree = node_hash(sibling, rebuilt_tree)
        else:
            rebuilt_tree = node_hash(sibling, rebuilt_tree)
            rebuilt_subtree = node_hash(sibling, rebuilt_subtree)
    _check_match(f"subtree [{start}, {end}) root", rebuilt_subtree, subtree_root)
    _check_match(f"tree root at size {size}", rebuilt_tree, root)
