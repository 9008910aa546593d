"""The transparency log: RFC 6962 Merkle tree, storage, C2SP signed checkpoints.

- :mod:`~thirdway.ledger.merkle`: hashing, proofs read from stored subtrees, RFC 9162 verifiers.
- :mod:`~thirdway.ledger.store` / :mod:`~thirdway.ledger.sqlite`: the storage interface and its
  SQLite (WAL, append-only) implementation.
- :mod:`~thirdway.ledger.log`: :class:`~thirdway.ledger.log.TransparencyLog`, what callers use.
- :mod:`~thirdway.ledger.note`, :mod:`~thirdway.ledger.checkpoint`, :mod:`~thirdway.ledger.keys`:
  C2SP signed notes, checkpoints and cosignatures, and the log's key file.
"""
