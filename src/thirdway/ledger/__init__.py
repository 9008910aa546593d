"""The transparency log: RFC 6962 Merkle tree, storage, C2SP signed checkpoints."""
