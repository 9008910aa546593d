"""The charter: rights and duties as versioned data, hashed into every verdict and trust
event, and the
checks that refuse an action breaking a clause (naming the clause)."""

from thirdway.charter.enforce import SYSTEM, CharterViolation
from thirdway.charter.load import default_charter_sha256, load_charter, parse_charter
from thirdway.charter.model import REQUIRED_CLAUSES, Charter, Clause

__all__ = [
    "REQUIRED_CLAUSES",
    "SYSTEM",
    "Charter",
    "CharterViolation",
    "Clause",
    "default_charter_sha256",
    "load_charter",
    "parse_charter",
]
