"""thirdway: an agent's agency made to depend on verifiable honesty.

See DESIGN (shared) and the README for how the parts fit: ``protocol`` (wire models),
``ledger`` (RFC 6962 transparency log), ``verify`` (the pure reasoning-chain verifier), and the
parts built on them.
"""

__version__ = "0.1.0"
