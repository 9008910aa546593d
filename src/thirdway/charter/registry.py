"""Every charter thirdway has shipped, by the SHA-256 that trust events and verdicts cite.

A log outlives the charter it was written under: an event decided under charter 1.0 must still be
judged by 1.0's clauses after the package moves to 1.1, by anyone, with nothing but the log.
So a charter, once shipped, is never unpublished: its exact file stays in the package
(``versions/<version>.yaml``; the current one is ``charter.yaml``) and this table maps its hash
to it. The hashes are written out, not computed at import, so that a changed file is caught
(:func:`thirdway.charter.load.packaged_charter` refuses a file that no longer hashes to its
entry) instead of silently becoming a different charter under an old name.

This module is data only; loading lives in :mod:`thirdway.charter.load`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from thirdway.charter.model import REQUIRED_CLAUSES


@dataclass(frozen=True)
class PackagedCharter:
    """One shipped charter version and what the software enforced while it was in force."""

    version: str
    resource: str
    """The file, relative to the ``thirdway.charter`` package."""
    sha256: str
    """:attr:`thirdway.charter.Charter.sha256` of the file: what events under it cite."""
    required_clauses: tuple[str, ...]
    """The clauses the software enforced by id under this version (the file must hold them)."""
    override_needs_rule: bool
    """auditor.2 as of 1.1: an override names the clause it is decided under. Under 1.0 an
    override carried no rule, and one without a rule is judged valid."""


CHARTER_1_0 = PackagedCharter(
    version="1.0",
    resource="versions/1.0.yaml",
    sha256="d17fcd19844808e0874b0e6455c6ac0aecda6f70e9220b331fcb2ec1c43f71d7",
    required_clauses=tuple(clause for clause in REQUIRED_CLAUSES if clause != "agency.2"),
    override_needs_rule=False,
)
CHARTER_1_1 = PackagedCharter(
    version="1.1",
    resource="charter.yaml",
    sha256="0f80788b66c3ec9fb9a5bc2343bb7cd7c3d1ea8f9da5afb30df542b56ca52db8",
    required_clauses=REQUIRED_CLAUSES,
    override_needs_rule=True,
)

PACKAGED: tuple[PackagedCharter, ...] = (CHARTER_1_0, CHARTER_1_1)
"""Oldest first; the last is the current charter (the packaged ``charter.yaml``)."""

_BY_SHA256: dict[str, PackagedCharter] = {entry.sha256: entry for entry in PACKAGED}


def packaged_entry(sha256: str) -> PackagedCharter | None:
    """The shipped charter with this hash, or None (a charter thirdway never shipped)."""
    return _BY_SHA256.get(sha256)


def override_needs_rule(sha256: str) -> bool:
    """Whether an override under the charter with this hash must name its clause (auditor.2).
    Every charter but a superseded packaged one is held to the current rule (fail closed)."""
    entry = packaged_entry(sha256)
    return True if entry is None else entry.override_needs_rule


_LEADING_NUMBERS = re.compile(r"\d+(?:\.\d+)*")


def version_order(version: str) -> tuple[int, ...] | None:
    """Where a charter version stands: its leading dotted numbers, trailing zeros dropped
    (``"1.10"`` after ``"1.9"``, ``"1"`` as ``"1.0"``, ``"7.0-test"`` as ``"7.0"``); None for a
    version that starts with no number (it cannot be ordered, and replay fails closed on it).

    Charters only move forward, so a trust event may not cite a charter older than one cited
    before it. The shipped versions are in this order (:data:`PACKAGED`, oldest first, and a
    test holds the two orders equal), so "older" means the registry's order for shipped
    charters and this order for a charter given with ``--charter`` that thirdway never shipped.
    """
    match = _LEADING_NUMBERS.match(version)
    if match is None:
        return None
    numbers = [int(part) for part in match.group().split(".")]
    while len(numbers) > 1 and numbers[-1] == 0:
        numbers.pop()
    return tuple(numbers)
